//! Which server types can be ordered where, and when: the catalogue's retirements, the injected
//! deprecations and missing types, stock; and the JSON that reports it (types, datacenters).

use super::catalog::{Deprecation, LOCATIONS, Location, SERVER_TYPES, ServerType, by_id_or_name};
use super::config::HetznerConfig;
use super::errors::ApiError;
use super::render::iso8601;
use serde_json::{Value, json};

/// Why a type cannot be ordered in a location.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum Refusal {
    /// The location never offered it.
    NotOffered,
    /// Past its deprecation's `unavailable_after` there.
    Retired,
    /// Offered, but out of stock (the `unavailable` fault).
    OutOfStock,
}

/// The types the catalogue lists now: all but the missing ones.
pub fn listed(config: &HetznerConfig) -> impl Iterator<Item = &'static ServerType> + '_ {
    SERVER_TYPES.iter().filter(|t| !config.is_missing(t.name))
}

/// A listed type by id or name, as a create names it.
pub fn find(config: &HetznerConfig, key: &Value) -> Option<&'static ServerType> {
    by_id_or_name(SERVER_TYPES, key, |t| t.id, |t| t.name).filter(|t| !config.is_missing(t.name))
}

/// The deprecation of `t` in `location`: an injected one, else the catalogue's retirement.
pub fn deprecation(config: &HetznerConfig, t: &ServerType, location: &str) -> Option<Deprecation> {
    config
        .deprecation(t.name, location)
        .or_else(|| t.retirement_in(location))
}

/// Whether `t` can be ordered in `location` at `now_ms`, and if not, why.
pub fn check(
    config: &HetznerConfig,
    t: &ServerType,
    location: &str,
    now_ms: i64,
) -> Result<(), Refusal> {
    if !t.offered_in(location) {
        return Err(Refusal::NotOffered);
    }
    if deprecation(config, t, location).is_some_and(|d| now_ms > d.unavailable_after_ms) {
        return Err(Refusal::Retired);
    }
    if config.is_unavailable(t.name, location) {
        return Err(Refusal::OutOfStock);
    }
    Ok(())
}

/// Whether some location still sells `t` (stock aside): a type retired everywhere is refused as
/// deprecated, one retired or never offered only here as unsupported in this location.
fn sold_anywhere(config: &HetznerConfig, t: &ServerType, now_ms: i64) -> bool {
    LOCATIONS.iter().any(|l| {
        !matches!(
            check(config, t, l.name, now_ms),
            Err(Refusal::NotOffered | Refusal::Retired)
        )
    })
}

/// The answer to a create of `t` in `location` when `check` refused it. The wording is the real
/// API's as reported from 2026: `invalid_input` "server type 104 is deprecated" for cx22 after
/// its retirement, and `invalid_input` "unsupported location for server type" for cx23 in ash
/// (never offered there) and for cpx21 in nbg1 and hel1 (retired there, still sold in the US),
/// both with status 422; out of stock stays 412 `resource_unavailable`.
pub fn refusal(
    config: &HetznerConfig,
    t: &ServerType,
    location: &str,
    why: Refusal,
    now_ms: i64,
) -> ApiError {
    match why {
        Refusal::OutOfStock => ApiError::unavailable(t.name, location),
        Refusal::NotOffered | Refusal::Retired if !sold_anywhere(config, t, now_ms) => {
            ApiError::deprecated_type(t.id)
        }
        Refusal::NotOffered | Refusal::Retired => ApiError::unsupported_location(),
    }
}

/// Where a create without a location lands: like the real API, the first location that can
/// take the type now; the error when none can.
pub fn pick_location(
    config: &HetznerConfig,
    t: &ServerType,
    now_ms: i64,
) -> Result<&'static Location, ApiError> {
    LOCATIONS
        .iter()
        .find(|l| check(config, t, l.name, now_ms).is_ok())
        .ok_or_else(|| match sold_anywhere(config, t, now_ms) {
            true => ApiError::unavailable(t.name, "any location"),
            false => ApiError::deprecated_type(t.id),
        })
}

fn deprecation_json(d: Option<Deprecation>) -> Value {
    d.map_or(Value::Null, |d| {
        json!({ "announced": iso8601(d.announced_ms), "unavailable_after": iso8601(d.unavailable_after_ms) })
    })
}

/// A server type as `GET /server_types` shows it at `now_ms`. Since 2025-09-24 the API reports
/// deprecation per location (`locations[].deprecation`, with `available` and `recommended`);
/// the older top-level `deprecated` and `deprecation` say the type is deprecated in every
/// location that offers it.
pub fn server_type_json(t: &ServerType, config: &HetznerConfig, now_ms: i64) -> Value {
    let offered: Vec<&Location> = LOCATIONS.iter().filter(|l| t.offered_in(l.name)).collect();
    let locations: Vec<Value> = offered
        .iter()
        .map(|l| {
            let deprecation = deprecation(config, t, l.name);
            let available = check(config, t, l.name, now_ms).is_ok();
            json!({
                "id": l.id, "name": l.name, "deprecation": deprecation_json(deprecation),
                "available": available, "recommended": available && deprecation.is_none(),
            })
        })
        .collect();
    let everywhere: Option<Vec<Deprecation>> = offered
        .iter()
        .map(|l| deprecation(config, t, l.name))
        .collect();
    // The earliest, when every location has one: the date the type is gone somewhere.
    let overall = everywhere.and_then(|ds| ds.into_iter().min_by_key(|d| d.unavailable_after_ms));
    json!({
        "id": t.id, "name": t.name, "description": t.name.to_uppercase(), "category": t.category,
        "cores": t.cores, "memory": t.memory, "disk": t.disk,
        "deprecated": overall.is_some(), "deprecation": deprecation_json(overall),
        "prices": t.prices_json(), "storage_type": "local", "cpu_type": t.cpu_type,
        "architecture": t.architecture, "locations": locations,
    })
}

