//! The server endpoints: list, create, get, update, delete, and the power and rebuild actions.
//! Each change records a status timeline and an action; reads compute status from the clock.

use super::billing::LedgerRow;
use super::catalog::{Image, Location};
use super::errors::{ApiError, parse_body};
use super::labels;
use super::offer;
use super::query::Params;
use super::render;
use super::routes::{Answer, Hz, RawQuery, parse_id, selector};
use super::state::{STATUSES, Server, State as Project, Status, millis};
use axum::Json;
use axum::body::Bytes;
use axum::extract::{Path, State};
use axum::http::StatusCode;
use serde::Deserialize;
use serde_json::{Value, json};
use std::collections::BTreeMap;

/// The real limit on cloud-init user data.
const USER_DATA_MAX: usize = 32 * 1024;

pub async fn list(State(h): Hz, q: RawQuery) -> Answer {
    let p = Params::from(q)?;
    let selector = selector(&p)?;
    let statuses = p.all("status");
    if let Some(bad) = statuses.iter().find(|s| !STATUSES.contains(s)) {
        return Err(ApiError::invalid_field(
            "status",
            &format!("unknown status {bad:?}"),
        ));
    }
    let now = h.clock.now_ms();
    let st = h.lock();
    let matching: Vec<&Server> = st
        .servers
        .values()
        .filter(|s| p.get("name").is_none_or(|n| n == s.name))
        .filter(|s| statuses.is_empty() || statuses.contains(&s.status_at(now).as_str()))
        .filter(|s| selector.as_ref().is_none_or(|sel| sel.matches(&s.labels)))
        .collect();
    let (page, meta) = p.page(matching)?;
    let servers: Vec<Value> = page
        .into_iter()
        .map(|s| render::server(s, now, &st.config))
        .collect();
    Ok(Json(json!({ "servers": servers, "meta": meta })))
}

#[derive(Deserialize)]
struct PublicNet {
    #[serde(default = "yes")]
    enable_ipv4: bool,
    #[serde(default = "yes")]
    enable_ipv6: bool,
}

fn yes() -> bool {
    true
}

#[derive(Deserialize)]
struct CreateServer {
    name: String,
    server_type: Value,
    image: Value,
    location: Option<Value>,
    datacenter: Option<Value>,
    labels: Option<BTreeMap<String, String>>,
    user_data: Option<String>,
    ssh_keys: Option<Vec<Value>>,
    start_after_create: Option<bool>,
    public_net: Option<PublicNet>,
}

/// RFC 1123 hostname, as the API requires of server names.
fn valid_name(name: &str) -> bool {
    name.len() <= 253
        && name.split('.').all(|l| {
            !l.is_empty()
                && l.len() <= 63
                && !l.starts_with('-')
                && !l.ends_with('-')
                && l.bytes().all(|c| c.is_ascii_alphanumeric() || c == b'-')
        })
}

fn check_name(st: &Project, name: &str, except: Option<u64>) -> Result<(), ApiError> {
    if !valid_name(name) {
        return Err(ApiError::invalid_field("name", "must be a valid hostname"));
    }
    if st
        .servers
        .values()
        .any(|s| s.name == name && Some(s.id) != except)
    {
        return Err(ApiError::uniqueness("name"));
    }
    Ok(())
}

