//! The files that make a server run the controller: its configuration (rewritten for the
//! server), the environment file with the secrets, the GitHub App key, and the systemd unit.

use crate::config::Config;
use crate::service::unit::{self, Unit};
use anyhow::Context;
use mayfly_core::Secret;
use mayfly_core::secret::REDACTED;

pub const USER: &str = "mayfly";
pub const BINARY: &str = "/usr/local/bin/mayfly";
pub const CONFIG: &str = "/etc/mayfly/mayfly.toml";
pub const ENV: &str = "/etc/mayfly/mayfly.env";
pub const APP_KEY: &str = "/etc/mayfly/github-app.pem";
pub const UNIT: &str = "/etc/systemd/system/mayfly.service";
pub const SERVICE: &str = "mayfly.service";
pub const STATE_DIR: &str = "/var/lib/mayfly";
/// The shortest secret [`Bundle::redact`] looks for.
const GUARD_MIN: usize = 6;

/// One file on the server.
pub struct ServerFile {
    pub path: &'static str,
    /// `user:group`.
    pub owner: &'static str,
    pub mode: u32,
    pub content: Secret,
    /// What `--dry-run` shows instead of the content.
    pub shown: String,
}

/// Everything delivered to the server, and the secrets among it (to check that they show
/// nowhere else).
pub struct Bundle {
    pub files: Vec<ServerFile>,
    pub secrets: Vec<Secret>,
}

impl Bundle {
    /// Builds the bundle from a loaded (valid) configuration; reads the GitHub App key file.
    pub fn new(config: &Config) -> anyhow::Result<Bundle> {
        let (text, vars) = server_config(config)?;
        let mut secrets: Vec<Secret> = vars.iter().map(|(_, v)| v.clone()).collect();
        let mut files = vec![ServerFile {
            path: CONFIG,
            owner: "mayfly:mayfly",
            mode: 0o600,
            shown: text.clone(),
            content: Secret::new(text),
        }];
        let env = unit::env_file(&vars, false).map_err(anyhow::Error::msg)?;
        files.push(ServerFile {
            path: ENV,
            owner: "root:root",
            mode: 0o600,
            shown: unit::env_file(&vars, true).map_err(anyhow::Error::msg)?,
            content: Secret::new(env),
        });
        if let Some(app) = &config.github.app {
            let key = std::fs::read_to_string(&app.private_key_file).with_context(|| {
                format!(
                    "cannot read the GitHub App key {}",
                    app.private_key_file.display()
                )
            })?;
            secrets.push(Secret::new(key.trim()));
            files.push(ServerFile {
                path: APP_KEY,
                owner: "mayfly:mayfly",
                mode: 0o600,
                shown: format!("{REDACTED} (the GitHub App's private key)\n"),
                content: Secret::new(key),
            });
        }
        let unit = server_unit(config).render().map_err(anyhow::Error::msg)?;
        files.push(ServerFile {
            path: UNIT,
            owner: "root:root",
            mode: 0o644,
            shown: unit.clone(),
            content: Secret::new(unit),
        });
        secrets.retain(|s| !s.expose().trim().is_empty());
        Ok(Bundle { files, secrets })
    }

    /// `text` with every secret of the bundle replaced by `<redacted>`: a last guard for
    /// whatever is printed, which is built without secrets in the first place. Values shorter
    /// than `GUARD_MIN` are left alone: replacing every `y` would garble the whole text.
    pub fn redact(&self, text: &str) -> String {
        let mut out = text.to_string();
        for s in self
            .secrets
            .iter()
            .filter(|s| s.expose().trim().len() >= GUARD_MIN)
        {
            out = out.replace(s.expose().trim(), REDACTED);
        }
        out
    }
}

/// The unit `mayfly service install` would write on the server.
pub fn server_unit(config: &Config) -> Unit {
    Unit {
        name: "mayfly".into(),
        exec: vec![BINARY.into(), "-c".into(), CONFIG.into(), "run".into()],
        user: USER.into(),
        group: USER.into(),
        env_file: ENV.into(),
        writable: vec![STATE_DIR.into()],
        low_port: config.listen.port() < 1024,
    }
}

/// The environment variable that carries the token of provider `name` on the server.
fn provider_variable(name: &str) -> String {
    if name == "hetzner" {
        return "HETZNER_TOKEN".into();
    }
    let upper: String = name
        .chars()
        .map(|c| {
            if c.is_ascii_alphanumeric() {
                c.to_ascii_uppercase()
            } else {
                '_'
            }
        })
        .collect();
    format!("MAYFLY_PROVIDER_{upper}_TOKEN")
}

