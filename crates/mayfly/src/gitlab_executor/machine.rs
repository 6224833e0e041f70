//! The machine of one job: its provider built from the pool's settings, and how the job's keys
//! reach it — cloud-init user data for a VM (Hetzner, EC2), the environment for a container.

use super::keys::JobKeys;
use super::settings::{PoolSettings, Settings};
use mayfly_core::Secret;
use mayfly_provider::Provider;
use mayfly_provider::bootstrap::Credential;
use std::sync::Arc;

/// The provider a pool names.
pub async fn provider(pool: &PoolSettings) -> Result<Arc<dyn Provider>, String> {
    match pool.provider.as_str() {
        "hetzner" => hetzner(pool),
        #[cfg(feature = "aws")]
        "aws-ecs" | "aws-ec2" => aws(pool).await,
        other => Err(format!(
            "pool {}: provider {other} is not built into this mayfly",
            pool.name
        )),
    }
}

fn hetzner(pool: &PoolSettings) -> Result<Arc<dyn Provider>, String> {
    let h = pool
        .hetzner
        .as_ref()
        .ok_or_else(|| format!("pool {}: [pool.hetzner] is missing", pool.name))?;
    let token = match (&h.token, &h.token_file) {
        (Some(t), _) => t.clone(),
        (None, Some(file)) => Secret::new(
            std::fs::read_to_string(file)
                .map_err(|e| format!("pool {}: cannot read {}: {e}", pool.name, file.display()))?
                .trim(),
        ),
        (None, None) => std::env::var("HCLOUD_TOKEN")
            .ok()
            .filter(|t| !t.is_empty())
            .map(Secret::new)
            .ok_or_else(|| {
                format!(
                    "pool {}: no Hetzner token (hetzner.token, hetzner.token_file or HCLOUD_TOKEN)",
                    pool.name
                )
            })?,
    };
    let mut c = mayfly_provider::hetzner::HetznerConfig::new(token);
    if let Some(e) = &h.endpoint {
        c.endpoint = e.trim_end_matches('/').to_string();
    }
    c.ipv4 = h.ipv4;
    c.ipv6 = h.ipv6;
    let clock: Arc<dyn mayfly_core::Clock> = Arc::new(mayfly_forge::gitlab::SystemClock);
    let p = mayfly_provider::hetzner::Hetzner::new(&c, clock)
        .map_err(|e| format!("pool {}: {e}", pool.name))?;
    Ok(Arc::new(p))
}

#[cfg(feature = "aws")]
async fn aws(pool: &PoolSettings) -> Result<Arc<dyn Provider>, String> {
    use mayfly_provider_aws::{AwsSettings, ec2, ecs};
    let a = pool.aws.clone().unwrap_or_default();
    let settings = AwsSettings {
        region: a.region.clone(),
        endpoint_url: a.endpoint.clone(),
        ..Default::default()
    };
    let bad = |e: mayfly_provider_aws::ConfigError| format!("pool {}: {e}", pool.name);
    if pool.provider == "aws-ecs" {
        let mut c = ecs::EcsConfig::new(settings, a.cluster.as_deref().unwrap_or_default());
        if let Some(cap) = &a.capacity {
            c.capacity = ecs::Capacity::parse(cap)
                .ok_or_else(|| format!("pool {}: aws.capacity {cap:?}", pool.name))?;
        }
        c.subnets = a.subnets;
        c.security_groups = a.security_groups;
        c.assign_public_ip = a.assign_public_ip;
        c.container = a.container;
        c.ssm_prefix = a.ssm_prefix;
        if let Some(t) = a.labels_tag {
            c.labels_tag = t;
        }
        Ok(Arc::new(ecs::Ecs::new(c).await.map_err(bad)?))
    } else {
        let mut c = ec2::Ec2Config::new(settings);
        c.ami = a.ami;
        c.launch_template = a.launch_template.map(|lt| ec2::LaunchTemplate {
            id_or_name: lt,
            version: None,
        });
        c.subnets = a.subnets;
        c.security_groups = a.security_groups;
        Ok(Arc::new(ec2::Ec2::new(c).await.map_err(bad)?))
    }
}

/// The credential a container reads from its environment.
pub fn credential(keys: &JobKeys) -> Credential {
    Credential::Ssh {
        authorized_key: keys.authorized_key.clone(),
        host_key: keys.host_key.clone(),
    }
}

/// Cloud-init user data (`#cloud-config`) for a VM: sshd gets the host key made for it (and no
/// other: `ssh_deletekeys`, no generated types), the job user gets the job's client key, then the
/// pool's setup commands run. YAML block scalars carry the keys, so no value needs quoting.
pub fn user_data(settings: &Settings, pool: &PoolSettings, keys: &JobKeys) -> Secret {
    let indent = |text: &str, by: &str| -> String {
        text.trim_end()
            .lines()
            .map(|l| format!("{by}{l}\n"))
            .collect()
    };
    let user = &settings.ssh.user;
    let mut y = String::from("#cloud-config\n");
    y.push_str("ssh_deletekeys: true\nssh_genkeytypes: []\nssh_keys:\n  ed25519_private: |\n");
    y.push_str(&indent(keys.host_key.expose(), "    "));
    y.push_str(&format!("  ed25519_public: {}\n", keys.host_public));
    if user == "root" {
        y.push_str("disable_root: false\n");
        y.push_str(&format!(
            "users:\n  - name: root\n    ssh_authorized_keys:\n      - {}\n",
            keys.authorized_key
        ));
    } else {
        y.push_str(&format!(
            "users:\n  - name: {user}\n    shell: /bin/bash\n    sudo: \"ALL=(ALL) NOPASSWD:ALL\"\n    ssh_authorized_keys:\n      - {}\n",
            keys.authorized_key
        ));
    }
    if !pool.setup.is_empty() {
        y.push_str("runcmd:\n");
        for cmd in &pool.setup {
            // A JSON string is a valid YAML double-quoted scalar.
            y.push_str(&format!("  - {}\n", serde_json::Value::String(cmd.clone())));
        }
    }
    Secret::new(y)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn user_data_hands_over_both_keys() {
        let s = Settings::parse(
            "[ssh]\nuser = \"ci\"\n[[pool]]\nname = \"p\"\nprovider = \"hetzner\"\nsetup = [\"apt-get install -y git\"]\nhetzner = {}\n",
        )
        .unwrap();
        let keys = JobKeys {
            authorized_key: "ssh-ed25519 AAAAclient mayfly-gl-1".into(),
            host_key: Secret::new(
                "-----BEGIN OPENSSH PRIVATE KEY-----\nabc\n-----END OPENSSH PRIVATE KEY-----\n",
            ),
            host_public: "ssh-ed25519 AAAAhost mayfly-gl-1".into(),
        };
        let y = user_data(&s, &s.pools[0], &keys);
        let docs = yaml_rust2::YamlLoader::load_from_str(y.expose()).unwrap();
        let d = &docs[0];
        assert!(
            d["ssh_keys"]["ed25519_private"]
                .as_str()
                .unwrap()
                .contains("abc\n")
        );
        assert_eq!(
            d["ssh_keys"]["ed25519_public"].as_str(),
            Some("ssh-ed25519 AAAAhost mayfly-gl-1")
        );
        assert_eq!(d["users"][0]["name"].as_str(), Some("ci"));
        assert_eq!(
            d["users"][0]["ssh_authorized_keys"][0].as_str(),
            Some("ssh-ed25519 AAAAclient mayfly-gl-1")
        );
        assert_eq!(d["runcmd"][0].as_str(), Some("apt-get install -y git"));
    }
}
