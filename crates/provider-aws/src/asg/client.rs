//! The Auto Scaling (and EC2 tag) calls the scaler makes, behind a small trait so the scaler's
//! order of steps is tested without AWS; the real one speaks their Query protocol through `wire`.

use crate::ApiError;
use crate::wire::{self, Aws, Element, Params};
use async_trait::async_trait;
use std::sync::Arc;

/// The group as DescribeAutoScalingGroups reports it.
#[derive(Clone, Debug, Default, PartialEq, Eq)]
pub struct Group {
    pub desired: u32,
    pub min: u32,
    pub max: u32,
    /// In-service (or pending) instances: `(id, protected from scale-in)`.
    pub instances: Vec<(String, bool)>,
}

#[async_trait]
pub trait AsgApi: Send + Sync {
    /// `None` when the group does not exist.
    async fn group(&self, name: &str) -> Result<Option<Group>, ApiError>;
    /// Creates the group from a launch template (`lt-…` or a name) across `subnets`.
    async fn create(
        &self,
        name: &str,
        launch_template: &str,
        subnets: &[String],
        min: u32,
        max: u32,
        tags: &[(String, String)],
    ) -> Result<(), ApiError>;
    async fn set_desired(&self, name: &str, desired: u32) -> Result<(), ApiError>;
    async fn protect(&self, name: &str, ids: &[String], protect: bool) -> Result<(), ApiError>;
    /// Terminates the instance and lowers the desired capacity by one.
    async fn terminate_decrement(&self, id: &str) -> Result<(), ApiError>;
    /// The instances of `ids` that carry tag `key`.
    async fn tagged(&self, ids: &[String], key: &str) -> Result<Vec<String>, ApiError>;
    async fn tag(&self, ids: &[String], key: &str) -> Result<(), ApiError>;
    async fn untag(&self, ids: &[String], key: &str) -> Result<(), ApiError>;
}

/// Auto Scaling's API version of the Query protocol.
pub const VERSION: &str = "2011-01-01";

/// The real client: Auto Scaling, and EC2 for the draining tags.
#[derive(Clone, Debug)]
pub struct Client(pub Arc<Aws>);

impl Client {
    /// One Auto Scaling action; its answer.
    pub async fn autoscaling(&self, action: &str, params: &Params) -> Result<Element, ApiError> {
        self.0
            .query(wire::AUTOSCALING, VERSION, action, params)
            .await
    }

    async fn ec2(&self, action: &str, params: &Params) -> Result<Element, ApiError> {
        self.0
            .query(wire::EC2, crate::ec2::VERSION, action, params)
            .await
    }
}

fn number(e: &Element, path: &str) -> u32 {
    e.text_at(path)
        .and_then(|t| t.parse::<i64>().ok())
        .unwrap_or_default()
        .max(0) as u32
}

/// The first group of a DescribeAutoScalingGroups answer.
pub fn group_of(root: &Element) -> Option<Group> {
    let g = root.find("AutoScalingGroups")?.items("").next()?;
    Some(Group {
        desired: number(g, "DesiredCapacity"),
        min: number(g, "MinSize"),
        max: number(g, "MaxSize"),
        instances: g
            .items("Instances")
            .filter(|i| {
                let s = i.text_at("LifecycleState").unwrap_or_default();
                s == "InService" || s.starts_with("Pending")
            })
            .filter_map(|i| {
                Some((
                    i.value("InstanceId")?,
                    i.text_at("ProtectedFromScaleIn") == Some("true"),
                ))
            })
            .collect(),
    })
}

/// The CreateAutoScalingGroup parameters.
pub fn create_params(
    name: &str,
    launch_template: &str,
    subnets: &[String],
    min: u32,
    max: u32,
    tags: &[(String, String)],
) -> Params {
    let mut p = Params::new();
    p.set("AutoScalingGroupName", name);
    if launch_template.starts_with("lt-") {
        p.set("LaunchTemplate.LaunchTemplateId", launch_template);
    } else {
        p.set("LaunchTemplate.LaunchTemplateName", launch_template);
    }
    p.set("MinSize", min)
        .set("MaxSize", max)
        .set("DesiredCapacity", min)
        .set("NewInstancesProtectedFromScaleIn", true)
        .set("VPCZoneIdentifier", subnets.join(","));
    for (i, (k, v)) in tags.iter().enumerate() {
        let m = format!("Tags.member.{}", i + 1);
        p.set(format!("{m}.Key"), k)
            .set(format!("{m}.Value"), v)
            .set(format!("{m}.PropagateAtLaunch"), true)
            .set(format!("{m}.ResourceId"), name)
            .set(format!("{m}.ResourceType"), "auto-scaling-group");
    }
    p
}

#[async_trait]
impl AsgApi for Client {
    async fn group(&self, name: &str) -> Result<Option<Group>, ApiError> {
        let mut p = Params::new();
        p.list("AutoScalingGroupNames.member", [name]);
        Ok(group_of(
            &self.autoscaling("DescribeAutoScalingGroups", &p).await?,
        ))
    }

