//! The fixed catalogue: locations, server types with per-location prices, and system images,
//! close to the real ones so price-aware code and location fallback have something true to chew.
//! Public because `mayfly estimate` prices machines from the same list rather than a second copy.

use super::config::HetznerConfig;
use serde_json::{Value, json};

pub struct Location {
    pub id: u64,
    pub name: &'static str,
    pub description: &'static str,
    pub country: &'static str,
    pub city: &'static str,
    pub latitude: f64,
    pub longitude: f64,
    pub network_zone: &'static str,
    pub datacenter_id: u64,
    pub datacenter: &'static str,
    /// Prices here relative to Germany and Finland.
    pub price_factor: f64,
}

pub struct ServerType {
    pub id: u64,
    pub name: &'static str,
    pub category: &'static str,
    pub cores: u32,
    pub memory: f64,
    pub disk: u32,
    pub cpu_type: &'static str,
    pub architecture: &'static str,
    /// Net EUR in Germany and Finland.
    pub hourly_net: f64,
    pub monthly_net: f64,
    /// Locations that offer the type at all (others answer `invalid_input`).
    pub locations: &'static [&'static str],
}

pub struct Image {
    pub id: u64,
    pub name: &'static str,
    pub description: &'static str,
    pub os_flavor: &'static str,
    pub os_version: &'static str,
    pub architecture: &'static str,
}

#[allow(clippy::too_many_arguments)]
const fn loc(
    id: u64,
    name: &'static str,
    description: &'static str,
    country: &'static str,
    city: &'static str,
    (latitude, longitude): (f64, f64),
    network_zone: &'static str,
    (datacenter_id, datacenter): (u64, &'static str),
    price_factor: f64,
) -> Location {
    Location {
        id,
        name,
        description,
        country,
        city,
        latitude,
        longitude,
        network_zone,
        datacenter_id,
        datacenter,
        price_factor,
    }
}

#[rustfmt::skip]
pub const LOCATIONS: &[Location] = &[
    loc(1, "fsn1", "Falkenstein DC Park 1", "DE", "Falkenstein", (50.47612, 12.370071), "eu-central", (4, "fsn1-dc14"), 1.0),
    loc(2, "nbg1", "Nuremberg DC Park 1", "DE", "Nuremberg", (49.452102, 11.076665), "eu-central", (2, "nbg1-dc3"), 1.0),
    loc(3, "hel1", "Helsinki DC Park 1", "FI", "Helsinki", (60.169855, 24.938379), "eu-central", (3, "hel1-dc2"), 1.0),
    loc(4, "ash", "Ashburn, VA", "US", "Ashburn, VA", (39.045821, -77.487073), "us-east", (5, "ash-dc1"), 1.2),
    loc(5, "hil", "Hillsboro, OR", "US", "Hillsboro, OR", (45.54222, -122.951924), "us-west", (6, "hil-dc1"), 1.2),
    loc(6, "sin", "Singapore", "SG", "Singapore", (1.283333, 103.833333), "ap-southeast", (7, "sin-dc1"), 1.35),
];

const EU: &[&str] = &["fsn1", "nbg1", "hel1"];
const ALL: &[&str] = &["fsn1", "nbg1", "hel1", "ash", "hil", "sin"];

#[allow(clippy::too_many_arguments)]
const fn st(
    id: u64,
    name: &'static str,
    category: &'static str,
    (cores, memory, disk): (u32, f64, u32),
    cpu_type: &'static str,
    architecture: &'static str,
    (hourly_net, monthly_net): (f64, f64),
    locations: &'static [&'static str],
) -> ServerType {
    ServerType {
        id,
        name,
        category,
        cores,
        memory,
        disk,
        cpu_type,
        architecture,
        hourly_net,
        monthly_net,
        locations,
    }
}

