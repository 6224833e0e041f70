//! The wire and the domain side by side: Hetzner's JSON (servers, prices, images, errors) read
//! into mayfly's `Instance`, `InstanceState`, `Image` and `Error`. Pure, so every rule is unit-tested.

use crate::Error;
use crate::tags;
use mayfly_core::{
    Arch, Billing, Image, ImageKind, Instance, InstanceState, Labels, Placement, Time,
};
use serde::Deserialize;
use std::collections::BTreeMap;

/// An error message from the API is kept to this many characters: enough to act on, too short
/// to carry a request body back into a log.
const MESSAGE_MAX: usize = 300;

/// A server as the API answers it; only the fields mayfly reads, each tolerant of absence where
/// the API documents it as nullable.
#[derive(Clone, Debug, Deserialize)]
pub struct Server {
    pub id: u64,
    pub name: String,
    pub status: String,
    pub created: String,
    #[serde(default)]
    pub labels: BTreeMap<String, String>,
    pub server_type: ServerType,
    #[serde(default)]
    pub datacenter: Option<Datacenter>,
    /// Newer API versions report the location directly; older ones only in the datacenter.
    #[serde(default)]
    pub location: Option<Location>,
    /// `null` when the image was deleted after the server was made from it.
    #[serde(default)]
    pub image: Option<WireImage>,
    #[serde(default)]
    pub public_net: Option<PublicNet>,
}

#[derive(Clone, Debug, Default, Deserialize)]
pub struct PublicNet {
    #[serde(default)]
    pub ipv4: Option<Address>,
    #[serde(default)]
    pub ipv6: Option<Address>,
}

/// `ip` is an address for IPv4 and a network (`2001:db8::/64`) for IPv6.
#[derive(Clone, Debug, Deserialize)]
pub struct Address {
    pub ip: String,
}

impl PublicNet {
    /// The public IPv4 address, else `::1` of the IPv6 network (the address Hetzner's images
    /// configure on the server).
    pub fn address(&self) -> Option<String> {
        if let Some(v4) = &self.ipv4 {
            return Some(v4.ip.clone());
        }
        let net = self.ipv6.as_ref()?.ip.split('/').next()?;
        let net: std::net::Ipv6Addr = net.parse().ok()?;
        let mut octets = net.octets();
        octets[15] |= 1;
        Some(std::net::Ipv6Addr::from(octets).to_string())
    }
}

#[derive(Clone, Debug, Deserialize)]
pub struct ServerType {
    pub name: String,
    #[serde(default)]
    pub architecture: Option<String>,
    #[serde(default)]
    pub prices: Vec<Price>,
}

#[derive(Clone, Debug, Deserialize)]
pub struct Price {
    pub location: String,
    pub price_hourly: Amount,
    /// What a month costs at most: the hourly charges stop there.
    #[serde(default)]
    pub price_monthly: Option<Amount>,
}

/// Prices are decimal strings (`"0.0071400000000000"`), in EUR.
#[derive(Clone, Debug, Deserialize)]
pub struct Amount {
    pub gross: String,
}

#[derive(Clone, Debug, Deserialize)]
pub struct Datacenter {
    pub location: Location,
}

#[derive(Clone, Debug, Deserialize)]
pub struct Location {
    pub name: String,
}

#[derive(Clone, Debug, Deserialize)]
pub struct WireImage {
    pub id: u64,
    #[serde(rename = "type")]
    pub kind: String,
    /// Snapshots and backups have none: their human name is the description.
    #[serde(default)]
    pub name: Option<String>,
    #[serde(default)]
    pub description: Option<String>,
    pub architecture: String,
    #[serde(default)]
    pub created: Option<String>,
    #[serde(default)]
    pub status: Option<String>,
    /// When Hetzner deprecated the image (system images), if it did.
    #[serde(default)]
    pub deprecated: Option<String>,
}

/// `meta.pagination` of a list answer.
#[derive(Clone, Debug, Default, Deserialize)]
pub(crate) struct Meta {
    #[serde(default)]
    pub pagination: Option<Pagination>,
}

#[derive(Clone, Debug, Default, Deserialize)]
pub(crate) struct Pagination {
    #[serde(default)]
    pub next_page: Option<u64>,
}

