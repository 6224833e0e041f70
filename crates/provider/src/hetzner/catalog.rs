//! What changes rarely and costs calls to learn: server types (prices, locations, deprecations),
//! locations, system images, image ids of snapshots and app images, the project's SSH key ids.
//! Each list is read at most once an hour, whatever the number of pools, so a job costs one create.

use super::client::{Api, Call};
use super::mapping::{self, Meta, Price, WireImage};
use super::offers::{Deprecation, SystemImage, TypeInfo, Types};
use crate::{Error, Result};
use base64::Engine;
use mayfly_core::{Image, ImageKind, Time};
use md5::{Digest, Md5};
use reqwest::Method;
use serde::Deserialize;
use serde_json::{Value, json};
use std::collections::HashMap;
use std::future::Future;
use std::sync::{Arc, Mutex};
use std::time::Duration;

/// Lists and image ids are re-read after this long: types come and go, and an operator's
/// pipeline may publish a newer snapshot under the same description.
const CATALOGUE_TTL: Duration = Duration::from_secs(3600);
/// A list that could not be read is not asked for again before this long: every create would
/// otherwise pay a second call while the endpoint is broken (creates then go ahead unchecked).
const FAILURE_TTL: Duration = Duration::from_secs(300);
/// A runaway page chain stops here (2,500 items at 50 a page).
pub(crate) const MAX_PAGES: u64 = 50;
pub(crate) const PER_PAGE: &str = "50";

/// `aa:bb:…`, the MD5 of an OpenSSH public key's blob, as Hetzner computes key fingerprints.
pub fn fingerprint(public_key: &str) -> Option<String> {
    let mut parts = public_key.split_whitespace();
    let (kind, blob) = (parts.next()?, parts.next()?);
    let known = ["ssh-", "ecdsa-", "sk-"];
    if !known.iter().any(|p| kind.starts_with(p)) {
        return None;
    }
    let bytes = base64::engine::general_purpose::STANDARD
        .decode(blob)
        .ok()?;
    let digest = Md5::digest(&bytes);
    let hex: Vec<String> = digest.iter().map(|b| format!("{b:02x}")).collect();
    Some(hex.join(":"))
}

/// How an image is named in a create or rebuild: system images by name (the API picks the
/// variant for the server type's architecture), everything else by id.
#[derive(Clone, Debug, PartialEq, Eq)]
pub(crate) enum ImageRef {
    Name(String),
    Id(u64),
}

impl ImageRef {
    pub(crate) fn json(&self) -> Value {
        match self {
            ImageRef::Name(n) => json!(n),
            ImageRef::Id(id) => json!(id),
        }
    }
}

#[derive(Default)]
struct Images {
    resolved: HashMap<Image, (ImageRef, Time)>,
    /// Image ids mayfly resolved, back to the spec's words, so listed servers read back as
    /// configured.
    by_id: HashMap<u64, Image>,
}

/// One catalogue list as last read: its value with when it was read, or the failure with when.
struct Cached<T> {
    value: Option<(Time, Arc<T>)>,
    failed: Option<(Time, Error)>,
}

impl<T> Default for Cached<T> {
    fn default() -> Self {
        Cached {
            value: None,
            failed: None,
        }
    }
}

/// A list read at most once per [`CATALOGUE_TTL`] (and a failed read repeated at most once per
/// [`FAILURE_TTL`]). An async lock: one refresh at a time, the others wait for its answer
/// instead of paying for their own.
struct List<T>(tokio::sync::Mutex<Cached<T>>);

impl<T> Default for List<T> {
    fn default() -> Self {
        List(tokio::sync::Mutex::new(Cached::default()))
    }
}

impl<T> List<T> {
    async fn get<F, Fut>(&self, api: &Api, fetch: F) -> Result<Arc<T>>
    where
        F: FnOnce() -> Fut,
        Fut: Future<Output = Result<T>>,
    {
        let mut cached = self.0.lock().await;
        let now = api.now();
        if let Some((at, value)) = &cached.value
            && now.since(*at) < CATALOGUE_TTL
        {
            return Ok(value.clone());
        }
        if let Some((at, e)) = &cached.failed
            && now.since(*at) < FAILURE_TTL
        {
            return Err(e.clone());
        }
        match fetch().await {
            Ok(v) => {
                let v = Arc::new(v);
                cached.value = Some((now, v.clone()));
                cached.failed = None;
                Ok(v)
            }
            // A rate limit says nothing about the list: the client's pause already holds the
            // other calls back.
            Err(e @ Error::RateLimited { .. }) => Err(e),
            Err(e) => {
                cached.failed = Some((now, e.clone()));
                Err(e)
            }
        }
    }
}

