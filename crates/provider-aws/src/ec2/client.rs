//! The EC2 calls the provider makes, behind a small trait: the real one speaks EC2's Query
//! protocol through `wire`, and unit tests put a scripted one in its place to inject errors
//! moto never produces.

use super::config::LaunchTemplate;
use crate::ApiError;
use crate::wire::{self, Aws, Element, Params};
use async_trait::async_trait;
use base64::Engine;
use mayfly_core::Secret;
use std::collections::BTreeMap;
use std::sync::Arc;

/// States of an instance that still exists (or is still billed): terminated ones are never
/// listed or counted.
pub const LIVE_STATES: &[&str] = &["pending", "running", "shutting-down", "stopping", "stopped"];

/// One instance as DescribeInstances and RunInstances report it, in the provider's own terms.
#[derive(Clone, Debug, Default, PartialEq)]
pub struct Ec2Instance {
    pub id: String,
    /// `pending`, `running`, `stopping`, `stopped`, `shutting-down`, `terminated`.
    pub state: String,
    pub instance_type: String,
    pub zone: Option<String>,
    pub image_id: Option<String>,
    /// Milliseconds since the epoch.
    pub launch_time: Option<i64>,
    pub tags: BTreeMap<String, String>,
    pub public_ip: Option<String>,
    pub ipv6: Option<String>,
    pub spot: bool,
}

/// An image's root volume, so the launch can encrypt (and size) exactly that one.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct RootDevice {
    pub name: String,
    pub size_gb: Option<u32>,
}

/// One RunInstances call: everything but the user data is safe to log.
#[derive(Clone, Debug)]
pub struct Launch {
    pub name: String,
    /// Idempotency key of this attempt (at most 64 characters).
    pub client_token: String,
    pub tags: Vec<(String, String)>,
    pub instance_type: String,
    pub spot: bool,
    pub ami: Option<String>,
    pub launch_template: Option<LaunchTemplate>,
    pub subnet: Option<String>,
    pub zone: Option<String>,
    pub security_groups: Vec<String>,
    /// The image's root device, so the root volume is the one encrypted (and sized).
    pub root_device: Option<RootDevice>,
    /// Overrides the image's root volume size.
    pub root_volume_gb: Option<u32>,
    pub instance_profile: Option<String>,
    pub user_data: Secret,
}

/// Which instances a DescribeInstances call asks for.
#[derive(Clone, Debug, PartialEq, Eq)]
pub enum Query {
    /// Every live instance carrying `mayfly-controller=<id>`.
    Controller(String),
    /// Live instances of this controller with this `Name`.
    Named { controller: String, name: String },
    /// One instance by id, whatever its state.
    Id(String),
}

#[async_trait]
pub trait Ec2Api: Send + Sync {
    async fn run(&self, launch: &Launch) -> Result<Ec2Instance, ApiError>;
    /// One page: the instances, and the token of the next page if there is one.
    async fn describe(
        &self,
        query: &Query,
        next: Option<String>,
    ) -> Result<(Vec<Ec2Instance>, Option<String>), ApiError>;
    async fn stop(&self, id: &str) -> Result<(), ApiError>;
    async fn start(&self, id: &str) -> Result<(), ApiError>;
    async fn terminate(&self, id: &str) -> Result<(), ApiError>;
    /// The root device of an AMI: its name (`/dev/sda1`, `/dev/xvda`) and size in GB.
    async fn root_device(&self, ami: &str) -> Result<Option<RootDevice>, ApiError>;
    /// The availability zone of each subnet.
    async fn subnet_zones(&self, subnets: &[String]) -> Result<BTreeMap<String, String>, ApiError>;
}

/// EC2's API version of the Query protocol.
pub const VERSION: &str = "2016-11-15";

/// The real client: EC2's Query protocol through the signed HTTP client.
#[derive(Clone, Debug)]
pub struct Client(pub Arc<Aws>);

impl Client {
    /// One EC2 action; its answer.
    pub async fn call(&self, action: &str, params: &Params) -> Result<Element, ApiError> {
        self.0.query(wire::EC2, VERSION, action, params).await
    }
}

/// `Filter.N.Name` and `Filter.N.Value.M`.
fn filter(p: &mut Params, n: usize, name: &str, values: &[&str]) {
    p.set(format!("Filter.{n}.Name"), name);
    p.list(&format!("Filter.{n}.Value"), values);
}