impl Meta {
    pub(crate) fn next_page(&self) -> Option<u64> {
        self.pagination.as_ref().and_then(|p| p.next_page)
    }
}

/// Hetzner's status words onto the states the planner reasons about. A rebuild is a new boot,
/// so it counts as starting; migrating and anything unknown are `Unknown`, which the planner
/// neither reuses nor counts as ready.
pub(crate) fn state(status: &str) -> InstanceState {
    match status {
        "initializing" | "starting" | "rebuilding" => InstanceState::Starting,
        "running" => InstanceState::Running,
        "stopping" => InstanceState::Stopping,
        "off" => InstanceState::Off,
        "deleting" => InstanceState::Deleting,
        _ => InstanceState::Unknown,
    }
}

pub(crate) fn arch(word: &str) -> Option<Arch> {
    match word {
        "x86" => Some(Arch::X86),
        "arm" => Some(Arch::Arm),
        _ => None,
    }
}

pub(crate) fn arch_word(a: Arch) -> &'static str {
    match a {
        Arch::X86 => "x86",
        Arch::Arm => "arm",
    }
}

pub(crate) fn kind_word(k: ImageKind) -> &'static str {
    match k {
        ImageKind::System => "system",
        ImageKind::Snapshot => "snapshot",
        ImageKind::Backup => "backup",
        ImageKind::App => "app",
    }
}

fn kind(word: &str) -> Option<ImageKind> {
    match word {
        "system" => Some(ImageKind::System),
        "snapshot" => Some(ImageKind::Snapshot),
        "backup" => Some(ImageKind::Backup),
        "app" => Some(ImageKind::App),
        _ => None,
    }
}

impl WireImage {
    /// The name an operator would write for this image: its name where it has one (system and
    /// app images), its description otherwise (snapshots and backups), its id as a last resort.
    pub(crate) fn label(&self) -> String {
        self.name
            .clone()
            .filter(|n| !n.is_empty())
            .or_else(|| self.description.clone().filter(|d| !d.is_empty()))
            .unwrap_or_else(|| self.id.to_string())
    }

    /// Whether an operator's `name` points at this image: by name, description or id.
    pub(crate) fn answers_to(&self, wanted: &str) -> bool {
        self.name.as_deref() == Some(wanted)
            || self.description.as_deref() == Some(wanted)
            || self.id.to_string() == wanted
    }

    pub(crate) fn created_at(&self) -> Time {
        self.created
            .as_deref()
            .and_then(|c| timestamp(c).ok())
            .unwrap_or_default()
    }

    fn image(&self, fallback_arch: Option<Arch>) -> Option<Image> {
        Some(Image {
            arch: arch(&self.architecture).or(fallback_arch)?,
            kind: kind(&self.kind)?,
            name: self.label(),
        })
    }
}

/// RFC 3339 (`2016-01-30T23:55:00+00:00`) to milliseconds since the epoch.
pub(crate) fn timestamp(text: &str) -> Result<Time, Error> {
    text.parse::<jiff::Timestamp>()
        .map(|t| Time::from_millis(t.as_millisecond()))
        .map_err(|_| invalid_answer(&format!("unreadable timestamp {:?}", clip(text))))
}

/// A gross hourly price for `location` from a server type's price list.
pub(crate) fn hourly_price(prices: &[Price], location: &str) -> Option<f64> {
    prices
        .iter()
        .find(|p| p.location == location)
        .and_then(Price::hourly_gross)
}

impl Price {
    pub fn hourly_gross(&self) -> Option<f64> {
        self.price_hourly.gross()
    }

    pub fn monthly_gross(&self) -> Option<f64> {
        self.price_monthly.as_ref()?.gross()
    }
}

impl Amount {
    fn gross(&self) -> Option<f64> {
        self.gross
            .trim()
            .parse::<f64>()
            .ok()
            .filter(|p| p.is_finite() && *p >= 0.0)
    }
}

impl Server {
    pub fn location_name(&self) -> Option<&str> {
        self.location
            .as_ref()
            .or(self.datacenter.as_ref().map(|d| &d.location))
            .map(|l| l.name.as_str())
    }