#[derive(Default)]
pub(crate) struct Catalogue {
    types: List<Types>,
    locations: List<Vec<String>>,
    system_images: List<Vec<SystemImage>>,
    images: Mutex<Images>,
    image_lookups: tokio::sync::Mutex<()>,
    ssh_keys: tokio::sync::Mutex<Option<Vec<u64>>>,
}

#[derive(Deserialize)]
struct ServerTypesPage {
    #[serde(default)]
    server_types: Vec<ServerTypeEntry>,
    #[serde(default)]
    meta: Meta,
}

#[derive(Deserialize)]
struct ServerTypeEntry {
    name: String,
    #[serde(default)]
    architecture: Option<String>,
    #[serde(default)]
    prices: Vec<Price>,
    /// The older, type-wide deprecation (phased out since 2025-09-24 for `locations[]`).
    #[serde(default)]
    deprecation: Option<WireDeprecation>,
    #[serde(default)]
    locations: Option<Vec<TypeLocation>>,
}

#[derive(Deserialize)]
struct TypeLocation {
    name: String,
    #[serde(default)]
    deprecation: Option<WireDeprecation>,
}

#[derive(Clone, Deserialize)]
struct WireDeprecation {
    #[serde(default)]
    announced: Option<String>,
    #[serde(default)]
    unavailable_after: Option<String>,
}

impl WireDeprecation {
    /// An unreadable date is left out rather than failing the whole list.
    fn read(&self) -> Deprecation {
        let at = |t: &Option<String>| t.as_deref().and_then(|t| mapping::timestamp(t).ok());
        Deprecation {
            announced: at(&self.announced),
            unavailable_after: at(&self.unavailable_after),
        }
    }
}

#[derive(Deserialize)]
struct LocationsPage {
    #[serde(default)]
    locations: Vec<LocationEntry>,
    #[serde(default)]
    meta: Meta,
}

#[derive(Deserialize)]
struct LocationEntry {
    name: String,
}

#[derive(Deserialize)]
struct ImagesPage {
    #[serde(default)]
    images: Vec<WireImage>,
    #[serde(default)]
    meta: Meta,
}

#[derive(Deserialize)]
struct SshKeysPage {
    #[serde(default)]
    ssh_keys: Vec<SshKeyEntry>,
}

#[derive(Deserialize)]
struct SshKeyEntry {
    id: u64,
}

#[derive(Deserialize)]
struct SshKeyCreated {
    ssh_key: SshKeyEntry,
}

impl Catalogue {
    /// Every server type by name: `GET /server_types`, read at most once an hour.
    pub(crate) async fn types(&self, api: &Api) -> Result<Arc<Types>> {
        self.types.get(api, || fetch_types(api)).await
    }

    /// Every location's name: `GET /locations`, read at most once an hour.
    pub(crate) async fn locations(&self, api: &Api) -> Result<Arc<Vec<String>>> {
        self.locations.get(api, || fetch_locations(api)).await
    }

    /// Every system image (both architectures): `GET /images?type=system`, read at most once
    /// an hour. One list for all pools rather than a lookup per image name.
    pub(crate) async fn system_images(&self, api: &Api) -> Result<Arc<Vec<SystemImage>>> {
        self.system_images
            .get(api, || fetch_system_images(api))
            .await
    }

    async fn server_type(&self, api: &Api, name: &str) -> Result<Option<TypeInfo>> {
        Ok(super::offers::lookup(&*self.types(api).await?, name).cloned())
    }

    /// The gross hourly price of `server_type` in `location`.
    pub(crate) async fn price(&self, api: &Api, server_type: &str, location: &str) -> Result<f64> {
        self.server_type(api, server_type)
            .await?
            .and_then(|t| t.prices.get(location).copied())
            .ok_or_else(|| Error::Invalid {
                message: format!("server type {server_type} has no price in location {location}"),
            })
    }

