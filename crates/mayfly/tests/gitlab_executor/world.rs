//! One world for a job through the executor: the simulator, a project with a custom-executor
//! runner, the executor's file, the ssh wrapper, and the machines' sshds (booted from the fake
//! Hetzner's user data or moto's task environment). Shared by the tests and the benchmark.

use super::http;
use super::machine::{self, Net, Sshd};
use super::runner::{Hooks, Outcome, Runner};
use super::support;
use super::support::sim::SimServe;
use serde_json::{Value, json};
use std::collections::BTreeMap;
use std::path::{Path, PathBuf};
use std::sync::{Arc, Mutex};
use std::time::{Duration, Instant};

pub const PAT: &str = "sim-gitlab-token";

/// One world: the simulator, a project with a custom-executor runner, the executor's file, the
/// ssh wrapper, and the machines' sshds.
pub struct World {
    pub sim: SimServe,
    /// Where machines boot: the fake Hetzner, or moto's ECS at this `host:port`.
    pub moto: Option<String>,
    pub dir: tempfile::TempDir,
    pub net: Net,
    pub runner: Runner,
    pub file: PathBuf,
    pub machines: Arc<Mutex<Vec<Sshd>>>,
}

pub fn addr(url: &str) -> String {
    url.trim_start_matches("http://")
        .trim_end_matches('/')
        .to_string()
}

impl World {
    pub fn new(tags: &[&str]) -> World {
        World::with(tags, None)
    }

    /// Machines from moto's ECS (`moto` is its URL): the pool `fargate`.
    /// The executor calls `endpoint`; the test looks at the tasks in moto (`watch`) directly.
    pub fn ecs(tags: &[&str], endpoint: &str, watch: &str, subnet: &str, group: &str) -> World {
        let mut w = World::with(tags, Some((endpoint, subnet, group)));
        w.moto = Some(addr(watch));
        w
    }

    pub fn with(tags: &[&str], ecs: Option<(&str, &str, &str)>) -> World {
        let sim = SimServe::start(&[]);
        sim.faults(json!({"hetzner": {"boot_delay_secs": 0.2, "action_delay_secs": 0.2}}));
        let dir = tempfile::tempdir().unwrap();
        let project = sim.post("gitlab/projects", &json!({"path": "acme/app"}));
        let gitlab = addr(&sim.gitlab);
        let created = http::call(
            &gitlab,
            "POST",
            "/api/v4/user/runners",
            Some(
                &json!({"runner_type": "project_type", "project_id": project["id"],
                        "tag_list": tags, "description": "custom executor"})
                .to_string(),
            ),
            &format!("PRIVATE-TOKEN: {PAT}\r\n"),
        );
        assert_eq!(created.status, 201, "{}", created.body);
        let token = serde_json::from_str::<Value>(&created.body).unwrap()["token"]
            .as_str()
            .unwrap()
            .to_string();
        let net = Net::new(&dir.path().join("net"));
        let file = dir.path().join("mayfly-executor.toml");
        let mut text = executor_file(dir.path(), &sim.hetzner);
        if let Some((moto, subnet, group)) = ecs {
            text.push_str(&format!(
                "\n[[pool]]\nname = \"fargate\"\ntags = [\"fargate\"]\nprovider = \"aws-ecs\"\n\
                 aws = {{ region = \"us-east-1\", endpoint = \"{moto}\", cluster = \"ci\", \
                 subnets = [\"{subnet}\"], security_groups = [\"{group}\"] }}\n"
            ));
        }
        std::fs::write(&file, text).unwrap();
        let mut env = vec![
            ("PATH".to_string(), support::path()),
            ("HOME".to_string(), dir.path().display().to_string()),
            (
                "MAYFLY_SSH".to_string(),
                net.wrapper().display().to_string(),
            ),
            (
                "MAYFLY_GITLAB_EXECUTOR_FILE".to_string(),
                file.display().to_string(),
            ),
        ];
        if ecs.is_some() {
            for (k, v) in [
                ("AWS_ACCESS_KEY_ID", "testing"),
                ("AWS_SECRET_ACCESS_KEY", "testing"),
                ("AWS_REGION", "us-east-1"),
            ] {
                env.push((k.to_string(), v.to_string()));
            }
        }
        let runner = Runner {
            gitlab,
            token,
            tags: tags.iter().map(|t| t.to_string()).collect(),
            env,
            work: dir.path().join("runner"),
            exec_timeout: Duration::from_secs(60),
            cleanup_timeout: Duration::from_secs(30),
            graceful_kill: Duration::from_secs(2),
            scripts: BTreeMap::new(),
            cleanup_env: Vec::new(),
        };
        World {
            sim,
            moto: ecs.map(|(m, _, _)| addr(m)),
            dir,
            net,
            runner,
            file,
            machines: Arc::default(),
        }
    }