/// `TagSpecification.N` for one resource type.
fn tag_specification(p: &mut Params, n: usize, resource: &str, tags: &[(String, String)]) {
    p.set(format!("TagSpecification.{n}.ResourceType"), resource);
    for (i, (k, v)) in tags.iter().enumerate() {
        p.set(format!("TagSpecification.{n}.Tag.{}.Key", i + 1), k);
        p.set(format!("TagSpecification.{n}.Tag.{}.Value", i + 1), v);
    }
}

/// The tags of an `<item>` with a `tagSet`.
pub fn tags_of(item: &Element) -> BTreeMap<String, String> {
    item.items("tagSet")
        .filter_map(|t| {
            Some((
                t.value("key")?,
                t.text_at("value").unwrap_or("").to_string(),
            ))
        })
        .collect()
}

/// EC2 writes times as `2024-05-01T12:00:00.000Z`.
fn millis(text: &str) -> Option<i64> {
    text.parse::<jiff::Timestamp>()
        .ok()
        .map(|t| t.as_millisecond())
}

impl From<&Element> for Ec2Instance {
    fn from(i: &Element) -> Self {
        Ec2Instance {
            id: i.value("instanceId").unwrap_or_default(),
            state: i.value("instanceState/name").unwrap_or_default(),
            instance_type: i.value("instanceType").unwrap_or_default(),
            zone: i.value("placement/availabilityZone"),
            image_id: i.value("imageId"),
            launch_time: i.text_at("launchTime").and_then(millis),
            tags: tags_of(i),
            public_ip: i.value("ipAddress"),
            ipv6: i.value("ipv6Address"),
            spot: i.text_at("instanceLifecycle") == Some("spot"),
        }
    }
}

/// The instances of a RunInstances or DescribeInstances answer, reservations flattened.
pub fn instances(root: &Element) -> Vec<Ec2Instance> {
    let direct = root.items("instancesSet").map(Ec2Instance::from);
    let reserved = root
        .items("reservationSet")
        .flat_map(|r| r.items("instancesSet"))
        .map(Ec2Instance::from);
    direct.chain(reserved).collect()
}

/// The RunInstances parameters of one launch.
pub fn run_params(l: &Launch) -> Params {
    let mut p = Params::new();
    p.set("MinCount", 1)
        .set("MaxCount", 1)
        .set("ClientToken", &l.client_token)
        .set("InstanceType", &l.instance_type)
        .set(
            "UserData",
            base64::engine::general_purpose::STANDARD.encode(l.user_data.expose()),
        )
        // The runner powers the machine off after its job: that ends the bill at once.
        .set("InstanceInitiatedShutdownBehavior", "terminate")
        .set("MetadataOptions.HttpTokens", "required")
        .set("MetadataOptions.HttpEndpoint", "enabled")
        // Containers of a job are one hop further away than the host.
        .set("MetadataOptions.HttpPutResponseHopLimit", 2);
    if let Some(ami) = &l.ami {
        p.set("ImageId", ami);
    }
    if let Some(subnet) = &l.subnet {
        p.set("SubnetId", subnet);
    }
    p.list("SecurityGroupId", &l.security_groups);
    tag_specification(&mut p, 1, "instance", &l.tags);
    tag_specification(&mut p, 2, "volume", &l.tags);
    if let Some(lt) = &l.launch_template {
        if lt.id_or_name.starts_with("lt-") {
            p.set("LaunchTemplate.LaunchTemplateId", &lt.id_or_name);
        } else {
            p.set("LaunchTemplate.LaunchTemplateName", &lt.id_or_name);
        }
        if let Some(v) = &lt.version {
            p.set("LaunchTemplate.Version", v);
        }
    }
    if let Some(zone) = &l.zone
        && l.subnet.is_none()
    {
        p.set("Placement.AvailabilityZone", zone);
    }
    if let Some(device) = &l.root_device {
        p.set("BlockDeviceMapping.1.DeviceName", &device.name)
            .set("BlockDeviceMapping.1.Ebs.Encrypted", true)
            .set("BlockDeviceMapping.1.Ebs.DeleteOnTermination", true)
            .set("BlockDeviceMapping.1.Ebs.VolumeType", "gp3");
        if let Some(gb) = l.root_volume_gb.or(device.size_gb) {
            p.set("BlockDeviceMapping.1.Ebs.VolumeSize", gb);
        }
    }
    if let Some(profile) = &l.instance_profile {
        if profile.starts_with("arn:") {
            p.set("IamInstanceProfile.Arn", profile);
        } else {
            p.set("IamInstanceProfile.Name", profile);
        }
    }
    if l.spot {
        p.set("InstanceMarketOptions.MarketType", "spot")
            .set(
                "InstanceMarketOptions.SpotOptions.SpotInstanceType",
                "one-time",
            )
            .set(
                "InstanceMarketOptions.SpotOptions.InstanceInterruptionBehavior",
                "terminate",
            );
    }
    p
}

