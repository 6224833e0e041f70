//! End to end on AWS, emulated: the fake GitHub queues jobs, the controller (in-process) makes
//! EC2 instances or ECS tasks in moto, and virtual runners living on moto's instances and tasks
//! (`mayfly_sim::moto::MotoMachines`) redeem the credential they find there, run their job and
//! power off. For aws-asg, the group's loop scales an Auto Scaling group in moto and long-lived
//! runners on its instances (`MotoGroup`) register themselves. Real time: moto's clock is the
//! wall clock.

use mayfly::local::{self, Cadence, Local, Setup};
use mayfly_core::Pace;
use mayfly_core::{Arch, Image, ImageKind, Labels, MachineSpec, Pool};
use mayfly_provider::Provider;
use mayfly_provider_aws::AwsSettings;
use mayfly_provider_aws::ec2::{Ec2, Ec2Config};
use mayfly_provider_aws::ecs::{Ecs, EcsConfig};
use mayfly_provider_aws::wire::{self, Aws, Element, Params};
use mayfly_sim::github::NewJob;
use mayfly_sim::moto::{Moto, MotoMachines};
use mayfly_sim::runners::{Delay, RunnerConfig};
use mayfly_sim::{Sim, SimConfig};
use std::collections::BTreeMap;
use std::sync::Arc;
use std::time::Duration;

/// Counts the provider calls the controller makes, passing them on.
struct Counted {
    inner: Arc<dyn Provider>,
    calls: std::sync::Mutex<BTreeMap<&'static str, u32>>,
}

impl Counted {
    fn wrap(inner: Arc<dyn Provider>) -> Arc<Counted> {
        Arc::new(Counted {
            inner,
            calls: Default::default(),
        })
    }
    fn count(&self, call: &'static str) {
        *self.calls.lock().unwrap().entry(call).or_default() += 1;
    }
    fn calls(&self) -> BTreeMap<&'static str, u32> {
        self.calls.lock().unwrap().clone()
    }
}

#[async_trait::async_trait]
impl Provider for Counted {
    fn kind(&self) -> &'static str {
        self.inner.kind()
    }
    async fn create(
        &self,
        req: &mayfly_provider::CreateRequest,
    ) -> mayfly_provider::Result<mayfly_core::Instance> {
        self.count("create");
        let made = self.inner.create(req).await;
        if let Err(e) = &made {
            eprintln!("create {}: {e}", req.name);
        }
        made
    }
    async fn list(&self, controller: &str) -> mayfly_provider::Result<Vec<mayfly_core::Instance>> {
        self.count("list");
        self.inner.list(controller).await
    }
    async fn get(&self, id: &str) -> mayfly_provider::Result<mayfly_core::Instance> {
        self.count("get");
        self.inner.get(id).await
    }
    async fn power_off(&self, id: &str) -> mayfly_provider::Result<()> {
        self.count("power_off");
        self.inner.power_off(id).await
    }
    async fn power_on(&self, id: &str) -> mayfly_provider::Result<()> {
        self.count("power_on");
        self.inner.power_on(id).await
    }
    async fn rebuild(
        &self,
        id: &str,
        image: &Image,
        user_data: &mayfly_core::Secret,
    ) -> mayfly_provider::Result<()> {
        self.count("rebuild");
        self.inner.rebuild(id, image, user_data).await
    }
    async fn delete(&self, id: &str) -> mayfly_provider::Result<()> {
        self.count("delete");
        self.inner.delete(id).await
    }
    async fn billing(
        &self,
        placement: &mayfly_core::Placement,
    ) -> mayfly_provider::Result<mayfly_core::Billing> {
        self.count("billing");
        self.inner.billing(placement).await
    }
}

const REPO: &str = "acme/app";
const REGION: &str = "us-east-1";
const JOBS: usize = 3;

