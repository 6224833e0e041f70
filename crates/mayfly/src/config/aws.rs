//! The AWS providers' part of the configuration: what `[providers.<name>]` of an `aws-*` kind
//! must hold, and its conversion into the AWS provider crate's settings (feature `aws`).

#[cfg(feature = "aws")]
use super::Config;
use super::schema::{PoolConfig, Provider, ProviderKind};

/// The problems of one AWS provider and the pools on it, each as `(key, message, hint)`.
pub fn problems(
    name: &str,
    p: &Provider,
    pools: &[(usize, &PoolConfig)],
) -> Vec<(String, String, Option<String>)> {
    let mut out = Vec::new();
    let mut problem = |key: String, message: &str, hint: Option<&str>| {
        out.push((key, message.to_string(), hint.map(str::to_string)))
    };
    let key = |k: &str| format!("providers.{name}.{k}");
    if !cfg!(feature = "aws") {
        problem(
            key("kind"),
            &format!(
                "{} needs the `aws` feature, and this mayfly was built without it",
                p.kind.as_str()
            ),
            Some("build with the default features (cargo build --features aws)"),
        );
        return out;
    }
    if p.token.is_some() {
        problem(
            key("token"),
            "AWS credentials never go in the configuration",
            Some(
                "use the standard AWS chain: AWS_PROFILE, AWS_ACCESS_KEY_ID, SSO or an instance role",
            ),
        );
    }
    if p.region.as_deref().is_some_and(|r| r.trim().is_empty()) {
        problem(key("region"), "is empty", Some("for example \"eu-west-1\""));
    }
    if p.kind == ProviderKind::AwsEcs {
        ecs_problems(name, p, &mut problem);
        return out;
    }
    if p.kind == ProviderKind::AwsAsg {
        asg_problems(name, p, pools, &mut problem);
        return out;
    }
    match (&p.ami, &p.launch_template) {
        (None, None) => problem(
            key("ami"),
            "neither `ami` nor `launch_template` is set: instances need an image",
            Some("set ami = \"ami-…\" or launch_template = \"lt-…\" (or its name)"),
        ),
        (Some(ami), _) if !ami.starts_with("ami-") => {
            problem(key("ami"), "expected an AMI id (ami-…)", None)
        }
        (_, Some(lt)) if lt.trim().is_empty() => problem(key("launch_template"), "is empty", None),
        _ => {}
    }
    network_problems(name, p, &mut problem);
    if let Some(codes) = &p.on_demand_fallback
        && codes.iter().any(|c| c.trim().is_empty())
    {
        problem(key("on_demand_fallback"), "holds an empty error code", None);
    }
    for (t, price) in &p.prices {
        if !(price.is_finite() && *price > 0.0) {
            problem(
                format!("providers.{name}.prices.{t}"),
                "expected a positive price per hour",
                None,
            );
        }
    }
    if p.root_volume_gb == Some(0) {
        problem(key("root_volume_gb"), "must be at least 1", None);
    }
    for (i, pool) in pools {
        if pool.types.is_empty() {
            problem(
                format!("pools[{i}].types"),
                "an aws-ec2 pool needs at least one instance type",
                Some("for example [\"m7i.large\", \"m6i.large\"]"),
            );
        }
        for (j, t) in pool.types.iter().enumerate() {
            if !p.prices.contains_key(t) {
                problem(
                    format!("pools[{i}].types[{j}]"),
                    &format!("no price for {t} in providers.{name}.prices"),
                    Some(&format!(
                        "add {t:?} = <price per hour> to [providers.{name}.prices]"
                    )),
                );
            }
        }
    }
    out
}

/// Subnets and security groups are ids, not names: AWS answers a name with an error only at
/// the first launch, long after `config check` said yes.
fn network_problems(
    name: &str,
    p: &Provider,
    problem: &mut impl FnMut(String, &str, Option<&str>),
) {
    let lists = [
        ("subnets", &p.subnets, "subnet-", "a subnet id"),
        (
            "security_groups",
            &p.security_groups,
            "sg-",
            "a security group id",
        ),
    ];
    for (key, ids, prefix, what) in lists {
        for (i, id) in ids.iter().enumerate() {
            if !id.starts_with(prefix) {
                problem(
                    format!("providers.{name}.{key}[{i}]"),
                    &format!("expected {what} ({prefix}…)"),
                    None,
                );
            }
        }
    }
}

fn ecs_problems(name: &str, p: &Provider, problem: &mut impl FnMut(String, &str, Option<&str>)) {
    let key = |k: &str| format!("providers.{name}.{k}");
    if p.cluster.as_deref().is_none_or(|c| c.trim().is_empty()) {
        problem(
            key("cluster"),
            "not set",
            Some("the ECS cluster tasks run in, for example \"ci\""),
        );
    }
    let launch = p.launch_type.as_deref().unwrap_or("fargate");
    if !matches!(launch, "fargate" | "fargate-spot" | "ec2") {
        problem(
            key("launch_type"),
            "expected `fargate`, `fargate-spot` or `ec2`",
            None,
        );
    }
    if launch != "ec2" && p.subnets.is_empty() {
        problem(
            key("subnets"),
            "Fargate tasks need at least one subnet",
            Some("subnets = [\"subnet-…\"]"),
        );
    }
    network_problems(name, p, problem);
    if let Some(prefix) = &p.ssm_prefix
        && !prefix.starts_with('/')
    {
        problem(
            key("ssm_prefix"),
            "a parameter path starts with `/`",
            Some("for example \"/mayfly/runners\""),
        );
    }
    for (t, price) in &p.prices {
        if !(price.is_finite() && *price > 0.0) {
            problem(
                format!("providers.{name}.prices.{t}"),
                "expected a positive price per hour",
                None,
            );
        }
    }
    for (k, set) in [
        ("ami", p.ami.is_some()),
        ("launch_template", p.launch_template.is_some()),
        ("root_volume_gb", p.root_volume_gb.is_some()),
        ("instance_profile", p.instance_profile.is_some()),
    ] {
        if set {
            problem(
                key(k),
                "is an aws-ec2 key; aws-ecs tasks take theirs from the task definition",
                None,
            );
        }
    }
}

