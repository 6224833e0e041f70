//! One world for a job through the executor: the simulator, a project with a custom-executor
//! runner, the executor's file, the ssh wrapper, and the machines' sshds (booted from the fake
//! Hetzner's user data, moto's task environment or moto's instance user data). Shared by the
//! tests and the benchmark.

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
    /// Where machines boot, as the test reads their keys back.
    pub boots: Boots,
    pub dir: tempfile::TempDir,
    pub net: Net,
    pub runner: Runner,
    pub file: PathBuf,
    pub machines: Arc<Mutex<Vec<Sshd>>>,
}

/// Where a world's machines boot: the fake Hetzner (servers of the pool `hz`), or moto at this
/// `host:port`, read directly, not through the executor's endpoint.
#[derive(Clone, Debug)]
pub enum Boots {
    Hetzner,
    /// ECS tasks (the pool `fargate`).
    Ecs(String),
    /// EC2 instances (the pool `ec2`).
    Ec2(String),
}

pub fn addr(url: &str) -> String {
    url.trim_start_matches("http://")
        .trim_end_matches('/')
        .to_string()
}

impl World {
    pub fn new(tags: &[&str]) -> World {
        World::with(tags, String::new(), Boots::Hetzner)
    }

    /// Machines from moto's ECS (`moto` is its URL): the pool `fargate`.
    /// The executor calls `endpoint`; the test looks at the tasks in moto (`watch`) directly.
    pub fn ecs(tags: &[&str], endpoint: &str, watch: &str, subnet: &str, group: &str) -> World {
        let pool = format!(
            "\n[[pool]]\nname = \"fargate\"\ntags = [\"fargate\"]\nprovider = \"aws-ecs\"\n\
             aws = {{ region = \"us-east-1\", endpoint = \"{endpoint}\", cluster = \"ci\", \
             subnets = [\"{subnet}\"], security_groups = [\"{group}\"] }}\n"
        );
        World::with(tags, pool, Boots::Ecs(addr(watch)))
    }

    /// Machines from moto's EC2: the pool `ec2`, t3.micro instances of `net.ami` in its subnet.
    /// The executor calls `endpoint`; the test reads the instances' user data from moto
    /// (`watch`) directly.
    pub fn ec2(tags: &[&str], endpoint: &str, watch: &str, net: &MotoNet) -> World {
        let pool = format!(
            "\n[[pool]]\nname = \"ec2\"\ntags = [\"ec2\"]\nprovider = \"aws-ec2\"\n\
             types = [\"t3.micro\"]\n\
             aws = {{ region = \"us-east-1\", endpoint = \"{endpoint}\", ami = \"{}\", \
             subnets = [\"{}\"], security_groups = [\"{}\"] }}\n",
            net.ami, net.subnet, net.group
        );
        World::with(tags, pool, Boots::Ec2(addr(watch)))
    }

    /// `aws_pool` is TOML appended to the executor's file (empty: the Hetzner pool only).
    fn with(tags: &[&str], aws_pool: String, boots: Boots) -> World {
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
        let text = executor_file(dir.path(), &sim.hetzner) + &aws_pool;
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
        if !matches!(boots, Boots::Hetzner) {
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
            boots,
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

    /// The machine of `job` boots when the provider holds it (the fake Hetzner: once it says it
    /// runs, after its boot delay): an sshd with the keys from its user data or its task's
    /// environment, and the ssh wrapper pointed at it.
    pub fn boot_when_created(&self, job: u64) {
        let (machines, net_dir) = (self.machines.clone(), self.net.dir.clone());
        let sim_servers = self.sim_servers_reader();
        let boots = self.boots.clone();
        let sshd_dir = self.dir.path().join(format!("machine-{job}"));
        std::thread::spawn(move || {
            let name = format!("mayfly-gl-{job}");
            let until = Instant::now() + Duration::from_secs(60);
            while Instant::now() < until {
                let keys = match &boots {
                    Boots::Hetzner => sim_servers()
                        .into_iter()
                        .find(|s| s["name"] == name.as_str() && s["status"] == "running")
                        .map(|s| machine::keys_from_cloud_config(s["user_data"].as_str().unwrap())),
                    Boots::Ecs(moto) => machine::keys_from_ecs_task(moto, &name),
                    Boots::Ec2(moto) => machine::keys_from_ec2_instance(moto, &name),
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
address_poll_secs = 0.2
address_poll_max_secs = 1

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

/// What the tests' AWS pools need of moto: an AMI it knows, and the default VPC's first subnet
/// and security group.
pub struct MotoNet {
    pub ami: String,
    pub subnet: String,
    pub group: String,
}

/// A fresh moto.
async fn moto() -> mayfly_sim::moto::Moto {
    let python = std::env::var("MAYFLY_PYTHON")
        .ok()
        .filter(|p| !p.is_empty())
        .expect("MAYFLY_PYTHON is not set: run `export MAYFLY_PYTHON=$(scripts/py-env)` first");
    let moto = mayfly_sim::moto::Moto::start(python.as_ref())
        .await
        .unwrap();
    moto.reset().await.unwrap();
    moto
}

async fn moto_net(aws: &mayfly_provider_aws::wire::Aws) -> MotoNet {
    use mayfly_provider_aws::wire;
    let ec2 = |action: &'static str, params: &[(&str, &str)]| {
        let mut p = wire::Params::new();
        for (k, v) in params {
            p.set(*k, v);
        }
        async move {
            aws.query(wire::EC2, "2016-11-15", action, &p)
                .await
                .unwrap_or_else(|e| panic!("{action}: {e}"))
        }
    };
    let images = ec2("DescribeImages", &[("Owner.1", "amazon")]).await;
    let ami = images
        .items("imagesSet")
        .find(|i| i.value("rootDeviceName").is_some())
        .and_then(|i| i.value("imageId"))
        .expect("moto has an AMI with a root device");
    let subnet = ec2("DescribeSubnets", &[])
        .await
        .items("subnetSet")
        .next()
        .and_then(|s| s.value("subnetId"))
        .unwrap();
    let group = ec2("DescribeSecurityGroups", &[])
        .await
        .items("securityGroupInfo")
        .next()
        .and_then(|g| g.value("groupId"))
        .unwrap();
    MotoNet { ami, subnet, group }
}

/// moto for EC2 pools: its AMI, and the default VPC's subnet and security group.
pub async fn moto_ec2() -> (mayfly_sim::moto::Moto, MotoNet) {
    let moto = moto().await;
    let aws = mayfly_provider_aws::AwsSettings::emulator(moto.url(), "us-east-1")
        .connect()
        .await
        .unwrap();
    let net = moto_net(&aws).await;
    (moto, net)
}

/// moto with manual task progression, a cluster `ci`, a Fargate task definition for the tag
/// `fargate` (its container sshd), and the default VPC's subnet and security group.
pub async fn moto_ecs() -> (mayfly_sim::moto::Moto, String, String) {
    use mayfly_provider_aws::wire;
    let moto = moto().await;
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
    let net = moto_net(&aws).await;
    (moto, net.subnet, net.group)
}
