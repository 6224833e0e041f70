//! What the AWS providers' tests share: moto on a free port, settings pointing at it, and a
//! look at what moto holds through the crate's own signed client (no AWS SDK).
//!
//! moto needs the Python of `MAYFLY_PYTHON` (scripts/py-env installs `moto[server]`): the tests
//! that use it are `#[ignore]`d with that reason, `scripts/test` runs them, and run without it
//! they fail rather than pass.
#![allow(dead_code)]

use mayfly_provider_aws::AwsSettings;
use mayfly_provider_aws::wire::{self, Aws, Element, Params};
use mayfly_sim::moto::Moto;
use serde_json::{Value, json};
use std::path::PathBuf;
use std::sync::Arc;

pub const REGION: &str = "us-east-1";
/// Why the tests that need moto are ignored by a plain `cargo test`.
pub const NEEDS_MOTO: &str = "needs moto: MAYFLY_PYTHON from scripts/py-env (scripts/test runs it)";

/// A fresh moto; a test that needs it fails without `MAYFLY_PYTHON`.
pub async fn moto() -> Moto {
    let python = match std::env::var("MAYFLY_PYTHON") {
        Ok(p) if !p.is_empty() => PathBuf::from(p),
        _ => panic!("MAYFLY_PYTHON is not set: run `export MAYFLY_PYTHON=$(scripts/py-env)` first"),
    };
    let moto = Moto::start(&python).await.expect("moto starts");
    moto.reset().await.expect("moto resets");
    moto
}

pub fn settings(moto: &Moto) -> AwsSettings {
    AwsSettings::emulator(moto.url(), REGION)
}

/// A client for looking at (and setting up) what moto holds, apart from the providers.
pub async fn aws(moto: &Moto) -> Arc<Aws> {
    settings(moto).connect().await.expect("settings for moto")
}

/// One EC2 action against moto; its answer.
pub async fn ec2(aws: &Aws, action: &str, params: &[(&str, &str)]) -> Element {
    let mut p = Params::new();
    for (k, v) in params {
        p.set(*k, v);
    }
    aws.query(wire::EC2, "2016-11-15", action, &p)
        .await
        .unwrap_or_else(|e| panic!("{action}: {e}"))
}

/// One ECS operation against moto; its answer.
pub async fn ecs(aws: &Aws, operation: &str, body: Value) -> Value {
    aws.json(
        wire::ECS,
        &format!("AmazonEC2ContainerServiceV20141113.{operation}"),
        &body,
    )
    .await
    .unwrap_or_else(|e| panic!("{operation}: {e}"))
}

/// One SSM operation against moto.
pub async fn ssm(
    aws: &Aws,
    operation: &str,
    body: Value,
) -> Result<Value, mayfly_provider_aws::ApiError> {
    aws.json(wire::SSM, &format!("AmazonSSM.{operation}"), &body)
        .await
}

/// The first instance of a DescribeInstances answer.
pub fn first_instance(out: &Element) -> &Element {
    out.items("reservationSet")
        .flat_map(|r| r.items("instancesSet"))
        .next()
        .expect("an instance")
}

/// An instance's tag.
pub fn tag(instance: &Element, key: &str) -> Option<String> {
    instance
        .items("tagSet")
        .find(|t| t.text_at("key") == Some(key))
        .and_then(|t| t.text_at("value").map(str::to_string))
}

/// An AMI moto knows (it ships a catalogue of public ones).
pub async fn some_ami(aws: &Aws) -> String {
    let images = ec2(aws, "DescribeImages", &[("Owner.1", "amazon")]).await;
    images
        .items("imagesSet")
        .find(|i| i.value("rootDeviceName").is_some())
        .and_then(|i| i.value("imageId"))
        .expect("moto has an AMI with a root device")
}

/// A launch template `name` of an AMI moto knows, on t3.micro.
pub async fn launch_template(aws: &Aws, name: &str) {
    let ami = some_ami(aws).await;
    ec2(
        aws,
        "CreateLaunchTemplate",
        &[
            ("LaunchTemplateName", name),
            ("LaunchTemplateData.ImageId", &ami),
            ("LaunchTemplateData.InstanceType", "t3.micro"),
        ],
    )
    .await;
}

/// The first subnet and security group of the default VPC.
pub async fn network(aws: &Aws) -> (String, String) {
    let subnets = ec2(aws, "DescribeSubnets", &[]).await;
    let subnet = subnets
        .items("subnetSet")
        .next()
        .and_then(|s| s.value("subnetId"))
        .expect("a subnet");
    let groups = ec2(aws, "DescribeSecurityGroups", &[]).await;
    let group = groups
        .items("securityGroupInfo")
        .next()
        .and_then(|g| g.value("groupId"))
        .expect("a security group");
    (subnet, group)
}

/// An ECS cluster `ci` with task definition families tagged with their runner labels (each
/// container sets `memory`, which moto needs), plus a subnet and a security group of the
/// default VPC. Tasks stay where they are (moto's manual progression).
pub struct EcsWorld {
    pub cluster: String,
    pub subnet: String,
    pub security_group: String,
}

pub async fn ecs_world(moto: &Moto, families: &[(&str, &str)]) -> EcsWorld {
    moto.manual_ecs_tasks().await.expect("manual ECS tasks");
    let aws = aws(moto).await;
    ecs(&aws, "CreateCluster", json!({"clusterName": "ci"})).await;
    for (family, labels) in families {
        ecs(
            &aws,
            "RegisterTaskDefinition",
            json!({
                "family": family,
                "requiresCompatibilities": ["FARGATE"],
                "networkMode": "awsvpc",
                "cpu": "1024",
                "memory": "2048",
                "containerDefinitions": [{
                    "name": "runner",
                    "image": "ghcr.io/actions/actions-runner:latest",
                    "memory": 2048,
                }],
                "tags": [{"key": "mayfly-labels", "value": labels}],
            }),
        )
        .await;
    }
    let (subnet, security_group) = network(&aws).await;
    EcsWorld {
        cluster: "ci".into(),
        subnet,
        security_group,
    }
}
