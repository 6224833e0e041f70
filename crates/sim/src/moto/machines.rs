//! moto's instances and tasks as machines for the virtual runners: a background poll reads the
//! running EC2 instances (their user data) or ECS tasks (the runner credential in their
//! environment, or in the SSM parameter it names), and a runner's `poweroff` terminates the
//! instance (launched to terminate on shutdown) or stops the task (its container exits).
//!
//! A GitLab runner's container gets `CI_SERVER_URL` and `CI_SERVER_TOKEN` (the glrt- token) in
//! its environment, which `gitlab-runner run-single` reads by itself; its command is the task's
//! `command` override, or the image's documented default (`GITLAB_COMMAND`).

use super::wire::{self, Wire};
use crate::runners::{Machine, MachineSource};
use base64::Engine;
use serde_json::{Value, json};
use std::collections::{BTreeMap, HashSet};
use std::sync::{Arc, Mutex};
use std::time::Duration;

/// How often moto is read, in real time.
const POLL: Duration = Duration::from_millis(200);

/// The container contract of mayfly's aws-ecs provider (docs/aws.md).
const JIT_CONFIG: &str = "MAYFLY_JIT_CONFIG";
const JIT_CONFIG_PARAMETER: &str = "MAYFLY_JIT_CONFIG_PARAMETER";
const GITLAB_URL: &str = "CI_SERVER_URL";
const GITLAB_TOKEN: &str = "CI_SERVER_TOKEN";
/// What a GitLab runner image runs when the task names no command.
const GITLAB_COMMAND: &str = "gitlab-runner run-single --executor shell --max-builds 1";
const ECS: &str = "AmazonEC2ContainerServiceV20141113";

#[derive(Clone, Debug)]
enum Kind {
    Ec2,
    Ecs { cluster: String },
}

#[derive(Default)]
struct Cache {
    up: BTreeMap<String, Machine>,
    /// Powered off by their runner: never up again, whatever moto still says.
    gone: HashSet<String>,
}

/// Dropping it stops the poll.
pub struct MotoMachines {
    wire: Wire,
    kind: Kind,
    cache: Arc<Mutex<Cache>>,
    task: tokio::task::JoinHandle<()>,
}

fn lock(m: &Mutex<Cache>) -> std::sync::MutexGuard<'_, Cache> {
    m.lock().unwrap_or_else(|e| e.into_inner())
}

impl MotoMachines {
    /// EC2 instances of `region` at moto's `endpoint`.
    pub fn ec2(endpoint: &str, region: &str) -> Arc<MotoMachines> {
        Self::start(Wire::new(endpoint, region), Kind::Ec2)
    }

    /// ECS tasks of `cluster`.
    pub fn ecs(endpoint: &str, region: &str, cluster: &str) -> Arc<MotoMachines> {
        Self::start(
            Wire::new(endpoint, region),
            Kind::Ecs {
                cluster: cluster.to_string(),
            },
        )
    }

    fn start(wire: Wire, kind: Kind) -> Arc<MotoMachines> {
        let cache = Arc::new(Mutex::new(Cache::default()));
        let task = tokio::spawn({
            let (wire, kind, cache) = (wire.clone(), kind.clone(), cache.clone());
            async move {
                loop {
                    let polled = match &kind {
                        Kind::Ec2 => poll_ec2(&wire, &cache).await,
                        Kind::Ecs { cluster } => poll_ecs(&wire, cluster, &cache).await,
                    };
                    if let Err(e) = polled {
                        tracing::debug!(error = %e, "reading moto failed; trying again");
                    }
                    tokio::time::sleep(POLL).await;
                }
            }
        });
        Arc::new(MotoMachines {
            wire,
            kind,
            cache,
            task,
        })
    }
}

impl Drop for MotoMachines {
    fn drop(&mut self) {
        self.task.abort();
    }
}

impl MachineSource for MotoMachines {
    fn running(&self) -> Vec<Machine> {
        lock(&self.cache).up.values().cloned().collect()
    }

    fn power_off(&self, id: &str) {
        {
            let mut c = lock(&self.cache);
            c.up.remove(id);
            c.gone.insert(id.to_string());
        }
        let (wire, kind, id) = (self.wire.clone(), self.kind.clone(), id.to_string());
        tokio::spawn(async move {
            let done = match kind {
                Kind::Ec2 => wire
                    .ec2("TerminateInstances", &[("InstanceId.1", &id)])
                    .await
                    .map(|_| ()),
                Kind::Ecs { cluster } => wire
                    .json(
                        "ecs",
                        &format!("{ECS}.StopTask"),
                        json!({"cluster": cluster, "task": id, "reason": "the runner exited"}),
                    )
                    .await
                    .map(|_| ()),
            };
            if let Err(e) = done {
                tracing::warn!(machine = %id, error = %e, "moto: power off failed");
            }
        });
    }

    fn is_up(&self, id: &str, boot: u64) -> bool {
        lock(&self.cache).up.get(id).is_some_and(|m| m.boot == boot)
    }
}

