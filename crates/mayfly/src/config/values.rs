//! Value types of the config file that parse from one string: durations, images, the state URL,
//! the log format. Their errors describe the expected form and never repeat the value given.

use mayfly_core::{Image, Secret};
use serde::de::{self, Deserializer, Visitor};
use serde::{Deserialize, Serialize, Serializer};
use std::fmt;
use std::path::Path;
use std::str::FromStr;
use std::time::Duration;

/// A positive duration written for humans: `90s`, `3m`, `1h30m`, `7d` (a day is 24 hours).
#[derive(Clone, Copy, Debug, PartialEq, Eq, PartialOrd, Ord)]
pub struct HumanDuration(pub Duration);

const DURATION_FORM: &str = "a duration like \"90s\", \"3m\", \"1h30m\" or \"7d\"";

impl HumanDuration {
    pub const fn secs(s: u64) -> Self {
        HumanDuration(Duration::from_secs(s))
    }
}

impl FromStr for HumanDuration {
    type Err = String;
    fn from_str(s: &str) -> Result<Self, String> {
        let parser = jiff::fmt::friendly::SpanParser::new();
        let d = parser
            .parse_unsigned_duration(s.trim())
            .ok()
            .or_else(|| {
                // Days and weeks (retention is counted in them) as 24 hours and 7 days.
                let span = parser.parse_span(s.trim()).ok()?;
                let d = span
                    .to_duration(jiff::SpanRelativeTo::days_are_24_hours())
                    .ok()?;
                Duration::try_from(d).ok()
            })
            .ok_or_else(|| format!("expected {DURATION_FORM}"))?;
        if d.is_zero() {
            return Err("must be longer than zero".into());
        }
        Ok(HumanDuration(d))
    }
}

impl fmt::Display for HumanDuration {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        use jiff::fmt::friendly::{Designator, Spacing, SpanPrinter};
        let printer = SpanPrinter::new()
            .designator(Designator::Compact)
            .spacing(Spacing::None);
        f.write_str(&printer.unsigned_duration_to_string(&self.0))
    }
}

/// An image as `arch:kind:name` (`x86:system:ubuntu-24.04`); a bare name is an x86 system image.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct ImageRef(pub Image);

impl Default for ImageRef {
    fn default() -> Self {
        ImageRef(Image {
            arch: mayfly_core::Arch::X86,
            kind: mayfly_core::ImageKind::System,
            name: "ubuntu-24.04".into(),
        })
    }
}

impl FromStr for ImageRef {
    type Err = String;
    fn from_str(s: &str) -> Result<Self, String> {
        Image::from_str(s).map(ImageRef).map_err(|_| {
            "expected <x86|arm>:<system|snapshot|backup|app>:<name>, like \"x86:system:ubuntu-24.04\"".into()
        })
    }
}

impl fmt::Display for ImageRef {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        self.0.fmt(f)
    }
}

/// Where mayfly keeps its state: an SQLite file (`sqlite://PATH` or a bare path) or
/// `postgres://…`. A PostgreSQL URL may carry a password, so the URL is held as a secret and
/// only its redacted form is ever shown.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct StateUrl {
    url: Secret,
    shown: String,
}

impl StateUrl {
    /// The default: `mayfly.db` in the state directory. `%`, `?` and `#` are percent-encoded
    /// so that the store reads the whole path as a path.
    pub fn sqlite_in(dir: &Path) -> Self {
        let mut url = String::from("sqlite://");
        for c in dir.join("mayfly.db").to_string_lossy().chars() {
            match c {
                '%' | '?' | '#' => url.push_str(&format!("%{:02X}", c as u32)),
                c => url.push(c),
            }
        }
        StateUrl {
            shown: url.clone(),
            url: Secret::new(url),
        }
    }

    /// The full URL, password included, for opening the store.
    pub fn expose(&self) -> &str {
        self.url.expose()
    }
}

impl FromStr for StateUrl {
    type Err = String;
    fn from_str(s: &str) -> Result<Self, String> {
        let bad = |why: &str| {
            format!(
                "{why}; expected sqlite://PATH, a file path or postgres://USER:PASSWORD@HOST/DATABASE"
            )
        };
        let lower = s.to_ascii_lowercase();
        let plain = || {
            Ok(StateUrl {
                url: Secret::new(s),
                shown: s.to_string(),
            })
        };
        if lower.starts_with("postgres://") || lower.starts_with("postgresql://") {
            return Ok(StateUrl {
                url: Secret::new(s),
                shown: redact_password(s),
            });
        }
        if let Some(rest) = lower.strip_prefix("sqlite:") {
            let path = rest.strip_prefix("//").unwrap_or(rest);
            return match path {
                "" => Err(bad("no file path")),
                p if p.contains('?') => Err(bad("SQLite URLs take no query parameters")),
                _ => plain(),
            };
        }
        let scheme = s.split_once(':').map(|(scheme, _)| scheme);
        let has_scheme = scheme.is_some_and(|sc| {
            sc.len() > 1
                && sc
                    .chars()
                    .all(|c| c.is_ascii_alphanumeric() || "+-.".contains(c))
        });
        match s {
            "" => Err(bad("empty")),
            _ if has_scheme => Err(bad("unsupported scheme")),
            _ => plain(),
        }
    }
}

