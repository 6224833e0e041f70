//! The shared config and credentials files (`~/.aws/config`, `~/.aws/credentials`) and what a
//! profile in them says about keys: static keys, `credential_process`, a role assumed from
//! another profile or source (`role_arn` with `source_profile` or `credential_source`), or a
//! web identity token file. SSO profiles are refused with what to do instead.

use super::{Credentials, CredentialsError, Env, Fetch, Fixed, env, imds, process, remote, sts};
use mayfly_core::Secret;
use std::collections::{BTreeMap, BTreeSet};
use std::path::{Path, PathBuf};
use std::sync::Arc;

type Section = BTreeMap<String, String>;

/// The profiles of both files, merged (the credentials file wins a key both set), and the one
/// in use.
#[derive(Clone, Debug, Default)]
pub struct Profiles {
    name: String,
    /// `AWS_PROFILE` names it: a missing profile is then an error, not a fall-through.
    explicit: bool,
    config_path: PathBuf,
    credentials_path: PathBuf,
    profiles: BTreeMap<String, Section>,
}

/// Reads one INI-style file into sections. `config` files name profiles `[profile x]` (and the
/// default `[default]`); credentials files `[x]`. Other config sections (`sso-session`,
/// `services`) are skipped.
fn parse(
    text: &str,
    is_config: bool,
    path: &Path,
) -> Result<BTreeMap<String, Section>, CredentialsError> {
    let mut out: BTreeMap<String, Section> = BTreeMap::new();
    let mut current: Option<String> = None;
    let mut last_key: Option<String> = None;
    for (n, raw) in text.lines().enumerate() {
        let line = raw.trim();
        if line.is_empty() || line.starts_with('#') || line.starts_with(';') {
            continue;
        }
        if line.starts_with('[') {
            let Some(inner) = line.strip_prefix('[').and_then(|l| l.split(']').next()) else {
                continue;
            };
            let inner = inner.trim();
            let name = if !is_config {
                Some(inner.to_string())
            } else if inner == "default" {
                Some("default".to_string())
            } else {
                inner
                    .strip_prefix("profile")
                    .filter(|rest| rest.starts_with(char::is_whitespace))
                    .map(|rest| rest.trim().to_string())
            };
            current = name.filter(|n| !n.is_empty());
            if let Some(name) = &current {
                out.entry(name.clone()).or_default();
            }
            last_key = None;
            continue;
        }
        let Some(section) = current.as_ref() else {
            continue;
        };
        if raw.starts_with(char::is_whitespace) {
            // A continuation of the previous value, or a nested setting (`s3 =` then indented
            // keys) that no credential source reads.
            if let Some(k) = &last_key
                && let Some(v) = out.get_mut(section).and_then(|s| s.get_mut(k))
                && !v.is_empty()
            {
                v.push('\n');
                v.push_str(line);
            }
            continue;
        }
        let Some((key, value)) = line.split_once('=') else {
            return Err(CredentialsError::invalid(
                "profile",
                format!(
                    "{} line {}: expected `key = value` or `[section]`",
                    path.display(),
                    n + 1
                ),
            ));
        };
        // A comment after a value needs whitespace before it: `a = b #c`.
        let mut value = value.trim();
        for mark in [" #", " ;", "\t#", "\t;"] {
            if let Some(at) = value.find(mark) {
                value = value[..at].trim_end();
            }
        }
        let key = key.trim().to_string();
        out.entry(section.clone())
            .or_default()
            .insert(key.clone(), value.to_string());
        last_key = Some(key);
    }
    Ok(out)
}

fn read(path: &Path) -> Result<Option<String>, CredentialsError> {
    match std::fs::read_to_string(path) {
        Ok(t) => Ok(Some(t)),
        Err(e) if e.kind() == std::io::ErrorKind::NotFound => Ok(None),
        Err(e) => Err(CredentialsError::invalid(
            "profile",
            format!("cannot read {}: {e}", path.display()),
        )),
    }
}