async fn poll_ec2(wire: &Wire, cache: &Mutex<Cache>) -> Result<(), String> {
    let xml = wire
        .ec2(
            "DescribeInstances",
            &[
                ("Filter.1.Name", "instance-state-name"),
                ("Filter.1.Value.1", "running"),
            ],
        )
        .await?;
    let mut seen = HashSet::new();
    for i in wire::instances(&xml) {
        let Some(id) = wire::element(i, "instanceId") else {
            continue;
        };
        seen.insert(id.to_string());
        {
            let c = lock(cache);
            if c.up.contains_key(id) || c.gone.contains(id) {
                continue;
            }
        }
        let attr = wire
            .ec2(
                "DescribeInstanceAttribute",
                &[("InstanceId", id), ("Attribute", "userData")],
            )
            .await?;
        let encoded = wire::element(&attr, "userData")
            .and_then(|u| wire::element(u, "value"))
            .unwrap_or_default();
        let user_data = base64::engine::general_purpose::STANDARD
            .decode(encoded.trim())
            .ok()
            .and_then(|b| String::from_utf8(b).ok())
            .unwrap_or_default();
        let name = wire::tag(i, "Name").unwrap_or(id).to_string();
        lock(cache).up.insert(
            id.to_string(),
            Machine {
                id: id.to_string(),
                name,
                user_data,
                boot: 1,
            },
        );
    }
    lock(cache).up.retain(|id, _| seen.contains(id));
    Ok(())
}

/// A GitLab runner container's start as one text: its environment's `CI_SERVER_*` assignments
/// and its command line, which the virtual runner reads as gitlab-runner would.
fn gitlab_user_data(env: &BTreeMap<String, String>, command: &[String]) -> String {
    let quote = |s: &str| format!("'{}'", s.replace('\'', "'\\''"));
    let mut out = String::new();
    for name in [GITLAB_URL, GITLAB_TOKEN, "RUNNER_EXECUTOR"] {
        if let Some(v) = env.get(name) {
            out.push_str(&format!("{name}={}\n", quote(v)));
        }
    }
    if command.is_empty() {
        out.push_str(GITLAB_COMMAND);
    } else {
        let words: Vec<String> = command.iter().map(|w| quote(w)).collect();
        out.push_str(&words.join(" "));
    }
    out.push('\n');
    out
}

fn text(v: &Value, key: &str) -> Option<String> {
    v.get(key)?.as_str().map(str::to_string)
}

async fn poll_ecs(wire: &Wire, cluster: &str, cache: &Mutex<Cache>) -> Result<(), String> {
    let list = wire
        .json(
            "ecs",
            &format!("{ECS}.ListTasks"),
            json!({"cluster": cluster, "desiredStatus": "RUNNING"}),
        )
        .await?;
    let arns: Vec<Value> = list["taskArns"].as_array().cloned().unwrap_or_default();
    let mut seen = HashSet::new();
    if !arns.is_empty() {
        let described = wire
            .json(
                "ecs",
                &format!("{ECS}.DescribeTasks"),
                json!({"cluster": cluster, "tasks": arns, "include": ["TAGS"]}),
            )
            .await?;
        for t in described["tasks"].as_array().into_iter().flatten() {
            let Some(arn) = text(t, "taskArn") else {
                continue;
            };
            if text(t, "lastStatus").as_deref() != Some("RUNNING") {
                continue;
            }
            seen.insert(arn.clone());
            {
                let c = lock(cache);
                if c.up.contains_key(&arn) || c.gone.contains(&arn) {
                    continue;
                }
            }
            let overrides = t["overrides"]["containerOverrides"].as_array();
            let env: BTreeMap<String, String> = overrides
                .into_iter()
                .flatten()
                .flat_map(|c| c["environment"].as_array().cloned().unwrap_or_default())
                .filter_map(|kv| Some((text(&kv, "name")?, text(&kv, "value")?)))
                .collect();
            let command: Vec<String> = overrides
                .into_iter()
                .flatten()
                .flat_map(|c| c["command"].as_array().cloned().unwrap_or_default())
                .filter_map(|w| w.as_str().map(str::to_string))
                .collect();
            let user_data = match (env.get(JIT_CONFIG), env.get(JIT_CONFIG_PARAMETER)) {
                (None, None) if env.contains_key(GITLAB_TOKEN) => gitlab_user_data(&env, &command),
                (Some(jit), _) => jit.clone(),
                (None, Some(parameter)) => {
                    let got = wire
                        .json(
                            "ssm",
                            "AmazonSSM.GetParameter",
                            json!({"Name": parameter, "WithDecryption": true}),
                        )
                        .await?;
                    text(&got["Parameter"], "Value").unwrap_or_default()
                }
                (None, None) => String::new(),
            };
            let name = t["tags"]
                .as_array()
                .into_iter()
                .flatten()
                .find(|kv| kv["key"] == "Name")
                .and_then(|kv| text(kv, "value"))
                .unwrap_or_else(|| arn.clone());
            lock(cache).up.insert(
                arn.clone(),
                Machine {
                    id: arn,
                    name,
                    user_data,
                    boot: 1,
                },
            );
        }
    }
    lock(cache).up.retain(|id, _| seen.contains(id));
    Ok(())
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn a_gitlab_container_reads_as_its_run_single_command() {
        let env: BTreeMap<String, String> = [
            (GITLAB_URL, "https://gitlab.example.com"),
            (GITLAB_TOKEN, "glrt-secret"),
        ]
        .into_iter()
        .map(|(k, v)| (k.to_string(), v.to_string()))
        .collect();
        let run = crate::gitlab::single::parse(&gitlab_user_data(&env, &[])).unwrap();
        assert_eq!((run.token.as_str(), run.max_builds), ("glrt-secret", 1));
        let command: Vec<String> = [
            "gitlab-runner",
            "run-single",
            "--executor",
            "shell",
            "--max-builds",
            "1",
            "--wait-timeout",
            "300",
        ]
        .map(String::from)
        .to_vec();
        let run = crate::gitlab::single::parse(&gitlab_user_data(&env, &command)).unwrap();
        assert_eq!(run.wait_timeout, Some(Duration::from_secs(300)));
        assert_eq!(run.url, "https://gitlab.example.com");
    }
}
