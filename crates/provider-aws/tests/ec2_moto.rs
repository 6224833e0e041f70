//! The aws-ec2 provider against moto: the shared conformance suite, and what a created instance
//! looks like from the EC2 API (tags, user data, IMDSv2, spot, the encrypted root volume).

mod support;

use base64::Engine;
use mayfly_core::{Labels, MachineSpec, Secret, metrics};
use mayfly_provider::bootstrap::Credential;
use mayfly_provider::conformance::{self, Fixture};
use mayfly_provider::{CreateRequest, Error, Provider, tags};
use mayfly_provider_aws::ec2::{Ec2, Ec2Config};
use std::time::Duration;

fn spec() -> MachineSpec {
    MachineSpec {
        types: vec!["t3.micro".into()],
        locations: vec!["us-east-1a".into()],
        image: "x86:system:ubuntu-24.04".parse().unwrap(),
    }
}

async fn provider(moto: &mayfly_sim::moto::Moto, ami: &str) -> Ec2 {
    let mut c = Ec2Config::new(support::settings(moto));
    c.ami = Some(ami.to_string());
    c.prices.insert("t3.micro".into(), 0.0104);
    c.root_volume_gb = Some(16);
    Ec2::new(c).await.expect("a valid configuration")
}

/// The suite passes, and every EC2 call the provider made is reported under the metric
/// contract, as the Hetzner and GitHub clients report theirs.
#[tokio::test]
#[ignore = "needs moto: MAYFLY_PYTHON from scripts/py-env (scripts/test runs it)"]
async fn the_conformance_suite_passes_against_moto() {
    let moto = support::moto().await;
    // A current-thread runtime: every call is recorded on this thread, into this recorder.
    let mut builder = metrics_exporter_prometheus::PrometheusBuilder::new();
    for m in metrics::CONTRACT.iter().filter(|m| !m.buckets.is_empty()) {
        builder = builder
            .set_buckets_for_metric(
                metrics_exporter_prometheus::Matcher::Full(m.name.into()),
                m.buckets,
            )
            .unwrap();
    }
    let recorder = builder.build_recorder();
    let _local = ::metrics::set_default_local_recorder(&recorder);
    let aws = support::aws(&moto).await;
    let p = provider(&moto, &support::some_ami(&aws).await).await;
    let f = Fixture::new(spec()).with_settle(Duration::from_secs(10), Duration::from_millis(50));
    conformance::run(&p, &f).await;
    assert!(p.list(&f.controller).await.unwrap().is_empty());

    let text = recorder.handle().render();
    let families = [metrics::API_CALLS, metrics::API_REQUEST_DURATION];
    if let Err(problems) = metrics::check(&text, &families) {
        panic!("{}\n{text}", problems.join("\n"));
    }
    let api = [("api", "aws-ec2")];
    let calls = metrics::sum(&text, metrics::API_CALLS, &api);
    assert!(calls >= 10.0, "the suite's calls are counted: {text}");
    let ok = metrics::sum(&text, metrics::API_CALLS, &[api[0], ("outcome", "ok")]);
    assert!(ok > 0.0 && ok <= calls, "{text}");
    let timed = metrics::sum(&text, "mayfly_api_request_duration_seconds_count", &api);
    assert_eq!(timed, calls, "every call is timed");
}

