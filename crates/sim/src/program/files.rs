//! The runner root's configuration files, as the listener writes and reads them: a JIT config
//! decoded into `.runner`, `.credentials` and `.credentials_rsaparams`, and removed again when an
//! ephemeral runner is done.

use base64::Engine;
use base64::engine::general_purpose::STANDARD;
use serde::Deserialize;
use std::collections::BTreeMap;
use std::io::Write;
use std::os::unix::fs::OpenOptionsExt;
use std::path::Path;

/// The files a JIT config holds and an ephemeral runner deletes after its job.
pub const CONFIG_FILES: [&str; 3] = [".runner", ".credentials", ".credentials_rsaparams"];

/// What went wrong with the configuration; never holds the config's text.
#[derive(Debug, thiserror::Error)]
pub enum ConfigError {
    #[error("the JIT config is not base64 of a JSON object of base64 file contents")]
    Malformed,
    #[error("the JIT config names a file `{0}` that is not a runner configuration file")]
    BadFile(String),
    #[error("cannot write {file}: {source}")]
    Write {
        file: String,
        source: std::io::Error,
    },
    #[error("Runner is not configured.")]
    NotConfigured,
    #[error("{file} is not valid: {reason}")]
    Invalid { file: &'static str, reason: String },
}

/// Decodes `encoded` and writes each file into `root`, the credentials readable by the owner
/// only (the listener relies on file permissions for the RSA key on Linux).
pub fn write_jit(root: &Path, encoded: &str) -> Result<(), ConfigError> {
    let outer = STANDARD
        .decode(encoded.trim())
        .map_err(|_| ConfigError::Malformed)?;
    let map: BTreeMap<String, String> =
        serde_json::from_slice(&outer).map_err(|_| ConfigError::Malformed)?;
    if map.is_empty() {
        return Err(ConfigError::Malformed);
    }
    for (name, content) in &map {
        if !CONFIG_FILES.contains(&name.as_str()) {
            return Err(ConfigError::BadFile(name.clone()));
        }
        let bytes = STANDARD
            .decode(content)
            .map_err(|_| ConfigError::Malformed)?;
        let path = root.join(name);
        let written = std::fs::OpenOptions::new()
            .write(true)
            .create(true)
            .truncate(true)
            .mode(0o600)
            .open(&path)
            .and_then(|mut f| f.write_all(&bytes));
        written.map_err(|source| ConfigError::Write {
            file: path.display().to_string(),
            source,
        })?;
    }
    Ok(())
}

/// `.runner`, the fields the listener needs.
#[derive(Clone, Debug, Deserialize)]
#[serde(rename_all = "PascalCase")]
pub struct RunnerFile {
    pub agent_id: u64,
    pub agent_name: String,
    pub server_url: String,
    #[serde(default)]
    pub git_hub_url: String,
    #[serde(default = "work_folder")]
    pub work_folder: String,
    #[serde(default)]
    pub ephemeral: bool,
}

fn work_folder() -> String {
    "_work".into()
}

#[derive(Deserialize)]
struct CredentialsFile {
    #[serde(rename = "Scheme")]
    scheme: String,
    #[serde(rename = "Data")]
    data: CredentialsData,
}

#[derive(Deserialize)]
struct CredentialsData {
    #[serde(rename = "clientId")]
    client_id: String,
}

/// The runner's settings and its OAuth client id, from the root's files.
pub struct Settings {
    pub runner: RunnerFile,
    pub client_id: String,
}

pub fn load(root: &Path) -> Result<Settings, ConfigError> {
    let read = |file: &'static str| match std::fs::read(root.join(file)) {
        Ok(b) => Ok(b),
        Err(e) if e.kind() == std::io::ErrorKind::NotFound => Err(ConfigError::NotConfigured),
        Err(e) => Err(ConfigError::Invalid {
            file,
            reason: e.to_string(),
        }),
    };
    // The listener writes `.runner` with a byte order mark; serde_json does not skip one.
    let strip = |b: &[u8]| b.strip_prefix(b"\xEF\xBB\xBF").unwrap_or(b).to_vec();
    let runner: RunnerFile =
        serde_json::from_slice(&strip(&read(".runner")?)).map_err(|e| ConfigError::Invalid {
            file: ".runner",
            reason: e.to_string(),
        })?;
    let creds: CredentialsFile =
        serde_json::from_slice(&strip(&read(".credentials")?)).map_err(|e| {
            ConfigError::Invalid {
                file: ".credentials",
                reason: e.to_string(),
            }
        })?;
    if creds.scheme != "OAuth" {
        return Err(ConfigError::Invalid {
            file: ".credentials",
            reason: format!("scheme {:?}, not OAuth", creds.scheme),
        });
    }
    read(".credentials_rsaparams")?;
    Ok(Settings {
        runner,
        client_id: creds.data.client_id,
    })
}

/// Removes the configuration, as an ephemeral runner does after its one job.
pub fn delete_local_config(root: &Path) {
    for f in CONFIG_FILES {
        let _ = std::fs::remove_file(root.join(f));
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use serde_json::json;

    fn b64(v: &serde_json::Value) -> String {
        STANDARD.encode(v.to_string())
    }

    fn jit() -> String {
        b64(&json!({
            ".runner": b64(&json!({"AgentId": 7, "AgentName": "r", "ServerUrl": "http://x/_sim/actions", "Ephemeral": true})),
            ".credentials": b64(&json!({"Scheme": "OAuth", "Data": {"clientId": "c-1"}})),
            ".credentials_rsaparams": b64(&json!({"d": "x"})),
        }))
    }

    #[test]
    fn a_jit_config_becomes_the_three_files_and_reads_back() {
        use std::os::unix::fs::PermissionsExt;
        let dir = tempfile::tempdir().unwrap();
        write_jit(dir.path(), &jit()).unwrap();
        let s = load(dir.path()).unwrap();
        assert_eq!((s.runner.agent_id, s.client_id.as_str()), (7, "c-1"));
        assert!(s.runner.ephemeral);
        let mode = std::fs::metadata(dir.path().join(".credentials_rsaparams"))
            .unwrap()
            .permissions()
            .mode();
        assert_eq!(mode & 0o777, 0o600);
        delete_local_config(dir.path());
        assert!(matches!(load(dir.path()), Err(ConfigError::NotConfigured)));
    }

    #[test]
    fn bad_configs_are_refused_without_writing_outside_the_root() {
        let dir = tempfile::tempdir().unwrap();
        assert!(matches!(
            write_jit(dir.path(), "not base64!"),
            Err(ConfigError::Malformed)
        ));
        let evil = b64(&json!({"../escape": STANDARD.encode("x")}));
        assert!(matches!(
            write_jit(dir.path(), &evil),
            Err(ConfigError::BadFile(_))
        ));
        assert!(!dir.path().join("../escape").exists());
    }
}
