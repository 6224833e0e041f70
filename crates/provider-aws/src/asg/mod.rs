//! An Auto Scaling group of runners that register themselves at boot (the autoscaled private
//! runner pattern), scaled on queue depth by `policy::decide` every interval.
//!
//! mayfly does not create these runners' credentials: the group's launch template boots an
//! image that registers a runner named after its instance id. mayfly sizes the group, marks
//! runners draining with the instance tag `mayfly-draining` (the runner's wrapper reads it from
//! the instance metadata and takes no new job), and retires a draining runner once it is idle:
//! unprotect, deregister, TerminateInstanceInAutoScalingGroup with decrement. Cooldowns are
//! kept in memory: a restarted controller may scale once sooner than the cooldown says.

mod client;
pub mod policy;

pub use client::{AsgApi, Client, Group};
pub use policy::{Decision, Member, Policy, View};

use crate::ConfigError;
use async_trait::async_trait;
use mayfly_core::Time;
use mayfly_provider::Error;
use std::sync::{Arc, Mutex};
use std::time::Duration;

/// The instance tag of a draining runner.
pub const DRAINING_TAG: &str = "mayfly-draining";

/// A group mayfly creates when it does not exist.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct CreateGroup {
    /// `lt-…` or a launch template name.
    pub launch_template: String,
    pub subnets: Vec<String>,
}

#[derive(Clone, Debug, PartialEq, Eq)]
pub struct AsgConfig {
    pub aws: crate::AwsSettings,
    pub group: String,
    pub create: Option<CreateGroup>,
    pub policy: Policy,
    /// Between decisions.
    pub interval: Duration,
    /// Tags put on a group mayfly creates (the controller's, so it is found again).
    pub tags: Vec<(String, String)>,
}

impl AsgConfig {
    pub fn new(aws: crate::AwsSettings, group: &str) -> AsgConfig {
        AsgConfig {
            aws,
            group: group.to_string(),
            create: None,
            policy: Policy::default(),
            interval: Duration::from_secs(60),
            tags: Vec::new(),
        }
    }

    pub fn check(&self) -> Result<(), ConfigError> {
        let bad = |key, message: String| Err(ConfigError::Invalid { key, message });
        let p = &self.policy;
        if self.group.trim().is_empty() {
            return bad("group", "is empty".into());
        }
        if p.step == 0 {
            return bad("step", "must be at least 1".into());
        }
        if p.max == 0 || p.min > p.max {
            return bad(
                "max",
                format!("must be at least 1 and at least min ({})", p.min),
            );
        }
        if p.in_threshold >= p.out_threshold.max(1) {
            return bad(
                "scale_in_threshold",
                format!(
                    "must be below scale_out_threshold ({}), or the group would flap",
                    p.out_threshold
                ),
            );
        }
        if let Some(c) = &self.create
            && (c.launch_template.trim().is_empty() || c.subnets.is_empty())
        {
            return bad(
                "launch_template",
                "creating the group needs a launch template and subnets".into(),
            );
        }
        if self.interval < Duration::from_secs(1) {
            return bad("interval", "must be at least 1s".into());
        }
        Ok(())
    }
}

/// What the forge says of one of the group's runners (named after its instance id).
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct RunnerState {
    pub name: String,
    pub online: bool,
    pub busy: bool,
}

/// Removes a runner's registration at the forge before its instance goes.
#[async_trait]
pub trait Deregister: Send + Sync {
    async fn deregister(&self, runner: &str) -> Result<(), String>;
}

/// One group's scaler. Every step is safe to repeat: a failed pass is simply run again.
pub struct Scaler {
    api: Arc<dyn AsgApi>,
    config: AsgConfig,
    /// When it last scaled out and in.
    cooldowns: Mutex<(Option<Time>, Option<Time>)>,
}

fn err(e: crate::ApiError) -> Error {
    if let Some(c) = e.common() {
        return c;
    }
    match e.code.as_str() {
        "ValidationError" | "InvalidParameterValue" | "InvalidParameterCombination" => e.invalid(),
        "LimitExceeded" => Error::Quota {
            message: e.to_string(),
        },
        "ResourceContention" | "ScalingActivityInProgress" => Error::Locked,
        c if c.starts_with("InvalidInstanceID") => Error::NotFound,
        _ => e.api(),
    }
}

impl Scaler {
    pub async fn new(config: AsgConfig) -> Result<Scaler, ConfigError> {
        config.check()?;
        let api = Client(config.aws.connect().await?);
        Ok(Scaler::with_api(Arc::new(api), config))
    }

    pub fn with_api(api: Arc<dyn AsgApi>, config: AsgConfig) -> Scaler {
        Scaler {
            api,
            config,
            cooldowns: Mutex::new((None, None)),
        }
    }