    async fn create(
        &self,
        name: &str,
        launch_template: &str,
        subnets: &[String],
        min: u32,
        max: u32,
        tags: &[(String, String)],
    ) -> Result<(), ApiError> {
        let p = create_params(name, launch_template, subnets, min, max, tags);
        self.autoscaling("CreateAutoScalingGroup", &p)
            .await
            .map(|_| ())
    }

    async fn set_desired(&self, name: &str, desired: u32) -> Result<(), ApiError> {
        let mut p = Params::new();
        p.set("AutoScalingGroupName", name)
            .set("DesiredCapacity", desired)
            .set("HonorCooldown", false);
        self.autoscaling("SetDesiredCapacity", &p).await.map(|_| ())
    }

    async fn protect(&self, name: &str, ids: &[String], protect: bool) -> Result<(), ApiError> {
        if ids.is_empty() {
            return Ok(());
        }
        let mut p = Params::new();
        p.set("AutoScalingGroupName", name)
            .list("InstanceIds.member", ids)
            .set("ProtectedFromScaleIn", protect);
        self.autoscaling("SetInstanceProtection", &p)
            .await
            .map(|_| ())
    }

    async fn terminate_decrement(&self, id: &str) -> Result<(), ApiError> {
        let mut p = Params::new();
        p.set("InstanceId", id)
            .set("ShouldDecrementDesiredCapacity", true);
        self.autoscaling("TerminateInstanceInAutoScalingGroup", &p)
            .await
            .map(|_| ())
    }

    async fn tagged(&self, ids: &[String], key: &str) -> Result<Vec<String>, ApiError> {
        if ids.is_empty() {
            return Ok(Vec::new());
        }
        let mut p = Params::new();
        p.list("InstanceId", ids);
        let out = self.ec2("DescribeInstances", &p).await?;
        Ok(crate::ec2::client::instances(&out)
            .into_iter()
            .filter(|i| i.tags.contains_key(key))
            .map(|i| i.id)
            .collect())
    }

    async fn tag(&self, ids: &[String], key: &str) -> Result<(), ApiError> {
        let mut p = Params::new();
        p.list("ResourceId", ids)
            .set("Tag.1.Key", key)
            .set("Tag.1.Value", "true");
        self.ec2("CreateTags", &p).await.map(|_| ())
    }

    async fn untag(&self, ids: &[String], key: &str) -> Result<(), ApiError> {
        let mut p = Params::new();
        p.list("ResourceId", ids).set("Tag.1.Key", key);
        self.ec2("DeleteTags", &p).await.map(|_| ())
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn a_group_reads_with_its_live_instances_and_their_protection() {
        let doc = r#"<DescribeAutoScalingGroupsResponse xmlns="http://autoscaling.amazonaws.com/doc/2011-01-01/">
  <DescribeAutoScalingGroupsResult><AutoScalingGroups><member>
    <AutoScalingGroupName>runners</AutoScalingGroupName>
    <MinSize>0</MinSize><MaxSize>4</MaxSize><DesiredCapacity>2</DesiredCapacity>
    <Instances>
      <member><InstanceId>i-1</InstanceId><LifecycleState>InService</LifecycleState><ProtectedFromScaleIn>true</ProtectedFromScaleIn></member>
      <member><InstanceId>i-2</InstanceId><LifecycleState>Pending</LifecycleState><ProtectedFromScaleIn>false</ProtectedFromScaleIn></member>
      <member><InstanceId>i-3</InstanceId><LifecycleState>Terminating</LifecycleState><ProtectedFromScaleIn>false</ProtectedFromScaleIn></member>
    </Instances>
  </member></AutoScalingGroups></DescribeAutoScalingGroupsResult>
</DescribeAutoScalingGroupsResponse>"#;
        let g = group_of(&wire::xml::parse(doc).unwrap()).unwrap();
        assert_eq!((g.desired, g.min, g.max), (2, 0, 4));
        assert_eq!(
            g.instances,
            [("i-1".to_string(), true), ("i-2".to_string(), false)]
        );
        let none = "<DescribeAutoScalingGroupsResponse><DescribeAutoScalingGroupsResult><AutoScalingGroups/></DescribeAutoScalingGroupsResult></DescribeAutoScalingGroupsResponse>";
        assert_eq!(group_of(&wire::xml::parse(none).unwrap()), None);
    }

    #[test]
    fn a_group_is_created_protected_with_tags_that_propagate() {
        let p = create_params(
            "runners",
            "lt-0abc",
            &["subnet-1".into(), "subnet-2".into()],
            0,
            4,
            &[("mayfly-controller".into(), "ctl".into())],
        );
        assert_eq!(p.get("LaunchTemplate.LaunchTemplateId"), Some("lt-0abc"));
        assert_eq!(p.get("VPCZoneIdentifier"), Some("subnet-1,subnet-2"));
        assert_eq!(p.get("NewInstancesProtectedFromScaleIn"), Some("true"));
        assert_eq!(p.get("Tags.member.1.Key"), Some("mayfly-controller"));
        assert_eq!(p.get("Tags.member.1.PropagateAtLaunch"), Some("true"));
        assert_eq!(
            p.get("Tags.member.1.ResourceType"),
            Some("auto-scaling-group")
        );
    }
}
