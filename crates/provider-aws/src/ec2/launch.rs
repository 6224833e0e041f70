//! Which launches a create tries, in which order: every type and zone of the spec as spot
//! first, then, only after spot failed with a code the operator listed, the same as on-demand.
//! Capacity errors move on to the next choice; anything else answers at once.

use super::client::{Ec2Api, Ec2Instance, Launch};
use super::mapping;
use mayfly_provider::Error;
use std::collections::BTreeMap;

/// One type in one place (a subnet, or a zone without subnets, or wherever AWS likes).
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct Choice {
    pub instance_type: String,
    pub subnet: Option<String>,
    pub zone: Option<String>,
}

/// Types in order, and for each type the places in order: the first type is what the operator
/// wants most, and any place of it beats a second-choice type. `zones` (the spec's locations)
/// pick and order the subnets by their zone.
pub fn choices(
    types: &[String],
    zones: &[String],
    subnets: &[String],
    subnet_zones: &BTreeMap<String, String>,
) -> Result<Vec<Choice>, Error> {
    let places: Vec<(Option<String>, Option<String>)> = match (subnets.is_empty(), zones.is_empty())
    {
        (true, true) => vec![(None, None)],
        (true, false) => zones.iter().map(|z| (None, Some(z.clone()))).collect(),
        (false, true) => subnets
            .iter()
            .map(|s| (Some(s.clone()), subnet_zones.get(s).cloned()))
            .collect(),
        (false, false) => zones
            .iter()
            .flat_map(|z| {
                subnets
                    .iter()
                    .filter(move |s| subnet_zones.get(*s) == Some(z))
                    .map(move |s| (Some(s.clone()), Some(z.clone())))
            })
            .collect(),
    };
    if places.is_empty() {
        return Err(Error::Invalid {
            message: format!(
                "no configured subnet is in the zones {} (subnets: {})",
                zones.join(", "),
                subnets.join(", ")
            ),
        });
    }
    Ok(types
        .iter()
        .flat_map(|t| {
            places.iter().map(move |(subnet, zone)| Choice {
                instance_type: t.clone(),
                subnet: subnet.clone(),
                zone: zone.clone(),
            })
        })
        .collect())
}

/// Runs the launches in order until one succeeds. `make` builds the launch of a choice as spot
/// (`true`) or on-demand. Returns the instance and whether it is spot.
pub async fn walk(
    api: &dyn Ec2Api,
    choices: &[Choice],
    spot: bool,
    fallback: &[String],
    make: impl Fn(&Choice, bool) -> Launch,
) -> Result<(Ec2Instance, bool), Error> {
    let mut tried = Vec::new();
    let mut fall_back = !spot;
    let markets: &[bool] = if spot { &[true, false] } else { &[false] };
    for &market in markets {
        if !market && !fall_back {
            break;
        }
        for choice in choices {
            let launch = make(choice, market);
            match api.run(&launch).await {
                Ok(i) => return Ok((i, market)),
                Err(e) if mapping::is_capacity(&e.code) || fallback.contains(&e.code) => {
                    if market && fallback.contains(&e.code) {
                        fall_back = true;
                    }
                    tracing::info!(
                        name = %launch.name,
                        instance_type = %choice.instance_type,
                        subnet = choice.subnet.as_deref().unwrap_or("any"),
                        zone = choice.zone.as_deref().unwrap_or("any"),
                        market = if market { "spot" } else { "on-demand" },
                        code = %e.code,
                        "EC2: no capacity, trying the next choice"
                    );
                    tried.push(format!(
                        "{} {}@{}: {}",
                        if market { "spot" } else { "on-demand" },
                        choice.instance_type,
                        choice
                            .subnet
                            .as_deref()
                            .or(choice.zone.as_deref())
                            .unwrap_or("any"),
                        e.code
                    ));
                }
                Err(e) => return Err(mapping::error(&e)),
            }
        }
    }
    Err(Error::CapacityUnavailable {
        message: format!("tried {}", tried.join(", ")),
    })
}

