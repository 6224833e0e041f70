//! The ECS (and SSM Parameter Store) calls the provider makes, behind a small trait: the real
//! one speaks their JSON 1.1 protocol through `wire`, and unit tests script one to inject
//! RunTask failures moto never reports.

use super::catalogue::{self, Family};
use super::config::Capacity;
use crate::ApiError;
use crate::wire::{self, Aws};
use async_trait::async_trait;
use mayfly_core::Secret;
use serde_json::{Value, json};
use std::collections::BTreeMap;
use std::sync::Arc;

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
    /// The private IPv4 address of the task's network interface (awsvpc), once attached.
    pub private_ip: Option<String>,
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

/// The real client: ECS and SSM through the signed HTTP client.
#[derive(Clone, Debug)]
pub struct Client(pub Arc<Aws>);

const ECS_TARGET: &str = "AmazonEC2ContainerServiceV20141113";
const SSM_TARGET: &str = "AmazonSSM";

impl Client {
    /// One ECS operation (`RunTask`, …); its answer.
    pub async fn ecs(&self, operation: &str, body: Value) -> Result<Value, ApiError> {
        self.0
            .json(wire::ECS, &format!("{ECS_TARGET}.{operation}"), &body)
            .await
    }

    /// One SSM operation (`PutParameter`, …); its answer.
    pub async fn ssm(&self, operation: &str, body: Value) -> Result<Value, ApiError> {
        self.0
            .json(wire::SSM, &format!("{SSM_TARGET}.{operation}"), &body)
            .await
    }
}

fn str_of(v: &Value, key: &str) -> Option<String> {
    v.get(key).and_then(Value::as_str).map(str::to_string)
}

/// The JSON protocols write times as seconds since the epoch, with a fraction.
fn millis_of(v: &Value, key: &str) -> Option<i64> {
    v.get(key)
        .and_then(Value::as_f64)
        .map(|s| (s * 1000.0).round() as i64)
}

fn array<'a>(v: &'a Value, key: &str) -> impl Iterator<Item = &'a Value> + 'a {
    v.get(key).and_then(Value::as_array).into_iter().flatten()
}

fn next_token(v: &Value, key: &str) -> Option<String> {
    str_of(v, key).filter(|t| !t.is_empty())
}

/// `[{"key": …, "value": …}]`, as ECS writes tags.
fn tags_of(v: &Value) -> BTreeMap<String, String> {
    array(v, "tags")
        .filter_map(|t| Some((str_of(t, "key")?, str_of(t, "value").unwrap_or_default())))
        .collect()
}

pub fn task(t: &Value) -> EcsTask {
    EcsTask {
        arn: str_of(t, "taskArn").unwrap_or_default(),
        last_status: str_of(t, "lastStatus").unwrap_or_default(),
        desired_status: str_of(t, "desiredStatus").unwrap_or_default(),
        task_definition_arn: str_of(t, "taskDefinitionArn").unwrap_or_default(),
        group: str_of(t, "group").unwrap_or_default(),
        created_at: millis_of(t, "createdAt"),
        zone: str_of(t, "availabilityZone"),
        tags: tags_of(t),
        private_ip: private_ip(t),
    }
}

/// `attachments[type=ElasticNetworkInterface].details[name=privateIPv4Address].value`.
fn private_ip(t: &Value) -> Option<String> {
    t.get("attachments")?
        .as_array()?
        .iter()
        .filter(|a| a.get("type").and_then(Value::as_str) == Some("ElasticNetworkInterface"))
        .flat_map(|a| {
            a.get("details")
                .and_then(Value::as_array)
                .into_iter()
                .flatten()
        })
        .find(|d| d.get("name").and_then(Value::as_str) == Some("privateIPv4Address"))
        .and_then(|d| d.get("value").and_then(Value::as_str))
        .map(str::to_string)
}

fn failure(f: &Value) -> Failure {
    Failure {
        arn: str_of(f, "arn"),
        reason: str_of(f, "reason").unwrap_or_default(),
        detail: str_of(f, "detail"),
    }
}