    pub fn pipeline(&self, tags: &[&str]) {
        self.sim.post(
            "gitlab/pipelines",
            &json!({"project": "acme/app", "jobs": 1, "tags": tags, "duration_secs": 0.2}),
        );
    }

    /// The machine of `job` boots when the fake Hetzner says it runs (after its boot delay): an sshd with the keys from
    /// its user data, and the ssh wrapper pointed at it.
    pub fn boot_when_created(&self, job: u64) {
        let (machines, net_dir) = (self.machines.clone(), self.net.dir.clone());
        let sim_servers = self.sim_servers_reader();
        let moto = self.moto.clone();
        let sshd_dir = self.dir.path().join(format!("machine-{job}"));
        std::thread::spawn(move || {
            let name = format!("mayfly-gl-{job}");
            let until = Instant::now() + Duration::from_secs(60);
            while Instant::now() < until {
                let keys = match &moto {
                    None => sim_servers()
                        .into_iter()
                        .find(|s| s["name"] == name.as_str() && s["status"] == "running")
                        .map(|s| machine::keys_from_cloud_config(s["user_data"].as_str().unwrap())),
                    Some(moto) => machine::keys_from_ecs_task(moto, &name),
                };
                if let Some(keys) = keys {
                    let sshd = Sshd::start(&sshd_dir, &keys);
                    std::fs::write(net_dir.join("port"), sshd.port.to_string()).unwrap();
                    machines.lock().unwrap().push(sshd);
                    return;
                }
                std::thread::sleep(Duration::from_millis(50));
            }
        });
    }

    /// A reader of `/_sim/servers` usable from another thread.
    pub fn sim_servers_reader(&self) -> impl Fn() -> Vec<Value> + Send + 'static {
        let control = self.sim_control();
        move || {
            let (status, body) = support::sim::request(&control, "GET", "/_sim/servers", None);
            assert_eq!(status, 200);
            serde_json::from_str::<Value>(&body).unwrap()["servers"]
                .as_array()
                .cloned()
                .unwrap_or_default()
        }
    }

    pub fn sim_control(&self) -> String {
        // The control API shares the fake GitHub's listener.
        addr(&self.sim.github)
    }

    pub fn servers(&self) -> Vec<Value> {
        self.sim.servers()["servers"]
            .as_array()
            .cloned()
            .unwrap_or_default()
    }

    pub fn gitlab_job(&self, id: u64) -> Value {
        let jobs = self.sim.get("gitlab/jobs");
        jobs.as_array()
            .or_else(|| jobs["jobs"].as_array())
            .unwrap()
            .iter()
            .find(|j| j["id"] == id)
            .cloned()
            .unwrap_or_else(|| panic!("job {id} in {jobs}"))
    }

    pub fn job(&self, hooks: Hooks) -> Outcome {
        // The last job's machine is gone.
        self.machines.lock().unwrap().clear();
        let _ = std::fs::remove_file(self.net.dir.join("port"));
        let job = self.runner.request_job(Duration::from_secs(20));
        let id = job["id"].as_u64().unwrap();
        self.boot_when_created(id);
        self.runner.run_job(&job, hooks)
    }

    pub fn executor(&self, args: &[&str]) -> (i32, String, String) {
        let env: Vec<(&str, &str)> = self
            .runner
            .env
            .iter()
            .filter(|(k, _)| k.starts_with("AWS_"))
            .map(|(k, v)| (k.as_str(), v.as_str()))
            .collect();
        let mut cmd = support::mayfly(self.dir.path(), &env);
        cmd.arg("gitlab-executor")
            .args(args)
            .env("MAYFLY_GITLAB_EXECUTOR_FILE", &self.file);
        support::output(&mut cmd)
    }

    /// What the executor's store and state directory still hold.
    pub fn leftovers(&self) -> Vec<String> {
        let jobs = self.dir.path().join("state/jobs");
        std::fs::read_dir(&jobs)
            .map(|d| {
                d.map(|e| e.unwrap().file_name().to_string_lossy().into_owned())
                    .collect()
            })
            .unwrap_or_default()
    }

    pub fn marker(&self, name: &str) -> PathBuf {
        self.dir.path().join(name)
    }
}

