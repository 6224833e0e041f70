//! The few Hetzner Cloud calls `mayfly cloud` makes for the controller's own server. Apart from
//! `mayfly_provider::hetzner` on purpose: that one labels every server as a runner machine.

use anyhow::Context;
use mayfly_core::Secret;
use reqwest::Method;
use serde::Deserialize;
use serde::de::DeserializeOwned;
use serde_json::{Value, json};
use std::collections::BTreeMap;
use std::time::Duration;

/// The label that marks the controller's server, its value the deployment's name. Never
/// `mayfly_provider::tags::CONTROLLER`: the controller deletes servers with that label that it
/// does not track, and it would delete itself.
pub const DEPLOY_LABEL: &str = "mayfly-deploy";
/// Every call is over within this, connection included.
const REQUEST_TIMEOUT: Duration = Duration::from_secs(30);

/// An error answer of the API, in its own words (never with the token).
#[derive(Debug, thiserror::Error)]
#[error("Hetzner answered {status} {code}: {message}")]
pub struct ApiError {
    pub status: u16,
    pub code: String,
    pub message: String,
    /// The request fields the API named as wrong (`server_type`, `location`, …).
    pub fields: Vec<String>,
}

/// One Hetzner Cloud project.
pub struct Api {
    http: reqwest::Client,
    endpoint: String,
    token: Secret,
}

#[derive(Clone, Debug, Deserialize)]
pub struct Server {
    pub id: u64,
    pub name: String,
    pub status: String,
    pub created: String,
    pub server_type: ServerType,
    #[serde(default)]
    pub datacenter: Option<Datacenter>,
    #[serde(default)]
    pub location: Option<Named>,
    #[serde(default)]
    pub image: Option<Image>,
    pub public_net: PublicNet,
    #[serde(default)]
    pub labels: BTreeMap<String, String>,
}

#[derive(Clone, Debug, Deserialize)]
pub struct ServerType {
    pub name: String,
    #[serde(default)]
    pub prices: Vec<Price>,
}

#[derive(Clone, Debug, Deserialize)]
pub struct Price {
    pub location: String,
    pub price_hourly: Amount,
    pub price_monthly: Amount,
}

#[derive(Clone, Debug, Deserialize)]
pub struct Amount {
    /// A decimal string, VAT included.
    pub gross: String,
}

#[derive(Clone, Debug, Deserialize)]
pub struct Datacenter {
    pub location: Named,
}

#[derive(Clone, Debug, Deserialize)]
pub struct Named {
    pub name: String,
}

#[derive(Clone, Debug, Deserialize)]
pub struct Image {
    #[serde(default)]
    pub name: Option<String>,
    #[serde(default)]
    pub description: Option<String>,
}

#[derive(Clone, Debug, Deserialize)]
pub struct PublicNet {
    #[serde(default)]
    pub ipv4: Option<Address>,
    #[serde(default)]
    pub ipv6: Option<Address>,
}

#[derive(Clone, Debug, Deserialize)]
pub struct Address {
    pub ip: String,
}

impl Server {
    pub fn location(&self) -> &str {
        self.datacenter
            .as_ref()
            .map(|d| d.location.name.as_str())
            .or(self.location.as_ref().map(|l| l.name.as_str()))
            .unwrap_or("?")
    }

    /// The address ssh reaches: the IPv4 address, else the first address of the IPv6 network
    /// (Hetzner assigns `<net>::1` to the server).
    pub fn address(&self) -> Option<String> {
        if let Some(v4) = &self.public_net.ipv4 {
            return Some(v4.ip.clone());
        }
        let net = &self.public_net.ipv6.as_ref()?.ip;
        let base = net.split('/').next()?;
        Some(if base.ends_with("::") {
            format!("{base}1")
        } else {
            base.to_string()
        })
    }

    /// Gross hourly and monthly price in the server's location.
    pub fn price(&self) -> Option<(f64, f64)> {
        self.server_type.price_in(self.location())
    }
}

impl ServerType {
    pub fn price_in(&self, location: &str) -> Option<(f64, f64)> {
        let p = self.prices.iter().find(|p| p.location == location)?;
        Some((
            p.price_hourly.gross.parse().ok()?,
            p.price_monthly.gross.parse().ok()?,
        ))
    }
}

#[derive(Deserialize)]
struct Servers {
    #[serde(default)]
    servers: Vec<Server>,
}