/// The RunTask request of one run.
pub fn run_body(r: &RunTask) -> Value {
    let environment: Vec<Value> = r
        .environment
        .iter()
        .map(|(k, v)| json!({"name": k, "value": v.expose()}))
        .collect();
    let tags: Vec<Value> = r
        .tags
        .iter()
        .map(|(k, v)| json!({"key": k, "value": v}))
        .collect();
    let mut body = json!({
        "cluster": r.cluster,
        "taskDefinition": r.task_definition,
        "count": 1,
        "startedBy": r.started_by,
        "clientToken": r.client_token,
        "overrides": {"containerOverrides": [{"name": r.container, "environment": environment}]},
        "tags": tags,
    });
    if !r.subnets.is_empty() {
        let mut vpc = json!({
            "subnets": r.subnets,
            "assignPublicIp": if r.assign_public_ip { "ENABLED" } else { "DISABLED" },
        });
        if !r.security_groups.is_empty() {
            vpc["securityGroups"] = json!(r.security_groups);
        }
        body["networkConfiguration"] = json!({"awsvpcConfiguration": vpc});
    }
    match r.capacity {
        Capacity::Fargate => body["launchType"] = json!("FARGATE"),
        Capacity::Ec2 => body["launchType"] = json!("EC2"),
        Capacity::FargateSpot => {
            body["capacityProviderStrategy"] =
                json!([{"capacityProvider": "FARGATE_SPOT", "weight": 1}]);
        }
    }
    body
}

#[async_trait]
impl EcsApi for Client {
    async fn families(&self, labels_tag: &str) -> Result<Vec<Family>, ApiError> {
        let mut names = Vec::new();
        let mut next: Option<String> = None;
        // 100 pages of 100: far beyond any account's runner images.
        for _ in 0..100 {
            let mut body = json!({"status": "ACTIVE"});
            if let Some(t) = &next {
                body["nextToken"] = json!(t);
            }
            let out = self.ecs("ListTaskDefinitionFamilies", body).await?;
            names.extend(array(&out, "families").filter_map(|f| f.as_str().map(str::to_string)));
            next = next_token(&out, "nextToken");
            if next.is_none() {
                break;
            }
        }
        let mut families = Vec::new();
        for name in names {
            let out = self
                .ecs(
                    "DescribeTaskDefinition",
                    json!({"taskDefinition": name, "include": ["TAGS"]}),
                )
                .await?;
            let tags = tags_of(&out);
            let Some(labels) = tags.get(labels_tag) else {
                continue;
            };
            let Some(def) = out.get("taskDefinition") else {
                continue;
            };
            families.push(Family {
                family: str_of(def, "family").unwrap_or_else(|| name.clone()),
                arn: str_of(def, "taskDefinitionArn").unwrap_or_else(|| name.clone()),
                labels: catalogue::labels(labels),
                containers: array(def, "containerDefinitions")
                    .filter_map(|c| str_of(c, "name"))
                    .collect(),
            });
        }
        Ok(families)
    }

    async fn run(&self, r: &RunTask) -> Result<RunOutcome, ApiError> {
        let out = self.ecs("RunTask", run_body(r)).await?;
        Ok(RunOutcome {
            tasks: array(&out, "tasks").map(task).collect(),
            failures: array(&out, "failures").map(failure).collect(),
        })
    }

    async fn list(
        &self,
        cluster: &str,
        started_by: &str,
        next: Option<String>,
    ) -> Result<(Vec<String>, Option<String>), ApiError> {
        let mut body = json!({
            "cluster": cluster,
            "startedBy": started_by,
            "desiredStatus": "RUNNING",
            "maxResults": 100,
        });
        if let Some(t) = next {
            body["nextToken"] = json!(t);
        }
        let out = self.ecs("ListTasks", body).await?;
        Ok((
            array(&out, "taskArns")
                .filter_map(|a| a.as_str().map(str::to_string))
                .collect(),
            next_token(&out, "nextToken"),
        ))
    }

    async fn describe(
        &self,
        cluster: &str,
        arns: &[String],
    ) -> Result<(Vec<EcsTask>, Vec<Failure>), ApiError> {
        let out = self
            .ecs(
                "DescribeTasks",
                json!({"cluster": cluster, "tasks": arns, "include": ["TAGS"]}),
            )
            .await?;
        Ok((
            array(&out, "tasks").map(task).collect(),
            array(&out, "failures").map(failure).collect(),
        ))
    }

