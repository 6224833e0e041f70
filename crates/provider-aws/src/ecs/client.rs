//! The ECS (and SSM Parameter Store) calls the provider makes, behind a small trait: the real
//! one is the SDK, and unit tests script one to inject RunTask failures moto never reports.

use super::catalogue::{self, Family};
use super::config::Capacity;
use crate::ApiError;
use async_trait::async_trait;
use aws_sdk_ecs::types::{
    AssignPublicIp, AwsVpcConfiguration, CapacityProviderStrategyItem, ContainerOverride,
    DesiredStatus, KeyValuePair, LaunchType, NetworkConfiguration, TaskDefinitionFamilyStatus,
    TaskDefinitionField, TaskField, TaskOverride,
};
use mayfly_core::Secret;
use std::collections::BTreeMap;

/// One task as DescribeTasks and RunTask report it.
#[derive(Clone, Debug, Default, PartialEq, Eq)]
pub struct EcsTask {
    pub arn: String,
    /// `PROVISIONING`, `PENDING`, `ACTIVATING`, `RUNNING`, …, `STOPPED`.
    pub last_status: String,
    pub desired_status: String,
    pub task_definition_arn: String,
    /// `family:<name>` unless the caller set another group.
    pub group: String,
    /// Milliseconds since the epoch.
    pub created_at: Option<i64>,
    pub zone: Option<String>,
    pub tags: BTreeMap<String, String>,
}

impl EcsTask {
    /// The task definition family, from the group or the definition's ARN.
    pub fn family(&self) -> String {
        if let Some(f) = self.group.strip_prefix("family:") {
            return f.to_string();
        }
        let def = self
            .task_definition_arn
            .rsplit('/')
            .next()
            .unwrap_or_default();
        def.split(':').next().unwrap_or_default().to_string()
    }
}

/// One entry of RunTask's or DescribeTasks' `failures[]`.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct Failure {
    pub arn: Option<String>,
    pub reason: String,
    pub detail: Option<String>,
}

/// One RunTask call. The environment holds the credential (or its parameter's name).
#[derive(Clone, Debug)]
pub struct RunTask {
    pub cluster: String,
    pub task_definition: String,
    pub capacity: Capacity,
    pub subnets: Vec<String>,
    pub security_groups: Vec<String>,
    pub assign_public_ip: bool,
    pub container: String,
    pub environment: Vec<(String, Secret)>,
    pub tags: Vec<(String, String)>,
    /// Who started it (at most 36 characters): the controller, so ListTasks can filter by it.
    pub started_by: String,
    pub client_token: String,
}

#[derive(Clone, Debug, Default)]
pub struct RunOutcome {
    pub tasks: Vec<EcsTask>,
    pub failures: Vec<Failure>,
}

#[async_trait]
pub trait EcsApi: Send + Sync {
    /// Every active task definition family that carries `labels_tag`, latest revision.
    async fn families(&self, labels_tag: &str) -> Result<Vec<Family>, ApiError>;
    async fn run(&self, run: &RunTask) -> Result<RunOutcome, ApiError>;
    /// One page of the ARNs of the tasks `started_by` started that are meant to run.
    async fn list(
        &self,
        cluster: &str,
        started_by: &str,
        next: Option<String>,
    ) -> Result<(Vec<String>, Option<String>), ApiError>;
    /// At most 100 tasks by ARN, with their tags.
    async fn describe(
        &self,
        cluster: &str,
        arns: &[String],
    ) -> Result<(Vec<EcsTask>, Vec<Failure>), ApiError>;
    async fn stop(&self, cluster: &str, arn: &str, reason: &str) -> Result<(), ApiError>;
    /// Writes a SecureString parameter (replacing one of the same name).
    async fn put_parameter(&self, name: &str, value: &Secret) -> Result<(), ApiError>;
    /// Deletes a parameter; one that does not exist is not an error.
    async fn delete_parameter(&self, name: &str) -> Result<(), ApiError>;
    /// Names and last-modified times (ms) of the parameters directly under `path`.
    async fn parameters(&self, path: &str) -> Result<Vec<(String, i64)>, ApiError>;
}