#[tokio::test]
#[ignore = "needs moto: MAYFLY_PYTHON from scripts/py-env (scripts/test runs it)"]
async fn an_instance_is_spot_imdsv2_encrypted_tagged_and_carries_the_user_data() {
    let moto = support::moto().await;
    let aws = support::aws(&moto).await;
    let p = provider(&moto, &support::some_ami(&aws).await).await;
    let user_data = "#!/bin/bash\necho runner-secret-123\n";
    let req = CreateRequest {
        name: "mayfly-x64-7-1".into(),
        controller: "ctl".into(),
        pool: "x64".into(),
        spec: spec(),
        user_data: Secret::new(user_data),
        labels: Labels::new(["self-hosted"]),
        credential: Credential::Jit(Secret::new("c2VjcmV0")),
    };
    let made = p.create(&req).await.expect("create");
    let id = made.provider_id.clone().unwrap();
    assert_eq!(made.name, req.name);
    assert_eq!(
        made.billing.as_ref().map(|b| b.price_per_hour),
        Some(0.0104)
    );

    let out = support::ec2(&aws, "DescribeInstances", &[("InstanceId.1", &id)]).await;
    let i = support::first_instance(&out);
    let tag = |k: &str| support::tag(i, k);
    assert_eq!(tag("Name").as_deref(), Some("mayfly-x64-7-1"));
    assert_eq!(tag(tags::CONTROLLER).as_deref(), Some("ctl"));
    assert_eq!(tag(tags::POOL).as_deref(), Some("x64"));
    assert_eq!(
        i.text_at("instanceLifecycle"),
        Some("spot"),
        "spot by default"
    );
    assert_eq!(
        i.text_at("metadataOptions/httpTokens"),
        Some("required"),
        "IMDSv2 only"
    );
    let attr = support::ec2(
        &aws,
        "DescribeInstanceAttribute",
        &[("InstanceId", &id), ("Attribute", "userData")],
    )
    .await;
    let encoded = attr.value("userData/value").unwrap();
    let decoded = base64::engine::general_purpose::STANDARD
        .decode(encoded)
        .unwrap();
    assert_eq!(String::from_utf8(decoded).unwrap(), user_data);

    let root = i.value("rootDeviceName").unwrap();
    let volume_id = i
        .items("blockDeviceMapping")
        .find(|m| m.text_at("deviceName") == Some(root.as_str()))
        .and_then(|m| m.value("ebs/volumeId"))
        .expect("a root volume");
    let vols = support::ec2(&aws, "DescribeVolumes", &[("VolumeId.1", &volume_id)]).await;
    let v = vols.items("volumeSet").next().expect("the volume");
    assert_eq!(
        v.text_at("encrypted"),
        Some("true"),
        "the root volume is encrypted"
    );
    assert_eq!(v.text_at("size"), Some("16"));

    // The name is the idempotency key: a second create finds the first.
    assert_eq!(p.create(&req).await.unwrap_err(), Error::AlreadyExists);
    // EC2 has no rebuild; the executor gets a typed answer, not a failure to retry.
    assert!(matches!(
        p.rebuild(&id, &req.spec.image, &req.user_data).await,
        Err(Error::Unsupported { .. })
    ));
    p.delete(&id).await.unwrap();
    p.delete(&id).await.unwrap();
    assert_eq!(p.get(&id).await.unwrap_err(), Error::NotFound);
    assert!(
        p.list("ctl").await.unwrap().is_empty(),
        "terminated instances are not listed"
    );
}

#[tokio::test]
#[ignore = "needs moto: MAYFLY_PYTHON from scripts/py-env (scripts/test runs it)"]
async fn an_instance_without_the_controller_tag_is_never_listed() {
    let moto = support::moto().await;
    let aws = support::aws(&moto).await;
    let ami = support::some_ami(&aws).await;
    support::ec2(
        &aws,
        "RunInstances",
        &[
            ("ImageId", &ami),
            ("MinCount", "1"),
            ("MaxCount", "1"),
            ("InstanceType", "t3.micro"),
            ("TagSpecification.1.ResourceType", "instance"),
            ("TagSpecification.1.Tag.1.Key", "Name"),
            ("TagSpecification.1.Tag.1.Value", "by-hand"),
            ("TagSpecification.1.Tag.2.Key", tags::CONTROLLER),
            ("TagSpecification.1.Tag.2.Value", "ctl-other"),
        ],
    )
    .await;
    let p = provider(&moto, &ami).await;
    assert!(p.list("ctl").await.unwrap().is_empty());
    assert_eq!(p.list("ctl-other").await.unwrap().len(), 1);
}

/// Counts the EC2 calls of each kind, passing them on to the real client.
struct Counting {
    inner: mayfly_provider_aws::ec2::Client,
    calls: std::sync::Mutex<std::collections::BTreeMap<&'static str, u32>>,
}

