//! From ECS's answers to mayfly's terms: task states, the task as an instance (its family as
//! the machine type, the cluster as the location), and ECS error codes.

use super::client::EcsTask;
use crate::ApiError;
use crate::ec2::IMAGE_TAG;
use mayfly_core::{
    Arch, Billing, Image, ImageKind, Instance, InstanceState, Labels, Placement, Time,
};
use mayfly_provider::{Error, tags};
use std::collections::BTreeMap;

pub fn state(t: &EcsTask) -> InstanceState {
    if t.desired_status == "STOPPED" && t.last_status != "STOPPED" {
        return InstanceState::Deleting;
    }
    match t.last_status.as_str() {
        "PROVISIONING" | "PENDING" | "ACTIVATING" => InstanceState::Starting,
        "RUNNING" => InstanceState::Running,
        "DEACTIVATING" | "STOPPING" | "DEPROVISIONING" | "STOPPED" => InstanceState::Deleting,
        _ => InstanceState::Unknown,
    }
}

pub fn error(e: &ApiError) -> Error {
    if let Some(common) = e.common() {
        return common;
    }
    match e.code.as_str() {
        "ClusterNotFoundException"
        | "InvalidParameterException"
        | "ClientException"
        | "PlatformUnknownException"
        | "PlatformTaskDefinitionIncompatibilityException"
        | "ValidationException" => e.invalid(),
        "LimitExceededException" | "ParameterLimitExceeded" => Error::Quota {
            message: e.to_string(),
        },
        "BlockedException" | "ServerException" | "ServiceUnavailableException" => {
            Error::Transport(e.to_string())
        }
        _ => e.api(),
    }
}

/// The instance a task is; `first_seen` stands in for a missing `createdAt`.
pub fn instance(
    t: &EcsTask,
    cluster: &str,
    prices: &BTreeMap<String, f64>,
    first_seen: Time,
) -> Instance {
    let created_at = t.created_at.map_or(first_seen, Time::from_millis);
    let family = t.family();
    let image = t
        .tags
        .get(IMAGE_TAG)
        .and_then(|i| i.parse::<Image>().ok())
        .unwrap_or_else(|| Image {
            arch: Arch::X86,
            kind: ImageKind::System,
            name: family.clone(),
        });
    Instance {
        name: t.tags.get("Name").cloned().unwrap_or_else(|| t.arn.clone()),
        provider_id: Some(t.arn.clone()),
        controller: t.tags.get(tags::CONTROLLER).cloned(),
        pool: t.tags.get(tags::POOL).cloned().unwrap_or_default(),
        state: state(t),
        created_at,
        state_since: created_at,
        labels: Labels::default(),
        billing: prices.get(&family).map(|p| Billing::per_second(*p)),
        placement: Some(Placement {
            machine_type: family,
            location: cluster.to_string(),
            image,
        }),
        job: None,
        run_id: None,
        address: t.private_ip.clone(),
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn task(last: &str, desired: &str) -> EcsTask {
        EcsTask {
            arn: "arn:aws:ecs:r:1:task/ci/abc".into(),
            last_status: last.into(),
            desired_status: desired.into(),
            task_definition_arn: "arn:aws:ecs:r:1:task-definition/linux-x64:3".into(),
            ..EcsTask::default()
        }
    }

    #[test]
    fn task_states_map_to_mayfly_states() {
        assert_eq!(
            state(&task("PROVISIONING", "RUNNING")),
            InstanceState::Starting
        );
        assert_eq!(state(&task("RUNNING", "RUNNING")), InstanceState::Running);
        assert_eq!(state(&task("RUNNING", "STOPPED")), InstanceState::Deleting);
        assert_eq!(state(&task("STOPPED", "STOPPED")), InstanceState::Deleting);
    }

    #[test]
    fn a_task_reads_back_with_its_family_cluster_and_price() {
        let mut t = task("RUNNING", "RUNNING");
        t.tags.insert("Name".into(), "mayfly-ecs-1-1".into());
        t.tags.insert(tags::CONTROLLER.into(), "ctl".into());
        let prices = [("linux-x64".to_string(), 0.05)].into();
        let i = instance(&t, "ci", &prices, Time::from_secs(5));
        assert_eq!(i.created_at, Time::from_secs(5), "no createdAt: first seen");
        assert_eq!(i.name, "mayfly-ecs-1-1");
        let p = i.placement.unwrap();
        assert_eq!(
            (p.machine_type.as_str(), p.location.as_str()),
            ("linux-x64", "ci")
        );
        assert_eq!(i.billing, Some(Billing::per_second(0.05)));
    }
}
