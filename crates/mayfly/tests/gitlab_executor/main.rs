//! `mayfly gitlab-executor` driven through whole jobs by a harness playing gitlab-runner,
//! against the fake GitLab and the simulator's Hetzner (and moto's ECS), with an sshd on
//! loopback standing in for each machine. Faults: SSH refused at first, a connection dropped
//! mid-script, a refused create, a killed cleanup, a job cancelled while it runs.

#[path = "../support/mod.rs"]
mod support;

mod http;
mod machine;
mod proxy;
mod runner;

use machine::{Net, Sshd};
use runner::{Hooks, Outcome, Runner};
use serde_json::{Value, json};
use std::collections::BTreeMap;
use std::path::{Path, PathBuf};
use std::sync::{Arc, Mutex};
use std::time::{Duration, Instant};
use support::sim::SimServe;

const PAT: &str = "sim-gitlab-token";

/// One world: the simulator, a project with a custom-executor runner, the executor's file, the
/// ssh wrapper, and the machines' sshds.
struct World {
    sim: SimServe,
    /// Where machines boot: the fake Hetzner, or moto's ECS at this `host:port`.
    moto: Option<String>,
    dir: tempfile::TempDir,
    net: Net,
    runner: Runner,
    file: PathBuf,
    machines: Arc<Mutex<Vec<Sshd>>>,
}

fn addr(url: &str) -> String {
    url.trim_start_matches("http://")
        .trim_end_matches('/')
        .to_string()
}

impl World {
    fn new(tags: &[&str]) -> World {
        World::with(tags, None)
    }

    /// Machines from moto's ECS (`moto` is its URL): the pool `fargate`.
    /// The executor calls `endpoint`; the test looks at the tasks in moto (`watch`) directly.
    fn ecs(tags: &[&str], endpoint: &str, watch: &str, subnet: &str, group: &str) -> World {
        let mut w = World::with(tags, Some((endpoint, subnet, group)));
        w.moto = Some(addr(watch));
        w
    }

