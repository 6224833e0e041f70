//! ECS as a provider: one task per job on Fargate, Fargate Spot or the cluster's EC2 capacity,
//! its task definition chosen by the job's labels, its runner credential in its environment or
//! in a SecureString parameter that is deleted after use.
//!
//! A job costs ListTasks and DescribeTasks (the idempotency check: ECS has no unique names), a
//! RunTask (more only on `failures[]`), and at the end a DescribeTasks, a StopTask and, with
//! parameters, a PutParameter and a DeleteParameter. Tasks cannot be stopped and started or
//! rebuilt: those answer `Unsupported`. A pool's `max` is its most tasks at once.

mod catalogue;
mod client;
mod config;
mod mapping;
mod run;

pub use catalogue::{Family, choose, labels};
pub use client::{Client, EcsApi, EcsTask, Failure, RunOutcome, RunTask};
pub use config::{Capacity, DEFAULT_LABELS_TAG, EcsConfig, env};

use crate::ConfigError;
use crate::ec2::IMAGE_TAG;
use async_trait::async_trait;
use mayfly_core::{Billing, Image, Instance, Placement, Secret, Time};
use mayfly_provider::bootstrap::Credential;
use mayfly_provider::{CreateRequest, Error, Provider, Result, tags};
use std::collections::{BTreeSet, HashMap};
use std::sync::{Arc, Mutex};
use std::time::{Duration, Instant};

/// 100,000 tasks at 100 a page: a runaway page chain, not a fleet.
const LIST_MAX_PAGES: usize = 1000;
/// A parameter with no live task this long after it was written is a leftover.
const PARAMETER_GRACE: Duration = Duration::from_secs(600);
/// How often leftover parameters are looked for.
const SWEEP_EVERY: Duration = Duration::from_secs(600);

pub struct Ecs {
    api: Arc<dyn EcsApi>,
    config: EcsConfig,
    catalogue: tokio::sync::Mutex<Option<(Instant, Arc<Vec<Family>>)>>,
    last_sweep: Mutex<Option<Instant>>,
    /// When each task was first seen, for answers without `createdAt` (an age of zero would
    /// read as decades and get the task deleted as past its lifetime).
    first_seen: Mutex<HashMap<String, Time>>,
}

impl std::fmt::Debug for Ecs {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("Ecs")
            .field("cluster", &self.config.cluster)
            .field("region", &self.config.aws.region)
            .finish_non_exhaustive()
    }
}

impl Ecs {
    pub async fn new(config: EcsConfig) -> std::result::Result<Ecs, ConfigError> {
        config.check()?;
        let api = Client(config.aws.connect().await?);
        Ok(Ecs::with_api(Arc::new(api), config))
    }

    pub fn with_api(api: Arc<dyn EcsApi>, config: EcsConfig) -> Ecs {
        Ecs {
            api,
            config,
            catalogue: tokio::sync::Mutex::new(None),
            last_sweep: Mutex::new(None),
            first_seen: Mutex::new(HashMap::new()),
        }
    }

    /// The labelled task definition families, read again after `catalogue_ttl`.
    async fn families(&self) -> Result<Arc<Vec<Family>>> {
        let mut cached = self.catalogue.lock().await;
        if let Some((at, f)) = cached.as_ref()
            && at.elapsed() < self.config.catalogue_ttl
        {
            return Ok(f.clone());
        }
        let f = Arc::new(
            self.api
                .families(&self.config.labels_tag)
                .await
                .map_err(|e| mapping::error(&e))?,
        );
        *cached = Some((Instant::now(), f.clone()));
        Ok(f)
    }

    /// The family of a create: the pool's first type names one outright; otherwise the runner's
    /// labels choose.
    async fn family(&self, req: &CreateRequest) -> Result<Family> {
        let families = self.families().await?;
        let found = match req.spec.types.first() {
            Some(t) => families.iter().find(|f| &f.family == t),
            None => choose(&families, &req.labels),
        };
        found.cloned().ok_or_else(|| Error::Invalid {
            message: match req.spec.types.first() {
                Some(t) => format!(
                    "no active task definition family {t} tagged `{}`",
                    self.config.labels_tag
                ),
                None => format!(
                    "no task definition family tagged `{}` serves the labels {}",
                    self.config.labels_tag, req.labels
                ),
            },
        })
    }