/// `postgres://user:<redacted>@host/db?password=<redacted>`: the password of the user-info part
/// and of a `password` query parameter (libpq accepts both) are replaced.
fn redact_password(url: &str) -> String {
    let Some((scheme, rest)) = url.split_once("://") else {
        return url.to_string();
    };
    let authority_end = rest.find(['/', '?']).unwrap_or(rest.len());
    let (authority, tail) = rest.split_at(authority_end);
    let authority = match authority.rsplit_once('@') {
        Some((userinfo, host)) => match userinfo.split_once(':') {
            Some((user, _)) => format!("{user}:{}@{host}", mayfly_core::secret::REDACTED),
            None => authority.to_string(),
        },
        None => authority.to_string(),
    };
    let tail = match tail.split_once('?') {
        Some((path, query)) => {
            let params: Vec<String> = query
                .split('&')
                .map(|p| match p.split_once('=') {
                    Some((k, _)) if k.eq_ignore_ascii_case("password") => {
                        format!("{k}={}", mayfly_core::secret::REDACTED)
                    }
                    _ => p.to_string(),
                })
                .collect();
            format!("{path}?{}", params.join("&"))
        }
        None => tail.to_string(),
    };
    format!("{scheme}://{authority}{tail}")
}

impl fmt::Display for StateUrl {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(&self.shown)
    }
}

/// How log lines are written to stderr.
#[derive(Clone, Copy, Debug, Default, PartialEq, Eq, Serialize, Deserialize, clap::ValueEnum)]
#[serde(rename_all = "lowercase")]
pub enum LogFormat {
    /// Human-readable lines.
    #[default]
    Text,
    /// One JSON object per line, for log collectors.
    Json,
}

/// Serde support for the string-shaped values above: parsed with `FromStr`, shown with `Display`.
macro_rules! string_serde {
    ($t:ty, $expecting:expr) => {
        impl<'de> Deserialize<'de> for $t {
            fn deserialize<D: Deserializer<'de>>(d: D) -> Result<Self, D::Error> {
                struct V;
                impl Visitor<'_> for V {
                    type Value = $t;
                    fn expecting(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
                        f.write_str($expecting)
                    }
                    fn visit_str<E: de::Error>(self, s: &str) -> Result<$t, E> {
                        s.parse().map_err(E::custom)
                    }
                }
                d.deserialize_str(V)
            }
        }

        impl Serialize for $t {
            fn serialize<S: Serializer>(&self, s: S) -> Result<S::Ok, S::Error> {
                s.collect_str(self)
            }
        }
    };
}

string_serde!(HumanDuration, DURATION_FORM);
string_serde!(ImageRef, "an image like \"x86:system:ubuntu-24.04\"");
string_serde!(
    StateUrl,
    "a URL like \"sqlite:///var/lib/mayfly/mayfly.db\" or \"postgres://…\""
);

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn durations_read_and_print_friendly() {
        let d: HumanDuration = "1h30m".parse().unwrap();
        assert_eq!(d.0, Duration::from_secs(5400));
        assert_eq!(d.to_string(), "1h30m");
        assert_eq!("90s".parse::<HumanDuration>().unwrap().to_string(), "1m30s");
        assert!(
            "0s".parse::<HumanDuration>()
                .unwrap_err()
                .contains("longer than zero")
        );
        assert!("-5m".parse::<HumanDuration>().is_err());
        assert!("soon".parse::<HumanDuration>().is_err());
    }

    #[test]
    fn postgres_passwords_are_redacted() {
        let u: StateUrl =
            "postgres://mayfly:hunter2@db:5432/mayfly?sslmode=require&password=hunter3"
                .parse()
                .unwrap();
        assert_eq!(
            u.to_string(),
            "postgres://mayfly:<redacted>@db:5432/mayfly?sslmode=require&password=<redacted>"
        );
        assert!(!format!("{u:?}").contains("hunter"));
        assert!(u.expose().contains("hunter2"));
        let err = "mysql://root:hunter2@db/x".parse::<StateUrl>().unwrap_err();
        assert!(!err.contains("hunter2"), "{err}");
    }

    #[test]
    fn sqlite_urls_and_paths_are_accepted() {
        let u = StateUrl::sqlite_in(Path::new("/var/lib/may?fly"));
        assert_eq!(u.to_string(), "sqlite:///var/lib/may%3Ffly/mayfly.db");
        assert!("sqlite:state/m.db".parse::<StateUrl>().is_ok());
        assert!("/var/lib/mayfly/m.db".parse::<StateUrl>().is_ok());
        assert!("sqlite:".parse::<StateUrl>().is_err());
        assert!("sqlite://m.db?mode=rwc".parse::<StateUrl>().is_err());
        assert!("mysql://db/x".parse::<StateUrl>().is_err());
    }

    #[test]
    fn images_default_to_ubuntu_on_x86() {
        assert_eq!(ImageRef::default().to_string(), "x86:system:ubuntu-24.04");
        assert!("x86:floppy:dos".parse::<ImageRef>().is_err());
    }
}