/// The DescribeInstances parameters of one page of a query.
pub fn describe_params(query: &Query, next: Option<&str>) -> Params {
    let mut p = Params::new();
    let controller_tag = format!("tag:{}", mayfly_provider::tags::CONTROLLER);
    match query {
        Query::Controller(c) => {
            filter(&mut p, 1, &controller_tag, &[c]);
            filter(&mut p, 2, "instance-state-name", LIVE_STATES);
            p.set("MaxResults", 1000);
        }
        Query::Named { controller, name } => {
            filter(&mut p, 1, &controller_tag, &[controller]);
            filter(&mut p, 2, "tag:Name", &[name]);
            filter(&mut p, 3, "instance-state-name", LIVE_STATES);
        }
        Query::Id(id) => {
            p.set("InstanceId.1", id);
        }
    }
    if let Some(t) = next {
        p.set("NextToken", t);
    }
    p
}

#[async_trait]
impl Ec2Api for Client {
    async fn run(&self, l: &Launch) -> Result<Ec2Instance, ApiError> {
        let out = self.call("RunInstances", &run_params(l)).await?;
        instances(&out)
            .into_iter()
            .next()
            .ok_or_else(|| ApiError::service("EmptyAnswer", "RunInstances made no instance"))
    }

    async fn describe(
        &self,
        query: &Query,
        next: Option<String>,
    ) -> Result<(Vec<Ec2Instance>, Option<String>), ApiError> {
        let out = self
            .call(
                "DescribeInstances",
                &describe_params(query, next.as_deref()),
            )
            .await?;
        Ok((instances(&out), out.value("nextToken")))
    }

    async fn stop(&self, id: &str) -> Result<(), ApiError> {
        let mut p = Params::new();
        p.set("InstanceId.1", id);
        self.call("StopInstances", &p).await.map(|_| ())
    }

    async fn start(&self, id: &str) -> Result<(), ApiError> {
        let mut p = Params::new();
        p.set("InstanceId.1", id);
        self.call("StartInstances", &p).await.map(|_| ())
    }

    async fn terminate(&self, id: &str) -> Result<(), ApiError> {
        let mut p = Params::new();
        p.set("InstanceId.1", id);
        self.call("TerminateInstances", &p).await.map(|_| ())
    }

    async fn root_device(&self, ami: &str) -> Result<Option<RootDevice>, ApiError> {
        let mut p = Params::new();
        p.set("ImageId.1", ami);
        let out = self.call("DescribeImages", &p).await?;
        match out.items("imagesSet").next() {
            Some(i) => Ok(i.value("rootDeviceName").map(|name| RootDevice {
                size_gb: i
                    .items("blockDeviceMapping")
                    .find(|m| m.text_at("deviceName") == Some(name.as_str()))
                    .and_then(|m| m.text_at("ebs/volumeSize"))
                    .and_then(|s| s.parse().ok()),
                name,
            })),
            None => Err(ApiError::service(
                "InvalidAMIID.NotFound",
                &format!("no image {ami}"),
            )),
        }
    }

