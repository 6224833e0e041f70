//! What an operator sets for `kind = "aws-ecs"`: the cluster, the capacity (Fargate, Fargate
//! Spot or EC2), the task network, the tag that gives task definitions their labels, and how
//! the runner credential reaches the container (environment, or SSM Parameter Store).

use crate::{AwsSettings, ConfigError};
use std::collections::BTreeMap;
use std::time::Duration;

/// Where a task runs.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum Capacity {
    Fargate,
    /// Fargate's spare capacity, about 70% cheaper, and interruptible.
    FargateSpot,
    /// The cluster's own EC2 container instances.
    Ec2,
}

impl Capacity {
    pub fn as_str(self) -> &'static str {
        match self {
            Capacity::Fargate => "FARGATE",
            Capacity::FargateSpot => "FARGATE_SPOT",
            Capacity::Ec2 => "EC2",
        }
    }

    /// `fargate`, `fargate-spot` or `ec2`, as configuration writes it.
    pub fn parse(s: &str) -> Option<Capacity> {
        match s.to_ascii_lowercase().replace('_', "-").as_str() {
            "fargate" => Some(Capacity::Fargate),
            "fargate-spot" => Some(Capacity::FargateSpot),
            "ec2" => Some(Capacity::Ec2),
            _ => None,
        }
    }
}

/// The tag on a task definition whose value lists the runner labels it serves, comma-separated.
pub const DEFAULT_LABELS_TAG: &str = "mayfly-labels";

/// The container environment variables a runner image reads.
pub mod env {
    /// The runner's (and task's) name.
    pub const RUNNER_NAME: &str = "MAYFLY_RUNNER_NAME";
    /// The encoded JIT config itself, for `./run.sh --jitconfig "$MAYFLY_JIT_CONFIG"`.
    pub const JIT_CONFIG: &str = "MAYFLY_JIT_CONFIG";
    /// Instead of the config: the SSM parameter (SecureString) that holds it.
    pub const JIT_CONFIG_PARAMETER: &str = "MAYFLY_JIT_CONFIG_PARAMETER";
    /// A GitLab executor job's client key, for the container's authorized_keys (the name the
    /// GitLab Fargate driver's images read).
    pub const SSH_PUBLIC_KEY: &str = "SSH_PUBLIC_KEY";
    /// The sshd host key (OpenSSH private key) made for this task, pinned by the executor.
    pub const SSH_HOST_KEY: &str = "MAYFLY_SSH_HOST_KEY";
    /// Instead of the key: the SSM parameter (SecureString) that holds it.
    pub const SSH_HOST_KEY_PARAMETER: &str = "MAYFLY_SSH_HOST_KEY_PARAMETER";
}

#[derive(Clone, Debug, PartialEq)]
pub struct EcsConfig {
    pub aws: AwsSettings,
    pub cluster: String,
    pub capacity: Capacity,
    /// With `FargateSpot`: run on Fargate when Spot has no capacity, rather than fail.
    pub fallback_to_fargate: bool,
    /// awsvpc network of every task (Fargate needs at least one subnet).
    pub subnets: Vec<String>,
    pub security_groups: Vec<String>,
    /// A public address, for subnets without a NAT gateway (GitHub must be reachable).
    pub assign_public_ip: bool,
    pub labels_tag: String,
    /// The container that runs the runner; default: the task definition's first.
    pub container: Option<String>,
    /// When set, the JIT config goes into a SecureString parameter under this path (not into
    /// the task's environment, where DescribeTasks would show it) and is deleted after use.
    pub ssm_prefix: Option<String>,
    /// Price per hour per task definition family.
    pub prices: BTreeMap<String, f64>,
    /// How long the task definitions and their labels are kept before being read again.
    pub catalogue_ttl: Duration,
    /// RunTask calls per capacity before moving to the next one (or failing).
    pub run_attempts: u32,
}

impl EcsConfig {
    pub fn new(aws: AwsSettings, cluster: &str) -> EcsConfig {
        EcsConfig {
            aws,
            cluster: cluster.to_string(),
            capacity: Capacity::Fargate,
            fallback_to_fargate: true,
            subnets: Vec::new(),
            security_groups: Vec::new(),
            assign_public_ip: false,
            labels_tag: DEFAULT_LABELS_TAG.to_string(),
            container: None,
            ssm_prefix: None,
            prices: BTreeMap::new(),
            catalogue_ttl: Duration::from_secs(300),
            run_attempts: 2,
        }
    }

    /// The capacities a task is tried on, in order.
    pub fn capacities(&self) -> Vec<Capacity> {
        match (self.capacity, self.fallback_to_fargate) {
            (Capacity::FargateSpot, true) => vec![Capacity::FargateSpot, Capacity::Fargate],
            (c, _) => vec![c],
        }
    }

    /// The parameter of one runner's JIT config, if parameters are used.
    pub fn parameter(&self, name: &str) -> Option<String> {
        self.ssm_prefix
            .as_ref()
            .map(|p| format!("{}/{name}", p.trim_end_matches('/')))
    }

    pub fn check(&self) -> Result<(), ConfigError> {
        let bad = |key, message: String| Err(ConfigError::Invalid { key, message });
        if self.cluster.trim().is_empty() {
            return bad("cluster", "is empty".into());
        }
        if self.capacity != Capacity::Ec2 && self.subnets.is_empty() {
            return bad(
                "subnets",
                "Fargate tasks need at least one subnet (awsvpc network)".into(),
            );
        }
        if let Some(s) = self.subnets.iter().find(|s| !s.starts_with("subnet-")) {
            return bad("subnets", format!("{s:?} is not a subnet id (subnet-…)"));
        }
        if let Some(s) = self.security_groups.iter().find(|s| !s.starts_with("sg-")) {
            return bad(
                "security_groups",
                format!("{s:?} is not a security group id (sg-…)"),
            );
        }
        if let Some(p) = &self.ssm_prefix
            && !p.starts_with('/')
        {
            return bad(
                "ssm_prefix",
                format!("{p:?}: a parameter path starts with `/`"),
            );
        }
        if self.labels_tag.trim().is_empty() {
            return bad("labels_tag", "is empty".into());
        }
        if self.run_attempts == 0 {
            return bad("run_attempts", "must be at least 1".into());
        }
        Ok(())
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn fargate_spot_falls_back_to_fargate_unless_told_not_to() {
        let mut c = EcsConfig::new(AwsSettings::default(), "ci");
        c.capacity = Capacity::FargateSpot;
        assert_eq!(c.capacities(), [Capacity::FargateSpot, Capacity::Fargate]);
        c.fallback_to_fargate = false;
        assert_eq!(c.capacities(), [Capacity::FargateSpot]);
        assert_eq!(Capacity::parse("fargate_spot"), Some(Capacity::FargateSpot));
        assert_eq!(Capacity::parse("lambda"), None);
    }

    #[test]
    fn mistakes_are_named_by_key() {
        let mut c = EcsConfig::new(AwsSettings::default(), "ci");
        assert!(c.check().unwrap_err().to_string().contains("subnets"));
        c.subnets = vec!["subnet-1".into()];
        assert_eq!(c.check(), Ok(()));
        c.ssm_prefix = Some("mayfly".into());
        assert!(c.check().unwrap_err().to_string().contains("ssm_prefix"));
        c.ssm_prefix = Some("/mayfly/".into());
        assert_eq!(c.parameter("r1").as_deref(), Some("/mayfly/r1"));
    }
}
