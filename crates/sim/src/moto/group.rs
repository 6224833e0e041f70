//! One Auto Scaling group's instances in moto as machines of long-lived runners: each InService
//! instance boots a runner that registers itself with a registration token, named after the
//! instance id, and serves job after job until it is drained (`mayfly-draining`) and retired.

use super::wire::{self, Wire};
use crate::runners::{Machine, MachineSource};
use std::collections::{BTreeMap, HashSet};
use std::sync::{Arc, Mutex};
use std::time::Duration;

/// How often moto is read, in real time.
const POLL: Duration = Duration::from_millis(200);

/// The instance tag of a draining runner (mayfly's aws-asg contract, docs/aws.md).
const DRAINING_TAG: &str = "mayfly-draining";

/// Where the group's runners register, as the image's boot script would: a registration token
/// from the forge's API for every instance that boots.
#[derive(Clone, Debug)]
pub struct GroupRegistration {
    /// The GitHub API base URL (the fake's).
    pub api_url: String,
    /// `owner/name` of the repository the runners serve.
    pub repo: String,
    /// A token allowed to make registration tokens.
    pub token: String,
    /// The runners' custom labels (`self-hosted` is added by the forge).
    pub labels: Vec<String>,
}

#[derive(Default)]
struct Cache {
    up: BTreeMap<String, Machine>,
    draining: HashSet<String>,
    /// Powered off by their runner: never up again, whatever moto still says.
    gone: HashSet<String>,
}

/// Dropping it stops the poll.
pub struct MotoGroup {
    wire: Wire,
    cache: Arc<Mutex<Cache>>,
    task: tokio::task::JoinHandle<()>,
}

fn lock(m: &Mutex<Cache>) -> std::sync::MutexGuard<'_, Cache> {
    m.lock().unwrap_or_else(|e| e.into_inner())
}

impl MotoGroup {
    /// The instances of Auto Scaling group `group` of `region` at moto's `endpoint`.
    pub fn start(
        endpoint: &str,
        region: &str,
        group: &str,
        registration: GroupRegistration,
    ) -> Arc<MotoGroup> {
        let wire = Wire::new(endpoint, region);
        let cache = Arc::new(Mutex::new(Cache::default()));
        let http = reqwest::Client::builder()
            .timeout(Duration::from_secs(10))
            .build()
            .unwrap_or_default();
        let task = tokio::spawn({
            let (wire, cache, group) = (wire.clone(), cache.clone(), group.to_string());
            async move {
                loop {
                    if let Err(e) = poll(&wire, &group, &http, &registration, &cache).await {
                        tracing::debug!(error = %e, "reading moto's group failed; trying again");
                    }
                    tokio::time::sleep(POLL).await;
                }
            }
        });
        Arc::new(MotoGroup { wire, cache, task })
    }
}

impl Drop for MotoGroup {
    fn drop(&mut self) {
        self.task.abort();
    }
}

impl MachineSource for MotoGroup {
    fn running(&self) -> Vec<Machine> {
        lock(&self.cache).up.values().cloned().collect()
    }

    /// The OS powered off (its runner could not register): the instance is terminated, as one
    /// launched to terminate on shutdown; the group replaces it.
    fn power_off(&self, id: &str) {
        {
            let mut c = lock(&self.cache);
            c.up.remove(id);
            c.gone.insert(id.to_string());
        }
        let (wire, id) = (self.wire.clone(), id.to_string());
        tokio::spawn(async move {
            if let Err(e) = wire
                .ec2("TerminateInstances", &[("InstanceId.1", &id)])
                .await
            {
                tracing::warn!(machine = %id, error = %e, "moto: power off failed");
            }
        });
    }

    fn is_up(&self, id: &str, boot: u64) -> bool {
        lock(&self.cache).up.get(id).is_some_and(|m| m.boot == boot)
    }

    fn long_lived(&self) -> bool {
        true
    }

    fn draining(&self, id: &str) -> bool {
        lock(&self.cache).draining.contains(id)
    }
}

/// The ids of the group's InService instances in a DescribeAutoScalingGroups answer.
fn in_service(xml: &str) -> Vec<String> {
    let Some(instances) = wire::element(xml, "Instances") else {
        return Vec::new();
    };
    wire::split_at(instances, "<member>")
        .into_iter()
        .filter(|m| wire::element(m, "LifecycleState").is_none_or(|s| s == "InService"))
        .filter_map(|m| wire::element(m, "InstanceId").map(str::to_string))
        .collect()
}

