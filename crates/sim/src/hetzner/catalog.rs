//! The fixed catalogue: locations, server types with per-location prices and retirements, and
//! system images, close to the real ones so price-aware code, location fallback and deprecation
//! handling have something true to chew. Public because `mayfly estimate` prices machines from
//! the same list rather than a second copy.

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
    /// Locations that offer the type at all (a create elsewhere answers `invalid_input`).
    pub locations: &'static [&'static str],
    /// Where and when Hetzner retires the type, if it announced so.
    pub retired: Option<&'static Retirement>,
}

/// A deprecation as the API reports it (`{announced, unavailable_after}`), in Unix milliseconds.
/// After `unavailable_after` the type can no longer be ordered where it applies; servers that
/// exist keep running.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub struct Deprecation {
    pub announced_ms: i64,
    pub unavailable_after_ms: i64,
}

/// A retirement announced for a line of server types: where it applies, and when.
pub struct Retirement {
    pub locations: &'static [&'static str],
    pub deprecation: Deprecation,
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
const EU_SIN: &[&str] = &["fsn1", "nbg1", "hel1", "sin"];
const ALL: &[&str] = &["fsn1", "nbg1", "hel1", "ash", "hil", "sin"];

/// Hetzner's changelog of 2025-10-16 ("server types deprecated"): the CX Gen 2 line (cx22 … cx52)
/// and the CPX Gen 1 line (cpx11 … cpx51) "will no longer be available for order as of
/// 2025-12-31". The API reports it per location since 2025-09-24 (`locations[].deprecation`,
/// changelog "per-location server types"), with `announced` 2025-10-16T06:00:00Z and
/// `unavailable_after` 2025-12-31T23:59:59Z, as client fixtures and Terraform's warning quote it.
const OCTOBER_2025: Deprecation = Deprecation {
    announced_ms: 1_760_594_400_000,
    unavailable_after_ms: 1_767_225_599_000,
};
/// CX Gen 2 was only ever sold in the EU: gone wherever it was offered.
static CX_GEN2: Retirement = Retirement {
    locations: EU,
    deprecation: OCTOBER_2025,
};
/// CPX Gen 1 goes where CPX Gen 2 replaces it; the US locations, which have no Gen 2, keep it
/// (reports from 2026 find cpx11 orderable only in ash and hil).
static CPX_GEN1: Retirement = Retirement {
    locations: EU_SIN,
    deprecation: OCTOBER_2025,
};

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
    retired: Option<&'static Retirement>,
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
        retired,
    }
}