    async fn stop(&self, cluster: &str, arn: &str, reason: &str) -> Result<(), ApiError> {
        self.ecs(
            "StopTask",
            json!({"cluster": cluster, "task": arn, "reason": reason}),
        )
        .await
        .map(|_| ())
    }

    async fn put_parameter(&self, name: &str, value: &Secret) -> Result<(), ApiError> {
        self.ssm(
            "PutParameter",
            json!({"Name": name, "Value": value.expose(), "Type": "SecureString", "Overwrite": true}),
        )
        .await
        .map(|_| ())
    }

    async fn delete_parameter(&self, name: &str) -> Result<(), ApiError> {
        match self.ssm("DeleteParameter", json!({"Name": name})).await {
            Ok(_) => Ok(()),
            Err(e) if e.code == "ParameterNotFound" => Ok(()),
            Err(e) => Err(e),
        }
    }

    async fn parameters(&self, path: &str) -> Result<Vec<(String, i64)>, ApiError> {
        let mut found = Vec::new();
        let mut next: Option<String> = None;
        for _ in 0..100 {
            let mut body = json!({"Path": path, "Recursive": false, "WithDecryption": false});
            if let Some(t) = &next {
                body["NextToken"] = json!(t);
            }
            let out = self.ssm("GetParametersByPath", body).await?;
            found.extend(array(&out, "Parameters").filter_map(|p| {
                Some((
                    str_of(p, "Name")?,
                    millis_of(p, "LastModifiedDate").unwrap_or_default(),
                ))
            }));
            next = next_token(&out, "NextToken");
            if next.is_none() {
                break;
            }
        }
        Ok(found)
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn run() -> RunTask {
        RunTask {
            cluster: "ci".into(),
            task_definition: "arn:td/runner:3".into(),
            capacity: Capacity::FargateSpot,
            subnets: vec!["subnet-1".into()],
            security_groups: Vec::new(),
            assign_public_ip: true,
            container: "runner".into(),
            environment: vec![("MAYFLY_RUNNER_NAME".into(), Secret::new("r-1"))],
            tags: vec![("Name".into(), "r-1".into())],
            started_by: "ctl".into(),
            client_token: "tok".into(),
        }
    }

    /// The request ECS gets for one task, as its API reference names the fields.
    #[test]
    fn a_run_becomes_a_run_task_request() {
        let body = run_body(&run());
        assert_eq!(
            body,
            json!({
                "cluster": "ci",
                "taskDefinition": "arn:td/runner:3",
                "count": 1,
                "startedBy": "ctl",
                "clientToken": "tok",
                "overrides": {"containerOverrides": [{"name": "runner", "environment": [{"name": "MAYFLY_RUNNER_NAME", "value": "r-1"}]}]},
                "tags": [{"key": "Name", "value": "r-1"}],
                "networkConfiguration": {"awsvpcConfiguration": {"subnets": ["subnet-1"], "assignPublicIp": "ENABLED"}},
                "capacityProviderStrategy": [{"capacityProvider": "FARGATE_SPOT", "weight": 1}],
            })
        );
        let mut ec2 = run();
        ec2.capacity = Capacity::Ec2;
        ec2.subnets.clear();
        let body = run_body(&ec2);
        assert_eq!(body["launchType"], "EC2");
        assert!(body.get("networkConfiguration").is_none());
    }

    #[test]
    fn a_task_reads_with_its_seconds_as_milliseconds() {
        let t = task(&json!({
            "taskArn": "arn:aws:ecs:r:1:task/ci/abc",
            "lastStatus": "RUNNING",
            "desiredStatus": "RUNNING",
            "group": "family:runner-linux",
            "createdAt": 1714564800.123,
            "tags": [{"key": "Name", "value": "r-1"}],
        }));
        assert_eq!(t.created_at, Some(1_714_564_800_123));
        assert_eq!(t.family(), "runner-linux");
        assert_eq!(t.tags.get("Name").map(String::as_str), Some("r-1"));
    }
}
