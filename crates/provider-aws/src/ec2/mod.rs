//! EC2 as a provider: one instance per job from a launch template or an AMI, spot first with an
//! on-demand fallback, IMDSv2 only, an encrypted root volume, and per-second billing.
//!
//! A job costs a DescribeInstances by name (the idempotency check, as EC2 has no unique names),
//! one RunInstances, and no delete at all when the runner powers the machine off after its job
//! (instances are launched to terminate on shutdown); a reconcile pass one DescribeInstances
//! per 1,000 instances. Stopped instances are not billed, so they are never worth recycling, and
//! EC2 has no rebuild: `rebuild` answers `Unsupported`.

pub(crate) mod client;
mod config;
mod launch;
mod mapping;

pub use client::{Client, Ec2Api, Ec2Instance, LIVE_STATES, Launch, Query, RootDevice, VERSION};
pub use config::{DEFAULT_ON_DEMAND_FALLBACK, Ec2Config, LaunchTemplate};
pub use mapping::IMAGE_TAG;

use crate::ConfigError;
use async_trait::async_trait;
use mayfly_core::{Billing, Image, Instance, Placement, Secret};
use mayfly_provider::{CreateRequest, Error, Provider, Result, tags};
use std::collections::BTreeMap;
use std::sync::{Arc, Mutex};
use tokio::sync::OnceCell;

/// 100,000 instances at 1,000 a page: a runaway page chain, not a fleet.
const LIST_MAX_PAGES: usize = 100;

/// A provider for one region of one account.
pub struct Ec2 {
    api: Arc<dyn Ec2Api>,
    config: Ec2Config,
    /// Root device per AMI, read once.
    root_devices: Mutex<BTreeMap<String, Option<RootDevice>>>,
    subnet_zones: OnceCell<BTreeMap<String, String>>,
}

impl std::fmt::Debug for Ec2 {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("Ec2")
            .field("region", &self.config.aws.region)
            .field("endpoint_url", &self.config.aws.endpoint_url)
            .finish_non_exhaustive()
    }
}

impl Ec2 {
    /// Checks the configuration and sets up the client; makes no EC2 call.
    pub async fn new(config: Ec2Config) -> std::result::Result<Ec2, ConfigError> {
        config.check()?;
        let aws = config.aws.connect().await?;
        Ok(Ec2::with_api(Arc::new(Client(aws)), config))
    }

    /// A provider over any implementation of the calls: for tests that inject errors.
    pub fn with_api(api: Arc<dyn Ec2Api>, config: Ec2Config) -> Ec2 {
        Ec2 {
            api,
            config,
            root_devices: Mutex::new(BTreeMap::new()),
            subnet_zones: OnceCell::new(),
        }
    }

    fn instance(&self, i: &Ec2Instance) -> Instance {
        mapping::instance(i, &self.config.prices)
    }

    async fn root_device(&self, ami: &str) -> Result<Option<RootDevice>> {
        if let Some(d) = self
            .root_devices
            .lock()
            .unwrap_or_else(|e| e.into_inner())
            .get(ami)
        {
            return Ok(d.clone());
        }
        let d = self.api.root_device(ami).await.map_err(|e| {
            if e.code.starts_with("InvalidAMIID") {
                Error::Invalid {
                    message: format!("image {ami}: {e}"),
                }
            } else {
                mapping::error(&e)
            }
        })?;
        self.root_devices
            .lock()
            .unwrap_or_else(|e| e.into_inner())
            .insert(ami.to_string(), d.clone());
        Ok(d)
    }

    async fn subnet_zones(&self) -> Result<&BTreeMap<String, String>> {
        self.subnet_zones
            .get_or_try_init(|| async {
                if self.config.subnets.is_empty() {
                    return Ok(BTreeMap::new());
                }
                self.api
                    .subnet_zones(&self.config.subnets)
                    .await
                    .map_err(|e| mapping::error(&e))
            })
            .await
    }

    /// The AMI of a create: the pool's image if it names one, else the configured one, else
    /// the launch template's.
    fn ami(&self, image: &Image) -> Result<Option<String>> {
        if image.name.starts_with("ami-") {
            return Ok(Some(image.name.clone()));
        }
        match (&self.config.ami, &self.config.launch_template) {
            (Some(ami), _) => Ok(Some(ami.clone())),
            (None, Some(_)) => Ok(None),
            (None, None) => Err(Error::Invalid {
                message: format!(
                    "image {image}: not an AMI id, and the provider has no `ami` or `launch_template`"
                ),
            }),
        }
    }

    async fn first_page(&self, query: &Query) -> Result<Vec<Ec2Instance>> {
        self.api
            .describe(query, None)
            .await
            .map(|(i, _)| i)
            .map_err(|e| mapping::error(&e))
    }
}

/// An idempotency token unique to one launch of one name (at most 64 characters, as EC2 wants).
fn client_token(name: &str, choice: &launch::Choice, spot: bool) -> String {
    let mut h: u64 = 0xcbf2_9ce4_8422_2325;
    for b in name
        .bytes()
        .chain(choice.instance_type.bytes())
        .chain(choice.subnet.as_deref().unwrap_or("").bytes())
        .chain(choice.zone.as_deref().unwrap_or("").bytes())
        .chain([u8::from(spot)])
    {
        h = (h ^ u64::from(b)).wrapping_mul(0x0100_0000_01b3);
    }
    let prefix: String = name.chars().take(46).collect();
    format!("{prefix}-{h:016x}")
}

