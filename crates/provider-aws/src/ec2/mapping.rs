//! From EC2's answers to mayfly's terms: instance states, the instance with its placement and
//! price, and EC2's error codes to the errors the executor acts on.

use super::client::Ec2Instance;
use crate::ApiError;
use mayfly_core::{
    Arch, Billing, Image, ImageKind, Instance, InstanceState, Labels, Placement, Time,
};
use mayfly_provider::{Error, tags};
use std::collections::BTreeMap;

/// The tag that keeps the pool's image as the pool wrote it, so a listed instance's placement
/// reads back exactly (EC2 itself only knows the AMI id).
pub const IMAGE_TAG: &str = "mayfly-image";

pub fn state(name: &str) -> InstanceState {
    match name {
        "pending" => InstanceState::Starting,
        "running" => InstanceState::Running,
        "stopping" => InstanceState::Stopping,
        "stopped" => InstanceState::Off,
        "shutting-down" | "terminated" => InstanceState::Deleting,
        _ => InstanceState::Unknown,
    }
}

/// Capacity errors: not here, not now; another type, zone or market may still work.
pub fn is_capacity(code: &str) -> bool {
    code.starts_with("Insufficient")
        || matches!(
            code,
            "SpotMaxPriceTooLow" | "UnfulfillableCapacity" | "MaxSpotInstanceCountExceeded"
        )
}

/// What an EC2 error means to the executor.
pub fn error(e: &ApiError) -> Error {
    if let Some(common) = e.common() {
        return common;
    }
    let c = e.code.as_str();
    if c == "InvalidInstanceID.NotFound" {
        return Error::NotFound;
    }
    if c == "IdempotentParameterMismatch" {
        return Error::AlreadyExists;
    }
    if matches!(
        c,
        "InstanceLimitExceeded" | "VcpuLimitExceeded" | "InsufficientAddressCapacity"
    ) || c.ends_with("LimitExceeded")
    {
        return Error::Quota {
            message: e.to_string(),
        };
    }
    if is_capacity(c) {
        return Error::CapacityUnavailable {
            message: e.to_string(),
        };
    }
    if c == "IncorrectInstanceState" || c == "IncorrectState" {
        return Error::Locked;
    }
    if c.starts_with("Invalid")
        || c.starts_with("Missing")
        || c == "Unsupported"
        || c == "UnsupportedOperation"
    {
        return e.invalid();
    }
    e.api()
}

/// The instance an EC2 answer describes, priced from `prices` by its type.
pub fn instance(i: &Ec2Instance, prices: &BTreeMap<String, f64>) -> Instance {
    let created_at = Time::from_millis(i.launch_time.unwrap_or_default());
    let image = i
        .tags
        .get(IMAGE_TAG)
        .and_then(|t| t.parse::<Image>().ok())
        .unwrap_or_else(|| Image {
            arch: Arch::X86,
            kind: ImageKind::System,
            name: i.image_id.clone().unwrap_or_default(),
        });
    let placement = i.zone.as_ref().map(|zone| Placement {
        machine_type: i.instance_type.clone(),
        location: zone.clone(),
        image,
    });
    Instance {
        name: i.tags.get("Name").cloned().unwrap_or_else(|| i.id.clone()),
        provider_id: Some(i.id.clone()),
        controller: i.tags.get(tags::CONTROLLER).cloned(),
        pool: i.tags.get(tags::POOL).cloned().unwrap_or_default(),
        state: state(&i.state),
        created_at,
        state_since: created_at,
        labels: Labels::default(),
        placement,
        job: None,
        run_id: None,
        billing: prices
            .get(&i.instance_type)
            .map(|p| Billing::per_second(*p)),
        address: i.public_ip.clone().or_else(|| i.ipv6.clone()),
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn states_map_to_mayfly_states() {
        assert_eq!(state("pending"), InstanceState::Starting);
        assert_eq!(state("running"), InstanceState::Running);
        assert_eq!(state("stopped"), InstanceState::Off);
        assert_eq!(state("shutting-down"), InstanceState::Deleting);
        assert_eq!(state("weird"), InstanceState::Unknown);
    }

    #[test]
    fn error_codes_map_to_what_the_executor_does() {
        let e = |c| error(&ApiError::service(c, "m"));
        assert_eq!(e("InvalidInstanceID.NotFound"), Error::NotFound);
        assert!(matches!(
            e("InsufficientInstanceCapacity"),
            Error::CapacityUnavailable { .. }
        ));
        assert!(matches!(
            e("SpotMaxPriceTooLow"),
            Error::CapacityUnavailable { .. }
        ));
        assert!(matches!(e("VcpuLimitExceeded"), Error::Quota { .. }));
        assert!(matches!(e("InstanceLimitExceeded"), Error::Quota { .. }));
        assert_eq!(e("IncorrectInstanceState"), Error::Locked);
        assert!(matches!(e("InvalidAMIID.Malformed"), Error::Invalid { .. }));
        assert!(matches!(
            e("RequestLimitExceeded"),
            Error::RateLimited { .. }
        ));
        assert!(matches!(e("Whatever"), Error::Api { .. }));
    }

    #[test]
    fn an_instance_reads_back_with_its_tags_placement_and_price() {
        let i = Ec2Instance {
            id: "i-1".into(),
            state: "running".into(),
            instance_type: "m7i.large".into(),
            zone: Some("eu-west-1a".into()),
            image_id: Some("ami-1".into()),
            launch_time: Some(1_700_000_000_000),
            tags: [
                ("Name", "mayfly-x64-1-1"),
                (tags::CONTROLLER, "ctl"),
                (tags::POOL, "x64"),
                (IMAGE_TAG, "arm:system:ami-1"),
            ]
            .into_iter()
            .map(|(k, v)| (k.to_string(), v.to_string()))
            .collect(),
            public_ip: Some("192.0.2.1".into()),
            ipv6: None,
            spot: true,
        };
        let prices = [("m7i.large".to_string(), 0.1)].into();
        let m = instance(&i, &prices);
        assert_eq!(m.name, "mayfly-x64-1-1");
        assert_eq!(m.controller.as_deref(), Some("ctl"));
        assert_eq!(m.pool, "x64");
        assert_eq!(m.created_at, Time::from_millis(1_700_000_000_000));
        let p = m.placement.unwrap();
        assert_eq!(
            (p.machine_type.as_str(), p.location.as_str()),
            ("m7i.large", "eu-west-1a")
        );
        assert_eq!(p.image.to_string(), "arm:system:ami-1");
        let b = m.billing.unwrap();
        assert_eq!(b, Billing::per_second(0.1));
        assert!(!b.billed_while_stopped);
        assert_eq!(m.address.as_deref(), Some("192.0.2.1"));
        // No price configured: no billing rather than a made-up one.
        assert!(instance(&i, &BTreeMap::new()).billing.is_none());
    }
}