/// A fresh moto; without `MAYFLY_PYTHON` the test fails (it is ignored by a plain `cargo
/// test`, and scripts/test runs it).
async fn moto() -> Moto {
    let python = match std::env::var("MAYFLY_PYTHON") {
        Ok(p) if !p.is_empty() => p,
        _ => panic!("MAYFLY_PYTHON is not set: run `export MAYFLY_PYTHON=$(scripts/py-env)` first"),
    };
    let moto = Moto::start(python.as_ref()).await.expect("moto starts");
    moto.reset().await.expect("moto resets");
    moto
}

/// One EC2 action against moto, through the providers' own signed client.
async fn ec2(aws: &Aws, action: &str, params: &[(&str, &str)]) -> Element {
    let mut p = Params::new();
    for (k, v) in params {
        p.set(*k, v);
    }
    aws.query(wire::EC2, mayfly_provider_aws::ec2::VERSION, action, &p)
        .await
        .unwrap_or_else(|e| panic!("{action}: {e}"))
}

/// The instances of a DescribeInstances answer.
fn instances(out: &Element) -> Vec<&Element> {
    out.items("reservationSet")
        .flat_map(|r| r.items("instancesSet"))
        .collect()
}

/// An image moto knows.
async fn some_ami(aws: &Aws) -> String {
    let images = ec2(aws, "DescribeImages", &[("Owner.1", "amazon")]).await;
    images
        .items("imagesSet")
        .find(|i| i.value("rootDeviceName").is_some())
        .and_then(|i| i.value("imageId"))
        .unwrap()
}

/// The first subnet of the default VPC.
async fn subnet(aws: &Aws) -> String {
    ec2(aws, "DescribeSubnets", &[])
        .await
        .items("subnetSet")
        .next()
        .and_then(|s| s.value("subnetId"))
        .unwrap()
}

fn pool(provider: &str, types: &[&str], locations: &[&str]) -> Pool {
    Pool {
        name: provider.into(),
        provider: provider.into(),
        labels: Labels::new(["self-hosted", "linux"]),
        spec: MachineSpec {
            types: types.iter().map(|t| t.to_string()).collect(),
            locations: locations.iter().map(|l| l.to_string()).collect(),
            image: Image {
                arch: Arch::X86,
                kind: ImageKind::System,
                name: "ubuntu-24.04".into(),
            },
        },
        max: None,
        standby: 0,
        forges: Vec::new(),
    }
}

fn runners() -> RunnerConfig {
    RunnerConfig {
        boot_delay: Delay::Fixed { secs: 1.0 },
        poll_secs: 0.5,
        ..RunnerConfig::default()
    }
}

/// The controller with `provider` as the pool's provider; the simulator at real speed.
async fn world(name: &str, provider: Arc<dyn Provider>, pool: Pool) -> Local {
    let mut more: BTreeMap<String, Arc<dyn Provider>> = BTreeMap::new();
    more.insert(name.to_string(), provider);
    Local::start_with(
        SimConfig {
            speed: 1.0,
            ..SimConfig::default()
        },
        Setup {
            pools: local::pools("mf", vec![pool], false),
            repos: vec![REPO.into()],
            webhook_secret: None,
            workers: 4,
            confirm_after: Duration::from_secs(600),
            poll_backstop: Duration::ZERO,
            runners_max_age: Duration::ZERO,
            gitlab_projects: Vec::new(),
        },
        more,
    )
    .await
    .expect("simulator and controller")
}

const CADENCE: Cadence = Cadence {
    pace: Pace {
        unsettled: Duration::from_secs(1),
        resync: Duration::from_secs(5),
        settle: Some(Duration::from_secs(1)),
        coalesce: Duration::from_millis(500),
    },
    poll: Duration::from_secs(1),
};

fn all_completed(sim: &Sim) -> bool {
    let jobs = sim.github.jobs();
    jobs.len() == JOBS && jobs.iter().all(|j| j.status == "completed")
}