#[derive(Deserialize)]
struct OneServer {
    server: Server,
}

#[derive(Deserialize)]
struct ServerTypes {
    #[serde(default)]
    server_types: Vec<ServerType>,
}

#[derive(Deserialize)]
struct Locations {
    #[serde(default)]
    locations: Vec<Named>,
}

#[derive(Deserialize)]
struct SshKeys {
    #[serde(default)]
    ssh_keys: Vec<SshKey>,
}

#[derive(Deserialize)]
struct OneSshKey {
    ssh_key: SshKey,
}

#[derive(Deserialize)]
struct SshKey {
    id: u64,
}

/// What a new server is.
pub struct NewServer<'a> {
    pub name: &'a str,
    pub server_type: &'a str,
    pub location: &'a str,
    pub image: &'a str,
    pub ssh_keys: &'a [u64],
    pub user_data: &'a Secret,
}

/// The labels of the controller's server: the deployment's name only.
pub fn labels(name: &str) -> BTreeMap<String, String> {
    BTreeMap::from([(DEPLOY_LABEL.to_string(), name.to_string())])
}

impl Api {
    pub fn new(endpoint: &str, token: Secret) -> anyhow::Result<Api> {
        if token.expose().trim().is_empty() {
            anyhow::bail!("the Hetzner token is empty");
        }
        let http = reqwest::Client::builder()
            .timeout(REQUEST_TIMEOUT)
            .connect_timeout(REQUEST_TIMEOUT)
            .user_agent(concat!("mayfly/", env!("CARGO_PKG_VERSION")))
            .build()
            .context("cannot set up the HTTP client")?;
        Ok(Api {
            http,
            endpoint: endpoint.trim_end_matches('/').to_string(),
            token,
        })
    }

    async fn call<T: DeserializeOwned>(
        &self,
        method: Method,
        path: &str,
        query: &[(&str, &str)],
        body: Option<Value>,
    ) -> anyhow::Result<T> {
        let mut url = reqwest::Url::parse(&format!("{}{path}", self.endpoint))
            .with_context(|| format!("the Hetzner endpoint {} is not a URL", self.endpoint))?;
        if !query.is_empty() {
            url.query_pairs_mut().extend_pairs(query);
        }
        let mut req = self
            .http
            .request(method.clone(), url.clone())
            .bearer_auth(self.token.expose());
        if let Some(b) = &body {
            req = req.json(b);
        }
        // reqwest's error names the URL, which holds no secret; the body (user data) is not in it.
        let answer = req
            .send()
            .await
            .map_err(|e| anyhow::anyhow!("{method} {url}: {}", e.without_url()))?;
        let status = answer.status();
        let bytes = answer
            .bytes()
            .await
            .with_context(|| format!("{method} {url}: the answer broke off"))?;
        if !status.is_success() {
            return Err(api_error(status.as_u16(), &bytes).into());
        }
        if bytes.is_empty() {
            return serde_json::from_value(Value::Null)
                .with_context(|| format!("{method} {url}: an empty answer"));
        }
        serde_json::from_slice(&bytes)
            .with_context(|| format!("{method} {url}: an answer mayfly does not understand"))
    }

    /// The servers with `mayfly-deploy=<name>`; a server without the exact label is dropped
    /// whatever the API answered, so mayfly never acts on another server.
    pub async fn deployed(&self, name: &str) -> anyhow::Result<Vec<Server>> {
        let selector = format!("{DEPLOY_LABEL}=={name}");
        let page: Servers = self
            .call(
                Method::GET,
                "/servers",
                &[("label_selector", &selector), ("per_page", "50")],
                None,
            )
            .await?;
        Ok(page
            .servers
            .into_iter()
            .filter(|s| s.labels.get(DEPLOY_LABEL).map(String::as_str) == Some(name))
            .collect())
    }

    pub async fn server(&self, id: u64) -> anyhow::Result<Server> {
        let one: OneServer = self
            .call(Method::GET, &format!("/servers/{id}"), &[], None)
            .await?;
        Ok(one.server)
    }

    pub async fn create(&self, new: &NewServer<'_>) -> anyhow::Result<Server> {
        let body = json!({
            "name": new.name,
            "server_type": new.server_type,
            "location": new.location,
            "image": new.image,
            "labels": labels(new.name),
            "ssh_keys": new.ssh_keys,
            "user_data": new.user_data.expose(),
            "start_after_create": true,
            "public_net": { "enable_ipv4": true, "enable_ipv6": true },
        });
        let one: OneServer = self.call(Method::POST, "/servers", &[], Some(body)).await?;
        Ok(one.server)
    }

