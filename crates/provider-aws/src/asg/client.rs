//! The Auto Scaling (and EC2 tag) calls the scaler makes, behind a small trait so the scaler's
//! order of steps is tested without AWS; the real one is the SDK.

use crate::ApiError;
use async_trait::async_trait;
use aws_sdk_autoscaling::types::LaunchTemplateSpecification;

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

#[derive(Clone, Debug)]
pub struct Sdk {
    pub asg: aws_sdk_autoscaling::Client,
    pub ec2: aws_sdk_ec2::Client,
}

#[async_trait]
impl AsgApi for Sdk {
    async fn group(&self, name: &str) -> Result<Option<Group>, ApiError> {
        let out = self
            .asg
            .describe_auto_scaling_groups()
            .auto_scaling_group_names(name)
            .send()
            .await
            .map_err(|e| ApiError::from_sdk(&e))?;
        Ok(out.auto_scaling_groups().first().map(|g| Group {
            desired: g.desired_capacity().unwrap_or_default().max(0) as u32,
            min: g.min_size().unwrap_or_default().max(0) as u32,
            max: g.max_size().unwrap_or_default().max(0) as u32,
            instances: g
                .instances()
                .iter()
                .filter(|i| {
                    let s = i.lifecycle_state().map(|s| s.as_str()).unwrap_or_default();
                    s == "InService" || s.starts_with("Pending")
                })
                .filter_map(|i| {
                    Some((
                        i.instance_id()?.to_string(),
                        i.protected_from_scale_in().unwrap_or(false),
                    ))
                })
                .collect(),
        }))
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
        let lt = LaunchTemplateSpecification::builder();
        let lt = if launch_template.starts_with("lt-") {
            lt.launch_template_id(launch_template)
        } else {
            lt.launch_template_name(launch_template)
        };
        let mut call = self
            .asg
            .create_auto_scaling_group()
            .auto_scaling_group_name(name)
            .launch_template(lt.build())
            .min_size(min as i32)
            .max_size(max as i32)
            .desired_capacity(min as i32)
            .new_instances_protected_from_scale_in(true)
            .vpc_zone_identifier(subnets.join(","));
        for (k, v) in tags {
            call = call.tags(
                aws_sdk_autoscaling::types::Tag::builder()
                    .key(k)
                    .value(v)
                    .propagate_at_launch(true)
                    .resource_id(name)
                    .resource_type("auto-scaling-group")
                    .build(),
            );
        }
        call.send()
            .await
            .map(|_| ())
            .map_err(|e| ApiError::from_sdk(&e))
    }

    async fn set_desired(&self, name: &str, desired: u32) -> Result<(), ApiError> {
        self.asg
            .set_desired_capacity()
            .auto_scaling_group_name(name)
            .desired_capacity(desired as i32)
            .honor_cooldown(false)
            .send()
            .await
            .map(|_| ())
            .map_err(|e| ApiError::from_sdk(&e))
    }

    async fn protect(&self, name: &str, ids: &[String], protect: bool) -> Result<(), ApiError> {
        if ids.is_empty() {
            return Ok(());
        }
        self.asg
            .set_instance_protection()
            .auto_scaling_group_name(name)
            .set_instance_ids(Some(ids.to_vec()))
            .protected_from_scale_in(protect)
            .send()
            .await
            .map(|_| ())
            .map_err(|e| ApiError::from_sdk(&e))
    }

    async fn terminate_decrement(&self, id: &str) -> Result<(), ApiError> {
        self.asg
            .terminate_instance_in_auto_scaling_group()
            .instance_id(id)
            .should_decrement_desired_capacity(true)
            .send()
            .await
            .map(|_| ())
            .map_err(|e| ApiError::from_sdk(&e))
    }

    async fn tagged(&self, ids: &[String], key: &str) -> Result<Vec<String>, ApiError> {
        if ids.is_empty() {
            return Ok(Vec::new());
        }
        let out = self
            .ec2
            .describe_instances()
            .set_instance_ids(Some(ids.to_vec()))
            .send()
            .await
            .map_err(|e| ApiError::from_sdk(&e))?;
        Ok(out
            .reservations()
            .iter()
            .flat_map(|r| r.instances())
            .filter(|i| i.tags().iter().any(|t| t.key() == Some(key)))
            .filter_map(|i| i.instance_id().map(str::to_string))
            .collect())
    }

    async fn tag(&self, ids: &[String], key: &str) -> Result<(), ApiError> {
        self.ec2
            .create_tags()
            .set_resources(Some(ids.to_vec()))
            .tags(
                aws_sdk_ec2::types::Tag::builder()
                    .key(key)
                    .value("true")
                    .build(),
            )
            .send()
            .await
            .map(|_| ())
            .map_err(|e| ApiError::from_sdk(&e))
    }

    async fn untag(&self, ids: &[String], key: &str) -> Result<(), ApiError> {
        self.ec2
            .delete_tags()
            .set_resources(Some(ids.to_vec()))
            .tags(aws_sdk_ec2::types::Tag::builder().key(key).build())
            .send()
            .await
            .map(|_| ())
            .map_err(|e| ApiError::from_sdk(&e))
    }
}