    /// Where `image` came from, if mayfly resolved its id.
    pub(crate) fn known_image(&self, id: u64) -> Option<Image> {
        self.lock_images().by_id.get(&id).cloned()
    }

    fn lock_images(&self) -> std::sync::MutexGuard<'_, Images> {
        self.images.lock().unwrap_or_else(|e| e.into_inner())
    }

    /// How to name `image` to the API. System images go by name at no cost; snapshots, backups
    /// and app images are looked up (`GET /images?type=&architecture=`) by name, description or
    /// id, the newest available one winning, and remembered for an hour.
    pub(crate) async fn image(&self, api: &Api, image: &Image) -> Result<ImageRef> {
        if image.kind == ImageKind::System {
            return Ok(ImageRef::Name(image.name.clone()));
        }
        let _one_lookup = self.image_lookups.lock().await;
        let now = api.now();
        if let Some((r, at)) = self.lock_images().resolved.get(image)
            && now.since(*at) < CATALOGUE_TTL
        {
            return Ok(r.clone());
        }
        let found = find_image(api, image).await?;
        let mut images = self.lock_images();
        images.by_id.insert(found, image.clone());
        images
            .resolved
            .insert(image.clone(), (ImageRef::Id(found), now));
        Ok(ImageRef::Id(found))
    }

    /// The ids of the configured SSH keys in the project, uploading the ones it lacks. Looked
    /// up by fingerprint once per process; a key another controller uploaded meanwhile (the
    /// create answers `uniqueness_error`) is looked up again rather than failing.
    pub(crate) async fn ssh_keys(&self, api: &Api, keys: &[(String, String)]) -> Result<Vec<u64>> {
        if keys.is_empty() {
            return Ok(Vec::new());
        }
        let mut cached = self.ssh_keys.lock().await;
        if let Some(ids) = cached.as_ref() {
            return Ok(ids.clone());
        }
        let mut ids = Vec::with_capacity(keys.len());
        for (public_key, fp) in keys {
            // Named after the fingerprint: the same key gets the same name from every controller.
            let name = format!("mayfly-{}", fp.replace(':', ""));
            ids.push(ssh_key(api, public_key, &name).await?);
        }
        *cached = Some(ids.clone());
        Ok(ids)
    }
}

/// Follows `meta.pagination.next_page` from page 1, at most [`MAX_PAGES`] pages.
async fn pages<P: serde::de::DeserializeOwned>(
    api: &Api,
    path: &str,
    query: &[(&str, &str)],
    mut each: impl FnMut(P) -> Option<u64>,
) -> Result<()> {
    let mut page = 1;
    for _ in 0..MAX_PAGES {
        let p = page.to_string();
        let mut q = query.to_vec();
        q.extend([("page", p.as_str()), ("per_page", PER_PAGE)]);
        let answer: P = api.get(api.url(path, &q)?).await?;
        match each(answer) {
            Some(next) if next > page => page = next,
            _ => return Ok(()),
        }
    }
    Ok(())
}

async fn fetch_types(api: &Api) -> Result<Types> {
    let mut types = HashMap::new();
    pages(api, "/server_types", &[], |answer: ServerTypesPage| {
        for t in answer.server_types {
            let prices = t
                .prices
                .iter()
                .filter_map(|p| Some((p.location.clone(), p.hourly_gross()?)))
                .collect();
            let arch = t.architecture.as_deref().and_then(mapping::arch);
            let overall = t.deprecation.as_ref().map(WireDeprecation::read);
            let locations = match &t.locations {
                Some(ls) => ls
                    .iter()
                    .map(|l| {
                        (
                            l.name.clone(),
                            l.deprecation.as_ref().map(WireDeprecation::read),
                        )
                    })
                    .collect(),
                None => t
                    .prices
                    .iter()
                    .map(|p| (p.location.clone(), overall))
                    .collect(),
            };
            types.insert(
                t.name,
                TypeInfo {
                    arch,
                    prices,
                    locations,
                },
            );
        }
        answer.meta.next_page()
    })
    .await?;
    Ok(types)
}