    pub async fn delete(&self, id: u64) -> anyhow::Result<()> {
        let _: Value = self
            .call(Method::DELETE, &format!("/servers/{id}"), &[], None)
            .await?;
        Ok(())
    }

    pub async fn server_type(&self, name: &str) -> anyhow::Result<Option<ServerType>> {
        let page: ServerTypes = self
            .call(Method::GET, "/server_types", &[("name", name)], None)
            .await?;
        Ok(page.server_types.into_iter().find(|t| t.name == name))
    }

    pub async fn locations(&self) -> anyhow::Result<Vec<String>> {
        let page: Locations = self
            .call(Method::GET, "/locations", &[("per_page", "50")], None)
            .await?;
        Ok(page.locations.into_iter().map(|l| l.name).collect())
    }

    /// The project's id of `public_key`, uploaded under `name` when the project lacks it.
    pub async fn ssh_key(&self, public_key: &str, name: &str) -> anyhow::Result<u64> {
        let fingerprint = mayfly_provider::hetzner::fingerprint(public_key)
            .context("not an OpenSSH public key")?;
        let found: SshKeys = self
            .call(
                Method::GET,
                "/ssh_keys",
                &[("fingerprint", &fingerprint)],
                None,
            )
            .await?;
        if let Some(key) = found.ssh_keys.first() {
            return Ok(key.id);
        }
        let body = json!({ "name": name, "public_key": public_key.trim() });
        let created: OneSshKey = self
            .call(Method::POST, "/ssh_keys", &[], Some(body))
            .await?;
        Ok(created.ssh_key.id)
    }
}

fn api_error(status: u16, body: &[u8]) -> ApiError {
    let v: Value = serde_json::from_slice(body).unwrap_or(Value::Null);
    let e = &v["error"];
    let fields = e["details"]["fields"]
        .as_array()
        .map(|fs| {
            fs.iter()
                .filter_map(|f| f["name"].as_str().map(str::to_string))
                .collect()
        })
        .unwrap_or_default();
    ApiError {
        status,
        code: e["code"].as_str().unwrap_or("error").to_string(),
        message: e["message"]
            .as_str()
            .map_or_else(|| "no error message".to_string(), str::to_string),
        fields,
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn the_controller_server_never_carries_the_runner_label() {
        assert_ne!(DEPLOY_LABEL, mayfly_provider::tags::CONTROLLER);
        let labels = labels("ci");
        assert_eq!(labels.get(DEPLOY_LABEL).map(String::as_str), Some("ci"));
        assert!(!labels.contains_key(mayfly_provider::tags::CONTROLLER));
        assert!(!labels.contains_key(mayfly_provider::tags::POOL));
    }

    #[test]
    fn errors_name_the_fields_hetzner_refused() {
        let e = api_error(
            400,
            br#"{"error":{"code":"invalid_input","message":"invalid input in field 'server_type'","details":{"fields":[{"name":"server_type"}]}}}"#,
        );
        assert_eq!(e.fields, ["server_type"]);
        assert_eq!(
            e.to_string(),
            "Hetzner answered 400 invalid_input: invalid input in field 'server_type'"
        );
        assert_eq!(api_error(502, b"<html>").code, "error");
    }

    #[test]
    fn ssh_reaches_ipv4_or_the_first_ipv6_address() {
        let server = |v4: Option<&str>, v6: Option<&str>| -> Server {
            serde_json::from_value(json!({
                "id": 1, "name": "m", "status": "running", "created": "2024-01-01T00:00:00+00:00",
                "server_type": {"name": "cx22"},
                "public_net": {
                    "ipv4": v4.map(|ip| json!({"ip": ip})),
                    "ipv6": v6.map(|ip| json!({"ip": ip})),
                },
            }))
            .unwrap()
        };
        assert_eq!(
            server(Some("192.0.2.1"), Some("2001:db8::/64")).address(),
            Some("192.0.2.1".into())
        );
        assert_eq!(
            server(None, Some("2001:db8:1::/64")).address(),
            Some("2001:db8:1::1".into())
        );
        assert_eq!(server(None, None).address(), None);
    }
}