#[rustfmt::skip]
pub const SERVER_TYPES: &[ServerType] = &[
    st(22, "cpx11", "regular_purpose", (2, 2.0, 40), "shared", "x86", (0.0070, 4.35), ALL),
    st(23, "cpx21", "regular_purpose", (3, 4.0, 80), "shared", "x86", (0.0113, 7.05), ALL),
    st(24, "cpx31", "regular_purpose", (4, 8.0, 160), "shared", "x86", (0.0210, 13.10), ALL),
    st(45, "cax11", "cost_optimized", (2, 4.0, 40), "shared", "arm", (0.0063, 3.95), EU),
    st(93, "cax21", "cost_optimized", (4, 8.0, 80), "shared", "arm", (0.0114, 7.09), EU),
    st(95, "cax41", "cost_optimized", (16, 32.0, 320), "shared", "arm", (0.0397, 24.49), EU),
    st(96, "ccx13", "general_purpose", (2, 8.0, 80), "dedicated", "x86", (0.0200, 12.49), ALL),
    st(104, "cx22", "cost_optimized", (2, 4.0, 40), "shared", "x86", (0.0060, 3.79), EU),
    st(105, "cx32", "cost_optimized", (4, 8.0, 80), "shared", "x86", (0.0110, 6.80), EU),
];

const fn img(
    id: u64,
    name: &'static str,
    description: &'static str,
    os: (&'static str, &'static str),
    architecture: &'static str,
) -> Image {
    Image {
        id,
        name,
        description,
        os_flavor: os.0,
        os_version: os.1,
        architecture,
    }
}

#[rustfmt::skip]
pub const IMAGES: &[Image] = &[
    img(67794396, "ubuntu-22.04", "Ubuntu 22.04", ("ubuntu", "22.04"), "x86"),
    img(103908070, "ubuntu-22.04", "Ubuntu 22.04", ("ubuntu", "22.04"), "arm"),
    img(161547269, "ubuntu-24.04", "Ubuntu 24.04", ("ubuntu", "24.04"), "x86"),
    img(161547270, "ubuntu-24.04", "Ubuntu 24.04", ("ubuntu", "24.04"), "arm"),
    img(114690387, "debian-12", "Debian 12", ("debian", "12"), "x86"),
    img(114690389, "debian-12", "Debian 12", ("debian", "12"), "arm"),
];

/// German VAT, which the real API adds for a German project.
const VAT: f64 = 1.19;

/// Rounds to 10 decimals: the price strings carry that many, so a client that parses them and
/// the ledger agree to the last bit.
fn round10(x: f64) -> f64 {
    (x * 1e10).round() / 1e10
}

/// Finds a resource by id (a number, or a numeric string) or by name, as the API accepts both.
pub fn by_id_or_name<'a, T>(
    items: &'a [T],
    key: &serde_json::Value,
    id: impl Fn(&T) -> u64,
    name: impl Fn(&T) -> &str,
) -> Option<&'a T> {
    match key {
        Value::Number(n) => n.as_u64().and_then(|n| items.iter().find(|t| id(t) == n)),
        Value::String(s) => match s.parse::<u64>() {
            Ok(n) => items.iter().find(|t| id(t) == n),
            Err(_) => items.iter().find(|t| name(t) == s),
        },
        _ => None,
    }
}

impl Location {
    pub fn named(name: &str) -> Option<&'static Location> {
        LOCATIONS.iter().find(|l| l.name.eq_ignore_ascii_case(name))
    }

    pub fn get(key: &Value) -> Option<&'static Location> {
        by_id_or_name(LOCATIONS, key, |l| l.id, |l| l.name)
    }

    /// By datacenter id or name: older clients place servers by datacenter.
    pub fn by_datacenter(key: &Value) -> Option<&'static Location> {
        by_id_or_name(LOCATIONS, key, |l| l.datacenter_id, |l| l.datacenter)
    }

    pub fn json(&self) -> Value {
        json!({
            "id": self.id, "name": self.name, "description": self.description, "country": self.country,
            "city": self.city, "latitude": self.latitude, "longitude": self.longitude, "network_zone": self.network_zone,
        })
    }

    /// The location's one datacenter (the API still reports it on servers).
    pub fn datacenter_json(&self) -> Value {
        let here: Vec<u64> = SERVER_TYPES
            .iter()
            .filter(|t| t.offered_in(self.name))
            .map(|t| t.id)
            .collect();
        json!({
            "id": self.datacenter_id, "name": self.datacenter, "description": format!("{} virtual DC 1", self.city),
            "location": self.json(),
            "server_types": { "supported": here, "available": here, "available_for_migration": here },
        })
    }
}