/// The effective configuration as the server reads it: the state under /var/lib/mayfly, the
/// App key at its server path, and each secret a `${VAR}` reference to the environment file.
/// Returns the TOML and the variables.
pub fn server_config(config: &Config) -> anyhow::Result<(String, Vec<(String, Secret)>)> {
    let mut root =
        toml::Value::try_from(config).context("cannot write the configuration for the server")?;
    let table = root
        .as_table_mut()
        .context("the configuration is not a table")?;
    let mut vars: Vec<(String, Secret)> = Vec::new();
    let mut refs: Vec<(Vec<String>, String)> = Vec::new();

    // The state: SQLite in the server's state directory, or the database as configured.
    table.remove("state");
    table.insert("state_dir".into(), STATE_DIR.into());
    // The API token file is a path of this machine: on the server it defaults into STATE_DIR.
    if let Some(toml::Value::Table(api)) = table.get_mut("api") {
        api.remove("token_file");
    }
    if let Some(state) = &config.state
        && state.expose().to_ascii_lowercase().starts_with("postgres")
    {
        vars.push(("MAYFLY_STATE_URL".into(), Secret::new(state.expose())));
        refs.push((vec!["state".into()], "MAYFLY_STATE_URL".into()));
    }
    if config.github.app.is_some() {
        // The App wins over a token: the server gets no credential it does not use.
        if let Some(toml::Value::Table(gh)) = table.get_mut("github") {
            gh.remove("token");
        }
    } else if let Some(t) = config.github.token.as_ref().filter(|t| !t.is_empty()) {
        vars.push(("GITHUB_TOKEN".into(), t.clone()));
        refs.push((path(&["github", "token"]), "GITHUB_TOKEN".into()));
    }
    if let Some(s) = config.github.webhook_secret.as_ref() {
        vars.push(("GITHUB_WEBHOOK_SECRET".into(), s.clone()));
        refs.push((
            path(&["github", "webhook_secret"]),
            "GITHUB_WEBHOOK_SECRET".into(),
        ));
    }
    for (name, p) in &config.providers {
        if let Some(t) = p.token.as_ref().filter(|t| !t.is_empty()) {
            let var = provider_variable(name);
            if vars.iter().any(|(v, _)| *v == var) {
                anyhow::bail!(
                    "providers `{name}` and another provider both need {var} on the server: \
                     rename one of them"
                );
            }
            vars.push((var.clone(), t.clone()));
            refs.push((path(&["providers", name, "token"]), var));
        }
    }
    if config.github.app.is_some() {
        set(
            table,
            &path(&["github", "app", "private_key_file"]),
            APP_KEY.into(),
        );
    }

    // Values are literal now: a `${` in one must stay literal on the server too.
    let mut redacted = Vec::new();
    escape(&mut root, "", &mut redacted);
    if let Some(key) = redacted
        .iter()
        .find(|k| !refs.iter().any(|(p, _)| p.join(".") == **k))
    {
        anyhow::bail!(
            "the configuration holds a secret at `{key}` that `mayfly cloud` cannot deliver yet"
        );
    }
    let table = root
        .as_table_mut()
        .context("the configuration is not a table")?;
    for (p, var) in &refs {
        set(table, p, format!("${{{var}}}").into());
    }
    let text =
        toml::to_string_pretty(&root).context("cannot write the configuration for the server")?;
    let header = "# The configuration of mayfly on this server, written by `mayfly cloud`.\n\
                  # Secrets are ${VAR} references to /etc/mayfly/mayfly.env.\n\n";
    Ok((format!("{header}{text}"), vars))
}

fn path(parts: &[&str]) -> Vec<String> {
    parts.iter().map(|s| s.to_string()).collect()
}

fn set(table: &mut toml::Table, path: &[String], value: toml::Value) {
    let Some((last, parents)) = path.split_last() else {
        return;
    };
    let mut at = table;
    for p in parents {
        at = match at
            .entry(p.clone())
            .or_insert_with(|| toml::Value::Table(toml::Table::new()))
        {
            toml::Value::Table(t) => t,
            _ => return,
        };
    }
    at.insert(last.clone(), value);
}