fn executor_file(dir: &Path, hetzner: &str) -> String {
    format!(
        r#"state_dir = "{state}"
builds_dir = "{state}/builds"
cache_dir = "{state}/cache"

[ssh]
user = "{user}"
connect_timeout_secs = 2
ready_timeout_secs = 30
retry_for_secs = 20
alive_interval_secs = 1
alive_count = 3
runs_dir = "{runs}"

[[pool]]
name = "hz"
tags = ["hetzner"]
provider = "hetzner"
types = ["cx23"]
locations = ["fsn1"]
image = "x86:system:ubuntu-24.04"
hetzner = {{ token = "{token}", endpoint = "{hetzner}" }}
"#,
        state = dir.join("state").display(),
        runs = dir.join("runs").display(),
        user = machine::user(),
        token = support::sim::HETZNER_TOKEN,
    )
}

/// Hetzner API calls so far, `METHOD route` → count, as the fake counted them.
pub fn hetzner_calls(w: &World) -> BTreeMap<String, u64> {
    let stats = w.sim.stats();
    stats["api_calls"]["by_endpoint"]
        .as_array()
        .into_iter()
        .flatten()
        .filter(|r| r["service"] == "hetzner")
        .map(|r| {
            (
                format!(
                    "{} {}",
                    r["method"].as_str().unwrap(),
                    r["route"].as_str().unwrap()
                ),
                r["calls"].as_u64().unwrap(),
            )
        })
        .collect()
}

/// moto with manual task progression, a cluster `ci`, a Fargate task definition for the tag
/// `fargate` (its container sshd), and the default VPC's subnet and security group.
pub async fn moto_ecs() -> (mayfly_sim::moto::Moto, String, String) {
    use mayfly_provider_aws::wire;
    let python = std::env::var("MAYFLY_PYTHON")
        .ok()
        .filter(|p| !p.is_empty())
        .expect("MAYFLY_PYTHON is not set: run `export MAYFLY_PYTHON=$(scripts/py-env)` first");
    let moto = mayfly_sim::moto::Moto::start(python.as_ref())
        .await
        .unwrap();
    moto.reset().await.unwrap();
    moto.manual_ecs_tasks().await.unwrap();
    let aws = mayfly_provider_aws::AwsSettings::emulator(moto.url(), "us-east-1")
        .connect()
        .await
        .unwrap();
    let ecs = |op: &'static str, body: Value| {
        let aws = aws.clone();
        async move {
            aws.json(
                wire::ECS,
                &format!("AmazonEC2ContainerServiceV20141113.{op}"),
                &body,
            )
            .await
            .unwrap_or_else(|e| panic!("{op}: {e}"))
        }
    };
    ecs("CreateCluster", json!({"clusterName": "ci"})).await;
    ecs(
        "RegisterTaskDefinition",
        json!({
            "family": "gitlab-sshd",
            "requiresCompatibilities": ["FARGATE"],
            "networkMode": "awsvpc",
            "cpu": "1024",
            "memory": "2048",
            "containerDefinitions": [{"name": "ci", "image": "registry.example.com/ci-sshd:1", "memory": 2048}],
            "tags": [{"key": "mayfly-labels", "value": "fargate"}],
        }),
    )
    .await;
    let mut p = wire::Params::new();
    let subnets = aws
        .query(wire::EC2, "2016-11-15", "DescribeSubnets", &p)
        .await
        .unwrap();
    let subnet = subnets
        .items("subnetSet")
        .next()
        .and_then(|s| s.value("subnetId"))
        .unwrap();
    p = wire::Params::new();
    let groups = aws
        .query(wire::EC2, "2016-11-15", "DescribeSecurityGroups", &p)
        .await
        .unwrap();
    let group = groups
        .items("securityGroupInfo")
        .next()
        .and_then(|g| g.value("groupId"))
        .unwrap();
    (moto, subnet, group)
}