    /// Every task this controller started that is meant to run, with tags.
    async fn tasks(&self, controller: &str) -> Result<Vec<EcsTask>> {
        let c = &self.config.cluster;
        let mut arns = Vec::new();
        let mut next = None;
        let mut complete = false;
        for _ in 0..LIST_MAX_PAGES {
            let (page, token) = self
                .api
                .list(c, controller, next)
                .await
                .map_err(|e| mapping::error(&e))?;
            arns.extend(page);
            next = token;
            if next.is_none() {
                complete = true;
                break;
            }
        }
        if !complete {
            return Err(Error::Api {
                status: 0,
                code: "TooManyPages".into(),
                message: "the task list has too many pages".into(),
            });
        }
        let mut tasks = Vec::new();
        for chunk in arns.chunks(100) {
            let (found, _) = self
                .api
                .describe(c, chunk)
                .await
                .map_err(|e| mapping::error(&e))?;
            tasks.extend(
                found.into_iter().filter(|t| {
                    t.tags.get(tags::CONTROLLER).map(String::as_str) == Some(controller)
                }),
            );
        }
        Ok(tasks)
    }

    async fn one(&self, arn: &str) -> Result<Option<EcsTask>> {
        let (found, _) = self
            .api
            .describe(&self.config.cluster, &[arn.to_string()])
            .await
            .map_err(|e| mapping::error(&e))?;
        Ok(found.into_iter().find(|t| t.arn == arn))
    }

    fn instance(&self, t: &EcsTask) -> Instance {
        let now = Time::from_millis(jiff::Timestamp::now().as_millisecond());
        let seen = *self
            .first_seen
            .lock()
            .unwrap_or_else(|e| e.into_inner())
            .entry(t.arn.clone())
            .or_insert(now);
        mapping::instance(t, &self.config.cluster, &self.config.prices, seen)
    }

    async fn forget_parameter(&self, name: &str) {
        if let Some(p) = self.config.parameter(name)
            && let Err(e) = self.api.delete_parameter(&p).await
        {
            tracing::warn!(parameter = %p, error = %e, "ECS: could not delete a runner's parameter");
        }
    }

    /// Deletes parameters no live task needs any more (a task that ended by itself is never
    /// deleted by mayfly), at most every `SWEEP_EVERY`.
    async fn sweep(&self, live: &[EcsTask]) {
        let Some(prefix) = &self.config.ssm_prefix else {
            return;
        };
        {
            let mut last = self.last_sweep.lock().unwrap_or_else(|e| e.into_inner());
            if last.is_some_and(|at| at.elapsed() < SWEEP_EVERY) {
                return;
            }
            *last = Some(Instant::now());
        }
        let names: BTreeSet<String> = live
            .iter()
            .filter_map(|t| self.config.parameter(t.tags.get("Name")?))
            .collect();
        let now = jiff::Timestamp::now().as_millisecond();
        match self.api.parameters(prefix.trim_end_matches('/')).await {
            Ok(found) => {
                for (name, modified) in found {
                    let age = Duration::from_millis(now.saturating_sub(modified).max(0) as u64);
                    if !names.contains(&name)
                        && age > PARAMETER_GRACE
                        && let Err(e) = self.api.delete_parameter(&name).await
                    {
                        tracing::warn!(parameter = %name, error = %e, "ECS: could not delete a leftover parameter");
                    }
                }
            }
            Err(e) => tracing::warn!(error = %e, "ECS: cannot list the runner parameters"),
        }
    }
}