impl Counting {
    fn count(&self, call: &'static str) {
        *self.calls.lock().unwrap().entry(call).or_default() += 1;
    }
    fn take(&self) -> std::collections::BTreeMap<&'static str, u32> {
        std::mem::take(&mut *self.calls.lock().unwrap())
    }
}

#[async_trait::async_trait]
impl mayfly_provider_aws::ec2::Ec2Api for Counting {
    async fn run(
        &self,
        l: &mayfly_provider_aws::ec2::Launch,
    ) -> Result<mayfly_provider_aws::ec2::Ec2Instance, mayfly_provider_aws::ApiError> {
        self.count("RunInstances");
        self.inner.run(l).await
    }
    async fn describe(
        &self,
        q: &mayfly_provider_aws::ec2::Query,
        next: Option<String>,
    ) -> Result<
        (Vec<mayfly_provider_aws::ec2::Ec2Instance>, Option<String>),
        mayfly_provider_aws::ApiError,
    > {
        self.count("DescribeInstances");
        self.inner.describe(q, next).await
    }
    async fn stop(&self, id: &str) -> Result<(), mayfly_provider_aws::ApiError> {
        self.count("StopInstances");
        self.inner.stop(id).await
    }
    async fn start(&self, id: &str) -> Result<(), mayfly_provider_aws::ApiError> {
        self.count("StartInstances");
        self.inner.start(id).await
    }
    async fn terminate(&self, id: &str) -> Result<(), mayfly_provider_aws::ApiError> {
        self.count("TerminateInstances");
        self.inner.terminate(id).await
    }
    async fn root_device(
        &self,
        ami: &str,
    ) -> Result<Option<mayfly_provider_aws::ec2::RootDevice>, mayfly_provider_aws::ApiError> {
        self.count("DescribeImages");
        self.inner.root_device(ami).await
    }
    async fn subnet_zones(
        &self,
        subnets: &[String],
    ) -> Result<std::collections::BTreeMap<String, String>, mayfly_provider_aws::ApiError> {
        self.count("DescribeSubnets");
        self.inner.subnet_zones(subnets).await
    }
}

/// API calls of one job's instance, created and deleted: the first job reads the AMI's root
/// device once; every later job costs a DescribeInstances (the idempotency check), a
/// RunInstances and a TerminateInstances (none when the runner powers the machine off).
#[tokio::test]
#[ignore = "needs moto: MAYFLY_PYTHON from scripts/py-env (scripts/test runs it)"]
async fn a_job_costs_three_ec2_calls() {
    let moto = support::moto().await;
    let aws = support::aws(&moto).await;
    let ami = support::some_ami(&aws).await;
    let counting = std::sync::Arc::new(Counting {
        inner: mayfly_provider_aws::ec2::Client(aws.clone()),
        calls: Default::default(),
    });
    let mut c = Ec2Config::new(support::settings(&moto));
    c.ami = Some(ami);
    c.prices.insert("t3.micro".into(), 0.0104);
    let p = Ec2::with_api(counting.clone(), c);
    let mut per_job = Vec::new();
    for n in 0..3 {
        let req = CreateRequest {
            name: format!("mayfly-x64-{n}-1"),
            controller: "ctl".into(),
            pool: "x64".into(),
            spec: spec(),
            user_data: Secret::new("#!/bin/sh\n"),
            labels: Labels::new(["self-hosted"]),
            credential: Credential::Jit(Secret::new("c2VjcmV0")),
        };
        let id = p.create(&req).await.unwrap().provider_id.unwrap();
        p.delete(&id).await.unwrap();
        per_job.push(counting.take());
    }
    println!("EC2 calls per job: {per_job:?}");
    assert_eq!(per_job[0].get("DescribeImages"), Some(&1));
    for calls in &per_job[1..] {
        assert_eq!(calls.values().sum::<u32>(), 3, "{calls:?}");
        assert_eq!(calls.get("RunInstances"), Some(&1));
    }
}
