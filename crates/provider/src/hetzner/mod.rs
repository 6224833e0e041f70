//! Hetzner Cloud as a provider: servers made from pools' specs, labelled with the controller,
//! listed in pages of 50, powered, rebuilt for reuse and deleted; hourly billing from the catalogue.
//!
//! API economy is the scaling limit here (3,600 requests an hour per project), so a job costs
//! one create and one delete, a reconcile pass one list per 50 servers, and everything that
//! rarely changes (server types, locations, images, snapshot ids, SSH key ids) is read at most
//! once an hour and kept. The catalogue also spares creates that cannot succeed: a type Hetzner
//! does not know or no longer sells somewhere is skipped before a create is spent on it.

mod catalog;
mod client;
mod config;
mod mapping;
mod offers;

pub use catalog::{fingerprint, ssh_key};
pub use client::{Api, Budget, Call, CallError, Reply};
pub use config::{ConfigError, DEFAULT_ENDPOINT, HetznerConfig};
pub use mapping::{
    Address, Amount, Datacenter, Location, Price, PublicNet, Refusal, Server, ServerType, WireImage,
};

use crate::{CreateRequest, Error, Provider, Result, SpecProblem, tags};
use async_trait::async_trait;
use catalog::{Catalogue, PER_PAGE};
use mapping::Meta;
use mayfly_core::{Billing, Clock, Image, ImageKind, Instance, MachineSpec, Placement, Secret};
use offers::{Offer, Types};
use reqwest::Method;
use serde::Deserialize;
use serde_json::json;
use std::collections::HashSet;
use std::sync::{Arc, Mutex};

/// 10,000 servers at 50 a page: far beyond any project's quota, so reaching it means a
/// runaway page chain, not a big fleet.
const LIST_MAX_PAGES: u64 = 200;

/// A provider for one Hetzner Cloud project. Cheap to share behind an `Arc`; every call goes
/// through one client, so they all honour the same rate-limit budget.
pub struct Hetzner {
    api: Api,
    ipv4: bool,
    ipv6: bool,
    /// `(public key, fingerprint)`, checked when the configuration was read.
    ssh_keys: Vec<(String, String)>,
    catalogue: Catalogue,
    /// Server types whose deprecation was logged: a warning once per type, not once per create.
    warned: Mutex<HashSet<String>>,
}

#[derive(Deserialize)]
struct ServerAnswer {
    server: Server,
}

#[derive(Deserialize)]
struct ServersPage {
    #[serde(default)]
    servers: Vec<Server>,
    #[serde(default)]
    meta: Meta,
}

impl std::fmt::Debug for Hetzner {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("Hetzner")
            .field("endpoint", &self.api.endpoint())
            .finish_non_exhaustive()
    }
}

impl Hetzner {
    /// Checks the configuration (endpoint, token, SSH keys) without calling the API; `clock`
    /// is what rate-limit waits and the catalogue's freshness are measured with.
    pub fn new(
        config: &HetznerConfig,
        clock: Arc<dyn Clock>,
    ) -> std::result::Result<Hetzner, ConfigError> {
        let ssh_keys = config
            .ssh_keys
            .iter()
            .enumerate()
            .map(|(i, key)| {
                fingerprint(key)
                    .map(|fp| (key.trim().to_string(), fp))
                    .ok_or(ConfigError::BadSshKey(i + 1))
            })
            .collect::<std::result::Result<Vec<_>, _>>()?;
        Ok(Hetzner {
            api: Api::new(config, clock)?,
            ipv4: config.ipv4,
            ipv6: config.ipv6,
            ssh_keys,
            catalogue: Catalogue::default(),
            warned: Mutex::new(HashSet::new()),
        })
    }

    /// `(remaining, limit)` of the project's request budget as the last answer reported it;
    /// `None` before the first call. For metrics.
    pub fn budget(&self) -> Option<(u32, u32)> {
        self.api.budget().map(|b| (b.remaining, b.limit))
    }

    /// The whole budget as last reported, with when the bucket is full again.
    pub fn budget_detail(&self) -> Option<Budget> {
        self.api.budget()
    }

    pub fn endpoint(&self) -> &str {
        self.api.endpoint()
    }

    fn server_id(id: &str) -> Result<u64> {
        // Parsing also keeps anything but a number out of the URL path.
        id.trim().parse().map_err(|_| Error::Invalid {
            message: format!("{id:?} is not a Hetzner server id"),
        })
    }

