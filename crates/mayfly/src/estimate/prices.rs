//! What a machine costs in the estimate: Hetzner's list prices from the simulator's catalogue
//! (net, EUR per hour), with per-type overrides, and where the provider would place it.

use mayfly_core::{Arch, Billing, MachineSpec, Placement};
use mayfly_sim::hetzner::catalog::{Location, ServerType};
use std::collections::BTreeMap;

/// Hourly prices by server type: the catalogue's, unless overridden.
#[derive(Clone, Debug, Default, PartialEq)]
pub struct Prices {
    /// Lower-case server type → EUR per hour, in every location.
    overrides: BTreeMap<String, f64>,
    /// When the machines would be ordered (Unix ms): a type retired by then cannot be.
    today_ms: i64,
}

#[derive(Clone, Debug, PartialEq, thiserror::Error)]
pub enum PriceError {
    #[error("no list price for server type {0:?}: give it one (--price {0}=EUR_PER_HOUR)")]
    UnknownType(String),
    #[error("server type {server_type} is not offered in {location}: the create would fail")]
    NotOffered {
        server_type: String,
        location: String,
    },
    #[error(
        "server type {server_type} is no longer sold in {location} (unavailable after {after}): the create would fail"
    )]
    Retired {
        server_type: String,
        location: String,
        after: String,
    },
    #[error("none of the server types [{types}] has the image's architecture ({arch:?})")]
    WrongArch { types: String, arch: Arch },
}

impl Prices {
    /// Hetzner's list prices, net of VAT, as the simulator's catalogue holds them, for
    /// machines ordered now.
    pub fn hetzner() -> Prices {
        let now = std::time::SystemTime::now()
            .duration_since(std::time::UNIX_EPOCH)
            .map_or(0, |d| d.as_millis() as i64);
        Prices {
            today_ms: now,
            ..Prices::default()
        }
    }

    /// Prices `server_type` at `eur_per_hour` wherever it runs.
    pub fn set(&mut self, server_type: &str, eur_per_hour: f64) {
        self.overrides
            .insert(server_type.to_ascii_lowercase(), eur_per_hour);
    }

    /// Where the provider would put a machine of `spec`, and its billing. Like the Hetzner
    /// provider: the first type of the image's architecture, in its first location (capacity is
    /// never short in the estimate, so fallbacks never come into play).
    pub fn place(&self, spec: &MachineSpec) -> Result<(Placement, Billing), PriceError> {
        let arch = match spec.image.arch {
            Arch::X86 => "x86",
            Arch::Arm => "arm",
        };
        let server_type = spec
            .types
            .iter()
            .find(|t| ServerType::named(t).is_none_or(|c| c.architecture == arch))
            .ok_or_else(|| PriceError::WrongArch {
                types: spec.types.join(", "),
                arch: spec.image.arch,
            })?;
        let known = ServerType::named(server_type);
        let location = match (spec.locations.first(), known) {
            (Some(l), _) => l.clone(),
            // Without a location the API picks one: the first that offers the type.
            (None, Some(t)) => t.locations.first().copied().unwrap_or("fsn1").to_string(),
            (None, None) => "fsn1".to_string(),
        };
        let catalogued = known.and_then(|t| {
            let l = Location::named(&location)?;
            t.offered_in(l.name).then(|| t.hourly(l).0)
        });
        if known.is_some() && catalogued.is_none() {
            return Err(PriceError::NotOffered {
                server_type: server_type.clone(),
                location,
            });
        }
        if let Some(d) = known
            .and_then(|t| t.retirement_in(&location))
            .filter(|d| self.today_ms > d.unavailable_after_ms)
        {
            return Err(PriceError::Retired {
                server_type: server_type.clone(),
                location,
                after: mayfly_provider::day(mayfly_core::Time::from_millis(d.unavailable_after_ms)),
            });
        }
        let price = self
            .overrides
            .get(&server_type.to_ascii_lowercase())
            .copied()
            .or(catalogued)
            .ok_or_else(|| PriceError::UnknownType(server_type.clone()))?;
        Ok((
            Placement {
                machine_type: server_type.to_ascii_lowercase(),
                location,
                image: spec.image.clone(),
            },
            Billing::hourly(price),
        ))
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    /// Ubuntu on these types and locations, as the simulated pools have it.
    fn spec(types: &[&str], locations: &[&str], arch: Arch) -> MachineSpec {
        crate::local::pool("x", &[], types, locations, arch).spec
    }

    #[test]
    fn list_prices_come_from_the_catalogue_per_location() {
        let p = Prices::hetzner();
        let (at, billing) = p.place(&spec(&["cx23"], &["fsn1"], Arch::X86)).unwrap();
        assert_eq!(
            (at.machine_type.as_str(), at.location.as_str()),
            ("cx23", "fsn1")
        );
        assert_eq!(billing, Billing::hourly(0.0048));
        // US locations cost more.
        let (_, us) = p.place(&spec(&["ccx13"], &["ash"], Arch::X86)).unwrap();
        assert!((us.price_per_hour - 0.0200 * 1.2).abs() < 1e-9);
    }

    #[test]
    fn a_type_of_the_wrong_architecture_is_skipped_as_the_provider_does() {
        let p = Prices::hetzner();
        let (at, _) = p
            .place(&spec(&["cx23", "cax11"], &["nbg1"], Arch::Arm))
            .unwrap();
        assert_eq!(at.machine_type, "cax11");
        let e = p.place(&spec(&["cx23"], &["nbg1"], Arch::Arm)).unwrap_err();
        assert!(e.to_string().contains("architecture"), "{e}");
    }

    #[test]
    fn overrides_price_any_type_and_unknown_ones_need_one() {
        let mut p = Prices::hetzner();
        let e = p.place(&spec(&["gpu1"], &["fsn1"], Arch::X86)).unwrap_err();
        assert_eq!(
            e.to_string(),
            "no list price for server type \"gpu1\": give it one (--price gpu1=EUR_PER_HOUR)"
        );
        p.set("GPU1", 1.5);
        p.set("cx23", 0.01);
        assert_eq!(
            p.place(&spec(&["gpu1"], &["fsn1"], Arch::X86)).unwrap().1,
            Billing::hourly(1.5)
        );
        assert_eq!(
            p.place(&spec(&["cx23"], &[], Arch::X86)).unwrap().1,
            Billing::hourly(0.01)
        );
    }

    #[test]
    fn a_type_retired_in_the_location_is_an_error() {
        let e = Prices::hetzner()
            .place(&spec(&["cx22"], &["fsn1"], Arch::X86))
            .unwrap_err();
        assert_eq!(
            e.to_string(),
            "server type cx22 is no longer sold in fsn1 (unavailable after 2025-12-31): the create would fail"
        );
        // Before its date it was.
        let mut before = Prices::hetzner();
        before.today_ms = 1_761_955_200_000;
        assert!(before.place(&spec(&["cx22"], &["fsn1"], Arch::X86)).is_ok());
    }

    #[test]
    fn a_type_not_offered_in_the_location_is_an_error() {
        let e = Prices::hetzner()
            .place(&spec(&["cx23"], &["ash"], Arch::X86))
            .unwrap_err();
        assert_eq!(
            e.to_string(),
            "server type cx23 is not offered in ash: the create would fail"
        );
    }
}