#[async_trait]
impl Provider for Ec2 {
    fn kind(&self) -> &'static str {
        "aws-ec2"
    }

    async fn create(&self, req: &CreateRequest) -> Result<Instance> {
        if req.spec.types.is_empty() {
            return Err(Error::Invalid {
                message: format!("pool {}: the machine spec names no instance type", req.pool),
            });
        }
        let ami = self.ami(&req.spec.image)?;
        let named = Query::Named {
            controller: req.controller.clone(),
            name: req.name.clone(),
        };
        if !self.first_page(&named).await?.is_empty() {
            return Err(Error::AlreadyExists);
        }
        let root_device = match &ami {
            Some(ami) => self.root_device(ami).await?,
            None => None,
        };
        let zones = self.subnet_zones().await?;
        let choices = launch::choices(
            &req.spec.types,
            &req.spec.locations,
            &self.config.subnets,
            zones,
        )?;
        let tags = vec![
            ("Name".to_string(), req.name.clone()),
            (tags::CONTROLLER.to_string(), req.controller.clone()),
            (tags::POOL.to_string(), req.pool.clone()),
            (mapping::IMAGE_TAG.to_string(), req.spec.image.to_string()),
        ];
        let c = &self.config;
        let make = |choice: &launch::Choice, spot: bool| Launch {
            name: req.name.clone(),
            client_token: client_token(&req.name, choice, spot),
            tags: tags.clone(),
            instance_type: choice.instance_type.clone(),
            spot,
            ami: ami.clone(),
            launch_template: c.launch_template.clone(),
            subnet: choice.subnet.clone(),
            zone: choice.zone.clone(),
            security_groups: c.security_groups.clone(),
            root_device: root_device.clone(),
            root_volume_gb: c.root_volume_gb,
            instance_profile: c.instance_profile.clone(),
            user_data: req.user_data.clone(),
        };
        let (made, spot) =
            launch::walk(&*self.api, &choices, c.spot, &c.on_demand_fallback, make).await?;
        tracing::info!(name = %req.name, id = %made.id, instance_type = %made.instance_type, spot, "EC2: instance launched");
        let mut instance = self.instance(&made);
        // RunInstances does not always echo the tags: the request's are what the instance has.
        instance.name = req.name.clone();
        instance.controller = Some(req.controller.clone());
        instance.pool = req.pool.clone();
        if let Some(p) = &mut instance.placement {
            p.image = req.spec.image.clone();
        }
        Ok(instance)
    }

    /// DescribeInstances filtered by the controller tag and the live states, page by page.
    async fn list(&self, controller: &str) -> Result<Vec<Instance>> {
        let query = Query::Controller(controller.to_string());
        let mut instances = Vec::new();
        let mut next = None;
        for _ in 0..LIST_MAX_PAGES {
            let (page, token) = self
                .api
                .describe(&query, next)
                .await
                .map_err(|e| mapping::error(&e))?;
            instances.extend(
                page.iter()
                    .filter(|i| {
                        i.tags.get(tags::CONTROLLER).map(String::as_str) == Some(controller)
                            && LIVE_STATES.contains(&i.state.as_str())
                    })
                    .map(|i| self.instance(i)),
            );
            match token {
                Some(t) => next = Some(t),
                None => return Ok(instances),
            }
        }
        Err(Error::Api {
            status: 0,
            code: "TooManyPages".into(),
            message: "the instance list has too many pages".into(),
        })
    }

    async fn get(&self, id: &str) -> Result<Instance> {
        if !id.starts_with("i-") {
            return Err(Error::Invalid {
                message: format!("{id:?} is not an EC2 instance id"),
            });
        }
        let found = self.first_page(&Query::Id(id.to_string())).await?;
        match found.iter().find(|i| i.id == id) {
            Some(i) if i.state != "terminated" => Ok(self.instance(i)),
            _ => Err(Error::NotFound),
        }
    }

    async fn power_off(&self, id: &str) -> Result<()> {
        self.api.stop(id).await.map_err(|e| mapping::error(&e))
    }

    async fn power_on(&self, id: &str) -> Result<()> {
        self.api.start(id).await.map_err(|e| mapping::error(&e))
    }

    async fn rebuild(&self, _: &str, _: &Image, _: &Secret) -> Result<()> {
        Err(Error::Unsupported {
            operation: "rebuild",
        })
    }

    /// TerminateInstances; an instance that is gone (or terminated) already counts as deleted.
    async fn delete(&self, id: &str) -> Result<()> {
        match self.api.terminate(id).await.map_err(|e| mapping::error(&e)) {
            Ok(()) | Err(Error::NotFound) => Ok(()),
            Err(e) => Err(e),
        }
    }

    async fn billing(&self, placement: &Placement) -> Result<Billing> {
        self.config
            .prices
            .get(&placement.machine_type)
            .map(|p| Billing::per_second(*p))
            .ok_or_else(|| Error::Invalid {
                message: format!(
                    "no price configured for instance type {} (set it in `prices`)",
                    placement.machine_type
                ),
            })
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn client_tokens_fit_and_differ_per_launch() {
        let c = |t: &str| launch::Choice {
            instance_type: t.into(),
            subnet: None,
            zone: None,
        };
        let name = "m".repeat(63);
        let a = client_token(&name, &c("m7i.large"), true);
        assert!(a.len() <= 64, "{}", a.len());
        assert_ne!(a, client_token(&name, &c("m7i.large"), false));
        assert_ne!(a, client_token(&name, &c("m6i.large"), true));
        assert_eq!(a, client_token(&name, &c("m7i.large"), true));
    }
}