    /// The instance of a server answer, its price taken from the server's own type when the
    /// API sent it, from the catalogue otherwise.
    async fn instance(&self, server: &Server) -> Result<Instance> {
        let mut instance = server.instance(|id| self.catalogue.known_image(id))?;
        if instance.billing.is_none()
            && let Some(p) = &instance.placement
        {
            instance.billing = self.billing(p).await.ok();
        }
        Ok(instance)
    }

    async fn action(
        &self,
        id: &str,
        action: &str,
        body: Option<serde_json::Value>,
        sensitive: Option<&Secret>,
    ) -> Result<()> {
        let id = Self::server_id(id)?;
        let url = self
            .api
            .url(&format!("/servers/{id}/actions/{action}"), &[])?;
        let mut call = Call::new(Method::POST, url);
        if let Some(b) = body {
            call = call.json(b);
        }
        if let Some(s) = sensitive {
            call = call.sensitive(s);
        }
        // The answer is an action; the reconciler reads the server's state on its next pass
        // rather than spending calls on polling the action here.
        self.api.send(&call).await?;
        Ok(())
    }

    /// Logs a deprecated type once per process: the operator should move the pool off it before
    /// its date, after which creates skip it. True when it logged.
    fn warn_deprecated(&self, server_type: &str, location: &str, d: offers::Deprecation) -> bool {
        let first = self
            .warned
            .lock()
            .unwrap_or_else(|e| e.into_inner())
            .insert(server_type.to_string());
        if first {
            let until = d.unavailable_after.map(crate::day);
            tracing::warn!(
                server_type,
                location,
                unavailable_after = until.as_deref().unwrap_or("not announced"),
                "Hetzner: server type is deprecated; it is skipped once unavailable, change the pool's types"
            );
        }
        first
    }

    /// One create attempt for one type and location (`None`: let the API choose).
    async fn create_at(
        &self,
        req: &CreateRequest,
        server_type: &str,
        location: Option<&str>,
        image: &catalog::ImageRef,
        ssh_keys: &[u64],
    ) -> Result<Instance> {
        let mut body = json!({
            "name": req.name,
            "server_type": server_type,
            "image": image.json(),
            "labels": { tags::CONTROLLER: req.controller, tags::POOL: req.pool },
            "user_data": req.user_data.expose(),
            "ssh_keys": ssh_keys,
            "start_after_create": true,
            "public_net": { "enable_ipv4": self.ipv4, "enable_ipv6": self.ipv6 },
        });
        if let Some(l) = location {
            body["location"] = json!(l);
        }
        let url = self.api.url("/servers", &[])?;
        let call = Call::new(Method::POST, url)
            .json(body)
            .sensitive(&req.user_data);
        let answer: ServerAnswer = self.api.send(&call).await?.json()?;
        self.instance(&answer.server).await
    }
}

/// Whether a create's `invalid_input` is about this placement rather than the request: the
/// real API's words for a type not sold in the location ("unsupported location for server
/// type") or retired ("server type 104 is deprecated"). Only reached when the catalogue was
/// unreadable or an hour old.
fn refused_here(message: &str) -> bool {
    message.contains("unsupported location for server type") || refused_everywhere(message)
}

/// "server type 104 is deprecated": gone in every location, so its other locations are not tried.
fn refused_everywhere(message: &str) -> bool {
    message.starts_with("server type ") && message.ends_with(" is deprecated")
}