fn asg_problems(
    name: &str,
    p: &Provider,
    pools: &[(usize, &PoolConfig)],
    problem: &mut impl FnMut(String, &str, Option<&str>),
) {
    let key = |k: &str| format!("providers.{name}.{k}");
    if p.group.as_deref().is_none_or(|g| g.trim().is_empty()) {
        problem(
            key("group"),
            "not set",
            Some("the Auto Scaling group's name"),
        );
    }
    let s = p.scaling.clone().unwrap_or_default();
    if s.step == 0 {
        problem(key("scaling.step"), "must be at least 1", None);
    }
    if s.max == 0 || s.min > s.max {
        problem(
            key("scaling.max"),
            "must be at least 1 and at least scaling.min",
            None,
        );
    }
    if s.scale_in_threshold >= s.scale_out_threshold.max(1) {
        problem(
            key("scaling.scale_in_threshold"),
            "must be below scaling.scale_out_threshold, or the group would flap",
            None,
        );
    }
    if s.interval.0 < std::time::Duration::from_secs(1) {
        problem(key("scaling.interval"), "must be at least 1s", None);
    }
    if p.launch_template.is_some() && p.subnets.is_empty() {
        problem(
            key("subnets"),
            "creating the group from its launch template needs subnets",
            None,
        );
    }
    if pools.len() != 1 {
        problem(
            key("group"),
            &format!(
                "an aws-asg provider backs exactly one pool, and {} name it",
                pools.len()
            ),
            Some("one [[pools]] with provider = this provider's name"),
        );
    }
}

#[cfg(feature = "aws")]
impl Config {
    /// The aws-asg scaler's settings for `[providers.<name>]`.
    pub fn aws_asg(&self, p: &Provider) -> mayfly_provider_aws::asg::AsgConfig {
        use mayfly_provider_aws::asg::{AsgConfig, CreateGroup, Policy};
        let s = p.scaling.clone().unwrap_or_default();
        let mut c = AsgConfig::new(aws_settings(p), p.group.as_deref().unwrap_or_default());
        c.create = p.launch_template.as_ref().map(|lt| CreateGroup {
            launch_template: lt.clone(),
            subnets: p.subnets.clone(),
        });
        c.policy = Policy {
            min: s.min,
            max: s.max,
            step: s.step,
            out_threshold: s.scale_out_threshold,
            in_threshold: s.scale_in_threshold,
            out_cooldown: s.out_cooldown.0,
            in_cooldown: s.in_cooldown.0,
        };
        c.interval = s.interval.0;
        c.tags = vec![(
            mayfly_provider::tags::CONTROLLER.to_string(),
            self.controller.clone(),
        )];
        c
    }

    /// The aws-ecs provider's settings for `[providers.<name>]`.
    pub fn aws_ecs(&self, p: &Provider) -> mayfly_provider_aws::ecs::EcsConfig {
        use mayfly_provider_aws::ecs::{Capacity, EcsConfig};
        let mut c = EcsConfig::new(aws_settings(p), p.cluster.as_deref().unwrap_or_default());
        c.capacity = p
            .launch_type
            .as_deref()
            .and_then(Capacity::parse)
            .unwrap_or(Capacity::Fargate);
        c.fallback_to_fargate = p.fallback_to_fargate;
        c.subnets = p.subnets.clone();
        c.security_groups = p.security_groups.clone();
        c.assign_public_ip = p.assign_public_ip;
        if let Some(tag) = &p.labels_tag {
            c.labels_tag = tag.clone();
        }
        c.container = p.container.clone();
        c.ssm_prefix = p.ssm_prefix.clone();
        c.prices = p.prices.clone();
        c
    }

    /// The aws-ec2 provider's settings for `[providers.<name>]`.
    pub fn aws_ec2(&self, p: &Provider) -> mayfly_provider_aws::ec2::Ec2Config {
        use mayfly_provider_aws::ec2::{Ec2Config, LaunchTemplate};
        let mut c = Ec2Config::new(aws_settings(p));
        c.launch_template = p.launch_template.as_ref().map(|lt| LaunchTemplate {
            id_or_name: lt.clone(),
            version: p.launch_template_version.clone(),
        });
        c.ami = p.ami.clone();
        c.subnets = p.subnets.clone();
        c.security_groups = p.security_groups.clone();
        c.spot = p.spot;
        if let Some(codes) = &p.on_demand_fallback {
            c.on_demand_fallback = codes.clone();
        }
        c.prices = p.prices.clone();
        c.root_volume_gb = p.root_volume_gb;
        c.instance_profile = p.instance_profile.clone();
        c
    }
}

#[cfg(feature = "aws")]
fn aws_settings(p: &Provider) -> mayfly_provider_aws::AwsSettings {
    mayfly_provider_aws::AwsSettings {
        region: p.region.clone(),
        endpoint_url: p.endpoint.clone(),
        ..Default::default()
    }
}