/// The SDK clients.
#[derive(Clone, Debug)]
pub struct Sdk {
    pub ecs: aws_sdk_ecs::Client,
    pub ssm: aws_sdk_ssm::Client,
}

fn task(t: &aws_sdk_ecs::types::Task) -> EcsTask {
    EcsTask {
        arn: t.task_arn().unwrap_or_default().to_string(),
        last_status: t.last_status().unwrap_or_default().to_string(),
        desired_status: t.desired_status().unwrap_or_default().to_string(),
        task_definition_arn: t.task_definition_arn().unwrap_or_default().to_string(),
        group: t.group().unwrap_or_default().to_string(),
        created_at: t.created_at().and_then(|d| d.to_millis().ok()),
        zone: t.availability_zone().map(str::to_string),
        tags: t
            .tags()
            .iter()
            .filter_map(|t| Some((t.key()?.to_string(), t.value()?.to_string())))
            .collect(),
    }
}

fn failure(f: &aws_sdk_ecs::types::Failure) -> Failure {
    Failure {
        arn: f.arn().map(str::to_string),
        reason: f.reason().unwrap_or_default().to_string(),
        detail: f.detail().map(str::to_string),
    }
}

fn build_error(e: impl std::fmt::Display) -> ApiError {
    ApiError::service("InvalidParameterException", &e.to_string())
}

#[async_trait]
impl EcsApi for Sdk {
    async fn families(&self, labels_tag: &str) -> Result<Vec<Family>, ApiError> {
        let mut names = Vec::new();
        let mut next = None;
        // 100 pages of 100: far beyond any account's runner images.
        for _ in 0..100 {
            let out = self
                .ecs
                .list_task_definition_families()
                .status(TaskDefinitionFamilyStatus::Active)
                .set_next_token(next)
                .send()
                .await
                .map_err(|e| ApiError::from_sdk(&e))?;
            names.extend(out.families().iter().cloned());
            next = out.next_token().map(str::to_string);
            if next.is_none() {
                break;
            }
        }
        let mut families = Vec::new();
        for name in names {
            let out = self
                .ecs
                .describe_task_definition()
                .task_definition(&name)
                .include(TaskDefinitionField::Tags)
                .send()
                .await
                .map_err(|e| ApiError::from_sdk(&e))?;
            let Some(tag) = out.tags().iter().find(|t| t.key() == Some(labels_tag)) else {
                continue;
            };
            let Some(def) = out.task_definition() else {
                continue;
            };
            families.push(Family {
                family: def.family().unwrap_or(&name).to_string(),
                arn: def.task_definition_arn().unwrap_or(&name).to_string(),
                labels: catalogue::labels(tag.value().unwrap_or_default()),
                containers: def
                    .container_definitions()
                    .iter()
                    .filter_map(|c| c.name().map(str::to_string))
                    .collect(),
            });
        }
        Ok(families)
    }

    async fn run(&self, r: &RunTask) -> Result<RunOutcome, ApiError> {
        let vpc = AwsVpcConfiguration::builder()
            .set_subnets(Some(r.subnets.clone()))
            .set_security_groups((!r.security_groups.is_empty()).then(|| r.security_groups.clone()))
            .assign_public_ip(if r.assign_public_ip {
                AssignPublicIp::Enabled
            } else {
                AssignPublicIp::Disabled
            })
            .build()
            .map_err(build_error)?;
        let mut over = ContainerOverride::builder().name(&r.container);
        for (k, v) in &r.environment {
            over = over.environment(KeyValuePair::builder().name(k).value(v.expose()).build());
        }
        let mut call = self
            .ecs
            .run_task()
            .cluster(&r.cluster)
            .task_definition(&r.task_definition)
            .count(1)
            .started_by(&r.started_by)
            .client_token(&r.client_token)
            .overrides(
                TaskOverride::builder()
                    .container_overrides(over.build())
                    .build(),
            )
            .set_tags(Some(
                r.tags
                    .iter()
                    .map(|(k, v)| aws_sdk_ecs::types::Tag::builder().key(k).value(v).build())
                    .collect(),
            ));
        if !r.subnets.is_empty() {
            call = call.network_configuration(
                NetworkConfiguration::builder()
                    .awsvpc_configuration(vpc)
                    .build(),
            );
        }
        call = match r.capacity {
            Capacity::Fargate => call.launch_type(LaunchType::Fargate),
            Capacity::Ec2 => call.launch_type(LaunchType::Ec2),
            Capacity::FargateSpot => call.capacity_provider_strategy(
                CapacityProviderStrategyItem::builder()
                    .capacity_provider("FARGATE_SPOT")
                    .weight(1)
                    .build()
                    .map_err(build_error)?,
            ),
        };
        let out = call.send().await.map_err(|e| ApiError::from_sdk(&e))?;
        Ok(RunOutcome {
            tasks: out.tasks().iter().map(task).collect(),
            failures: out.failures().iter().map(failure).collect(),
        })
    }