    /// Where ssh reaches the server: see [`PublicNet::address`].
    pub fn address(&self) -> Option<String> {
        self.public_net.as_ref().and_then(PublicNet::address)
    }

    /// The instance this server is. `known` names an image id mayfly itself resolved, so a
    /// snapshot reads back exactly as the pool's spec wrote it (and the instance stays reusable).
    pub(crate) fn instance(&self, known: impl Fn(u64) -> Option<Image>) -> Result<Instance, Error> {
        let created_at = timestamp(&self.created)?;
        let type_arch = self.server_type.architecture.as_deref().and_then(arch);
        // A deleted image leaves the name empty: it matches no spec, so the instance is never
        // reused for a job that wants some image, yet type and location stay known for billing.
        let image = match &self.image {
            Some(w) => known(w.id).or_else(|| w.image(type_arch)),
            None => None,
        }
        .or_else(|| {
            type_arch.map(|a| Image {
                arch: a,
                kind: ImageKind::Snapshot,
                name: String::new(),
            })
        });
        let location = self.location_name().map(str::to_string);
        let billing = location
            .as_deref()
            .and_then(|l| hourly_price(&self.server_type.prices, l))
            .map(Billing::hourly);
        let placement = match (location, image) {
            (Some(location), Some(image)) => Some(Placement {
                machine_type: self.server_type.name.clone(),
                location,
                image,
            }),
            _ => None,
        };
        Ok(Instance {
            name: self.name.clone(),
            provider_id: Some(self.id.to_string()),
            controller: self.labels.get(tags::CONTROLLER).cloned(),
            pool: self.labels.get(tags::POOL).cloned().unwrap_or_default(),
            state: state(&self.status),
            created_at,
            state_since: created_at,
            labels: Labels::default(),
            placement,
            job: None,
            run_id: None,
            billing,
            address: self.address(),
        })
    }
}

#[derive(Deserialize)]
struct ErrorBody {
    error: ErrorFields,
}

#[derive(Deserialize)]
struct ErrorFields {
    #[serde(default)]
    code: String,
    #[serde(default)]
    message: String,
    /// Its shape differs by code; only `fields[].name` is read, and anything else is ignored.
    #[serde(default)]
    details: serde_json::Value,
}

/// Hetzner's error code of an answer, with its message as sent, when the body is the
/// documented shape.
pub(crate) fn error_code(body: &[u8]) -> Option<(String, String)> {
    serde_json::from_slice::<ErrorBody>(body)
        .ok()
        .map(|b| (b.error.code, b.error.message))
}

/// An answer that was not a success, in Hetzner's words: what `mayfly cloud` shows an operator
/// (naming the request fields the API refused), and what [`Refusal::error`] turns into the case
/// the executor acts on.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct Refusal {
    pub status: u16,
    /// Hetzner's error code (`uniqueness_error`, …); empty when the body was not Hetzner's.
    pub code: String,
    /// Withheld if it quoted a secret of the request, and clipped.
    pub message: String,
    /// The request fields the API named as wrong (`server_type`, `location`, …).
    pub fields: Vec<String>,
}

impl std::fmt::Display for Refusal {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        let code = if self.code.is_empty() {
            "unknown"
        } else {
            &self.code
        };
        let message = if self.message.is_empty() {
            "no error message"
        } else {
            &self.message
        };
        write!(f, "Hetzner answered {} {code}: {message}", self.status)
    }
}

impl std::error::Error for Refusal {}

impl Refusal {
    /// Reads an error answer. The message is withheld if it quotes any of `secrets` (an API that
    /// echoes its input must not carry a credential into a log line), then clipped.
    pub(crate) fn read(status: u16, body: &[u8], secrets: &[&str]) -> Refusal {
        let parsed = serde_json::from_slice::<ErrorBody>(body).ok();
        let (code, message, details) = parsed
            .map(|b| (b.error.code, b.error.message, b.error.details))
            .unwrap_or_default();
        let fields = details["fields"]
            .as_array()
            .map(|fs| {
                fs.iter()
                    .filter_map(|f| f["name"].as_str().map(str::to_string))
                    .collect()
            })
            .unwrap_or_default();
        Refusal {
            status,
            code,
            message: clip(&scrub(message, secrets)),
            fields,
        }
    }

