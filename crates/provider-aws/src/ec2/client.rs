//! The EC2 calls the provider makes, behind a small trait: the real one is the SDK client, and
//! unit tests put a scripted one in its place to inject errors moto never produces.

use super::config::LaunchTemplate;
use crate::ApiError;
use async_trait::async_trait;
use aws_sdk_ec2::types::{
    BlockDeviceMapping, EbsBlockDevice, Filter, HttpTokensState, IamInstanceProfileSpecification,
    InstanceInterruptionBehavior, InstanceMarketOptionsRequest, InstanceMetadataEndpointState,
    InstanceMetadataOptionsRequest, LaunchTemplateSpecification, MarketType, Placement,
    ResourceType, ShutdownBehavior, SpotInstanceType, SpotMarketOptions, Tag, TagSpecification,
    VolumeType,
};
use base64::Engine;
use mayfly_core::Secret;
use std::collections::BTreeMap;

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

/// The SDK client.
#[derive(Clone, Debug)]
pub struct Sdk(pub aws_sdk_ec2::Client);

fn filter(name: &str, values: &[&str]) -> Filter {
    Filter::builder()
        .name(name)
        .set_values(Some(values.iter().map(|v| v.to_string()).collect()))
        .build()
}

fn tags_of(tags: &[(String, String)]) -> Vec<Tag> {
    tags.iter()
        .map(|(k, v)| Tag::builder().key(k).value(v).build())
        .collect()
}

impl From<&aws_sdk_ec2::types::Instance> for Ec2Instance {
    fn from(i: &aws_sdk_ec2::types::Instance) -> Self {
        Ec2Instance {
            id: i.instance_id().unwrap_or_default().to_string(),
            state: i
                .state()
                .and_then(|s| s.name())
                .map(|n| n.as_str().to_string())
                .unwrap_or_default(),
            instance_type: i
                .instance_type()
                .map(|t| t.as_str().to_string())
                .unwrap_or_default(),
            zone: i
                .placement()
                .and_then(|p| p.availability_zone())
                .map(str::to_string),
            image_id: i.image_id().map(str::to_string),
            launch_time: i.launch_time().and_then(|t| t.to_millis().ok()),
            tags: i
                .tags()
                .iter()
                .filter_map(|t| Some((t.key()?.to_string(), t.value()?.to_string())))
                .collect(),
            public_ip: i.public_ip_address().map(str::to_string),
            ipv6: i.ipv6_address().map(str::to_string),
            spot: i.instance_lifecycle().map(|l| l.as_str()) == Some("spot"),
        }
    }
}

#[async_trait]
impl Ec2Api for Sdk {
    async fn run(&self, l: &Launch) -> Result<Ec2Instance, ApiError> {
        let tags = tags_of(&l.tags);
        let mut call = self
            .0
            .run_instances()
            .min_count(1)
            .max_count(1)
            .client_token(&l.client_token)
            .instance_type(l.instance_type.as_str().into())
            .set_image_id(l.ami.clone())
            .set_subnet_id(l.subnet.clone())
            .set_security_group_ids(
                (!l.security_groups.is_empty()).then(|| l.security_groups.clone()),
            )
            .user_data(base64::engine::general_purpose::STANDARD.encode(l.user_data.expose()))
            // The runner powers the machine off after its job: that ends the bill at once.
            .instance_initiated_shutdown_behavior(ShutdownBehavior::Terminate)
            .metadata_options(
                InstanceMetadataOptionsRequest::builder()
                    .http_tokens(HttpTokensState::Required)
                    .http_endpoint(InstanceMetadataEndpointState::Enabled)
                    // Containers of a job are one hop further away than the host.
                    .http_put_response_hop_limit(2)
                    .build(),
            )
            .tag_specifications(
                TagSpecification::builder()
                    .resource_type(ResourceType::Instance)
                    .set_tags(Some(tags.clone()))
                    .build(),
            )
            .tag_specifications(
                TagSpecification::builder()
                    .resource_type(ResourceType::Volume)
                    .set_tags(Some(tags))
                    .build(),
            );
        if let Some(lt) = &l.launch_template {
            let spec = LaunchTemplateSpecification::builder().set_version(lt.version.clone());
            let spec = if lt.id_or_name.starts_with("lt-") {
                spec.launch_template_id(&lt.id_or_name)
            } else {
                spec.launch_template_name(&lt.id_or_name)
            };
            call = call.launch_template(spec.build());
        }
        if let Some(zone) = &l.zone
            && l.subnet.is_none()
        {
            call = call.placement(Placement::builder().availability_zone(zone).build());
        }
        if let Some(device) = &l.root_device {
            let ebs = EbsBlockDevice::builder()
                .encrypted(true)
                .delete_on_termination(true)
                .volume_type(VolumeType::Gp3)
                .set_volume_size(l.root_volume_gb.or(device.size_gb).map(|g| g as i32));
            call = call.block_device_mappings(
                BlockDeviceMapping::builder()
                    .device_name(&device.name)
                    .ebs(ebs.build())
                    .build(),
            );
        }
        if let Some(profile) = &l.instance_profile {
            let p = IamInstanceProfileSpecification::builder();
            let p = if profile.starts_with("arn:") {
                p.arn(profile)
            } else {
                p.name(profile)
            };
            call = call.iam_instance_profile(p.build());
        }
        if l.spot {
            call = call.instance_market_options(
                InstanceMarketOptionsRequest::builder()
                    .market_type(MarketType::Spot)
                    .spot_options(
                        SpotMarketOptions::builder()
                            .spot_instance_type(SpotInstanceType::OneTime)
                            .instance_interruption_behavior(InstanceInterruptionBehavior::Terminate)
                            .build(),
                    )
                    .build(),
            );
        }
        let out = call.send().await.map_err(|e| ApiError::from_sdk(&e))?;
        out.instances()
            .first()
            .map(Ec2Instance::from)
            .ok_or_else(|| ApiError::service("EmptyAnswer", "RunInstances made no instance"))
    }