    pub fn config(&self) -> &AsgConfig {
        &self.config
    }

    /// The group, created first when it is missing and the configuration says how.
    pub async fn group(&self) -> Result<Group, Error> {
        let name = &self.config.group;
        if let Some(g) = self.api.group(name).await.map_err(err)? {
            return Ok(g);
        }
        let Some(c) = &self.config.create else {
            return Err(Error::Invalid {
                message: format!("Auto Scaling group {name} does not exist"),
            });
        };
        // The group's own minimum stays 0: mayfly keeps `min` runners that take jobs, and a
        // draining runner must be able to leave with a decrement.
        self.api
            .create(
                name,
                &c.launch_template,
                &c.subnets,
                0,
                self.config.policy.max,
                &self.config.tags,
            )
            .await
            .map_err(err)?;
        tracing::info!(group = %name, "Auto Scaling group created");
        self.api
            .group(name)
            .await
            .map_err(err)?
            .ok_or_else(|| Error::Api {
                status: 0,
                code: "NotCreated".into(),
                message: format!("Auto Scaling group {name} is missing after its creation"),
            })
    }

    /// One decision and its steps. `queued` counts the jobs this group's labels serve.
    pub async fn pass(
        &self,
        queued: u32,
        runners: &[RunnerState],
        registry: &dyn Deregister,
        now: Time,
    ) -> Result<Decision, Error> {
        let name = &self.config.group;
        let group = self.group().await?;
        let ids: Vec<String> = group.instances.iter().map(|(id, _)| id.clone()).collect();
        let draining = self.api.tagged(&ids, DRAINING_TAG).await.map_err(err)?;
        let members = ids
            .iter()
            .map(|id| {
                let r = runners.iter().find(|r| &r.name == id);
                Member {
                    instance: id.clone(),
                    online: r.is_some_and(|r| r.online),
                    busy: r.is_some_and(|r| r.busy),
                    draining: draining.contains(id),
                }
            })
            .collect();
        let (last_out, last_in) = *self.cooldowns.lock().unwrap_or_else(|e| e.into_inner());
        let view = View {
            queued,
            members,
            desired: group.desired,
            last_out,
            last_in,
        };
        let d = policy::decide(&self.config.policy, &view, now);
        for id in &d.retire {
            // Unprotected first, so nothing keeps the group from letting it go; deregistered
            // next, so no job is handed to a runner whose machine is about to vanish.
            self.api
                .protect(name, std::slice::from_ref(id), false)
                .await
                .map_err(err)?;
            if let Err(e) = registry.deregister(id).await {
                tracing::warn!(instance = %id, error = %e, "ASG: cannot deregister a draining runner; retiring it later");
                continue;
            }
            match self.api.terminate_decrement(id).await.map_err(err) {
                Ok(()) | Err(Error::NotFound) => {
                    tracing::info!(group = %name, instance = %id, "ASG: draining runner retired")
                }
                Err(e) => return Err(e),
            }
        }
        if !d.reactivate.is_empty() {
            self.api
                .untag(&d.reactivate, DRAINING_TAG)
                .await
                .map_err(err)?;
        }
        if let Some(n) = d.desired {
            self.api.set_desired(name, n).await.map_err(err)?;
        }
        if d.protect_all {
            let open: Vec<String> = group
                .instances
                .iter()
                .filter(|(_, protected)| !protected)
                .map(|(id, _)| id.clone())
                .collect();
            self.api.protect(name, &open, true).await.map_err(err)?;
        }
        if !d.drain.is_empty() {
            self.api.tag(&d.drain, DRAINING_TAG).await.map_err(err)?;
        }
        {
            let mut c = self.cooldowns.lock().unwrap_or_else(|e| e.into_inner());
            if d.scaled_out {
                c.0 = Some(now);
            }
            if d.scaled_in {
                c.1 = Some(now);
            }
        }
        if !d.is_empty() {
            tracing::info!(group = %name, reason = %d.reason, retire = d.retire.len(), reactivate = d.reactivate.len(), desired = ?d.desired, drain = d.drain.len(), "ASG: scaled");
        }
        Ok(d)
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn thresholds_that_would_flap_are_refused() {
        let mut c = AsgConfig::new(crate::AwsSettings::default(), "runners");
        assert_eq!(c.check(), Ok(()));
        c.policy.in_threshold = 1;
        assert!(
            c.check()
                .unwrap_err()
                .to_string()
                .contains("scale_in_threshold")
        );
        c.policy.in_threshold = 0;
        c.policy.min = 11;
        assert!(c.check().unwrap_err().to_string().contains("max"));
    }
}