/// Escapes `${` in every string (`$${`), and notes the dotted keys of redacted secrets.
fn escape(v: &mut toml::Value, key: &str, redacted: &mut Vec<String>) {
    match v {
        toml::Value::String(s) => {
            if s.contains(REDACTED) {
                redacted.push(key.to_string());
            }
            if s.contains("${") {
                *s = s.replace("${", "$${");
            }
        }
        toml::Value::Table(t) => {
            for (k, v) in t.iter_mut() {
                let key = if key.is_empty() {
                    k.clone()
                } else {
                    format!("{key}.{k}")
                };
                escape(v, &key, redacted);
            }
        }
        toml::Value::Array(items) => {
            for (i, item) in items.iter_mut().enumerate() {
                escape(item, &format!("{key}[{i}]"), redacted);
            }
        }
        _ => {}
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::config::{Env, Overrides};

    fn load(dir: &std::path::Path, text: &str, env: &Env) -> Config {
        let path = dir.join("mayfly.toml");
        std::fs::write(&path, text).unwrap();
        Config::load(Some(&path), &Overrides::default(), env).unwrap()
    }

    const FILE: &str = r#"
controller = "ci"
[github]
token = "${GH}"
webhook_secret = "whsec-$${literal}"
repositories = ["acme/app"]
[providers.hetzner]
kind = "hetzner"
token = "hz-secret-1"
[providers.eu-two]
kind = "hetzner"
token = "hz-secret-2"
[bootstrap]
setup_script = "echo $${HOME}"
[[pools]]
name = "linux"
provider = "hetzner"
labels = ["self-hosted"]
types = ["cx23"]
locations = ["fsn1"]
"#;

    #[test]
    fn the_server_reads_the_same_configuration_with_secrets_from_its_environment() {
        let dir = tempfile::tempdir().unwrap();
        let local = load(
            dir.path(),
            FILE,
            &Env::default()
                .with("GH", "ghp-secret")
                .with("HOME", "/home/u"),
        );
        let (text, vars) = server_config(&local).unwrap();
        for secret in ["ghp-secret", "whsec-", "hz-secret-1", "hz-secret-2"] {
            assert!(!text.contains(secret), "{secret} in\n{text}");
        }
        let names: Vec<&str> = vars.iter().map(|(k, _)| k.as_str()).collect();
        assert_eq!(
            names,
            [
                "GITHUB_TOKEN",
                "GITHUB_WEBHOOK_SECRET",
                "MAYFLY_PROVIDER_EU_TWO_TOKEN",
                "HETZNER_TOKEN"
            ]
        );
        // Loaded on the server with only the environment file's variables.
        let mut env = Env::default();
        for (k, v) in &vars {
            env = env.with(k, v.expose());
        }
        let server = load(dir.path(), &text, &env);
        let mut expected = local.clone();
        expected.state_dir = Some(STATE_DIR.into());
        expected.state = server.state.clone();
        expected.api.token_file = Some(std::path::Path::new(STATE_DIR).join("api.token"));
        assert_eq!(server, expected);
        assert_eq!(
            server.state.unwrap().expose(),
            "sqlite:///var/lib/mayfly/mayfly.db"
        );
        assert_eq!(
            server.github.webhook_secret.unwrap().expose(),
            "whsec-${literal}"
        );
        assert_eq!(
            server.bootstrap.setup_script.as_deref(),
            Some("echo ${HOME}")
        );
    }

    #[test]
    fn a_database_url_travels_as_a_secret() {
        let dir = tempfile::tempdir().unwrap();
        let text = "state = \"postgres://m:pw-secret@db/m\"\n[github]\ntoken = \"t\"\nrepositories = [\"a/b\"]\n";
        let env = Env::default()
            .with("HETZNER_TOKEN", "h")
            .with("HOME", "/home/me");
        let local = load(dir.path(), text, &env);
        let (server, vars) = server_config(&local).unwrap();
        assert!(!server.contains("pw-secret"), "{server}");
        assert!(
            !server.contains("/home/me"),
            "no path of this machine: {server}"
        );
        assert!(
            server.contains("state = \"${MAYFLY_STATE_URL}\""),
            "{server}"
        );
        assert!(
            vars.iter()
                .any(|(k, v)| k == "MAYFLY_STATE_URL" && v.expose().contains("pw-secret"))
        );
    }

    #[test]
    fn the_unit_on_the_server_runs_the_installed_binary_as_mayfly() {
        let config = Config::default();
        let text = server_unit(&config).render().unwrap();
        assert!(
            text.contains("\nExecStart=/usr/local/bin/mayfly -c /etc/mayfly/mayfly.toml run\n")
        );
        assert!(
            text.contains("\nUser=mayfly\n") && text.contains("\nReadWritePaths=/var/lib/mayfly\n")
        );
        assert!(text.contains("\nEnvironmentFile=/etc/mayfly/mayfly.env\n"));
    }
}
