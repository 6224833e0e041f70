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

async fn moto() -> Option<Moto> {
    let python = match std::env::var("MAYFLY_PYTHON") {
        Ok(p) if !p.is_empty() => p,
        _ => {
            assert!(
                std::env::var_os("CI").is_none(),
                "run scripts/py-env and set MAYFLY_PYTHON"
            );
            println!("skipped: MAYFLY_PYTHON not set");
            return None;
        }
    };
    let moto = Moto::start(python.as_ref()).await.expect("moto starts");
    moto.reset().await.expect("moto resets");
    Some(moto)
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
async fn ec2_instances_serve_jobs_and_terminate() {
    let Some(moto) = moto().await else {
        return;
    };
    let settings = AwsSettings::emulator(moto.url(), REGION);
    let ec2 = aws_sdk_ec2::Client::new(&settings.load().await.unwrap());
    let images = ec2.describe_images().owners("amazon").send().await.unwrap();
    let ami = images
        .images()
        .iter()
        .find(|i| i.root_device_name().is_some())
        .and_then(|i| i.image_id())
        .unwrap()
        .to_string();
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
    let all = ec2
        .describe_instances()
        .filters(
            aws_sdk_ec2::types::Filter::builder()
                .name("tag:mayfly-controller")
                .values("mf")
                .build(),
        )
        .send()
        .await
        .unwrap();
    let made: Vec<_> = all
        .reservations()
        .iter()
        .flat_map(|r| r.instances())
        .collect();
    assert_eq!(made.len(), JOBS, "one instance per job");
    assert!(
        made.iter()
            .all(|i| i.state().and_then(|s| s.name()).map(|n| n.as_str()) == Some("terminated")),
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
async fn ecs_tasks_serve_jobs_and_stop() {
    let Some(moto) = moto().await else {
        return;
    };
    moto.manual_ecs_tasks().await.unwrap();
    let settings = AwsSettings::emulator(moto.url(), REGION);
    let sdk = settings.load().await.unwrap();
    let ecs = aws_sdk_ecs::Client::new(&sdk);
    ecs.create_cluster()
        .cluster_name("ci")
        .send()
        .await
        .unwrap();
    ecs.register_task_definition()
        .family("runner-linux")
        .requires_compatibilities(aws_sdk_ecs::types::Compatibility::Fargate)
        .network_mode(aws_sdk_ecs::types::NetworkMode::Awsvpc)
        .cpu("1024")
        .memory("2048")
        .container_definitions(
            aws_sdk_ecs::types::ContainerDefinition::builder()
                .name("runner")
                .image("ghcr.io/actions/actions-runner:latest")
                .memory(2048)
                .build(),
        )
        .tags(
            aws_sdk_ecs::types::Tag::builder()
                .key("mayfly-labels")
                .value("self-hosted,linux")
                .build(),
        )
        .send()
        .await
        .unwrap();
    let ec2 = aws_sdk_ec2::Client::new(&sdk);
    let subnet = ec2.describe_subnets().send().await.unwrap().subnets()[0]
        .subnet_id()
        .unwrap()
        .to_string();
    let sg = ec2
        .describe_security_groups()
        .send()
        .await
        .unwrap()
        .security_groups()[0]
        .group_id()
        .unwrap()
        .to_string();
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

/// An image moto knows, for a launch template.
async fn some_ami(ec2: &aws_sdk_ec2::Client) -> String {
    let images = ec2.describe_images().owners("amazon").send().await.unwrap();
    images
        .images()
        .iter()
        .find(|i| i.root_device_name().is_some())
        .and_then(|i| i.image_id())
        .unwrap()
        .to_string()
}

const ASG_JOBS: usize = 6;

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn an_auto_scaling_group_scales_out_serves_jobs_and_scales_back_in() {
    use mayfly::asg::AsgPool;
    use mayfly_core::Clock as _;
    use mayfly_provider_aws::asg::{AsgConfig, CreateGroup, Policy, Scaler};
    use mayfly_sim::moto::{GroupRegistration, MotoGroup};

    let Some(moto) = moto().await else {
        return;
    };
    let started = tokio::time::Instant::now();
    let settings = AwsSettings::emulator(moto.url(), REGION);
    let ec2 = aws_sdk_ec2::Client::new(&settings.load().await.unwrap());
    let ami = some_ami(&ec2).await;
    ec2.create_launch_template()
        .launch_template_name("runners")
        .launch_template_data(
            aws_sdk_ec2::types::RequestLaunchTemplateData::builder()
                .image_id(&ami)
                .instance_type(aws_sdk_ec2::types::InstanceType::T3Micro)
                .build(),
        )
        .send()
        .await
        .unwrap();
    let subnet = ec2.describe_subnets().send().await.unwrap().subnets()[0]
        .subnet_id()
        .unwrap()
        .to_string();
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
    let running = ec2
        .describe_instances()
        .filters(
            aws_sdk_ec2::types::Filter::builder()
                .name("instance-state-name")
                .values("running")
                .build(),
        )
        .send()
        .await
        .unwrap();
    let left: usize = running
        .reservations()
        .iter()
        .map(|r| r.instances().len())
        .sum();
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