    /// The case the executor acts on. Every code of the API reference has its case. Rate limits
    /// reach here only after the client gave up waiting.
    pub fn error(&self) -> Error {
        let (code, status, message) = (self.code.as_str(), self.status, self.message.clone());
        match (code, status) {
            ("rate_limit_exceeded", _) | (_, 429) => Error::RateLimited { retry_after: None },
            ("unauthorized", _) | (_, 401) => Error::Unauthorized { status },
            // A read-only token or a token of a project without rights: the credential is wrong.
            ("forbidden" | "token_readonly", _) => Error::Unauthorized { status },
            ("not_found", _) | ("", 404) => Error::NotFound,
            ("uniqueness_error", _) => Error::AlreadyExists,
            ("resource_limit_exceeded", _) => Error::Quota { message },
            ("resource_unavailable" | "placement_error", _) => {
                Error::CapacityUnavailable { message }
            }
            ("invalid_input" | "json_error" | "invalid_server_type" | "unsupported_error", _)
            | ("deprecated_api_endpoint", _) => Error::Invalid { message },
            ("locked", _) | ("", 423) => Error::Locked,
            // "The resource has changed during the request, please retry": the same reaction as
            // a running action, try again on a later pass.
            ("conflict", _) => Error::Locked,
            _ => Error::Api {
                status,
                code: if code.is_empty() {
                    "unknown".to_string()
                } else {
                    code.to_string()
                },
                message,
            },
        }
    }
}

/// An answer mayfly cannot read: reported like an API error, so it is not mistaken for success.
pub(crate) fn invalid_answer(what: &str) -> Error {
    Error::Api {
        status: 200,
        code: "invalid_response".to_string(),
        message: clip(what),
    }
}

pub(crate) fn clip(text: &str) -> String {
    if text.chars().count() <= MESSAGE_MAX {
        return text.to_string();
    }
    let mut out: String = text.chars().take(MESSAGE_MAX).collect();
    out.push('…');
    out
}

/// What replaces a message that quoted a secret.
pub(crate) const WITHHELD: &str = "(message withheld: it quoted the request's secrets)";

/// `text`, or [`WITHHELD`] if it holds any of `secrets`: whole, JSON-escaped (as a body echo
/// would show it), or any one of its longer lines (as a partial echo would).
pub(crate) fn scrub(text: String, secrets: &[&str]) -> String {
    let quoted = |s: &str| {
        let escaped = serde_json::to_string(s).unwrap_or_default();
        escaped.trim_matches('"').to_string()
    };
    let leaks = secrets.iter().filter(|s| s.len() >= 4).any(|s| {
        text.contains(*s)
            || text.contains(&quoted(s))
            || s.lines()
                .map(str::trim)
                .filter(|l| l.len() >= 12)
                .any(|l| text.contains(l) || text.contains(&quoted(l)))
    });
    if leaks { WITHHELD.to_string() } else { text }
}

#[cfg(test)]
mod tests {
    use super::*;
    use serde_json::json;

    /// The error for an answer that is not a success, as the client makes it.
    fn error_for(status: u16, body: &[u8], secrets: &[&str]) -> Error {
        Refusal::read(status, body, secrets).error()
    }

    #[test]
    fn the_address_is_ipv4_else_the_first_of_the_ipv6_network() {
        let net: PublicNet = serde_json::from_value(json!({
            "ipv4": null, "ipv6": { "ip": "2001:db8:1f::/64" }
        }))
        .unwrap();
        assert_eq!(net.address().as_deref(), Some("2001:db8:1f::1"));
        let net: PublicNet = serde_json::from_value(json!({
            "ipv4": { "ip": "198.51.100.7" }, "ipv6": { "ip": "2001:db8:1f::/64" }
        }))
        .unwrap();
        assert_eq!(net.address().as_deref(), Some("198.51.100.7"));
        assert_eq!(PublicNet::default().address(), None);
    }