/// The location's one datacenter (the API still reports it on servers), with the types it
/// supports (listed and offered) and has available now.
pub fn datacenter_json(l: &Location, config: &HetznerConfig, now_ms: i64) -> Value {
    let supported: Vec<u64> = listed(config)
        .filter(|t| t.offered_in(l.name))
        .map(|t| t.id)
        .collect();
    let available: Vec<u64> = listed(config)
        .filter(|t| check(config, t, l.name, now_ms).is_ok())
        .map(|t| t.id)
        .collect();
    json!({
        "id": l.datacenter_id, "name": l.datacenter, "description": format!("{} virtual DC 1", l.city),
        "location": l.json(),
        "server_types": { "supported": supported, "available": available, "available_for_migration": available },
    })
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::hetzner::config::DeprecationFault;

    /// 2026-06-01, after the October 2025 retirements.
    const JUNE_2026: i64 = 1_780_272_000_000;
    /// 2025-11-01: announced, still orderable.
    const NOVEMBER_2025: i64 = 1_761_955_200_000;

    fn named(name: &str) -> &'static ServerType {
        ServerType::named(name).unwrap()
    }

    #[test]
    fn retired_lines_are_orderable_until_their_date_and_only_where_they_apply() {
        let c = HetznerConfig::default();
        assert_eq!(check(&c, named("cx22"), "fsn1", NOVEMBER_2025), Ok(()));
        assert_eq!(
            check(&c, named("cx22"), "fsn1", JUNE_2026),
            Err(Refusal::Retired)
        );
        assert_eq!(
            check(&c, named("cx22"), "ash", JUNE_2026),
            Err(Refusal::NotOffered)
        );
        assert_eq!(
            check(&c, named("cpx21"), "nbg1", JUNE_2026),
            Err(Refusal::Retired)
        );
        assert_eq!(check(&c, named("cpx21"), "ash", JUNE_2026), Ok(()));
        assert_eq!(check(&c, named("cx23"), "fsn1", JUNE_2026), Ok(()));
        // Retired everywhere is "deprecated"; retired here only, "unsupported location".
        let code = |t: &str, l: &str| {
            let e = refusal(&c, named(t), l, Refusal::Retired, JUNE_2026);
            e.message().to_string()
        };
        assert_eq!(code("cx22", "fsn1"), "server type 104 is deprecated");
        assert_eq!(
            code("cpx21", "nbg1"),
            "unsupported location for server type"
        );
        assert!(pick_location(&c, named("cx22"), JUNE_2026).is_err());
        assert_eq!(
            pick_location(&c, named("cpx21"), JUNE_2026).unwrap().name,
            "ash"
        );
    }

    #[test]
    fn the_json_reports_deprecation_per_location_and_overall() {
        let c = HetznerConfig::default();
        let cx22 = server_type_json(named("cx22"), &c, JUNE_2026);
        assert_eq!(cx22["deprecated"], true);
        assert_eq!(
            cx22["deprecation"]["unavailable_after"],
            "2025-12-31T23:59:59+00:00"
        );
        assert_eq!(
            cx22["deprecation"]["announced"],
            "2025-10-16T06:00:00+00:00"
        );
        assert!(
            cx22["locations"]
                .as_array()
                .unwrap()
                .iter()
                .all(|l| l["available"] == false)
        );
        let cpx21 = server_type_json(named("cpx21"), &c, JUNE_2026);
        assert_eq!(
            (cpx21["deprecated"].clone(), cpx21["deprecation"].clone()),
            (json!(false), Value::Null)
        );
        let ash = cpx21["locations"]
            .as_array()
            .unwrap()
            .iter()
            .find(|l| l["name"] == "ash")
            .unwrap();
        assert_eq!(
            (ash["available"].clone(), ash["deprecation"].clone()),
            (json!(true), Value::Null)
        );
        let cx23 = server_type_json(named("cx23"), &c, JUNE_2026);
        assert_eq!(cx23["deprecated"], false);
        assert_eq!(cx23["locations"][0]["recommended"], true);
    }

    #[test]
    fn injected_deprecations_and_missing_types_take_effect() {
        let mut c = HetznerConfig::default();
        c.deprecations.push(DeprecationFault {
            server_type: "cx23".into(),
            location: Some("fsn1".into()),
            deprecation: Deprecation {
                announced_ms: 0,
                unavailable_after_ms: JUNE_2026 + 1,
            },
        });
        let cx23 = named("cx23");
        assert_eq!(check(&c, cx23, "fsn1", JUNE_2026), Ok(()));
        assert_eq!(
            check(&c, cx23, "fsn1", JUNE_2026 + 2),
            Err(Refusal::Retired)
        );
        assert_eq!(check(&c, cx23, "nbg1", JUNE_2026 + 2), Ok(()));
        let v = server_type_json(cx23, &c, JUNE_2026);
        assert_eq!(v["locations"][0]["recommended"], false);
        assert_eq!(v["deprecated"], false, "not deprecated in nbg1 and hel1");
        c.missing_types.push("CX23".into());
        assert!(find(&c, &json!("cx23")).is_none());
        assert!(listed(&c).all(|t| t.name != "cx23"));
        assert!(find(&c, &json!(104)).is_some(), "by id");
    }
}
