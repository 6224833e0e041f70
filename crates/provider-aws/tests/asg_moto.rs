//! The aws-asg scaler against moto: it creates the group from a launch template, scales out on
//! queue depth, protects and drains on an empty queue, and retires an idle draining runner
//! (deregistered, terminated with a decrement).

mod support;

use async_trait::async_trait;
use mayfly_core::Time;
use mayfly_provider_aws::asg::{
    AsgConfig, CreateGroup, DRAINING_TAG, Deregister, Policy, RunnerState, Scaler,
};
use std::sync::Mutex;
use std::time::Duration;

#[derive(Default)]
struct Registry(Mutex<Vec<String>>);

#[async_trait]
impl Deregister for Registry {
    async fn deregister(&self, runner: &str) -> Result<(), String> {
        self.0.lock().unwrap().push(runner.to_string());
        Ok(())
    }
}

fn idle(ids: &[String]) -> Vec<RunnerState> {
    ids.iter()
        .map(|id| RunnerState {
            name: id.clone(),
            online: true,
            busy: false,
        })
        .collect()
}

#[tokio::test]
#[ignore = "needs moto: MAYFLY_PYTHON from scripts/py-env (scripts/test runs it)"]
async fn the_group_scales_out_drains_and_retires_against_moto() {
    let moto = support::moto().await;
    let aws = support::aws(&moto).await;
    support::launch_template(&aws, "runners").await;
    let (subnet, _) = support::network(&aws).await;

    let mut c = AsgConfig::new(support::settings(&moto), "mayfly-runners");
    c.create = Some(CreateGroup {
        launch_template: "runners".into(),
        subnets: vec![subnet],
    });
    c.policy = Policy {
        min: 0,
        max: 4,
        step: 2,
        out_threshold: 2,
        in_threshold: 0,
        out_cooldown: Duration::from_secs(60),
        in_cooldown: Duration::from_secs(300),
    };
    let scaler = Scaler::new(c).await.unwrap();
    let registry = Registry::default();
    let mut now = Time::from_secs(1_000_000);

    let d = scaler.pass(3, &[], &registry, now).await.unwrap();
    assert_eq!(d.desired, Some(2));
    let g = scaler.group().await.unwrap();
    assert_eq!(g.desired, 2);
    assert_eq!(g.instances.len(), 2, "moto launches the group's instances");
    let ids: Vec<String> = g.instances.iter().map(|(id, _)| id.clone()).collect();

    // Queue empty, but the scale-out was just now: nothing is drained yet.
    now = now.plus(Duration::from_secs(120));
    assert!(
        scaler
            .pass(0, &idle(&ids), &registry, now)
            .await
            .unwrap()
            .is_empty()
    );

    now = now.plus(Duration::from_secs(300));
    let d = scaler.pass(0, &idle(&ids), &registry, now).await.unwrap();
    assert_eq!(d.drain.len(), 2);
    let g = scaler.group().await.unwrap();
    assert!(
        g.instances.iter().all(|(_, p)| *p),
        "every instance protected from scale-in"
    );
    let mut ask = vec![];
    let keys: Vec<String> = (1..=ids.len()).map(|n| format!("InstanceId.{n}")).collect();
    for (k, id) in keys.iter().zip(&ids) {
        ask.push((k.as_str(), id.as_str()));
    }
    let tagged = support::ec2(&aws, "DescribeInstances", &ask).await;
    let draining = tagged
        .items("reservationSet")
        .flat_map(|r| r.items("instancesSet"))
        .filter(|i| support::tag(i, DRAINING_TAG).is_some())
        .count();
    assert_eq!(draining, 2, "draining runners are tagged");

    // One is still busy: only the idle one is retired.
    let mut states = idle(&ids);
    states[1].busy = true;
    now = now.plus(Duration::from_secs(10));
    let d = scaler.pass(0, &states, &registry, now).await.unwrap();
    assert_eq!(d.retire, [ids[0].clone()]);
    assert_eq!(*registry.0.lock().unwrap(), [ids[0].clone()]);
    let g = scaler.group().await.unwrap();
    assert_eq!(g.desired, 1, "terminated with a decrement");
    assert_eq!(g.instances.len(), 1);
    assert_eq!(g.instances[0].0, ids[1], "the busy runner is still there");

    // New demand wakes the draining runner before buying.
    now = now.plus(Duration::from_secs(10));
    let d = scaler.pass(2, &states[1..], &registry, now).await.unwrap();
    assert_eq!(d.reactivate, [ids[1].clone()]);
    assert_eq!(d.desired, Some(2));
}