    #[test]
    fn every_status_has_a_state() {
        for (status, want) in [
            ("initializing", InstanceState::Starting),
            ("starting", InstanceState::Starting),
            ("rebuilding", InstanceState::Starting),
            ("running", InstanceState::Running),
            ("stopping", InstanceState::Stopping),
            ("off", InstanceState::Off),
            ("deleting", InstanceState::Deleting),
            ("migrating", InstanceState::Unknown),
            ("unknown", InstanceState::Unknown),
            ("something-new", InstanceState::Unknown),
        ] {
            assert_eq!(state(status), want, "{status}");
        }
    }

    fn body(code: &str) -> Vec<u8> {
        json!({ "error": { "code": code, "message": format!("{code} happened"), "details": {} } })
            .to_string()
            .into_bytes()
    }

    #[test]
    fn every_error_code_has_its_case() {
        let msg = |c: &str| format!("{c} happened");
        for (status, code, want) in [
            (
                429,
                "rate_limit_exceeded",
                Error::RateLimited { retry_after: None },
            ),
            (401, "unauthorized", Error::Unauthorized { status: 401 }),
            (403, "forbidden", Error::Unauthorized { status: 403 }),
            (403, "token_readonly", Error::Unauthorized { status: 403 }),
            (404, "not_found", Error::NotFound),
            (409, "uniqueness_error", Error::AlreadyExists),
            (
                403,
                "resource_limit_exceeded",
                Error::Quota {
                    message: msg("resource_limit_exceeded"),
                },
            ),
            (
                412,
                "resource_unavailable",
                Error::CapacityUnavailable {
                    message: msg("resource_unavailable"),
                },
            ),
            (
                412,
                "placement_error",
                Error::CapacityUnavailable {
                    message: msg("placement_error"),
                },
            ),
            (
                400,
                "invalid_input",
                Error::Invalid {
                    message: msg("invalid_input"),
                },
            ),
            (
                400,
                "json_error",
                Error::Invalid {
                    message: msg("json_error"),
                },
            ),
            (423, "locked", Error::Locked),
            (409, "conflict", Error::Locked),
            (
                503,
                "unavailable",
                Error::Api {
                    status: 503,
                    code: "unavailable".into(),
                    message: msg("unavailable"),
                },
            ),
            (
                500,
                "server_error",
                Error::Api {
                    status: 500,
                    code: "server_error".into(),
                    message: msg("server_error"),
                },
            ),
            (
                403,
                "protected",
                Error::Api {
                    status: 403,
                    code: "protected".into(),
                    message: msg("protected"),
                },
            ),
        ] {
            assert_eq!(error_for(status, &body(code), &[]), want, "{code}");
        }
        assert!(error_for(503, &body("unavailable"), &[]).is_transient());
        assert!(!error_for(403, &body("resource_limit_exceeded"), &[]).is_transient());
    }

    #[test]
    fn a_body_that_is_not_hetzners_falls_back_on_the_status() {
        assert_eq!(error_for(404, b"<html>", &[]), Error::NotFound);
        assert_eq!(
            error_for(401, b"", &[]),
            Error::Unauthorized { status: 401 }
        );
        assert_eq!(
            error_for(429, b"", &[]),
            Error::RateLimited { retry_after: None }
        );
        assert_eq!(
            error_for(502, b"bad gateway", &[]),
            Error::Api {
                status: 502,
                code: "unknown".into(),
                message: String::new()
            }
        );
    }

    #[test]
    fn a_refusal_names_the_fields_hetzner_refused() {
        let r = Refusal::read(
            400,
            br#"{"error":{"code":"invalid_input","message":"invalid input in field 'server_type'","details":{"fields":[{"name":"server_type"}]}}}"#,
            &[],
        );
        assert_eq!(r.fields, ["server_type"]);
        assert_eq!(
            r.to_string(),
            "Hetzner answered 400 invalid_input: invalid input in field 'server_type'"
        );
        let odd = Refusal::read(
            409,
            br#"{"error":{"code":"conflict","details":{"fields":7}}}"#,
            &[],
        );
        assert_eq!((odd.code.as_str(), odd.fields.len()), ("conflict", 0));
        assert_eq!(
            Refusal::read(502, b"<html>", &[]).to_string(),
            "Hetzner answered 502 unknown: no error message"
        );
    }