/// Queues the jobs and runs the loop until they are done and `provider` lists nothing.
async fn serve(w: &mut Local, provider: &dyn Provider) -> usize {
    let jobs = (0..JOBS)
        .map(|_| NewJob {
            labels: vec!["self-hosted".into(), "linux".into()],
            duration: Duration::from_secs(2),
        })
        .collect();
    w.sim.github.enqueue(REPO, jobs);
    let sim = w.sim.clone();
    let mut passes = 0;
    let mut done = false;
    let run = w.controller.run(CADENCE, |pass, _| {
        passes += 1;
        if let Err(e) = pass {
            eprintln!("pass failed: {e}");
        }
        done = all_completed(&sim);
        done
    });
    tokio::time::timeout(Duration::from_secs(120), run)
        .await
        .expect("the jobs were served within two minutes");
    assert!(done);
    let deadline = tokio::time::Instant::now() + Duration::from_secs(30);
    while !provider.list("mf").await.unwrap().is_empty() {
        assert!(
            tokio::time::Instant::now() < deadline,
            "instances left after the jobs"
        );
        let _ = w.controller.reconciler.pass().await;
        tokio::time::sleep(Duration::from_millis(500)).await;
    }
    let jobs = w.sim.github.jobs();
    assert!(
        jobs.iter()
            .all(|j| j.conclusion.as_deref() == Some("success")),
        "{jobs:?}"
    );
    passes
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
#[ignore = "needs moto: MAYFLY_PYTHON from scripts/py-env (scripts/test runs it)"]
async fn ec2_instances_serve_jobs_and_terminate() {
    let moto = moto().await;
    let settings = AwsSettings::emulator(moto.url(), REGION);
    let aws = settings.connect().await.unwrap();
    let ami = some_ami(&aws).await;
    let mut c = Ec2Config::new(settings);
    c.ami = Some(ami);
    c.prices.insert("t3.micro".into(), 0.0104);
    let provider = Counted::wrap(Arc::new(Ec2::new(c).await.unwrap()));
    let mut w = world(
        "ec2",
        provider.clone(),
        pool("ec2", &["t3.micro"], &["us-east-1a"]),
    )
    .await;
    let runners = w
        .sim
        .runners_on(MotoMachines::ec2(moto.url(), REGION), runners());
    let passes = serve(&mut w, &*provider).await;

    let stats = runners.stats();
    assert_eq!(stats.jobs_completed, JOBS as u64, "{stats:?}");
    let all = ec2(
        &aws,
        "DescribeInstances",
        &[
            ("Filter.1.Name", "tag:mayfly-controller"),
            ("Filter.1.Value.1", "mf"),
        ],
    )
    .await;
    let made = instances(&all);
    assert_eq!(made.len(), JOBS, "one instance per job");
    assert!(
        made.iter()
            .all(|i| i.text_at("instanceState/name") == Some("terminated")),
        "every instance terminated"
    );
    let calls = provider.calls();
    println!(
        "aws-ec2 e2e: {JOBS} jobs, {} instances, {passes} reconcile passes, provider calls {calls:?}",
        made.len(),
    );
    // Per job: one create (a DescribeInstances by name and a RunInstances) and no delete (the
    // instance terminated itself on power off); lists are per pass, not per job.
    assert_eq!(calls.get("create"), Some(&(JOBS as u32)));
    assert_eq!(calls.get("delete"), None, "{calls:?}");
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
#[ignore = "needs moto: MAYFLY_PYTHON from scripts/py-env (scripts/test runs it)"]
async fn ecs_tasks_serve_jobs_and_stop() {
    let moto = moto().await;
    moto.manual_ecs_tasks().await.unwrap();
    let settings = AwsSettings::emulator(moto.url(), REGION);
    let aws = settings.connect().await.unwrap();
    let ecs = |operation: &'static str, body: serde_json::Value| {
        let aws = aws.clone();
        async move {
            aws.json(
                wire::ECS,
                &format!("AmazonEC2ContainerServiceV20141113.{operation}"),
                &body,
            )
            .await
            .unwrap_or_else(|e| panic!("{operation}: {e}"))
        }
    };
    ecs("CreateCluster", serde_json::json!({"clusterName": "ci"})).await;
    ecs(
        "RegisterTaskDefinition",
        serde_json::json!({
            "family": "runner-linux",
            "requiresCompatibilities": ["FARGATE"],
            "networkMode": "awsvpc",
            "cpu": "1024",
            "memory": "2048",
            "containerDefinitions": [{
                "name": "runner",
                "image": "ghcr.io/actions/actions-runner:latest",
                "memory": 2048,
            }],
            "tags": [{"key": "mayfly-labels", "value": "self-hosted,linux"}],
        }),
    )
    .await;
    let subnet = subnet(&aws).await;
    let sg = ec2(&aws, "DescribeSecurityGroups", &[])
        .await
        .items("securityGroupInfo")
        .next()
        .and_then(|g| g.value("groupId"))
        .unwrap();
    let mut c = EcsConfig::new(settings, "ci");
    c.subnets = vec![subnet];
    c.security_groups = vec![sg];
    c.ssm_prefix = Some("/mayfly/runners".into());
    c.prices.insert("runner-linux".into(), 0.049);
    let provider = Counted::wrap(Arc::new(Ecs::new(c).await.unwrap()));
    let mut w = world("ecs", provider.clone(), pool("ecs", &[], &["ci"])).await;
    let runners = w
        .sim
        .runners_on(MotoMachines::ecs(moto.url(), REGION, "ci"), runners());
    let passes = serve(&mut w, &*provider).await;
    let stats = runners.stats();
    assert_eq!(stats.jobs_completed, JOBS as u64, "{stats:?}");
    let calls = provider.calls();
    println!("aws-ecs e2e: {JOBS} jobs, {passes} reconcile passes, provider calls {calls:?}");
    assert_eq!(
        calls.get("create"),
        Some(&(JOBS as u32)),
        "one task per job"
    );
}

const ASG_JOBS: usize = 6;

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
#[ignore = "needs moto: MAYFLY_PYTHON from scripts/py-env (scripts/test runs it)"]
async fn an_auto_scaling_group_scales_out_serves_jobs_and_scales_back_in() {
    use mayfly::asg::AsgPool;
    use mayfly_core::Clock as _;
    use mayfly_provider_aws::asg::{AsgConfig, CreateGroup, Policy, Scaler};
    use mayfly_sim::moto::{GroupRegistration, MotoGroup};

    let moto = moto().await;
    let started = tokio::time::Instant::now();
    let settings = AwsSettings::emulator(moto.url(), REGION);
    let aws = settings.connect().await.unwrap();
    let ami = some_ami(&aws).await;
    ec2(
        &aws,
        "CreateLaunchTemplate",
        &[
            ("LaunchTemplateName", "runners"),
            ("LaunchTemplateData.ImageId", &ami),
            ("LaunchTemplateData.InstanceType", "t3.micro"),
        ],
    )
    .await;
    let subnet = subnet(&aws).await;
    let mut c = AsgConfig::new(settings, "ci-runners");
    c.create = Some(CreateGroup {
        launch_template: "runners".into(),
        subnets: vec![subnet],
    });
    c.interval = Duration::from_secs(1);
    c.policy = Policy {
        min: 0,
        max: 4,
        step: 2,
        out_threshold: 2,
        in_threshold: 0,
        out_cooldown: Duration::from_secs(2),
        in_cooldown: Duration::from_secs(3),
    };
    let mut watch = c.clone();
    watch.create = None;
    let scaler = Scaler::new(c).await.unwrap();

    // No planner pools: the group's pool is scaled by its own loop, as `mayfly run` does.
    let mut w = Local::start_with(
        SimConfig {
            speed: 1.0,
            ..SimConfig::default()
        },
        Setup {
            pools: local::pools("mf", vec![], false),
            repos: vec![REPO.into()],
            webhook_secret: None,
            workers: 4,
            confirm_after: Duration::from_secs(600),
            poll_backstop: Duration::ZERO,
            runners_max_age: Duration::ZERO,
            gitlab_projects: Vec::new(),
        },
        BTreeMap::new(),
    )
    .await
    .expect("simulator and controller");
    let looped = AsgPool {
        scaler,
        pool: pool("asg", &[], &[]),
        rules: Default::default(),
        store: w.controller.store.clone(),
        runners: w.controller.runners.clone(),
        clock: Arc::new(w.controller.clock.clone()),
    };
    let runners = w.sim.runners_on(
        MotoGroup::start(
            moto.url(),
            REGION,
            "ci-runners",
            GroupRegistration {
                api_url: format!("http://{}", w.at.github),
                repo: REPO.into(),
                token: local::GITHUB_TOKEN.into(),
                labels: vec!["linux".into()],
            },
        ),
        runners(),
    );
    // The group exists before the loop starts, so the watcher can read it from the first look.
    looped.scaler.group().await.unwrap();
    let asg = tokio::spawn(looped.run());
    let watch = Scaler::new(watch).await.unwrap();

    let jobs = (0..ASG_JOBS)
        .map(|_| NewJob {
            labels: vec!["self-hosted".into(), "linux".into()],
            duration: Duration::from_secs(3),
        })
        .collect();
    w.sim.github.enqueue(REPO, jobs);

    // The daemon's demand loop (a poll every half second) while the group's loop scales.
    let mut desired_seen = Vec::<u32>::new();
    let mut served_at = None;
    let deadline = started + Duration::from_secs(60);
    loop {
        assert!(
            tokio::time::Instant::now() < deadline,
            "not done within a minute: desired {desired_seen:?}, jobs {:?}, runners {:?}",
            w.sim.github.jobs(),
            w.sim.github.runners()
        );
        let now = w.controller.clock.now();
        w.controller.demand.pass(now).await;
        let g = watch.group().await.unwrap();
        if desired_seen.last() != Some(&g.desired) {
            desired_seen.push(g.desired);
        }
        let jobs = w.sim.github.jobs();
        let completed = jobs.len() == ASG_JOBS && jobs.iter().all(|j| j.status == "completed");
        if completed && served_at.is_none() {
            served_at = Some(started.elapsed());
        }
        // Done when the group is back at min and every runner has seen its instance go.
        let stats = runners.stats();
        if completed
            && g.desired == 0
            && g.instances.is_empty()
            && w.sim.github.runners().is_empty()
            && stats.registered > 0
            && stats.retired + stats.lost == stats.registered
        {
            break;
        }
        tokio::time::sleep(Duration::from_millis(250)).await;
    }
    asg.abort();
    let took = started.elapsed();

    let jobs = w.sim.github.jobs();
    assert!(
        jobs.iter()
            .all(|j| j.conclusion.as_deref() == Some("success")),
        "{jobs:?}"
    );
    let peak = desired_seen.iter().copied().max().unwrap_or(0);
    assert!(peak > 0, "the group scaled out: {desired_seen:?}");
    assert!(peak <= 4, "never above max: {desired_seen:?}");
    let running = ec2(
        &aws,
        "DescribeInstances",
        &[
            ("Filter.1.Name", "instance-state-name"),
            ("Filter.1.Value.1", "running"),
        ],
    )
    .await;
    let left = instances(&running).len();
    assert_eq!(left, 0, "no instance of the group left running beyond min");
    let stats = runners.stats();
    assert_eq!(stats.jobs_completed, ASG_JOBS as u64, "{stats:?}");
    assert_eq!(stats.lost, 0, "no runner lost its job: {stats:?}");
    assert_eq!(
        stats.retired, stats.registered,
        "every runner was drained and retired while idle: {stats:?}"
    );
    let served_by: std::collections::BTreeSet<_> =
        jobs.iter().filter_map(|j| j.runner_name.clone()).collect();
    assert!(
        served_by.len() < ASG_JOBS,
        "long-lived runners: some took more than one job ({served_by:?})"
    );
    println!(
        "aws-asg e2e: {ASG_JOBS} jobs served in {:.1} s by {} runners; desired capacity over \
         time {desired_seen:?}; scaled back in, all retired, in {:.1} s",
        served_at.unwrap_or_default().as_secs_f64(),
        stats.registered,
        took.as_secs_f64(),
    );
}