#[cfg(test)]
mod tests {
    use super::super::client::Query;
    use super::*;
    use crate::ApiError;
    use async_trait::async_trait;
    use mayfly_core::Secret;
    use std::sync::Mutex;

    /// Answers RunInstances from a script keyed by `(type, spot)`; records every launch.
    #[derive(Default)]
    struct Scripted {
        refuse: BTreeMap<(String, bool), String>,
        launches: Mutex<Vec<(String, Option<String>, bool)>>,
    }

    impl Scripted {
        fn refusing(mut self, instance_type: &str, spot: bool, code: &str) -> Self {
            self.refuse
                .insert((instance_type.to_string(), spot), code.to_string());
            self
        }
        fn launches(&self) -> Vec<(String, Option<String>, bool)> {
            self.launches.lock().unwrap().clone()
        }
    }

    #[async_trait]
    impl Ec2Api for Scripted {
        async fn run(&self, l: &Launch) -> Result<Ec2Instance, ApiError> {
            self.launches
                .lock()
                .unwrap()
                .push((l.instance_type.clone(), l.subnet.clone(), l.spot));
            match self.refuse.get(&(l.instance_type.clone(), l.spot)) {
                Some(code) => Err(ApiError::service(code, "injected")),
                None => Ok(Ec2Instance {
                    id: "i-1".into(),
                    instance_type: l.instance_type.clone(),
                    spot: l.spot,
                    ..Ec2Instance::default()
                }),
            }
        }
        async fn describe(
            &self,
            _: &Query,
            _: Option<String>,
        ) -> Result<(Vec<Ec2Instance>, Option<String>), ApiError> {
            Ok((Vec::new(), None))
        }
        async fn stop(&self, _: &str) -> Result<(), ApiError> {
            Ok(())
        }
        async fn start(&self, _: &str) -> Result<(), ApiError> {
            Ok(())
        }
        async fn terminate(&self, _: &str) -> Result<(), ApiError> {
            Ok(())
        }
        async fn root_device(
            &self,
            _: &str,
        ) -> Result<Option<super::super::client::RootDevice>, ApiError> {
            Ok(None)
        }
        async fn subnet_zones(&self, _: &[String]) -> Result<BTreeMap<String, String>, ApiError> {
            Ok(BTreeMap::new())
        }
    }

    fn s(v: &[&str]) -> Vec<String> {
        v.iter().map(|x| x.to_string()).collect()
    }

    fn launch(c: &Choice, spot: bool) -> Launch {
        Launch {
            name: "n".into(),
            client_token: "t".into(),
            tags: Vec::new(),
            instance_type: c.instance_type.clone(),
            spot,
            ami: None,
            launch_template: None,
            subnet: c.subnet.clone(),
            zone: c.zone.clone(),
            security_groups: Vec::new(),
            root_device: None,
            root_volume_gb: None,
            instance_profile: None,
            user_data: Secret::new("x"),
        }
    }

    fn fallback() -> Vec<String> {
        s(super::super::config::DEFAULT_ON_DEMAND_FALLBACK)
    }

    #[test]
    fn types_come_first_then_subnets_in_the_zones_order() {
        let zones: BTreeMap<String, String> =
            [("subnet-a", "z1"), ("subnet-b", "z2"), ("subnet-c", "z1")]
                .into_iter()
                .map(|(a, b)| (a.to_string(), b.to_string()))
                .collect();
        let c = choices(
            &s(&["m7i", "m6i"]),
            &s(&["z2", "z1"]),
            &s(&["subnet-a", "subnet-b", "subnet-c"]),
            &zones,
        )
        .unwrap();
        let got: Vec<_> = c
            .iter()
            .map(|c| format!("{}@{}", c.instance_type, c.subnet.as_deref().unwrap()))
            .collect();
        assert_eq!(
            got,
            [
                "m7i@subnet-b",
                "m7i@subnet-a",
                "m7i@subnet-c",
                "m6i@subnet-b",
                "m6i@subnet-a",
                "m6i@subnet-c"
            ]
        );
        let none = choices(&s(&["m7i"]), &s(&["z9"]), &s(&["subnet-a"]), &zones).unwrap_err();
        assert!(none.to_string().contains("z9"), "{none}");
        let zones_only = choices(&s(&["m7i"]), &s(&["z1"]), &[], &BTreeMap::new()).unwrap();
        assert_eq!(zones_only[0].zone.as_deref(), Some("z1"));
        assert_eq!(zones_only[0].subnet, None);
    }