    #[test]
    fn messages_are_clipped_and_scrubbed() {
        let long = "x".repeat(1000);
        assert_eq!(clip(&long).chars().count(), MESSAGE_MAX + 1);
        assert_eq!(
            scrub("bad user_data: TOKEN-123".into(), &["TOKEN-123", ""]),
            WITHHELD
        );
        let user_data = "#cloud-config\nrunner: JITCONFIG-abcdef\nmore: 1\n";
        let echoed = format!("cannot take {}", serde_json::to_string(user_data).unwrap());
        assert_eq!(scrub(echoed, &[user_data]), WITHHELD);
        assert_eq!(
            scrub("partial runner: JITCONFIG-abcdef".into(), &[user_data]),
            WITHHELD
        );
        assert_eq!(
            scrub("server type unavailable".into(), &[user_data, "tok"]),
            "server type unavailable"
        );
        let body = br#"{"error": {"code": "invalid_input", "message": "TOKEN-123"}}"#;
        assert_eq!(
            error_for(400, body, &["TOKEN-123"]),
            Error::Invalid {
                message: WITHHELD.into()
            }
        );
    }

    fn server(image: serde_json::Value, with_location: bool) -> Server {
        let mut v = json!({
            "id": 42, "name": "mayfly-x64-7-1", "status": "running",
            "created": "2016-01-30T23:55:00+00:00",
            "labels": { "mayfly-controller": "c1", "mayfly-pool": "x64" },
            "server_type": { "name": "cx23", "architecture": "x86", "prices": [
                { "location": "fsn1", "price_hourly": { "net": "0.006", "gross": "0.00714" } }
            ] },
            "datacenter": { "name": "fsn1-dc14", "location": { "name": "fsn1" } },
            "image": image,
        });
        if with_location {
            v["location"] = json!({ "name": "fsn1" });
        }
        serde_json::from_value(v).unwrap()
    }

    #[test]
    fn a_server_becomes_an_instance() {
        let img = json!({ "id": 7, "type": "system", "name": "ubuntu-24.04", "description": "Ubuntu 24.04", "architecture": "x86" });
        for with_location in [true, false] {
            let i = server(img.clone(), with_location)
                .instance(|_| None)
                .unwrap();
            assert_eq!(i.provider_id.as_deref(), Some("42"));
            assert_eq!(
                (i.controller.as_deref(), i.pool.as_str()),
                (Some("c1"), "x64")
            );
            assert_eq!(i.state, InstanceState::Running);
            assert_eq!(i.created_at, Time::from_secs(1_454_198_100));
            assert_eq!(i.state_since, i.created_at);
            let p = i.placement.unwrap();
            assert_eq!(
                (p.machine_type.as_str(), p.location.as_str()),
                ("cx23", "fsn1")
            );
            assert_eq!(p.image, "x86:system:ubuntu-24.04".parse().unwrap());
            assert_eq!(i.billing, Some(Billing::hourly(0.00714)));
        }
    }

    #[test]
    fn snapshots_read_back_as_resolved_or_by_description() {
        let snap = json!({ "id": 9, "type": "snapshot", "name": null, "description": "runner-2024", "architecture": "arm" });
        let i = server(snap.clone(), true).instance(|_| None).unwrap();
        assert_eq!(
            i.placement.unwrap().image,
            "arm:snapshot:runner-2024".parse().unwrap()
        );
        let spec_image: Image = "arm:snapshot:9".parse().unwrap();
        let known = spec_image.clone();
        let i = server(snap, true)
            .instance(move |id| (id == 9).then(|| known.clone()))
            .unwrap();
        assert_eq!(i.placement.unwrap().image, spec_image);
        let gone = server(serde_json::Value::Null, true)
            .instance(|_| None)
            .unwrap();
        assert_eq!(gone.placement.unwrap().image.name, "");
    }

    #[test]
    fn a_broken_timestamp_is_an_error_not_a_panic() {
        let mut s = server(serde_json::Value::Null, true);
        s.created = "yesterday".into();
        assert!(matches!(
            s.instance(|_| None),
            Err(Error::Api { status: 200, .. })
        ));
    }
}