    fn with(tags: &[&str], ecs: Option<(&str, &str, &str)>) -> World {
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

    fn pipeline(&self, tags: &[&str]) {
        self.sim.post(
            "gitlab/pipelines",
            &json!({"project": "acme/app", "jobs": 1, "tags": tags, "duration_secs": 0.2}),
        );
    }

    /// The machine of `job` boots when the fake Hetzner holds it: an sshd with the keys from
    /// its user data, and the ssh wrapper pointed at it.
    fn boot_when_created(&self, job: u64) {
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
                        .find(|s| s["name"] == name.as_str())
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
    fn sim_servers_reader(&self) -> impl Fn() -> Vec<Value> + Send + 'static {
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

    fn sim_control(&self) -> String {
        // The control API shares the fake GitHub's listener.
        addr(&self.sim.github)
    }

    fn servers(&self) -> Vec<Value> {
        self.sim.servers()["servers"]
            .as_array()
            .cloned()
            .unwrap_or_default()
    }

    fn gitlab_job(&self, id: u64) -> Value {
        let jobs = self.sim.get("gitlab/jobs");
        jobs.as_array()
            .or_else(|| jobs["jobs"].as_array())
            .unwrap()
            .iter()
            .find(|j| j["id"] == id)
            .cloned()
            .unwrap_or_else(|| panic!("job {id} in {jobs}"))
    }

    fn job(&self, hooks: Hooks) -> Outcome {
        let job = self.runner.request_job(Duration::from_secs(20));
        let id = job["id"].as_u64().unwrap();
        self.boot_when_created(id);
        self.runner.run_job(&job, hooks)
    }

    fn executor(&self, args: &[&str]) -> (i32, String, String) {
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
    fn leftovers(&self) -> Vec<String> {
        let jobs = self.dir.path().join("state/jobs");
        std::fs::read_dir(&jobs)
            .map(|d| {
                d.map(|e| e.unwrap().file_name().to_string_lossy().into_owned())
                    .collect()
            })
            .unwrap_or_default()
    }

    fn marker(&self, name: &str) -> PathBuf {
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
fn hetzner_calls(w: &World) -> BTreeMap<String, u64> {
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

fn stage_names(o: &Outcome) -> Vec<&str> {
    o.stages.iter().map(|(s, _)| s.as_str()).collect()
}

fn assert_nothing_left(w: &World) {
    assert!(w.servers().is_empty(), "servers left: {:?}", w.servers());
    assert!(
        w.leftovers().is_empty(),
        "job directories left: {:?}",
        w.leftovers()
    );
    let (code, out, err) = w.executor(&["reap"]);
    assert_eq!(code, 0, "{out}{err}");
    assert!(
        out.contains("0 deleted, 0 kept, 0 errors"),
        "the store still knows a machine: {out}"
    );
}

#[test]
fn a_job_runs_whole_on_hetzner() {
    let mut w = World::new(&["hetzner"]);
    w.pipeline(&["hetzner"]);
    let count = w.marker("step-runs");
    w.runner.scripts.insert(
        "step_script".into(),
        format!(
            "echo \"hello from $(hostname)\"; echo run >> '{}'",
            count.display()
        ),
    );
    let o = w.job(Hooks::default());
    assert_eq!(o.state, "success", "{o:#?}");
    assert_eq!(
        stage_names(&o),
        [
            "prepare_script",
            "get_sources",
            "restore_cache",
            "download_artifacts",
            "step_script",
            "after_script",
            "archive_cache",
            "upload_artifacts_on_success",
            "cleanup_file_variables"
        ]
    );
    assert_eq!(o.prepare_attempts, 1);
    assert_eq!(o.cleanup_code, Some(0), "{}", o.log);
    assert!(
        o.log.contains("hello from"),
        "the script's output is streamed: {}",
        o.log
    );
    assert!(o.log.contains("with its pinned host key"), "{}", o.log);
    assert_eq!(std::fs::read_to_string(&count).unwrap(), "run\n");
    assert_eq!(w.gitlab_job(o.job)["status"], "success");
    // The create, the delete, and the server types a fresh process reads for billing.
    let calls = hetzner_calls(&w);
    let want: BTreeMap<String, u64> = [
        "GET /v1/server_types",
        "POST /v1/servers",
        "DELETE /v1/servers/{id}",
    ]
    .into_iter()
    .map(|c| (c.to_string(), 1))
    .collect();
    assert_eq!(calls, want, "Hetzner calls of one job");
    // Secrets stay out of the job log.
    assert!(!o.log.contains("PRIVATE KEY") && !o.log.contains(support::sim::HETZNER_TOKEN));
    assert_nothing_left(&w);
}

#[test]
fn ssh_refused_at_first_is_retried_and_the_job_passes() {
    let mut w = World::new(&["hetzner"]);
    w.pipeline(&["hetzner"]);
    let count = w.marker("step-runs");
    w.runner.scripts.insert(
        "prepare_script".into(),
        format!("echo run >> '{}'", count.display()),
    );
    let net_dir = w.net.dir.clone();
    let hooks = Hooks {
        prepared: Some(Box::new(move || {
            std::fs::write(net_dir.join("refuse"), "3").unwrap()
        })),
        ..Hooks::default()
    };
    let before = w.net.connections();
    let o = w.job(hooks);
    assert_eq!(o.state, "success", "{o:#?}");
    let after = w.net.connections();
    assert!(
        after.1 - before.1 >= 3,
        "3 refused connections: {before:?} → {after:?}"
    );
    assert!(
        o.log.contains("failed before the script started"),
        "{}",
        o.log
    );
    assert_eq!(
        std::fs::read_to_string(&count).unwrap(),
        "run\n",
        "prepare_script ran once"
    );
    assert_nothing_left(&w);
}

#[test]
fn a_connection_dropped_mid_script_is_a_system_failure_and_not_run_again() {
    let mut w = World::new(&["hetzner"]);
    w.pipeline(&["hetzner"]);
    let count = w.marker("step-runs");
    // The machine's side of the connection dies while the script runs.
    w.runner.scripts.insert(
        "step_script".into(),
        format!("echo run >> '{}'; kill -9 $PPID; sleep 30", count.display()),
    );
    let o = w.job(Hooks::default());
    assert_eq!(o.state, "failed");
    assert_eq!(
        o.failure_reason.as_deref(),
        Some("runner_system_failure"),
        "{o:#?}"
    );
    assert_eq!(
        o.stages.last().unwrap(),
        &("step_script".to_string(), Some(2))
    );
    // Either the marker came before the drop, or it was lost with the connection and the
    // retry found the invocation claimed on the machine: never a second run.
    assert!(
        o.log.contains("not running it again") || o.log.contains("not running it twice"),
        "{}",
        o.log
    );
    assert_eq!(
        std::fs::read_to_string(&count).unwrap(),
        "run\n",
        "the script ran once"
    );
    assert_eq!(o.cleanup_code, Some(0));
    assert_nothing_left(&w);
}

#[test]
fn a_script_failure_is_a_build_failure_with_its_exit_code() {
    let mut w = World::new(&["hetzner"]);
    w.pipeline(&["hetzner"]);
    w.runner
        .scripts
        .insert("step_script".into(), "echo failing; exit 3".into());
    let o = w.job(Hooks::default());
    assert_eq!(
        o.failure_reason.as_deref(),
        Some("script_failure"),
        "{o:#?}"
    );
    assert!(stage_names(&o).ends_with(&[
        "step_script",
        "after_script",
        "archive_cache_on_failure",
        "upload_artifacts_on_failure",
        "cleanup_file_variables"
    ]));
    let code =
        std::fs::read_to_string(w.runner.work.join(format!("job-{}/exit_code", o.job))).unwrap();
    assert_eq!(
        code, "3",
        "BUILD_EXIT_CODE_FILE holds the script's own code"
    );
    assert_nothing_left(&w);
}

#[test]
fn a_refused_create_is_a_system_failure_and_leaves_nothing() {
    let w = World::new(&["hetzner"]);
    w.sim.faults(json!({"hetzner": {"server_quota": 0}}));
    w.pipeline(&["hetzner"]);
    let o = w.job(Hooks::default());
    assert_eq!(
        o.failure_reason.as_deref(),
        Some("runner_system_failure"),
        "{o:#?}"
    );
    assert_eq!(
        o.prepare_attempts, 3,
        "gitlab-runner tries prepare three times"
    );
    assert!(o.stages.is_empty());
    assert!(o.log.contains("did not create mayfly-gl-"), "{}", o.log);
    assert_eq!(o.cleanup_code, Some(0), "{}", o.log);
    assert_nothing_left(&w);
}

#[test]
fn a_killed_cleanup_leaves_a_machine_the_reaper_deletes() {
    let mut w = World::new(&["hetzner"]);
    w.pipeline(&["hetzner"]);
    // cleanup's provider API hangs (a listener that never answers): gitlab-runner kills it.
    let hang = std::net::TcpListener::bind("127.0.0.1:0").unwrap();
    let hung = w.dir.path().join("hung.toml");
    let text = std::fs::read_to_string(&w.file).unwrap().replace(
        &w.sim.hetzner,
        &format!("http://{}/v1", hang.local_addr().unwrap()),
    );
    std::fs::write(&hung, text).unwrap();
    w.runner.cleanup_env = vec![(
        "MAYFLY_GITLAB_EXECUTOR_FILE".into(),
        hung.display().to_string(),
    )];
    w.runner.cleanup_timeout = Duration::from_secs(3);
    w.runner.graceful_kill = Duration::from_secs(1);
    let o = w.job(Hooks::default());
    assert_eq!(o.state, "success", "{o:#?}");
    assert_ne!(o.cleanup_code, Some(0), "cleanup was cut off: {}", o.log);
    assert_eq!(w.servers().len(), 1, "the machine outlived its cleanup");
    let (code, out, err) = w.executor(&["reap"]);
    assert_eq!(code, 0, "{out}{err}");
    assert!(
        out.contains(&format!("deleted mayfly-gl-{}", o.job)),
        "{out}"
    );
    drop(hang);
    assert_nothing_left(&w);
}

#[test]
fn a_job_cancelled_during_run_stops_and_cleans_up() {
    let mut w = World::new(&["hetzner"]);
    w.pipeline(&["hetzner"]);
    let started = w.marker("started");
    w.runner.scripts.insert(
        "prepare_script".into(),
        format!("echo started > '{}'; sleep 60", started.display()),
    );
    let control = w.sim_control();
    let (tx, rx) = std::sync::mpsc::channel::<u64>();
    let hooks = Hooks {
        running: Some(Box::new(move || {
            let id = rx.recv().unwrap();
            let until = Instant::now() + Duration::from_secs(30);
            while !started.exists() && Instant::now() < until {
                std::thread::sleep(Duration::from_millis(50));
            }
            let (s, b) = support::sim::request(
                &control,
                "POST",
                &format!("/_sim/gitlab/jobs/{id}/cancel"),
                Some("{}"),
            );
            assert!(s / 100 == 2, "{s} {b}");
        })),
        ..Hooks::default()
    };
    let job = w.runner.request_job(Duration::from_secs(20));
    let id = job["id"].as_u64().unwrap();
    tx.send(id).unwrap();
    w.boot_when_created(id);
    let t = Instant::now();
    let o = w.runner.run_job(&job, hooks);
    assert!(o.canceled, "{o:#?}");
    assert!(
        t.elapsed() < Duration::from_secs(50),
        "the sleep was cut short"
    );
    assert_eq!(stage_names(&o), ["prepare_script"]);
    assert!(
        o.log.contains("SIGTERM: stopping"),
        "run_exec was told to stop: {}",
        o.log
    );
    assert_eq!(w.gitlab_job(id)["status"], "canceled");
    assert_eq!(o.cleanup_code, Some(0), "{}", o.log);
    assert_nothing_left(&w);
}

/// moto with manual task progression, a cluster `ci`, a Fargate task definition for the tag
/// `fargate` (its container sshd), and the default VPC's subnet and security group.
async fn moto_ecs() -> (mayfly_sim::moto::Moto, String, String) {
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

#[test]
#[ignore = "needs moto: MAYFLY_PYTHON from scripts/py-env (scripts/test runs it)"]
fn a_job_runs_whole_on_an_ecs_fargate_task() {
    let rt = tokio::runtime::Runtime::new().unwrap();
    let (moto, subnet, group) = rt.block_on(moto_ecs());
    let counting = proxy::Counting::start(&addr(moto.url()));
    let mut w = World::ecs(&["fargate"], &counting.url, moto.url(), &subnet, &group);
    w.pipeline(&["fargate"]);
    let count = w.marker("step-runs");
    w.runner.scripts.insert(
        "step_script".into(),
        format!("echo run >> '{}'", count.display()),
    );
    let o = w.job(Hooks::default());
    assert_eq!(o.state, "success", "{o:#?}");
    assert!(o.log.contains("from pool fargate (aws-ecs)"), "{}", o.log);
    eprintln!("AWS calls of the job: {:?}", counting.counts());
    // The Fargate driver's RunTask, DescribeTasks and StopTask, plus what a fresh process of
    // the provider reads before its RunTask (families, the name's idempotency check).
    let counts = counting.counts();
    let want: BTreeMap<String, usize> = [
        "ListTaskDefinitionFamilies",
        "DescribeTaskDefinition",
        "ListTasks",
        "DescribeTasks",
        "RunTask",
        "StopTask",
    ]
    .into_iter()
    .map(|op| (op.to_string(), 1))
    .collect();
    assert_eq!(counts, want, "AWS calls of one job");
    let before_reap = counting.total();
    assert_eq!(std::fs::read_to_string(&count).unwrap(), "run\n");
    assert_eq!(o.cleanup_code, Some(0), "{}", o.log);
    assert!(w.leftovers().is_empty());
    // The task was stopped: nothing of the controller's is left running.
    let (code, out, err) = w.executor(&["reap"]);
    assert_eq!(code, 0, "{out}{err}");
    assert!(out.contains("0 deleted, 0 kept, 0 errors"), "{out}");
    eprintln!(
        "job: {before_reap} AWS calls; reap: {}",
        counting.total() - before_reap
    );
    drop(moto);
}