    async fn describe(
        &self,
        query: &Query,
        next: Option<String>,
    ) -> Result<(Vec<Ec2Instance>, Option<String>), ApiError> {
        let call = self.0.describe_instances().set_next_token(next);
        let call = match query {
            Query::Controller(c) => call
                .filters(filter(
                    &format!("tag:{}", mayfly_provider::tags::CONTROLLER),
                    &[c],
                ))
                .filters(filter("instance-state-name", LIVE_STATES))
                .max_results(1000),
            Query::Named { controller, name } => call
                .filters(filter(
                    &format!("tag:{}", mayfly_provider::tags::CONTROLLER),
                    &[controller],
                ))
                .filters(filter("tag:Name", &[name]))
                .filters(filter("instance-state-name", LIVE_STATES)),
            Query::Id(id) => call.instance_ids(id),
        };
        let out = call.send().await.map_err(|e| ApiError::from_sdk(&e))?;
        let instances = out
            .reservations()
            .iter()
            .flat_map(|r| r.instances())
            .map(Ec2Instance::from)
            .collect();
        let next = out
            .next_token()
            .filter(|t| !t.is_empty())
            .map(str::to_string);
        Ok((instances, next))
    }

    async fn stop(&self, id: &str) -> Result<(), ApiError> {
        self.0
            .stop_instances()
            .instance_ids(id)
            .send()
            .await
            .map(|_| ())
            .map_err(|e| ApiError::from_sdk(&e))
    }

    async fn start(&self, id: &str) -> Result<(), ApiError> {
        self.0
            .start_instances()
            .instance_ids(id)
            .send()
            .await
            .map(|_| ())
            .map_err(|e| ApiError::from_sdk(&e))
    }

    async fn terminate(&self, id: &str) -> Result<(), ApiError> {
        self.0
            .terminate_instances()
            .instance_ids(id)
            .send()
            .await
            .map(|_| ())
            .map_err(|e| ApiError::from_sdk(&e))
    }

    async fn root_device(&self, ami: &str) -> Result<Option<RootDevice>, ApiError> {
        let out = self
            .0
            .describe_images()
            .image_ids(ami)
            .send()
            .await
            .map_err(|e| ApiError::from_sdk(&e))?;
        match out.images().first() {
            Some(i) => Ok(i.root_device_name().map(|name| RootDevice {
                name: name.to_string(),
                size_gb: i
                    .block_device_mappings()
                    .iter()
                    .find(|m| m.device_name() == Some(name))
                    .and_then(|m| m.ebs())
                    .and_then(|e| e.volume_size())
                    .and_then(|s| u32::try_from(s).ok()),
            })),
            None => Err(ApiError::service(
                "InvalidAMIID.NotFound",
                &format!("no image {ami}"),
            )),
        }
    }

    async fn subnet_zones(&self, subnets: &[String]) -> Result<BTreeMap<String, String>, ApiError> {
        let out = self
            .0
            .describe_subnets()
            .set_subnet_ids(Some(subnets.to_vec()))
            .send()
            .await
            .map_err(|e| ApiError::from_sdk(&e))?;
        Ok(out
            .subnets()
            .iter()
            .filter_map(|s| {
                Some((
                    s.subnet_id()?.to_string(),
                    s.availability_zone()?.to_string(),
                ))
            })
            .collect())
    }
}
