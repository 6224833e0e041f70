//! What the AWS providers' tests share: moto on a free port (skipped without `MAYFLY_PYTHON`,
//! a failure under CI), SDK settings pointing at it, and a look at what moto holds.
#![allow(dead_code)]

use mayfly_provider_aws::AwsSettings;
use mayfly_sim::moto::Moto;
use std::path::PathBuf;

pub const REGION: &str = "us-east-1";

/// A fresh moto, or `None` when the test should be skipped.
pub async fn moto() -> Option<Moto> {
    let python = match std::env::var("MAYFLY_PYTHON") {
        Ok(p) if !p.is_empty() => PathBuf::from(p),
        _ => {
            assert!(
                std::env::var_os("CI").is_none(),
                "run scripts/py-env and set MAYFLY_PYTHON"
            );
            println!("skipped: MAYFLY_PYTHON not set");
            return None;
        }
    };
    let moto = Moto::start(&python).await.expect("moto starts");
    moto.reset().await.expect("moto resets");
    Some(moto)
}

pub fn settings(moto: &Moto) -> AwsSettings {
    AwsSettings::emulator(moto.url(), REGION)
}

/// An EC2 client for looking at what moto holds, apart from the provider under test.
pub async fn ec2(moto: &Moto) -> aws_sdk_ec2::Client {
    aws_sdk_ec2::Client::new(&settings(moto).load().await.unwrap())
}

/// An AMI moto knows (it ships a catalogue of public ones).
pub async fn some_ami(ec2: &aws_sdk_ec2::Client) -> String {
    let images = ec2
        .describe_images()
        .owners("amazon")
        .send()
        .await
        .expect("describe images");
    images
        .images()
        .iter()
        .find(|i| i.root_device_name().is_some())
        .and_then(|i| i.image_id())
        .expect("moto has an AMI with a root device")
        .to_string()
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
    let sdk = settings(moto).load().await.unwrap();
    let ecs = aws_sdk_ecs::Client::new(&sdk);
    ecs.create_cluster()
        .cluster_name("ci")
        .send()
        .await
        .unwrap();
    for (family, labels) in families {
        ecs.register_task_definition()
            .family(*family)
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
                    .value(*labels)
                    .build(),
            )
            .send()
            .await
            .unwrap();
    }
    let ec2 = aws_sdk_ec2::Client::new(&sdk);
    let subnets = ec2.describe_subnets().send().await.unwrap();
    let subnet = subnets.subnets()[0].subnet_id().unwrap().to_string();
    let groups = ec2.describe_security_groups().send().await.unwrap();
    let security_group = groups.security_groups()[0].group_id().unwrap().to_string();
    EcsWorld {
        cluster: "ci".into(),
        subnet,
        security_group,
    }
}
