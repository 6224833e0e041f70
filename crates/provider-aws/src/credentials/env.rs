//! The process environment as the credential sources read it: a copy taken once, so tests
//! hand in their own (changing the real environment is not safe in a threaded test run).

use super::Credentials;
use mayfly_core::Secret;
use std::collections::BTreeMap;
use std::path::PathBuf;

/// Environment variables by name; empty values count as unset, as the AWS SDKs treat them.
#[derive(Clone, Debug, Default, PartialEq, Eq)]
pub struct Env {
    vars: BTreeMap<String, String>,
}

impl Env {
    /// The variables of this process that concern AWS (and the home directory).
    pub fn from_process() -> Env {
        Env {
            vars: std::env::vars()
                .filter(|(k, _)| k.starts_with("AWS_") || k == "HOME" || k == "USERPROFILE")
                .collect(),
        }
    }

    /// An environment of exactly these variables.
    pub fn of<'a>(vars: impl IntoIterator<Item = (&'a str, &'a str)>) -> Env {
        Env {
            vars: vars
                .into_iter()
                .map(|(k, v)| (k.to_string(), v.to_string()))
                .collect(),
        }
    }

    pub fn get(&self, name: &str) -> Option<&str> {
        self.vars
            .get(name)
            .map(String::as_str)
            .filter(|v| !v.trim().is_empty())
    }

    /// `true`, `TRUE`, `1`.
    pub fn flag(&self, name: &str) -> bool {
        self.get(name)
            .is_some_and(|v| v.eq_ignore_ascii_case("true") || v == "1")
    }

    pub fn home(&self) -> Option<PathBuf> {
        self.get("HOME")
            .or_else(|| self.get("USERPROFILE"))
            .map(PathBuf::from)
    }
}

/// `AWS_ACCESS_KEY_ID` and `AWS_SECRET_ACCESS_KEY`, with `AWS_SESSION_TOKEN` if set.
pub fn keys(env: &Env) -> Option<Credentials> {
    Some(Credentials {
        access_key_id: env.get("AWS_ACCESS_KEY_ID")?.to_string(),
        secret_access_key: Secret::new(env.get("AWS_SECRET_ACCESS_KEY")?),
        session_token: env.get("AWS_SESSION_TOKEN").map(Secret::new),
        expires: None,
        source: "environment",
    })
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn keys_come_from_the_environment_with_their_token() {
        let env = Env::of([
            ("AWS_ACCESS_KEY_ID", "AKIDENV"),
            ("AWS_SECRET_ACCESS_KEY", "secret"),
            ("AWS_SESSION_TOKEN", "token"),
        ]);
        let c = keys(&env).unwrap();
        assert_eq!(c.access_key_id, "AKIDENV");
        assert_eq!(c.secret_access_key.expose(), "secret");
        assert_eq!(c.session_token.unwrap().expose(), "token");
        assert_eq!(c.source, "environment");
    }

    #[test]
    fn half_a_key_pair_or_empty_values_are_no_keys() {
        assert!(keys(&Env::of([("AWS_ACCESS_KEY_ID", "AKID")])).is_none());
        assert!(
            keys(&Env::of([
                ("AWS_ACCESS_KEY_ID", "AKID"),
                ("AWS_SECRET_ACCESS_KEY", " ")
            ]))
            .is_none()
        );
    }
}