impl Profiles {
    /// Both files as `AWS_CONFIG_FILE`, `AWS_SHARED_CREDENTIALS_FILE` and the home directory
    /// place them; missing files hold no profiles.
    pub fn load(env: &Env) -> Result<Profiles, CredentialsError> {
        let home = env.home().unwrap_or_default();
        let expand = |p: &str| match p.strip_prefix("~/") {
            Some(rest) => home.join(rest),
            None => PathBuf::from(p),
        };
        let config_path = env
            .get("AWS_CONFIG_FILE")
            .map(expand)
            .unwrap_or_else(|| home.join(".aws").join("config"));
        let credentials_path = env
            .get("AWS_SHARED_CREDENTIALS_FILE")
            .map(expand)
            .unwrap_or_else(|| home.join(".aws").join("credentials"));
        let mut profiles = match read(&config_path)? {
            Some(t) => parse(&t, true, &config_path)?,
            None => BTreeMap::new(),
        };
        if let Some(t) = read(&credentials_path)? {
            for (name, section) in parse(&t, false, &credentials_path)? {
                profiles.entry(name).or_default().extend(section);
            }
        }
        let explicit = env.get("AWS_PROFILE");
        Ok(Profiles {
            name: explicit.unwrap_or("default").to_string(),
            explicit: explicit.is_some(),
            config_path,
            credentials_path,
            profiles,
        })
    }

    /// The profile in use.
    pub fn name(&self) -> &str {
        &self.name
    }

    pub fn config_path(&self) -> String {
        self.config_path.display().to_string()
    }

    pub fn credentials_path(&self) -> String {
        self.credentials_path.display().to_string()
    }

    /// A setting of the profile in use.
    pub fn get(&self, key: &str) -> Option<&str> {
        self.profiles
            .get(&self.name)?
            .get(key)
            .map(String::as_str)
            .filter(|v| !v.is_empty())
    }

    fn profile(&self, name: &str) -> Option<&Section> {
        self.profiles.get(name)
    }
}

fn value<'a>(s: &'a Section, key: &str) -> Option<&'a str> {
    s.get(key).map(String::as_str).filter(|v| !v.is_empty())
}

fn static_keys(s: &Section) -> Option<Credentials> {
    Some(Credentials {
        access_key_id: value(s, "aws_access_key_id")?.to_string(),
        secret_access_key: Secret::new(value(s, "aws_secret_access_key")?),
        session_token: value(s, "aws_session_token").map(Secret::new),
        expires: None,
        source: "profile",
    })
}

/// What the profile in use says, if it says anything about credentials.
pub fn source(
    profiles: &Profiles,
    env: &Env,
    http: &reqwest::Client,
    region: Option<&str>,
) -> Result<Option<Arc<dyn Fetch>>, CredentialsError> {
    if profiles.profile(&profiles.name).is_none() {
        if profiles.explicit {
            return Err(CredentialsError::invalid(
                "profile",
                format!(
                    "AWS_PROFILE={:?}, but neither {} nor {} has that profile",
                    profiles.name,
                    profiles.config_path(),
                    profiles.credentials_path()
                ),
            ));
        }
        return Ok(None);
    }
    let ctx = Context {
        profiles,
        env,
        http,
        region,
    };
    ctx.resolve(&profiles.name, &mut BTreeSet::new(), true)
}

struct Context<'a> {
    profiles: &'a Profiles,
    env: &'a Env,
    http: &'a reqwest::Client,
    region: Option<&'a str>,
}