#[async_trait]
impl Provider for Ecs {
    fn kind(&self) -> &'static str {
        "aws-ecs"
    }

    async fn create(&self, req: &CreateRequest) -> Result<Instance> {
        // The secret that goes to the container, under which variable, and what else it gets.
        let (secret, plain, parameter_var, extra) = match &req.credential {
            Credential::Jit(jit) => (jit, env::JIT_CONFIG, env::JIT_CONFIG_PARAMETER, None),
            Credential::Ssh {
                authorized_key,
                host_key,
            } => (
                host_key,
                env::SSH_HOST_KEY,
                env::SSH_HOST_KEY_PARAMETER,
                Some((env::SSH_PUBLIC_KEY.to_string(), Secret::new(authorized_key))),
            ),
            _ => {
                return Err(Error::Invalid {
                    message: "aws-ecs takes JIT configs only: set github.registration = \"jit\""
                        .into(),
                });
            }
        };
        let family = self.family(req).await?;
        if self
            .tasks(&req.controller)
            .await?
            .iter()
            .any(|t| t.tags.get("Name") == Some(&req.name))
        {
            return Err(Error::AlreadyExists);
        }
        let container = match (&self.config.container, family.containers.first()) {
            (Some(c), _) => c.clone(),
            (None, Some(c)) => c.clone(),
            (None, None) => {
                return Err(Error::Invalid {
                    message: format!("task definition {} has no container", family.family),
                });
            }
        };
        let mut environment = vec![(env::RUNNER_NAME.to_string(), Secret::new(&req.name))];
        environment.extend(extra);
        match self.config.parameter(&req.name) {
            Some(p) => {
                self.api
                    .put_parameter(&p, secret)
                    .await
                    .map_err(|e| mapping::error(&e))?;
                environment.push((parameter_var.to_string(), Secret::new(p)));
            }
            None => environment.push((plain.to_string(), secret.clone())),
        }
        let base = RunTask {
            cluster: self.config.cluster.clone(),
            task_definition: family.arn.clone(),
            capacity: self.config.capacity,
            subnets: self.config.subnets.clone(),
            security_groups: self.config.security_groups.clone(),
            assign_public_ip: self.config.assign_public_ip,
            container,
            environment,
            tags: vec![
                ("Name".into(), req.name.clone()),
                (tags::CONTROLLER.into(), req.controller.clone()),
                (tags::POOL.into(), req.pool.clone()),
                (IMAGE_TAG.into(), req.spec.image.to_string()),
            ],
            started_by: req.controller.clone(),
            client_token: req.name.clone(),
        };
        let capacities = self.config.capacities();
        match run::run(&*self.api, &base, &capacities, self.config.run_attempts).await {
            Ok((task, capacity)) => {
                tracing::info!(name = %req.name, task = %task.arn, family = %family.family, capacity = capacity.as_str(), "ECS: task started");
                let mut i = self.instance(&task);
                i.name = req.name.clone();
                i.controller = Some(req.controller.clone());
                i.pool = req.pool.clone();
                if let Some(p) = &mut i.placement {
                    p.machine_type = family.family.clone();
                    p.image = req.spec.image.clone();
                }
                i.billing = self
                    .config
                    .prices
                    .get(&family.family)
                    .map(|p| Billing::per_second(*p));
                Ok(i)
            }
            Err(e) => {
                self.forget_parameter(&req.name).await;
                Err(e)
            }
        }
    }

    /// ListTasks started by the controller and meant to run, then DescribeTasks per 100.
    async fn list(&self, controller: &str) -> Result<Vec<Instance>> {
        let tasks = self.tasks(controller).await?;
        self.sweep(&tasks).await;
        {
            let live: BTreeSet<&str> = tasks.iter().map(|t| t.arn.as_str()).collect();
            self.first_seen
                .lock()
                .unwrap_or_else(|e| e.into_inner())
                .retain(|arn, _| live.contains(arn.as_str()));
        }
        Ok(tasks.iter().map(|t| self.instance(t)).collect())
    }

    async fn get(&self, id: &str) -> Result<Instance> {
        match self.one(id).await? {
            Some(t) if t.last_status != "STOPPED" => Ok(self.instance(&t)),
            _ => Err(Error::NotFound),
        }
    }

    async fn power_off(&self, _: &str) -> Result<()> {
        Err(Error::Unsupported {
            operation: "power off",
        })
    }

    async fn power_on(&self, _: &str) -> Result<()> {
        Err(Error::Unsupported {
            operation: "power on",
        })
    }

    async fn rebuild(&self, _: &str, _: &Image, _: &Secret) -> Result<()> {
        Err(Error::Unsupported {
            operation: "rebuild",
        })
    }

    /// StopTask, then the runner's parameter; a task that is gone or stopped counts as deleted.
    async fn delete(&self, id: &str) -> Result<()> {
        let Some(task) = self.one(id).await? else {
            return Ok(());
        };
        if task.desired_status != "STOPPED" {
            self.api
                .stop(&self.config.cluster, id, "deleted by mayfly")
                .await
                .map_err(|e| mapping::error(&e))?;
        }
        if let Some(name) = task.tags.get("Name") {
            self.forget_parameter(name).await;
        }
        Ok(())
    }

    async fn billing(&self, placement: &Placement) -> Result<Billing> {
        self.config
            .prices
            .get(&placement.machine_type)
            .map(|p| Billing::per_second(*p))
            .ok_or_else(|| Error::Invalid {
                message: format!(
                    "no price configured for task definition family {} (set it in `prices`)",
                    placement.machine_type
                ),
            })
    }
}