/// The boot script's registration: a fresh registration token from the forge.
async fn registration_token(
    http: &reqwest::Client,
    r: &GroupRegistration,
) -> Result<String, String> {
    let url = format!(
        "{}/repos/{}/actions/runners/registration-token",
        r.api_url.trim_end_matches('/'),
        r.repo
    );
    let answer = http
        .post(&url)
        .bearer_auth(&r.token)
        .header("User-Agent", "mayfly-sim")
        .send()
        .await
        .map_err(|e| format!("registration token: {e}"))?;
    let status = answer.status();
    if !status.is_success() {
        return Err(format!("registration token: status {status}"));
    }
    let body: serde_json::Value = answer
        .json()
        .await
        .map_err(|e| format!("registration token: {e}"))?;
    body["token"]
        .as_str()
        .map(str::to_string)
        .ok_or_else(|| "registration token: no token in the answer".to_string())
}

async fn poll(
    wire: &Wire,
    group: &str,
    http: &reqwest::Client,
    registration: &GroupRegistration,
    cache: &Mutex<Cache>,
) -> Result<(), String> {
    let xml = wire
        .query(
            "autoscaling",
            "2011-01-01",
            "DescribeAutoScalingGroups",
            &[("AutoScalingGroupNames.member.1", group)],
        )
        .await?;
    let members = in_service(&xml);
    let mut running = Vec::new();
    let mut draining = HashSet::new();
    if !members.is_empty() {
        let mut params = vec![
            (
                "Filter.1.Name".to_string(),
                "instance-state-name".to_string(),
            ),
            ("Filter.1.Value.1".to_string(), "running".to_string()),
            ("Filter.2.Name".to_string(), "instance-id".to_string()),
        ];
        for (n, id) in members.iter().enumerate() {
            params.push((format!("Filter.2.Value.{}", n + 1), id.clone()));
        }
        let params: Vec<(&str, &str)> = params
            .iter()
            .map(|(k, v)| (k.as_str(), v.as_str()))
            .collect();
        let xml = wire.ec2("DescribeInstances", &params).await?;
        for i in wire::instances(&xml) {
            let Some(id) = wire::element(i, "instanceId") else {
                continue;
            };
            if wire::tag(i, DRAINING_TAG).is_some() {
                draining.insert(id.to_string());
            }
            running.push(id.to_string());
        }
    }
    for id in &running {
        {
            let c = lock(cache);
            if c.up.contains_key(id) || c.gone.contains(id) {
                continue;
            }
        }
        let token = registration_token(http, registration).await?;
        let user_data = format!(
            "./config.sh --unattended --disableupdate --url https://github.com/{} --token {token} \
             --name {id} --labels {}\n./run.sh\n",
            registration.repo,
            registration.labels.join(",")
        );
        lock(cache).up.insert(
            id.clone(),
            Machine {
                id: id.clone(),
                name: id.clone(),
                user_data,
                boot: 1,
            },
        );
    }
    let mut c = lock(cache);
    c.up.retain(|id, _| running.contains(id));
    c.draining = draining;
    Ok(())
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn in_service_instances_are_read_from_the_group() {
        let xml = "<DescribeAutoScalingGroupsResult><AutoScalingGroups><member>\
            <AutoScalingGroupName>g</AutoScalingGroupName><Instances>\
            <member><HealthStatus>Healthy</HealthStatus><InstanceId>i-1</InstanceId>\
            <LaunchTemplate><LaunchTemplateId>lt-1</LaunchTemplateId></LaunchTemplate>\
            <LifecycleState>InService</LifecycleState></member>\
            <member><InstanceId>i-2</InstanceId><LifecycleState>Terminating</LifecycleState></member>\
            <member><LifecycleState>InService</LifecycleState><InstanceId>i-3</InstanceId></member>\
            </Instances></member></AutoScalingGroups></DescribeAutoScalingGroupsResult>";
        assert_eq!(in_service(xml), ["i-1", "i-3"]);
        assert!(in_service("<AutoScalingGroups/>").is_empty());
    }
}