impl ServerType {
    pub fn named(name: &str) -> Option<&'static ServerType> {
        SERVER_TYPES
            .iter()
            .find(|t| t.name.eq_ignore_ascii_case(name))
    }

    pub fn get(key: &Value) -> Option<&'static ServerType> {
        by_id_or_name(SERVER_TYPES, key, |t| t.id, |t| t.name)
    }

    pub fn offered_in(&self, location: &str) -> bool {
        self.locations.contains(&location)
    }

    /// Net and gross hourly price in a location, as billed.
    pub fn hourly(&self, location: &Location) -> (f64, f64) {
        let net = round10(self.hourly_net * location.price_factor);
        (net, round10(net * VAT))
    }

    pub fn json(&self, config: &HetznerConfig) -> Value {
        let prices: Vec<Value> = LOCATIONS
            .iter()
            .filter(|l| self.offered_in(l.name))
            .map(|l| {
                let (net, gross) = self.hourly(l);
                let monthly = round10(self.monthly_net * l.price_factor);
                json!({
                    "location": l.name,
                    "price_hourly": { "net": format!("{net:.10}"), "gross": format!("{gross:.16}") },
                    "price_monthly": { "net": format!("{monthly:.10}"), "gross": format!("{:.16}", round10(monthly * VAT)) },
                    "included_traffic": if l.price_factor > 1.0 { 1_099_511_627_776_u64 } else { 21_990_232_555_520 },
                    "price_per_tb_traffic": { "net": "1.0000000000", "gross": "1.1900000000000000" },
                })
            })
            .collect();
        let locations: Vec<Value> = LOCATIONS
            .iter()
            .filter(|l| self.offered_in(l.name))
            .map(|l| {
                let available = !config.is_unavailable(self.name, l.name);
                json!({ "id": l.id, "name": l.name, "deprecation": null, "available": available, "recommended": available })
            })
            .collect();
        json!({
            "id": self.id, "name": self.name, "description": self.name.to_uppercase(), "category": self.category,
            "cores": self.cores, "memory": self.memory, "disk": self.disk, "deprecated": false, "deprecation": null,
            "prices": prices, "storage_type": "local", "cpu_type": self.cpu_type, "architecture": self.architecture,
            "locations": locations,
        })
    }
}

impl Image {
    /// By id, or by name for the architecture the server will have (the API picks the variant).
    /// An image of another architecture is refused, as the real API refuses it.
    pub fn get(key: &Value, architecture: &str) -> Option<&'static Image> {
        let image = match key {
            Value::String(s) if s.parse::<u64>().is_err() => IMAGES
                .iter()
                .find(|i| i.name == s && i.architecture == architecture),
            _ => by_id_or_name(IMAGES, key, |i| i.id, |i| i.name),
        };
        image.filter(|i| i.architecture == architecture)
    }

    pub fn json(&self) -> Value {
        json!({
            "id": self.id, "type": "system", "status": "available", "name": self.name, "description": self.description,
            "image_size": null, "disk_size": 5, "created": "2024-04-25T12:00:00+00:00", "created_from": null,
            "bound_to": null, "os_flavor": self.os_flavor, "os_version": self.os_version, "rapid_deploy": true,
            "protection": { "delete": false }, "deprecated": null, "deleted": null, "labels": {},
            "architecture": self.architecture,
        })
    }
}
