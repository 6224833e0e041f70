//! The JSON shapes of servers, actions and SSH keys, field for field as the real API (and the
//! official `hcloud` client that parses them) expects.

use super::config::HetznerConfig;
use super::offer;
use super::state::{Action, Server, SshKey};
use serde_json::{Value, json};

/// ISO 8601 in UTC (`2016-01-30T23:55:00+00:00`) from Unix milliseconds.
pub fn iso8601(ms: i64) -> String {
    let secs = ms.div_euclid(1000);
    let (days, sod) = (secs.div_euclid(86_400), secs.rem_euclid(86_400));
    // Howard Hinnant's days-to-civil algorithm.
    let z = days + 719_468;
    let era = z.div_euclid(146_097);
    let doe = z.rem_euclid(146_097);
    let yoe = (doe - doe / 1460 + doe / 36_524 - doe / 146_096) / 365;
    let doy = doe - (365 * yoe + yoe / 4 - yoe / 100);
    let mp = (5 * doy + 2) / 153;
    let d = doy - (153 * mp + 2) / 5 + 1;
    let m = if mp < 10 { mp + 3 } else { mp - 9 };
    let y = yoe + era * 400 + i64::from(m <= 2);
    format!(
        "{y:04}-{m:02}-{d:02}T{:02}:{:02}:{:02}+00:00",
        sod / 3600,
        sod % 3600 / 60,
        sod % 60
    )
}

/// Documentation ranges (RFC 5737, RFC 3849), unique per server id.
fn ipv4(id: u64) -> String {
    format!("198.51.{}.{}", (id >> 8) & 255, id & 255)
}

pub fn server(s: &Server, now_ms: i64, config: &HetznerConfig) -> Value {
    let ipv4 = s.ipv4.then(|| {
        let ip = ipv4(s.id);
        json!({ "id": s.id, "ip": ip, "blocked": false, "dns_ptr": format!("static.{ip}.clients.your-server.de") })
    });
    let ipv6 = s.ipv6.then(|| json!({ "id": s.id + 1, "ip": format!("2001:db8:{:x}::/64", s.id & 0xffff), "blocked": false, "dns_ptr": [] }));
    json!({
        "id": s.id,
        "name": s.name,
        "status": s.status_at(now_ms).as_str(),
        "created": iso8601(s.created_ms),
        "public_net": { "ipv4": ipv4, "ipv6": ipv6, "floating_ips": [], "firewalls": [] },
        "private_net": [],
        "server_type": offer::server_type_json(s.server_type, config, now_ms),
        "datacenter": offer::datacenter_json(s.location, config, now_ms),
        "location": s.location.json(),
        "image": s.image.json(),
        "iso": null,
        "rescue_enabled": false,
        "locked": s.busy_until_ms > now_ms,
        "backup_window": null,
        "outgoing_traffic": 0,
        "ingoing_traffic": 0,
        "included_traffic": 21_990_232_555_520_u64,
        "protection": { "delete": false, "rebuild": false },
        "labels": s.labels,
        "volumes": [],
        "load_balancers": [],
        "primary_disk_size": s.server_type.disk,
        "placement_group": null,
    })
}

pub fn action(a: &Action, now_ms: i64) -> Value {
    let running = a.running_at(now_ms);
    let span = (a.finished_ms - a.started_ms).max(1);
    let progress = if running {
        ((now_ms - a.started_ms).max(0) * 100 / span).min(99)
    } else {
        100
    };
    json!({
        "id": a.id,
        "command": a.command,
        "status": if running { "running" } else { "success" },
        "progress": progress,
        "started": iso8601(a.started_ms),
        "finished": (!running).then(|| iso8601(a.finished_ms)),
        "resources": [{ "id": a.server, "type": "server" }],
        "error": null,
    })
}

pub fn ssh_key(k: &SshKey) -> Value {
    json!({
        "id": k.id, "name": k.name, "fingerprint": k.fingerprint, "public_key": k.public_key,
        "labels": k.labels, "created": iso8601(k.created_ms),
    })
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn timestamps_are_iso_8601_utc() {
        assert_eq!(iso8601(0), "1970-01-01T00:00:00+00:00");
        assert_eq!(iso8601(1_454_198_100_000), "2016-01-30T23:55:00+00:00");
        assert_eq!(iso8601(1_709_208_000_999), "2024-02-29T12:00:00+00:00");
    }
}
