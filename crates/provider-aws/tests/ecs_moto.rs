//! The aws-ecs provider against moto: the conformance suite on Fargate, the task definition
//! chosen by labels, the JIT config in the environment or in SSM (and deleted with the task).

mod support;

use mayfly_core::{Labels, MachineSpec, Secret};
use mayfly_provider::bootstrap::Credential;
use mayfly_provider::conformance::{self, Fixture};
use mayfly_provider::{CreateRequest, Error, Provider};
use mayfly_provider_aws::ecs::{Capacity, Ecs, EcsConfig, env};
use std::time::Duration;

const FAMILIES: &[(&str, &str)] = &[
    ("runner-linux", "self-hosted,linux"),
    ("runner-big", "self-hosted,linux,large"),
];

fn config(moto: &mayfly_sim::moto::Moto, w: &support::EcsWorld) -> EcsConfig {
    let mut c = EcsConfig::new(support::settings(moto), &w.cluster);
    c.subnets = vec![w.subnet.clone()];
    c.security_groups = vec![w.security_group.clone()];
    c.prices.insert("runner-linux".into(), 0.049);
    c.prices.insert("runner-big".into(), 0.098);
    c
}

fn spec() -> MachineSpec {
    MachineSpec {
        types: Vec::new(),
        locations: vec!["ci".into()],
        image: "x86:system:ubuntu-24.04".parse().unwrap(),
    }
}

fn request(name: &str, labels: &[&str]) -> CreateRequest {
    CreateRequest {
        name: name.into(),
        controller: "ctl".into(),
        pool: "ecs".into(),
        spec: spec(),
        user_data: Secret::new("#!/bin/sh\n"),
        labels: Labels::new(labels),
        credential: Credential::Jit(Secret::new("aml0LWNvbmZpZy1zZWNyZXQ=")),
    }
}

#[tokio::test]
#[ignore = "needs moto: MAYFLY_PYTHON from scripts/py-env (scripts/test runs it)"]
async fn the_conformance_suite_passes_against_moto() {
    let moto = support::moto().await;
    let w = support::ecs_world(&moto, FAMILIES).await;
    let p = Ecs::new(config(&moto, &w)).await.unwrap();
    let mut spec = spec();
    spec.types = vec!["runner-linux".into()];
    let f = Fixture::new(spec).with_settle(Duration::from_secs(10), Duration::from_millis(50));
    conformance::run(&p, &f).await;
}

/// The environment of a task's runner container, as DescribeTasks shows it.
async fn environment(moto: &mayfly_sim::moto::Moto, arn: &str) -> Vec<(String, String)> {
    let aws = support::aws(moto).await;
    let out = support::ecs(
        &aws,
        "DescribeTasks",
        serde_json::json!({"cluster": "ci", "tasks": [arn]}),
    )
    .await;
    let t = &out["tasks"][0];
    t["overrides"]["containerOverrides"]
        .as_array()
        .unwrap()
        .iter()
        .flat_map(|c| c["environment"].as_array().cloned().unwrap_or_default())
        .map(|kv| {
            (
                kv["name"].as_str().unwrap().to_string(),
                kv["value"].as_str().unwrap().to_string(),
            )
        })
        .collect()
}

#[tokio::test]
#[ignore = "needs moto: MAYFLY_PYTHON from scripts/py-env (scripts/test runs it)"]
async fn labels_choose_the_task_definition_and_the_jit_config_rides_in_the_environment() {
    let moto = support::moto().await;
    let w = support::ecs_world(&moto, FAMILIES).await;
    let p = Ecs::new(config(&moto, &w)).await.unwrap();
    let small = p
        .create(&request("r-small", &["self-hosted", "linux"]))
        .await
        .unwrap();
    assert_eq!(
        small.placement.as_ref().unwrap().machine_type,
        "runner-linux"
    );
    let big = p.create(&request("r-big", &["large"])).await.unwrap();
    assert_eq!(big.placement.as_ref().unwrap().machine_type, "runner-big");
    let e = p.create(&request("r-gpu", &["gpu"])).await.unwrap_err();
    assert!(
        matches!(e, Error::Invalid { .. }) && e.to_string().contains("gpu"),
        "{e}"
    );
    assert_eq!(
        p.create(&request("r-small", &["self-hosted", "linux"]))
            .await
            .unwrap_err(),
        Error::AlreadyExists
    );
    let env = environment(&moto, small.provider_id.as_deref().unwrap()).await;
    assert!(env.contains(&(env::JIT_CONFIG.into(), "aml0LWNvbmZpZy1zZWNyZXQ=".into())));
    assert!(env.contains(&(env::RUNNER_NAME.into(), "r-small".into())));
    assert_eq!(p.list("ctl").await.unwrap().len(), 2);
    assert!(p.list("other").await.unwrap().is_empty());
}

#[tokio::test]
#[ignore = "needs moto: MAYFLY_PYTHON from scripts/py-env (scripts/test runs it)"]
async fn with_ssm_the_config_goes_to_a_secure_parameter_deleted_with_the_task() {
    let moto = support::moto().await;
    let w = support::ecs_world(&moto, FAMILIES).await;
    let mut c = config(&moto, &w);
    c.ssm_prefix = Some("/mayfly/runners".into());
    c.capacity = Capacity::FargateSpot;
    let p = Ecs::new(c).await.unwrap();
    let made = p.create(&request("r-ssm", &["linux"])).await.unwrap();
    let arn = made.provider_id.unwrap();
    let env = environment(&moto, &arn).await;
    assert!(
        env.contains(&(
            env::JIT_CONFIG_PARAMETER.into(),
            "/mayfly/runners/r-ssm".into()
        )),
        "{env:?}"
    );
    assert!(
        env.iter()
            .all(|(_, v)| !v.contains("aml0LWNvbmZpZy1zZWNyZXQ")),
        "the config itself is not in the task's environment"
    );
    let aws = support::aws(&moto).await;
    let got = support::ssm(
        &aws,
        "GetParameter",
        serde_json::json!({"Name": "/mayfly/runners/r-ssm", "WithDecryption": true}),
    )
    .await
    .unwrap();
    let param = &got["Parameter"];
    assert_eq!(param["Value"], "aml0LWNvbmZpZy1zZWNyZXQ=");
    assert_eq!(param["Type"], "SecureString");

    p.delete(&arn).await.unwrap();
    p.delete(&arn).await.unwrap();
    assert_eq!(p.get(&arn).await.unwrap_err(), Error::NotFound);
    let gone = support::ssm(
        &aws,
        "GetParameter",
        serde_json::json!({"Name": "/mayfly/runners/r-ssm"}),
    )
    .await;
    assert!(gone.is_err(), "the parameter is deleted with its task");
}