impl Context<'_> {
    fn bad(&self, name: &str, message: impl std::fmt::Display) -> CredentialsError {
        CredentialsError::invalid("profile", format!("profile {name:?}: {message}"))
    }

    /// The source of profile `name`. `top`: the profile in use, which may say nothing about
    /// credentials (the next source is tried); a `source_profile` must say something.
    fn resolve(
        &self,
        name: &str,
        seen: &mut BTreeSet<String>,
        top: bool,
    ) -> Result<Option<Arc<dyn Fetch>>, CredentialsError> {
        if !seen.insert(name.to_string()) {
            return Err(self.bad(name, "its source_profile chain loops back to it"));
        }
        let Some(p) = self.profiles.profile(name) else {
            return Err(self.bad(name, "named as source_profile, but it does not exist"));
        };
        if let Some(role) = value(p, "role_arn") {
            let session = value(p, "role_session_name")
                .map(str::to_string)
                .unwrap_or_else(sts::session_name);
            if let Some(file) = value(p, "web_identity_token_file") {
                return Ok(Some(Arc::new(sts::WebIdentity::new(
                    PathBuf::from(file),
                    role.to_string(),
                    session,
                    self.http,
                    self.env,
                    self.region,
                ))));
            }
            let base: Arc<dyn Fetch> = if let Some(source) = value(p, "source_profile") {
                if source == name {
                    // A profile may hold the keys that assume its own role.
                    Arc::new(Fixed(static_keys(p).ok_or_else(|| {
                        self.bad(name, "is its own source_profile but holds no keys")
                    })?))
                } else {
                    self.resolve(source, seen, false)?
                        .ok_or_else(|| self.bad(source, "holds no credentials"))?
                }
            } else if let Some(source) = value(p, "credential_source") {
                match source {
                    "Environment" => Arc::new(Fixed(env::keys(self.env).ok_or_else(|| {
                        self.bad(name, "credential_source = Environment, but AWS_ACCESS_KEY_ID or AWS_SECRET_ACCESS_KEY is not set")
                    })?)),
                    "Ec2InstanceMetadata" => Arc::new(
                        imds::Imds::from_env(self.env, self.http)
                            .ok_or_else(|| self.bad(name, "credential_source = Ec2InstanceMetadata, but AWS_EC2_METADATA_DISABLED is set"))?,
                    ),
                    "EcsContainer" => Arc::new(
                        remote::Container::from_env(self.env, self.http)?
                            .ok_or_else(|| self.bad(name, "credential_source = EcsContainer, but no AWS_CONTAINER_CREDENTIALS_*_URI is set"))?,
                    ),
                    other => {
                        return Err(self.bad(
                            name,
                            format!("credential_source {other:?}: expected Environment, Ec2InstanceMetadata or EcsContainer"),
                        ));
                    }
                }
            } else {
                return Err(self.bad(
                    name,
                    "role_arn needs source_profile, credential_source or web_identity_token_file",
                ));
            };
            let duration = match value(p, "duration_seconds") {
                Some(d) => Some(d.parse::<u32>().map_err(|_| {
                    self.bad(
                        name,
                        format!("duration_seconds {d:?} is not a number of seconds"),
                    )
                })?),
                None => None,
            };
            return Ok(Some(Arc::new(sts::AssumeRole {
                base: super::Provider::new(base),
                role_arn: role.to_string(),
                session_name: session,
                external_id: value(p, "external_id").map(str::to_string),
                duration_seconds: duration,
                http: self.http.clone(),
                endpoint: sts::endpoint(self.env, self.region),
            })));
        }
        if value(p, "sso_session").is_some() || value(p, "sso_start_url").is_some() {
            return Err(self.bad(
                name,
                "AWS IAM Identity Center (SSO) profiles are not read by mayfly; give another \
                 profile `credential_process = aws configure export-credentials --profile <this \
                 profile> --format process` (AWS CLI v2 refreshes the SSO session), or export \
                 the keys with `--format env`",
            ));
        }
        if let Some(command) = value(p, "credential_process") {
            return Ok(Some(Arc::new(process::Process::new(command))));
        }
        if let Some(keys) = static_keys(p) {
            return Ok(Some(Arc::new(Fixed(keys))));
        }
        if value(p, "aws_access_key_id").is_some() {
            return Err(self.bad(name, "aws_access_key_id without aws_secret_access_key"));
        }
        if top {
            Ok(None)
        } else {
            Err(self.bad(name, "holds no credentials"))
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn files(config: &str, credentials: &str) -> (tempfile::TempDir, Vec<(String, String)>) {
        let dir = tempfile::tempdir().unwrap();
        std::fs::write(dir.path().join("config"), config).unwrap();
        std::fs::write(dir.path().join("credentials"), credentials).unwrap();
        let vars = vec![
            (
                "AWS_CONFIG_FILE".to_string(),
                dir.path().join("config").display().to_string(),
            ),
            (
                "AWS_SHARED_CREDENTIALS_FILE".to_string(),
                dir.path().join("credentials").display().to_string(),
            ),
        ];
        (dir, vars)
    }

    fn env(vars: &[(String, String)], more: &[(&str, &str)]) -> Env {
        Env::of(
            vars.iter()
                .map(|(k, v)| (k.as_str(), v.as_str()))
                .chain(more.iter().copied()),
        )
    }

    const CONFIG: &str = "\
# a comment
[default]
region = eu-west-1

[profile dev]
region = us-east-2 ; the dev region
s3 =
    max_concurrent_requests = 20

[profile tools]
credential_process = /usr/local/bin/get-keys --profile tools

[sso-session corp]
sso_region = eu-west-1
";

    const CREDENTIALS: &str = "\
[default]
aws_access_key_id = AKIDDEFAULT
aws_secret_access_key = default-secret

[dev]
aws_access_key_id=AKIDDEV
aws_secret_access_key=dev-secret
aws_session_token = dev-token
";

    #[test]
    fn both_files_merge_into_profiles_with_their_regions() {
        let (_d, vars) = files(CONFIG, CREDENTIALS);
        let p = Profiles::load(&env(&vars, &[])).unwrap();
        assert_eq!(p.name(), "default");
        assert_eq!(p.get("region"), Some("eu-west-1"));
        let p = Profiles::load(&env(&vars, &[("AWS_PROFILE", "dev")])).unwrap();
        assert_eq!(
            p.get("region"),
            Some("us-east-2"),
            "the comment is not part of it"
        );
        assert_eq!(p.get("aws_access_key_id"), Some("AKIDDEV"));
        assert!(
            p.profile("corp").is_none(),
            "an sso-session is not a profile"
        );
        assert_eq!(
            super::super::region(&env(&vars, &[("AWS_PROFILE", "dev")])).as_deref(),
            Some("us-east-2")
        );
        assert_eq!(
            super::super::region(&env(&vars, &[("AWS_REGION", "ap-south-1")])).as_deref(),
            Some("ap-south-1"),
            "the environment wins over the profile"
        );
    }

    #[tokio::test]
    async fn a_profile_with_keys_gives_them() {
        let (_d, vars) = files(CONFIG, CREDENTIALS);
        let http = reqwest::Client::new();
        let e = env(&vars, &[("AWS_PROFILE", "dev")]);
        let f = source(&Profiles::load(&e).unwrap(), &e, &http, None)
            .unwrap()
            .unwrap();
        let c = f.fetch().await.unwrap();
        assert_eq!(c.access_key_id, "AKIDDEV");
        assert_eq!(c.session_token.unwrap().expose(), "dev-token");
    }

    #[tokio::test]
    async fn the_environment_comes_before_the_profile() {
        let (_d, vars) = files(CONFIG, CREDENTIALS);
        let e = env(
            &vars,
            &[
                ("AWS_ACCESS_KEY_ID", "AKIDENV"),
                ("AWS_SECRET_ACCESS_KEY", "s"),
            ],
        );
        let p = super::super::Provider::from_env(&e, &reqwest::Client::new(), None);
        assert_eq!(p.get().await.unwrap().access_key_id, "AKIDENV");
        let e = env(&vars, &[]);
        let p = super::super::Provider::from_env(&e, &reqwest::Client::new(), None);
        assert_eq!(p.get().await.unwrap().access_key_id, "AKIDDEFAULT");
    }

    #[test]
    fn mistakes_are_named() {
        let http = reqwest::Client::new();
        let check = |config: &str, profile: &str| {
            let (_d, vars) = files(config, "");
            let e = env(&vars, &[("AWS_PROFILE", profile)]);
            match Profiles::load(&e) {
                Err(e) => e.to_string(),
                Ok(p) => match source(&p, &e, &http, None) {
                    Err(e) => e.to_string(),
                    Ok(_) => "ok".to_string(),
                },
            }
        };
        assert!(check(CONFIG, "nope").contains("AWS_PROFILE=\"nope\""));
        assert!(check("[profile a]\nrole_arn = arn:x\n", "a").contains("role_arn needs"));
        let looped = "[profile a]\nrole_arn = arn:x\nsource_profile = b\n[profile b]\nrole_arn = arn:y\nsource_profile = a\n";
        assert!(check(looped, "a").contains("loops back"));
        assert!(
            check("[profile a]\nrole_arn = arn:x\nsource_profile = zz\n", "a").contains("\"zz\"")
        );
        assert!(check("[profile a]\nsso_session = corp\n", "a").contains("SSO"));
        assert!(check("[profile a]\nnot a line\n", "a").contains("line 2"));
        assert!(
            check(
                "[profile a]\nrole_arn = arn:x\ncredential_source = Nowhere\n",
                "a"
            )
            .contains("Nowhere")
        );
    }

    #[tokio::test]
    async fn a_profile_without_credentials_falls_through_unless_named() {
        let (_d, vars) = files("[default]\nregion = eu-west-1\n", "");
        let e = env(&vars, &[]);
        let p = Profiles::load(&e).unwrap();
        assert!(
            source(&p, &e, &reqwest::Client::new(), None)
                .unwrap()
                .is_none()
        );
    }
}
