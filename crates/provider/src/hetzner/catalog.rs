//! What changes rarely and costs calls to learn: server type prices, image ids of snapshots and
//! app images, the project's SSH key ids. Each is fetched once and kept, so a job costs one create.

use super::client::{Api, Call};
use super::mapping::{self, Meta, Price, WireImage};
use crate::{Error, Result};
use base64::Engine;
use mayfly_core::{Arch, Image, ImageKind, Time};
use md5::{Digest, Md5};
use reqwest::Method;
use serde::Deserialize;
use serde_json::{Value, json};
use std::collections::HashMap;
use std::sync::Mutex;
use std::time::Duration;

/// Prices and image ids are re-read after this long: types come and go, and an operator's
/// pipeline may publish a newer snapshot under the same description.
const CATALOGUE_TTL: Duration = Duration::from_secs(3600);
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

/// What mayfly needs of one server type.
#[derive(Clone, Debug, Default)]
struct TypeInfo {
    arch: Option<Arch>,
    /// Gross EUR an hour, per location.
    prices: HashMap<String, f64>,
}

/// Every server type by name, with when the list was read.
type Types = (Time, HashMap<String, TypeInfo>);

#[derive(Default)]
pub(crate) struct Catalogue {
    /// An async lock: one refresh at a time, the others wait for its answer instead of paying
    /// for their own.
    types: tokio::sync::Mutex<Option<Types>>,
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
    /// `GET /server_types`, read at most once an hour; one refresh at a time.
    async fn server_type(&self, api: &Api, name: &str) -> Result<Option<TypeInfo>> {
        let mut cached = self.types.lock().await;
        let now = api.now();
        let fresh = cached
            .as_ref()
            .is_some_and(|(at, _)| now.since(*at) < CATALOGUE_TTL);
        if !fresh {
            *cached = Some((now, fetch_types(api).await?));
        }
        Ok(cached
            .as_ref()
            .and_then(|(_, types)| types.get(name).cloned()))
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

    /// The architecture of `server_type`, if the catalogue knows the type and says.
    pub(crate) async fn architecture(&self, api: &Api, server_type: &str) -> Result<Option<Arch>> {
        Ok(self
            .server_type(api, server_type)
            .await?
            .and_then(|t| t.arch))
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

async fn fetch_types(api: &Api) -> Result<HashMap<String, TypeInfo>> {
    let mut types = HashMap::new();
    let mut page = 1;
    for _ in 0..MAX_PAGES {
        let p = page.to_string();
        let url = api.url("/server_types", &[("page", &p), ("per_page", PER_PAGE)])?;
        let answer: ServerTypesPage = api.get(url).await?;
        for t in answer.server_types {
            let prices = t
                .prices
                .iter()
                .filter_map(|p| Some((p.location.clone(), p.hourly_gross()?)))
                .collect();
            let arch = t.architecture.as_deref().and_then(mapping::arch);
            types.insert(t.name, TypeInfo { arch, prices });
        }
        match answer.meta.next_page() {
            Some(next) if next > page => page = next,
            _ => return Ok(types),
        }
    }
    Ok(types)
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