pub async fn create(State(h): Hz, body: Bytes) -> Result<(StatusCode, Json<Value>), ApiError> {
    let req: CreateServer = parse_body(&body)?;
    let labels = req.labels.unwrap_or_default();
    labels::validate(&labels).map_err(|e| ApiError::invalid_field("labels", &e))?;
    let user_data = req.user_data.unwrap_or_default();
    if user_data.len() > USER_DATA_MAX {
        return Err(ApiError::invalid_field(
            "user_data",
            "is too long (32 KiB at most)",
        ));
    }
    let now = h.clock.now_ms();
    let mut st = h.lock();
    // A type missing from the catalogue answers as an unknown one.
    let server_type = offer::find(&st.config, &req.server_type)
        .ok_or_else(|| ApiError::invalid_field("server_type", "server type not found"))?;
    let image = Image::get(&req.image, server_type.architecture).ok_or_else(|| {
        ApiError::invalid_field(
            "image",
            &format!(
                "image not found for architecture {}",
                server_type.architecture
            ),
        )
    })?;
    let location = match (&req.location, &req.datacenter) {
        (Some(key), _) => Location::get(key)
            .ok_or_else(|| ApiError::invalid_field("location", "location not found"))?,
        (None, Some(key)) => Location::by_datacenter(key)
            .ok_or_else(|| ApiError::invalid_field("datacenter", "datacenter not found"))?,
        // Like the real API, pick a location that sells the type and has it in stock.
        (None, None) => offer::pick_location(&st.config, server_type, now)?,
    };
    let mut key_ids = Vec::new();
    for key in req.ssh_keys.iter().flatten() {
        let found = st.ssh_keys.values().find(|k| match key {
            Value::Number(n) => n.as_u64() == Some(k.id),
            Value::String(s) => s.parse::<u64>().ok() == Some(k.id) || *s == k.name,
            _ => false,
        });
        key_ids.push(found.map(|k| k.id).ok_or_else(|| {
            ApiError::invalid_field("ssh_keys", &format!("ssh key {key} not found"))
        })?);
    }
    check_name(&st, &req.name, None)?;
    if let Err(why) = offer::check(&st.config, server_type, location.name, now) {
        return Err(offer::refusal(
            &st.config,
            server_type,
            location.name,
            why,
            now,
        ));
    }
    let quota = st.config.server_quota;
    if st.servers.len() >= usize::try_from(quota).unwrap_or(usize::MAX) {
        return Err(ApiError::server_limit(quota));
    }

    let id = st.next_id();
    let start = req.start_after_create.unwrap_or(true);
    let boot = millis(st.config.boot_delay);
    let net = req
        .public_net
        .map_or((true, true), |p| (p.enable_ipv4, p.enable_ipv6));
    let server = Server::new(
        id,
        req.name.clone(),
        labels,
        (server_type, location, image),
        user_data,
        net,
        now,
        (start, boot),
    );
    st.servers.insert(id, server);
    st.ledger.insert(
        id,
        LedgerRow {
            id,
            name: req.name,
            server_type,
            location,
            created_ms: now,
            deleted_ms: None,
            rebuilt_ms: Vec::new(),
        },
    );
    let create = st.action("create_server", id, now, boot);
    let next: Vec<Value> = if start {
        let a = st.action("start_server", id, now, boot);
        st.actions
            .get(&a)
            .map(|a| render::action(a, now))
            .into_iter()
            .collect()
    } else {
        Vec::new()
    };
    let server = st
        .servers
        .get(&id)
        .map(|s| render::server(s, now, &st.config));
    let action = st.actions.get(&create).map(|a| render::action(a, now));
    // With SSH keys the real API sends no root password.
    let root_password = key_ids.is_empty().then(|| format!("sim-{id:x}"));
    let body = json!({ "server": server, "action": action, "next_actions": next, "root_password": root_password });
    Ok((StatusCode::CREATED, Json(body)))
}

pub async fn get(State(h): Hz, Path(id): Path<String>) -> Answer {
    let id = parse_id(&id)?;
    let now = h.clock.now_ms();
    let st = h.lock();
    let s = st
        .servers
        .get(&id)
        .ok_or_else(|| ApiError::not_found("server"))?;
    Ok(Json(
        json!({ "server": render::server(s, now, &st.config) }),
    ))
}

#[derive(Deserialize)]
struct UpdateServer {
    name: Option<String>,
    labels: Option<BTreeMap<String, String>>,
}

pub async fn update(State(h): Hz, Path(id): Path<String>, body: Bytes) -> Answer {
    let id = parse_id(&id)?;
    let req: UpdateServer = parse_body(&body)?;
    let now = h.clock.now_ms();
    let mut st = h.lock();
    if !st.servers.contains_key(&id) {
        return Err(ApiError::not_found("server"));
    }
    if let Some(name) = &req.name {
        check_name(&st, name, Some(id))?;
    }
    if let Some(labels) = &req.labels {
        labels::validate(labels).map_err(|e| ApiError::invalid_field("labels", &e))?;
    }
    let st = &mut *st;
    let s = st
        .servers
        .get_mut(&id)
        .ok_or_else(|| ApiError::not_found("server"))?;
    if let Some(name) = req.name {
        if let Some(row) = st.ledger.get_mut(&id) {
            row.name = name.clone();
        }
        s.name = name;
    }
    if let Some(labels) = req.labels {
        s.labels = labels;
    }
    Ok(Json(
        json!({ "server": render::server(s, now, &st.config) }),
    ))
}

/// Gone at once (billing stops now); allowed while an action runs, as deleting a booting
/// server must be.
pub async fn delete(State(h): Hz, Path(id): Path<String>) -> Answer {
    let id = parse_id(&id)?;
    let now = h.clock.now_ms();
    let mut st = h.lock();
    if st.servers.remove(&id).is_none() {
        return Err(ApiError::not_found("server"));
    }
    let action = st.action("delete_server", id, now, 0);
    if let Some(row) = st.ledger.get_mut(&id) {
        row.deleted_ms = Some(now);
    }
    Ok(Json(
        json!({ "action": st.actions.get(&action).map(|a| render::action(a, now)) }),
    ))
}

