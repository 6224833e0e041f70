//! What an operator sets for `kind = "aws-ec2"`: where instances are launched (launch template
//! or AMI, subnets, security groups), spot with its on-demand fallback, disks and prices.

use crate::{AwsSettings, ConfigError};
use std::collections::BTreeMap;

/// Error codes after which a spot request is retried as on-demand: the spot market has no
/// capacity (or no price) for the request, which an on-demand instance may well still have.
pub const DEFAULT_ON_DEMAND_FALLBACK: &[&str] = &[
    "InsufficientInstanceCapacity",
    "InsufficientCapacity",
    "SpotMaxPriceTooLow",
    "MaxSpotInstanceCountExceeded",
    "UnfulfillableCapacity",
];

/// An existing launch template, by id (`lt-…`) or name, and the version to use.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct LaunchTemplate {
    pub id_or_name: String,
    /// `$Default`, `$Latest` or a number; `None`: the template's default version.
    pub version: Option<String>,
}

/// One EC2 region's settings for launching runner instances.
#[derive(Clone, Debug, PartialEq)]
pub struct Ec2Config {
    pub aws: AwsSettings,
    /// Launch parameters kept in AWS (network, profile, disks); mayfly's own settings win.
    pub launch_template: Option<LaunchTemplate>,
    /// The image when a pool's image names no `ami-…` itself.
    pub ami: Option<String>,
    /// Subnets in order of preference; a pool's locations (availability zones) pick among them.
    pub subnets: Vec<String>,
    pub security_groups: Vec<String>,
    /// Ask for spot capacity first (about a third of the on-demand price).
    pub spot: bool,
    /// Spot error codes that lead to an on-demand attempt of the same instance.
    pub on_demand_fallback: Vec<String>,
    /// Price per hour per instance type, as the planner should count it.
    pub prices: BTreeMap<String, f64>,
    /// Size of the (always encrypted) root volume; `None`: the image's size.
    pub root_volume_gb: Option<u32>,
    /// An IAM instance profile (name or ARN) for the jobs' AWS access.
    pub instance_profile: Option<String>,
}

impl Ec2Config {
    /// Spot with the default fallback, no template, no subnets: the account's default VPC.
    pub fn new(aws: AwsSettings) -> Ec2Config {
        Ec2Config {
            aws,
            launch_template: None,
            ami: None,
            subnets: Vec::new(),
            security_groups: Vec::new(),
            spot: true,
            on_demand_fallback: DEFAULT_ON_DEMAND_FALLBACK
                .iter()
                .map(|c| c.to_string())
                .collect(),
            prices: BTreeMap::new(),
            root_volume_gb: None,
            instance_profile: None,
        }
    }

    /// Checks what can be checked without calling AWS.
    pub fn check(&self) -> Result<(), ConfigError> {
        let bad = |key, message: String| Err(ConfigError::Invalid { key, message });
        if self.launch_template.is_none() && self.ami.is_none() {
            return bad(
                "ami",
                "set `ami` or `launch_template`: instances need an image".into(),
            );
        }
        if let Some(ami) = &self.ami
            && !ami.starts_with("ami-")
        {
            return bad("ami", format!("{ami:?} is not an AMI id (ami-…)"));
        }
        if let Some(lt) = &self.launch_template
            && lt.id_or_name.trim().is_empty()
        {
            return bad("launch_template", "is empty".into());
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
        if let Some((t, p)) = self
            .prices
            .iter()
            .find(|(_, p)| !(p.is_finite() && **p > 0.0))
        {
            return bad("prices", format!("{t}: {p} is not a positive price"));
        }
        if self.root_volume_gb == Some(0) {
            return bad("root_volume_gb", "must be at least 1".into());
        }
        Ok(())
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn config() -> Ec2Config {
        let mut c = Ec2Config::new(AwsSettings::default());
        c.ami = Some("ami-0123".into());
        c
    }

    #[test]
    fn spot_with_fallback_is_the_default() {
        let c = config();
        assert!(c.spot);
        assert!(
            c.on_demand_fallback
                .contains(&"InsufficientInstanceCapacity".to_string())
        );
        assert_eq!(c.check(), Ok(()));
    }

    #[test]
    fn mistakes_are_named_by_key() {
        let mut c = Ec2Config::new(AwsSettings::default());
        assert!(c.check().unwrap_err().to_string().contains("`ami`"));
        c.ami = Some("ubuntu".into());
        assert!(c.check().unwrap_err().to_string().contains("not an AMI id"));
        let mut c = config();
        c.subnets = vec!["10.0.0.0/24".into()];
        assert!(c.check().unwrap_err().to_string().contains("`subnets`"));
        let mut c = config();
        c.security_groups = vec!["default".into()];
        assert!(
            c.check()
                .unwrap_err()
                .to_string()
                .contains("security_groups")
        );
        let mut c = config();
        c.prices.insert("m7i.large".into(), -1.0);
        assert!(c.check().unwrap_err().to_string().contains("m7i.large"));
        let mut c = config();
        c.root_volume_gb = Some(0);
        assert!(c.check().is_err());
    }
}
