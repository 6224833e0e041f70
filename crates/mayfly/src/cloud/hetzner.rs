//! The few Hetzner Cloud requests `mayfly cloud` makes for the controller's own server, sent
//! through the provider's client: its own labels and body, since the provider's mark runners.

use mayfly_core::Secret;
use mayfly_forge::github::SystemClock;
use mayfly_provider::hetzner::{
    self, Api, Call, CallError, HetznerConfig, Location, Server, ServerType,
};
use reqwest::Method;
use serde::Deserialize;
use serde::de::DeserializeOwned;
use serde_json::json;
use std::collections::BTreeMap;
use std::sync::Arc;
use std::time::Duration;

/// The label that marks the controller's server, its value the deployment's name. Never
/// `mayfly_provider::tags::CONTROLLER`: the controller deletes servers with that label that it
/// does not track, and it would delete itself.
pub const DEPLOY_LABEL: &str = "mayfly-deploy";
/// Every call is over within this, connection included: an operator waits at the terminal,
/// and a create with user data may take longer than a pass's calls.
const REQUEST_TIMEOUT: Duration = Duration::from_secs(30);

/// One Hetzner Cloud project.
pub struct Project {
    api: Api,
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
    locations: Vec<Location>,
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

/// Where the server is, `?` when the answer does not say.
pub fn location(server: &Server) -> &str {
    server.location_name().unwrap_or("?")
}

/// Gross hourly and monthly price in the server's location.
pub fn price(server: &Server) -> Option<(f64, f64)> {
    price_in(&server.server_type, location(server))
}

/// Gross hourly and monthly price of `server_type` in `location`.
pub fn price_in(server_type: &ServerType, location: &str) -> Option<(f64, f64)> {
    let p = server_type.prices.iter().find(|p| p.location == location)?;
    Some((p.hourly_gross()?, p.monthly_gross()?))
}

impl Project {
    pub fn new(endpoint: &str, token: Secret) -> anyhow::Result<Project> {
        let config = HetznerConfig {
            endpoint: endpoint.to_string(),
            request_timeout_ms: REQUEST_TIMEOUT.as_millis() as u64,
            ..HetznerConfig::new(token)
        };
        let api = Api::new(&config, Arc::new(SystemClock))?;
        Ok(Project { api })
    }

    async fn get<T: DeserializeOwned>(
        &self,
        path: &str,
        query: &[(&str, &str)],
    ) -> Result<T, CallError> {
        let url = self.api.url(path, query)?;
        self.api.get(url).await
    }

    /// The servers with `mayfly-deploy=<name>`; a server without the exact label is dropped
    /// whatever the API answered, so mayfly never acts on another server.
    pub async fn deployed(&self, name: &str) -> Result<Vec<Server>, CallError> {
        let selector = format!("{DEPLOY_LABEL}=={name}");
        let page: Servers = self
            .get(
                "/servers",
                &[("label_selector", &selector), ("per_page", "50")],
            )
            .await?;
        Ok(page
            .servers
            .into_iter()
            .filter(|s| s.labels.get(DEPLOY_LABEL).map(String::as_str) == Some(name))
            .collect())
    }

    pub async fn server(&self, id: u64) -> Result<Server, CallError> {
        let one: OneServer = self.get(&format!("/servers/{id}"), &[]).await?;
        Ok(one.server)
    }

    /// One POST, never repeated after an unclear outcome: a second try of the name answers
    /// `uniqueness_error`.
    pub async fn create(&self, new: &NewServer<'_>) -> Result<Server, CallError> {
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
        let call = Call::new(Method::POST, self.api.url("/servers", &[])?)
            .json(body)
            .sensitive(new.user_data);
        let one: OneServer = self.api.send(&call).await?.json()?;
        Ok(one.server)
    }

    pub async fn delete(&self, id: u64) -> Result<(), CallError> {
        let url = self.api.url(&format!("/servers/{id}"), &[])?;
        self.api.send(&Call::new(Method::DELETE, url)).await?;
        Ok(())
    }

    pub async fn server_type(&self, name: &str) -> Result<Option<ServerType>, CallError> {
        let page: ServerTypes = self.get("/server_types", &[("name", name)]).await?;
        Ok(page.server_types.into_iter().find(|t| t.name == name))
    }

    pub async fn locations(&self) -> Result<Vec<String>, CallError> {
        let page: Locations = self.get("/locations", &[("per_page", "50")]).await?;
        Ok(page.locations.into_iter().map(|l| l.name).collect())
    }

    /// The project's id of `public_key`, uploaded under `name` when the project lacks it.
    pub async fn ssh_key(&self, public_key: &str, name: &str) -> mayfly_provider::Result<u64> {
        hetzner::ssh_key(&self.api, public_key, name).await
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
    fn the_price_is_the_one_of_the_servers_location() {
        let server: Server = serde_json::from_value(json!({
            "id": 1, "name": "m", "status": "running", "created": "2024-01-01T00:00:00+00:00",
            "server_type": {"name": "cx23", "prices": [
                {"location": "nbg1", "price_hourly": {"gross": "0.02"}, "price_monthly": {"gross": "9.0"}},
                {"location": "fsn1", "price_hourly": {"gross": "0.01"}, "price_monthly": {"gross": "5.0"}},
            ]},
            "datacenter": {"location": {"name": "fsn1"}},
        }))
        .unwrap();
        assert_eq!(location(&server), "fsn1");
        assert_eq!(price(&server), Some((0.01, 5.0)));
        assert_eq!(price_in(&server.server_type, "hel1"), None);
    }
}