#[async_trait]
impl Provider for Hetzner {
    fn kind(&self) -> &'static str {
        client::API
    }

    /// Walks the spec's types in order, and for each type its locations in order: the pool's
    /// first type is what the operator wants most, and any location of it beats a second-choice
    /// type (locations of one region cost the same). Only "not here, not now"
    /// (`resource_unavailable`, `placement_error`) moves on; anything else answers at once.
    ///
    /// Before any create, the catalogue takes out what cannot succeed: a type it does not know,
    /// of another architecture than the image, or past its deprecation's `unavailable_after` in
    /// a location (or not offered there). A type deprecated but still orderable is used, with a
    /// warning once per type. When nothing is left, the answer is `Invalid`, naming each type
    /// and why, without a create. When the catalogue cannot be read, every placement is tried
    /// as it stands (best effort).
    ///
    /// Cost: one POST per job; the server types, a snapshot's id and the SSH key ids are read
    /// at most once an hour.
    async fn create(&self, req: &CreateRequest) -> Result<Instance> {
        if req.spec.types.is_empty() {
            return Err(Error::Invalid {
                message: format!("pool {}: the machine spec names no server type", req.pool),
            });
        }
        let image = self.catalogue.image(&self.api, &req.spec.image).await?;
        let ssh_keys = self.catalogue.ssh_keys(&self.api, &self.ssh_keys).await?;
        let types = match self.catalogue.types(&self.api).await {
            Ok(types) => Some(types),
            Err(e @ Error::RateLimited { .. }) => return Err(e),
            Err(e) => {
                tracing::warn!(error = %e, "Hetzner: server types unreadable, creating unchecked");
                None
            }
        };
        let now = self.api.now();
        let judged = types
            .as_deref()
            .map(|t| offers::type_problems(t, &req.spec, now))
            .unwrap_or_default();
        let locations: Vec<Option<&str>> = if req.spec.locations.is_empty() {
            vec![None]
        } else {
            req.spec
                .locations
                .iter()
                .map(|l| Some(l.as_str()))
                .collect()
        };
        let (mut tried, mut skipped) = (Vec::new(), Vec::new());
        'types: for server_type in &req.spec.types {
            if let Some(why) = offers::why_skipped(&judged, server_type) {
                skipped.push(why);
                continue;
            }
            let info = types
                .as_deref()
                .and_then(|t| offers::lookup(t, server_type));
            for location in &locations {
                let at = location.unwrap_or("any");
                if let Some(info) = info {
                    let offer = match location {
                        Some(l) => info.offer(l, now),
                        None => Offer::Orderable,
                    };
                    match offer {
                        Offer::Retired(d) => {
                            let after = d.unavailable_after.map(crate::day);
                            let after = after.as_deref().unwrap_or("its deprecation");
                            skipped.push(format!(
                                "server type {server_type} is unavailable in {at} after {after}"
                            ));
                            continue;
                        }
                        Offer::NotOffered => {
                            skipped
                                .push(format!("server type {server_type} is not offered in {at}"));
                            continue;
                        }
                        Offer::Deprecated(d) => {
                            self.warn_deprecated(server_type, at, d);
                        }
                        Offer::Orderable => {}
                    }
                }
                match self
                    .create_at(req, server_type, *location, &image, &ssh_keys)
                    .await
                {
                    Err(Error::CapacityUnavailable { message }) => {
                        tracing::info!(name = %req.name, server_type, location = at, %message, "Hetzner: no capacity, trying the next placement");
                        tried.push(format!("{server_type}@{at}"));
                    }
                    // What the catalogue would have said, had it been readable (or fresh).
                    Err(Error::Invalid { message }) if refused_here(&message) => {
                        tracing::info!(name = %req.name, server_type, location = at, %message, "Hetzner: not sold there, trying the next placement");
                        skipped.push(format!("server type {server_type} in {at}: {message}"));
                        if refused_everywhere(&message) {
                            continue 'types;
                        }
                    }
                    other => return other,
                }
            }
        }
        if !tried.is_empty() {
            let mut message = format!("tried {}", tried.join(", "));
            if !skipped.is_empty() {
                message.push_str(&format!("; skipped: {}", skipped.join("; ")));
            }
            return Err(Error::CapacityUnavailable { message });
        }
        Err(Error::Invalid {
            message: format!(
                "pool {}: no server type of the spec can be ordered: {}",
                req.pool,
                skipped.join("; ")
            ),
        })
    }

    /// Against the catalogue: the spec's locations (`GET /locations`), server types
    /// (`GET /server_types`: known, of the image's architecture, orderable in the spec's
    /// locations, deprecated) and image (system images from `GET /images?type=system`; others
    /// resolved as a create resolves them). Each list is read at most once an hour, shared by
    /// every pool and by creates: checking every pool at start costs three calls, plus one per
    /// snapshot, backup or app image.
    async fn check(&self, spec: &MachineSpec) -> Result<Vec<SpecProblem>> {
        let now = self.api.now();
        let mut problems = Vec::new();
        if !spec.locations.is_empty() {
            let known = self.catalogue.locations(&self.api).await?;
            problems.extend(offers::location_problems(&known, spec));
        }
        let types: Arc<Types> = self.catalogue.types(&self.api).await?;
        problems.extend(offers::type_problems(&types, spec, now));
        if spec.image.kind == ImageKind::System {
            let images = self.catalogue.system_images(&self.api).await?;
            problems.extend(offers::system_image_problem(&images, spec));
        } else {
            match self.catalogue.image(&self.api, &spec.image).await {
                Ok(_) => {}
                Err(Error::Invalid { .. }) => problems.push(SpecProblem {
                    item: crate::SpecItem::Image,
                    name: spec.image.to_string(),
                    issue: crate::SpecIssue::Unknown,
                    alternatives: Vec::new(),
                }),
                Err(e) => return Err(e),
            }
        }
        Ok(problems)
    }

    /// `GET /servers?label_selector=mayfly-controller==<id>` page by page. Servers without the
    /// exact tag are dropped here too, whatever the API answered: mayfly never touches them.
    async fn list(&self, controller: &str) -> Result<Vec<Instance>> {
        let selector = format!("{}=={controller}", tags::CONTROLLER);
        let mut instances = Vec::new();
        let mut page = 1;
        for _ in 0..LIST_MAX_PAGES {
            let p = page.to_string();
            let url = self.api.url(
                "/servers",
                &[
                    ("label_selector", &selector),
                    ("page", &p),
                    ("per_page", PER_PAGE),
                ],
            )?;
            let answer: ServersPage = self.api.get(url).await?;
            for server in &answer.servers {
                if server.labels.get(tags::CONTROLLER).map(String::as_str) == Some(controller) {
                    instances.push(self.instance(server).await?);
                }
            }
            match answer.meta.next_page() {
                Some(next) if next > page => page = next,
                _ => return Ok(instances),
            }
        }
        // A truncated list would look like machines that vanished: better no answer.
        Err(mapping::invalid_answer(
            "the server list has too many pages",
        ))
    }

    async fn get(&self, id: &str) -> Result<Instance> {
        let id = Self::server_id(id)?;
        let url = self.api.url(&format!("/servers/{id}"), &[])?;
        let answer: ServerAnswer = self.api.get(url).await?;
        self.instance(&answer.server).await
    }

    /// Cuts power at once (`poweroff`, not an ACPI `shutdown`): the runner has finished or the
    /// instance is being parked, and a graceful stop only adds billed seconds.
    async fn power_off(&self, id: &str) -> Result<()> {
        self.action(id, "poweroff", None, None).await
    }

    async fn power_on(&self, id: &str) -> Result<()> {
        self.action(id, "poweron", None, None).await
    }

    async fn rebuild(&self, id: &str, image: &Image, user_data: &Secret) -> Result<()> {
        let image = self.catalogue.image(&self.api, image).await?;
        let body = json!({ "image": image.json(), "user_data": user_data.expose() });
        self.action(id, "rebuild", Some(body), Some(user_data))
            .await
    }

    async fn delete(&self, id: &str) -> Result<()> {
        let id = Self::server_id(id)?;
        let url = self.api.url(&format!("/servers/{id}"), &[])?;
        match self
            .api
            .send(&Call::new(Method::DELETE, url))
            .await
            .map_err(Error::from)
        {
            Ok(_) | Err(Error::NotFound) => Ok(()),
            Err(e) => Err(e),
        }
    }

    async fn billing(&self, placement: &Placement) -> Result<Billing> {
        let price = self
            .catalogue
            .price(&self.api, &placement.machine_type, &placement.location)
            .await?;
        Ok(Billing::hourly(price))
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use mayfly_core::Time;
    use std::time::Duration;

    struct Still;
    impl Clock for Still {
        fn now(&self) -> Time {
            Time::default()
        }
        fn sleep(
            &self,
            _: Duration,
        ) -> std::pin::Pin<Box<dyn std::future::Future<Output = ()> + Send>> {
            Box::pin(std::future::ready(()))
        }
    }

    #[test]
    fn a_deprecated_type_is_warned_about_once() {
        let h = Hetzner::new(&HetznerConfig::new(Secret::new("t0ken")), Arc::new(Still)).unwrap();
        let d = offers::Deprecation::default();
        assert!(h.warn_deprecated("cx33", "fsn1", d));
        assert!(!h.warn_deprecated("cx33", "nbg1", d), "once per type");
        assert!(h.warn_deprecated("cx43", "fsn1", d));
    }

    #[test]
    fn the_real_apis_refusals_of_a_placement_are_recognised() {
        assert!(refused_here("unsupported location for server type"));
        assert!(refused_here("server type 104 is deprecated"));
        assert!(refused_everywhere("server type 104 is deprecated"));
        assert!(!refused_everywhere("unsupported location for server type"));
        assert!(!refused_here(
            "invalid input in field 'server_type': server type not found"
        ));
        assert!(!refused_here("image not found"));
    }
}