    #[tokio::test]
    async fn spot_capacity_errors_fall_back_to_on_demand() {
        let api = Scripted::default().refusing("m7i", true, "InsufficientInstanceCapacity");
        let c = choices(&s(&["m7i"]), &[], &[], &BTreeMap::new()).unwrap();
        let (i, spot) = walk(&api, &c, true, &fallback(), launch).await.unwrap();
        assert!(!spot && !i.spot);
        assert_eq!(
            api.launches(),
            [
                ("m7i".to_string(), None, true),
                ("m7i".to_string(), None, false)
            ]
        );
    }

    #[tokio::test]
    async fn every_spot_type_is_tried_before_on_demand() {
        let api = Scripted::default()
            .refusing("m7i", true, "SpotMaxPriceTooLow")
            .refusing("m6i", true, "InsufficientInstanceCapacity");
        let c = choices(&s(&["m7i", "m6i"]), &[], &[], &BTreeMap::new()).unwrap();
        let (i, spot) = walk(&api, &c, true, &fallback(), launch).await.unwrap();
        assert!(!spot);
        assert_eq!(
            i.instance_type, "m7i",
            "on-demand starts over with the first type"
        );
        let markets: Vec<bool> = api.launches().iter().map(|l| l.2).collect();
        assert_eq!(markets, [true, true, false]);
    }

    #[tokio::test]
    async fn a_code_not_listed_moves_on_but_never_buys_on_demand() {
        // Capacity, but not in the operator's list: the next spot choice, then give up.
        let api = Scripted::default()
            .refusing("m7i", true, "InsufficientInstanceCapacity")
            .refusing("m6i", true, "InsufficientInstanceCapacity");
        let c = choices(&s(&["m7i", "m6i"]), &[], &[], &BTreeMap::new()).unwrap();
        let e = walk(&api, &c, true, &s(&["SpotMaxPriceTooLow"]), launch)
            .await
            .unwrap_err();
        assert!(matches!(e, Error::CapacityUnavailable { .. }), "{e}");
        assert!(e.to_string().contains("spot m6i@any"), "{e}");
        assert!(api.launches().iter().all(|l| l.2), "no on-demand launch");
    }

    #[tokio::test]
    async fn other_errors_answer_at_once() {
        let api = Scripted::default().refusing("m7i", true, "InvalidAMIID.NotFound");
        let c = choices(&s(&["m7i", "m6i"]), &[], &[], &BTreeMap::new()).unwrap();
        let e = walk(&api, &c, true, &fallback(), launch).await.unwrap_err();
        assert!(matches!(e, Error::Invalid { .. }), "{e}");
        assert_eq!(api.launches().len(), 1);
        let api = Scripted::default().refusing("m7i", true, "VcpuLimitExceeded");
        let e = walk(&api, &c, true, &fallback(), launch).await.unwrap_err();
        assert!(matches!(e, Error::Quota { .. }), "{e}");
    }

    #[tokio::test]
    async fn on_demand_only_when_spot_is_off() {
        let api = Scripted::default().refusing("m7i", false, "InsufficientInstanceCapacity");
        let c = choices(&s(&["m7i", "m6i"]), &[], &[], &BTreeMap::new()).unwrap();
        let (i, spot) = walk(&api, &c, false, &fallback(), launch).await.unwrap();
        assert!(!spot);
        assert_eq!(i.instance_type, "m6i");
        assert!(api.launches().iter().all(|l| !l.2));
    }
}