/// What a power action does to a server in a given status: the timeline to start (`during`,
/// `then`, delay) or nothing, when the server is already where the action leads.
type Plan = Option<(Status, Status, i64)>;

/// Runs one server action: 404 for an unknown server, 423 while another action runs.
fn act(
    h: &Hz,
    id: &str,
    command: &'static str,
    plan: impl FnOnce(&mut Project, Status) -> Result<Plan, ApiError>,
) -> Answer {
    let id = parse_id(id)?;
    let now = h.clock.now_ms();
    let mut st = h.lock();
    let status = st
        .servers
        .get(&id)
        .map(|s| s.status_at(now))
        .ok_or_else(|| ApiError::not_found("server"))?;
    if st.locked(id, now) {
        return Err(ApiError::locked());
    }
    let timeline = plan(&mut st, status)?;
    let duration = timeline.map_or(0, |(_, _, d)| d);
    if let (Some((during, then, delay)), Some(s)) = (timeline, st.servers.get_mut(&id)) {
        s.transition(now, during, then, delay);
    }
    let action = st.action(command, id, now, duration);
    Ok(Json(
        json!({ "action": st.actions.get(&action).map(|a| render::action(a, now)) }),
    ))
}

fn is_up(status: Status) -> bool {
    !matches!(status, Status::Off | Status::Stopping)
}

/// Cuts power at once.
pub async fn poweroff(h: Hz, Path(id): Path<String>) -> Answer {
    act(&h, &id, "stop_server", |_, status| {
        Ok(is_up(status).then_some((Status::Stopping, Status::Off, 0)))
    })
}

pub async fn poweron(h: Hz, Path(id): Path<String>) -> Answer {
    act(&h, &id, "start_server", |st, status| {
        Ok((!is_up(status)).then(|| {
            (
                Status::Starting,
                Status::Running,
                millis(st.config.boot_delay),
            )
        }))
    })
}

/// An ACPI shutdown: the OS takes the shutdown delay to stop.
pub async fn shutdown(h: Hz, Path(id): Path<String>) -> Answer {
    act(&h, &id, "shutdown_server", |st, status| {
        Ok(is_up(status).then(|| {
            (
                Status::Stopping,
                Status::Off,
                millis(st.config.shutdown_delay),
            )
        }))
    })
}

pub async fn reboot(h: Hz, Path(id): Path<String>) -> Answer {
    act(&h, &id, "reboot_server", |st, status| {
        Ok(is_up(status).then(|| {
            (
                Status::Starting,
                Status::Running,
                millis(st.config.boot_delay),
            )
        }))
    })
}

pub async fn reset(h: Hz, Path(id): Path<String>) -> Answer {
    act(&h, &id, "reset_server", |st, status| {
        Ok(is_up(status).then(|| {
            (
                Status::Starting,
                Status::Running,
                millis(st.config.boot_delay),
            )
        }))
    })
}

#[derive(Deserialize)]
struct Rebuild {
    image: Value,
    user_data: Option<String>,
}

/// A fresh disk from an image (and new user data, if given), then running: a new boot, which
/// is how a paid-for server is reused for the next job.
pub async fn rebuild(h: Hz, Path(id): Path<String>, body: Bytes) -> Answer {
    let req: Rebuild = parse_body(&body)?;
    if req
        .user_data
        .as_ref()
        .is_some_and(|u| u.len() > USER_DATA_MAX)
    {
        return Err(ApiError::invalid_field(
            "user_data",
            "is too long (32 KiB at most)",
        ));
    }
    let server_id = parse_id(&id)?;
    let Json(mut answer) = act(&h, &id, "rebuild_server", |st, _| {
        let delay = millis(st.config.action_delay);
        let s = st
            .servers
            .get_mut(&server_id)
            .ok_or_else(|| ApiError::not_found("server"))?;
        s.image = Image::get(&req.image, s.server_type.architecture)
            .ok_or_else(|| ApiError::invalid_field("image", "image not found"))?;
        if let Some(u) = req.user_data {
            s.user_data = u;
        }
        let now = h.clock.now_ms();
        if let Some(row) = st.ledger.get_mut(&server_id) {
            row.rebuilt_ms.push(now);
        }
        Ok(Some((Status::Rebuilding, Status::Running, delay)))
    })?;
    answer["root_password"] = Value::Null;
    Ok(Json(answer))
}