async fn fetch_locations(api: &Api) -> Result<Vec<String>> {
    let mut names = Vec::new();
    pages(api, "/locations", &[], |answer: LocationsPage| {
        names.extend(answer.locations.into_iter().map(|l| l.name));
        answer.meta.next_page()
    })
    .await?;
    Ok(names)
}

async fn fetch_system_images(api: &Api) -> Result<Vec<SystemImage>> {
    let mut images = Vec::new();
    pages(
        api,
        "/images",
        &[("type", "system")],
        |answer: ImagesPage| {
            images.extend(
                answer
                    .images
                    .into_iter()
                    .filter(|i| i.kind == "system")
                    .map(|i| SystemImage {
                        arch: mapping::arch(&i.architecture),
                        deprecated: i
                            .deprecated
                            .as_deref()
                            .and_then(|d| mapping::timestamp(d).ok()),
                        available: i.status.as_deref().is_none_or(|s| s == "available"),
                        name: i.label(),
                    }),
            );
            answer.meta.next_page()
        },
    )
    .await?;
    Ok(images)
}

async fn find_image(api: &Api, image: &Image) -> Result<u64> {
    let (kind, arch) = (
        mapping::kind_word(image.kind),
        mapping::arch_word(image.arch),
    );
    let mut best: Option<WireImage> = None;
    let mut page = 1;
    for _ in 0..MAX_PAGES {
        let p = page.to_string();
        let url = api.url(
            "/images",
            &[
                ("type", kind),
                ("architecture", arch),
                ("page", &p),
                ("per_page", PER_PAGE),
            ],
        )?;
        let answer: ImagesPage = api.get(url).await?;
        for candidate in answer.images {
            let usable = candidate.status.as_deref().is_none_or(|s| s == "available");
            let right_kind = candidate.kind == kind && candidate.architecture == arch;
            if usable && right_kind && candidate.answers_to(&image.name) {
                let newer = best
                    .as_ref()
                    .is_none_or(|b| candidate.created_at() > b.created_at());
                if newer {
                    best = Some(candidate);
                }
            }
        }
        match answer.meta.next_page() {
            Some(next) if next > page => page = next,
            _ => break,
        }
    }
    best.map(|b| b.id).ok_or_else(|| Error::Invalid {
        message: format!("no available {kind} image {:?} for {arch}", image.name),
    })
}

/// The project's id of `public_key`, looked up by fingerprint and uploaded under `name` when the
/// project lacks it. A key someone uploaded meanwhile (the upload answers `uniqueness_error`)
/// is looked up again rather than failing.
pub async fn ssh_key(api: &Api, public_key: &str, name: &str) -> Result<u64> {
    let fp = fingerprint(public_key).ok_or_else(|| Error::Invalid {
        message: "not an OpenSSH public key".to_string(),
    })?;
    let by_fingerprint = || async {
        let url = api.url("/ssh_keys", &[("fingerprint", &fp)])?;
        let page: SshKeysPage = api.get(url).await?;
        Ok::<_, Error>(page.ssh_keys.first().map(|k| k.id))
    };
    if let Some(id) = by_fingerprint().await? {
        return Ok(id);
    }
    let url = api.url("/ssh_keys", &[])?;
    let body = json!({ "name": name, "public_key": public_key.trim() });
    match api
        .send(&Call::new(Method::POST, url).json(body))
        .await
        .map_err(Error::from)
    {
        Ok(reply) => Ok(reply.json::<SshKeyCreated>()?.ssh_key.id),
        Err(Error::AlreadyExists) => by_fingerprint().await?.ok_or_else(|| Error::Invalid {
            message: format!("an SSH key named {name} exists with another fingerprint"),
        }),
        Err(e) => Err(e),
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn the_fingerprint_is_the_md5_of_the_key_blob() {
        // base64 of "abc"; MD5("abc") is well known.
        assert_eq!(
            fingerprint("ssh-ed25519 YWJj me@host").as_deref(),
            Some("90:01:50:98:3c:d2:4f:b0:d6:96:3f:7d:28:e1:7f:72")
        );
        assert_eq!(fingerprint("not a key"), None);
        assert_eq!(fingerprint("ssh-rsa !!!"), None);
        assert_eq!(fingerprint("ssh-rsa"), None);
    }
}