    async fn list(
        &self,
        cluster: &str,
        started_by: &str,
        next: Option<String>,
    ) -> Result<(Vec<String>, Option<String>), ApiError> {
        let out = self
            .ecs
            .list_tasks()
            .cluster(cluster)
            .started_by(started_by)
            .desired_status(DesiredStatus::Running)
            .max_results(100)
            .set_next_token(next)
            .send()
            .await
            .map_err(|e| ApiError::from_sdk(&e))?;
        Ok((
            out.task_arns().to_vec(),
            out.next_token()
                .filter(|t| !t.is_empty())
                .map(str::to_string),
        ))
    }

    async fn describe(
        &self,
        cluster: &str,
        arns: &[String],
    ) -> Result<(Vec<EcsTask>, Vec<Failure>), ApiError> {
        let out = self
            .ecs
            .describe_tasks()
            .cluster(cluster)
            .set_tasks(Some(arns.to_vec()))
            .include(TaskField::Tags)
            .send()
            .await
            .map_err(|e| ApiError::from_sdk(&e))?;
        Ok((
            out.tasks().iter().map(task).collect(),
            out.failures().iter().map(failure).collect(),
        ))
    }

    async fn stop(&self, cluster: &str, arn: &str, reason: &str) -> Result<(), ApiError> {
        self.ecs
            .stop_task()
            .cluster(cluster)
            .task(arn)
            .reason(reason)
            .send()
            .await
            .map(|_| ())
            .map_err(|e| ApiError::from_sdk(&e))
    }

    async fn put_parameter(&self, name: &str, value: &Secret) -> Result<(), ApiError> {
        self.ssm
            .put_parameter()
            .name(name)
            .value(value.expose())
            .r#type(aws_sdk_ssm::types::ParameterType::SecureString)
            .overwrite(true)
            .send()
            .await
            .map(|_| ())
            .map_err(|e| ApiError::from_sdk(&e))
    }

    async fn delete_parameter(&self, name: &str) -> Result<(), ApiError> {
        match self.ssm.delete_parameter().name(name).send().await {
            Ok(_) => Ok(()),
            Err(e) => {
                let e = ApiError::from_sdk(&e);
                if e.code == "ParameterNotFound" {
                    Ok(())
                } else {
                    Err(e)
                }
            }
        }
    }

    async fn parameters(&self, path: &str) -> Result<Vec<(String, i64)>, ApiError> {
        let mut found = Vec::new();
        let mut next = None;
        for _ in 0..100 {
            let out = self
                .ssm
                .get_parameters_by_path()
                .path(path)
                .recursive(false)
                .with_decryption(false)
                .set_next_token(next)
                .send()
                .await
                .map_err(|e| ApiError::from_sdk(&e))?;
            found.extend(out.parameters().iter().filter_map(|p| {
                Some((
                    p.name()?.to_string(),
                    p.last_modified_date()
                        .and_then(|d| d.to_millis().ok())
                        .unwrap_or_default(),
                ))
            }));
            next = out.next_token().map(str::to_string);
            if next.is_none() {
                break;
            }
        }
        Ok(found)
    }
}