/// The server types Hetzner sells today, and the retired lines it still lists.
///
/// Where the figures come from: sizes and ids as the API reports them (client fixtures quote
/// cx22 = 104, cx32 = 105, cpx22 = 109, cax11 = 45, cax21 = 93; the new lines' other ids are
/// numbered on from there). Net prices are Germany/Finland list prices as public API snapshots
/// of late 2025 and early 2026 record them (cx23 EUR 2.99 a month, EUR 0.0048 an hour; the
/// CPX Gen 2 and CX Gen 3 rows from the same snapshots; CAX, CCX and the retired lines at
/// their 2024-2025 prices). Hetzner changes prices (April and June 2026): what matters here is
/// their order and ratios, which price-aware code compares, not the last cent. The locations:
/// CX and CAX in the EU only, CPX Gen 2 in the EU and Singapore (not in the US, which keeps
/// CPX Gen 1), CCX everywhere.
#[rustfmt::skip]
pub const SERVER_TYPES: &[ServerType] = &[
    // Cost-optimized x86 (CX Gen 3), since October 2025.
    st(114, "cx23", "cost_optimized", (2, 4.0, 40), "shared", "x86", (0.0048, 2.99), EU, None),
    st(115, "cx33", "cost_optimized", (4, 8.0, 80), "shared", "x86", (0.0088, 5.49), EU, None),
    st(116, "cx43", "cost_optimized", (8, 16.0, 160), "shared", "x86", (0.0152, 9.49), EU, None),
    st(117, "cx53", "cost_optimized", (16, 32.0, 320), "shared", "x86", (0.0280, 17.49), EU, None),
    // Regular-purpose AMD (CPX Gen 2), since October 2025.
    st(108, "cpx12", "regular_purpose", (1, 2.0, 40), "shared", "x86", (0.0064, 3.99), EU_SIN, None),
    st(109, "cpx22", "regular_purpose", (2, 4.0, 80), "shared", "x86", (0.0104, 6.49), EU_SIN, None),
    st(110, "cpx32", "regular_purpose", (4, 8.0, 160), "shared", "x86", (0.0184, 11.49), EU_SIN, None),
    st(111, "cpx42", "regular_purpose", (8, 16.0, 320), "shared", "x86", (0.0344, 21.49), EU_SIN, None),
    st(112, "cpx52", "regular_purpose", (12, 24.0, 480), "shared", "x86", (0.0497, 30.99), EU_SIN, None),
    st(113, "cpx62", "regular_purpose", (16, 32.0, 640), "shared", "x86", (0.0681, 42.49), EU_SIN, None),
    // Cost-optimized Arm (CAX, Ampere Altra).
    st(45, "cax11", "cost_optimized", (2, 4.0, 40), "shared", "arm", (0.0063, 3.95), EU, None),
    st(93, "cax21", "cost_optimized", (4, 8.0, 80), "shared", "arm", (0.0114, 7.09), EU, None),
    st(94, "cax31", "cost_optimized", (8, 16.0, 160), "shared", "arm", (0.0200, 12.49), EU, None),
    st(95, "cax41", "cost_optimized", (16, 32.0, 320), "shared", "arm", (0.0397, 24.49), EU, None),
    // Dedicated vCPU (CCX Gen 3).
    st(96, "ccx13", "general_purpose", (2, 8.0, 80), "dedicated", "x86", (0.0200, 12.49), ALL, None),
    st(97, "ccx23", "general_purpose", (4, 16.0, 160), "dedicated", "x86", (0.0392, 24.49), ALL, None),
    st(98, "ccx33", "general_purpose", (8, 32.0, 240), "dedicated", "x86", (0.0776, 48.49), ALL, None),
    st(99, "ccx43", "general_purpose", (16, 64.0, 360), "dedicated", "x86", (0.1544, 96.49), ALL, None),
    st(100, "ccx53", "general_purpose", (32, 128.0, 600), "dedicated", "x86", (0.3088, 192.49), ALL, None),
    st(101, "ccx63", "general_purpose", (48, 192.0, 960), "dedicated", "x86", (0.4624, 288.49), ALL, None),
    // Retired: listed with their deprecation, no longer orderable where it applies.
    st(104, "cx22", "cost_optimized", (2, 4.0, 40), "shared", "x86", (0.0060, 3.79), EU, Some(&CX_GEN2)),
    st(105, "cx32", "cost_optimized", (4, 8.0, 80), "shared", "x86", (0.0110, 6.80), EU, Some(&CX_GEN2)),
    st(106, "cx42", "cost_optimized", (8, 16.0, 160), "shared", "x86", (0.0264, 16.40), EU, Some(&CX_GEN2)),
    st(107, "cx52", "cost_optimized", (16, 32.0, 320), "shared", "x86", (0.0520, 32.40), EU, Some(&CX_GEN2)),
    st(22, "cpx11", "regular_purpose", (2, 2.0, 40), "shared", "x86", (0.0070, 4.35), ALL, Some(&CPX_GEN1)),
    st(23, "cpx21", "regular_purpose", (3, 4.0, 80), "shared", "x86", (0.0113, 7.05), ALL, Some(&CPX_GEN1)),
    st(24, "cpx31", "regular_purpose", (4, 8.0, 160), "shared", "x86", (0.0210, 13.10), ALL, Some(&CPX_GEN1)),
    st(25, "cpx41", "regular_purpose", (8, 16.0, 240), "shared", "x86", (0.0392, 24.49), ALL, Some(&CPX_GEN1)),
    st(26, "cpx51", "regular_purpose", (16, 32.0, 360), "shared", "x86", (0.0880, 54.90), ALL, Some(&CPX_GEN1)),
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

    /// The retirement's deprecation where it applies to `location`.
    pub fn retirement_in(&self, location: &str) -> Option<Deprecation> {
        self.retired
            .filter(|r| r.locations.contains(&location))
            .map(|r| r.deprecation)
    }

    /// Whether the catalogue alone lets the type be ordered in `location` at `now_ms`: offered
    /// there and not past a retirement. (Faults may take more away: see `offer`.)
    pub fn orderable_in(&self, location: &str, now_ms: i64) -> bool {
        self.offered_in(location)
            && self
                .retirement_in(location)
                .is_none_or(|d| now_ms <= d.unavailable_after_ms)
    }

    /// `prices[]`: one entry per location that offers the type.
    pub fn prices_json(&self) -> Vec<Value> {
        LOCATIONS
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
            .collect()
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