    async fn subnet_zones(&self, subnets: &[String]) -> Result<BTreeMap<String, String>, ApiError> {
        let mut p = Params::new();
        p.list("SubnetId", subnets);
        let out = self.call("DescribeSubnets", &p).await?;
        Ok(out
            .items("subnetSet")
            .filter_map(|s| Some((s.value("subnetId")?, s.value("availabilityZone")?)))
            .collect())
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn launch() -> Launch {
        Launch {
            name: "mayfly-x64-1-1".into(),
            client_token: "tok".into(),
            tags: vec![
                ("Name".into(), "mayfly-x64-1-1".into()),
                ("mayfly-controller".into(), "ctl".into()),
            ],
            instance_type: "m7i.large".into(),
            spot: true,
            ami: Some("ami-1".into()),
            launch_template: Some(super::super::LaunchTemplate {
                id_or_name: "runners".into(),
                version: Some("$Latest".into()),
            }),
            subnet: None,
            zone: Some("eu-west-1b".into()),
            security_groups: vec!["sg-1".into(), "sg-2".into()],
            root_device: Some(RootDevice {
                name: "/dev/xvda".into(),
                size_gb: Some(8),
            }),
            root_volume_gb: Some(30),
            instance_profile: Some("runner".into()),
            user_data: Secret::new("#!/bin/sh\n"),
        }
    }

    /// The request EC2 gets for one launch, field by field, as its API reference names them.
    #[test]
    fn a_launch_becomes_run_instances_parameters() {
        let p = run_params(&launch());
        let want = [
            ("MinCount", "1"),
            ("MaxCount", "1"),
            ("ClientToken", "tok"),
            ("ImageId", "ami-1"),
            ("InstanceType", "m7i.large"),
            ("InstanceInitiatedShutdownBehavior", "terminate"),
            ("MetadataOptions.HttpTokens", "required"),
            ("MetadataOptions.HttpPutResponseHopLimit", "2"),
            ("SecurityGroupId.2", "sg-2"),
            ("TagSpecification.1.ResourceType", "instance"),
            ("TagSpecification.1.Tag.2.Key", "mayfly-controller"),
            ("TagSpecification.2.ResourceType", "volume"),
            ("LaunchTemplate.LaunchTemplateName", "runners"),
            ("LaunchTemplate.Version", "$Latest"),
            ("Placement.AvailabilityZone", "eu-west-1b"),
            ("BlockDeviceMapping.1.DeviceName", "/dev/xvda"),
            ("BlockDeviceMapping.1.Ebs.Encrypted", "true"),
            ("BlockDeviceMapping.1.Ebs.VolumeSize", "30"),
            ("IamInstanceProfile.Name", "runner"),
            ("InstanceMarketOptions.MarketType", "spot"),
            (
                "InstanceMarketOptions.SpotOptions.InstanceInterruptionBehavior",
                "terminate",
            ),
        ];
        for (k, v) in want {
            assert_eq!(p.get(k), Some(v), "{k}");
        }
        assert_eq!(p.get("UserData"), Some("IyEvYmluL3NoCg=="));
        let mut on_demand = launch();
        on_demand.spot = false;
        on_demand.subnet = Some("subnet-1".into());
        let p = run_params(&on_demand);
        assert_eq!(p.get("InstanceMarketOptions.MarketType"), None);
        assert_eq!(
            p.get("Placement.AvailabilityZone"),
            None,
            "the subnet places it"
        );
        assert_eq!(p.get("SubnetId"), Some("subnet-1"));
    }

    #[test]
    fn a_describe_answer_reads_into_instances() {
        let doc = r#"<DescribeInstancesResponse xmlns="http://ec2.amazonaws.com/doc/2016-11-15/">
  <reservationSet><item><instancesSet><item>
    <instanceId>i-0abc</instanceId><imageId>ami-1</imageId>
    <instanceState><code>16</code><name>running</name></instanceState>
    <instanceType>t3.micro</instanceType><launchTime>2024-05-01T12:00:00.000Z</launchTime>
    <placement><availabilityZone>us-east-1a</availabilityZone></placement>
    <ipAddress>192.0.2.7</ipAddress><instanceLifecycle>spot</instanceLifecycle>
    <tagSet><item><key>Name</key><value>mayfly-x64-7-1</value></item></tagSet>
  </item></instancesSet></item></reservationSet>
  <nextToken>page-2</nextToken>
</DescribeInstancesResponse>"#;
        let root = wire::xml::parse(doc).unwrap();
        let i = &instances(&root)[0];
        assert_eq!(i.id, "i-0abc");
        assert_eq!(i.state, "running");
        assert_eq!(i.zone.as_deref(), Some("us-east-1a"));
        assert_eq!(i.launch_time, Some(1_714_564_800_000));
        assert!(i.spot);
        assert_eq!(
            i.tags.get("Name").map(String::as_str),
            Some("mayfly-x64-7-1")
        );
        assert_eq!(i.public_ip.as_deref(), Some("192.0.2.7"));
        assert_eq!(root.value("nextToken").as_deref(), Some("page-2"));
    }

    #[test]
    fn a_describe_page_filters_by_controller_and_live_states() {
        let p = describe_params(&Query::Controller("ctl".into()), Some("t"));
        assert_eq!(p.get("Filter.1.Name"), Some("tag:mayfly-controller"));
        assert_eq!(p.get("Filter.1.Value.1"), Some("ctl"));
        assert_eq!(p.get("Filter.2.Name"), Some("instance-state-name"));
        assert_eq!(p.get("Filter.2.Value.5"), Some("stopped"));
        assert_eq!(p.get("MaxResults"), Some("1000"));
        assert_eq!(p.get("NextToken"), Some("t"));
        let p = describe_params(&Query::Id("i-1".into()), None);
        assert_eq!(
            (p.get("InstanceId.1"), p.get("MaxResults")),
            (Some("i-1"), None)
        );
    }
}
