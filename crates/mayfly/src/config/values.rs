//! Value types of the config file that parse from one string: durations, images, the state URL,
//! the log format. Their errors describe the expected form and never repeat the value given.

use mayfly_core::{Image, Secret};
use serde::de::{self, Deserializer, Visitor};
use serde::{Deserialize, Serialize, Serializer};
use std::fmt;
use std::path::Path;
use std::str::FromStr;
use std::time::Duration;

/// A positive duration in the one syntax mayfly reads: whole numbers, each followed by its
/// unit, largest unit first, no spaces: `90s`, `3m`, `1h30m`, `500ms`, `7d`. Units: `d` (24 h),
/// `h`, `m`, `s`, `ms`. Anything else (`3 minutes`, `1.5h`, `PT3M`, `30`) is an error naming the key:
/// one form to read and to write, so a typo is never taken for a different length.
#[derive(Clone, Copy, Debug, PartialEq, Eq, PartialOrd, Ord)]
pub struct HumanDuration(pub Duration);

const DURATION_FORM: &str = "a duration like \"90s\", \"3m\", \"1h30m\", \"500ms\" or \"7d\" (units d, h, m, s, ms; no spaces)";

impl HumanDuration {
    pub const fn secs(s: u64) -> Self {
        HumanDuration(Duration::from_secs(s))
    }
}

/// The units in the order they must come, with their length in milliseconds.
const UNITS: [(&str, u64); 5] = [
    ("d", 86_400_000),
    ("h", 3_600_000),
    ("m", 60_000),
    ("s", 1_000),
    ("ms", 1),
];

impl FromStr for HumanDuration {
    type Err = String;
    fn from_str(s: &str) -> Result<Self, String> {
        let bad = || format!("expected {DURATION_FORM}");
        let mut rest = s;
        let mut total: u64 = 0;
        // Index into UNITS of the next unit allowed: each at most once, largest first.
        let mut next_unit = 0;
        if rest.is_empty() {
            return Err(bad());
        }
        while !rest.is_empty() {
            let digits = rest.bytes().take_while(u8::is_ascii_digit).count();
            if digits == 0 {
                return Err(bad());
            }
            let number: u64 = rest[..digits].parse().map_err(|_| bad())?;
            rest = &rest[digits..];
            let letters = rest.bytes().take_while(u8::is_ascii_alphabetic).count();
            let unit = &rest[..letters];
            rest = &rest[letters..];
            let at = UNITS[next_unit..]
                .iter()
                .position(|(u, _)| *u == unit)
                .ok_or_else(bad)?;
            next_unit += at + 1;
            total = number
                .checked_mul(UNITS[next_unit - 1].1)
                .and_then(|ms| total.checked_add(ms))
                .ok_or_else(|| "is too long".to_string())?;
        }
        if total == 0 {
            return Err("must be longer than zero".into());
        }
        Ok(HumanDuration(Duration::from_millis(total)))
    }
}

impl fmt::Display for HumanDuration {
    /// The same syntax back: `1h30m`, `90s` as `1m30s`, `1500ms` as `1s500ms`.
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        let mut ms = self.0.as_millis();
        if ms == 0 {
            return f.write_str("0s");
        }
        for (unit, len) in UNITS {
            let len = u128::from(len);
            if ms >= len {
                write!(f, "{}{unit}", ms / len)?;
                ms %= len;
            }
        }
        Ok(())
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
    fn durations_have_one_syntax_and_print_in_it() {
        let ok = |s: &str| s.parse::<HumanDuration>().unwrap();
        assert_eq!(ok("1h30m").0, Duration::from_secs(5400));
        assert_eq!(ok("1h30m").to_string(), "1h30m");
        assert_eq!(ok("90s").0, Duration::from_secs(90));
        assert_eq!(ok("90s").to_string(), "1m30s");
        assert_eq!(ok("500ms").0, Duration::from_millis(500));
        assert_eq!(ok("1s500ms").to_string(), "1s500ms");
        assert_eq!(ok("2h").to_string(), "2h");
        assert_eq!(ok("3m").0, Duration::from_secs(180));
        for wrong in [
            "3 minutes",
            "3 m",
            " 3m",
            "3m ",
            "1.5h",
            "PT3M",
            "30",
            "m",
            "",
            "3M",
            "30s1m",
            "1m1m",
            "-5m",
            "soon",
            "1h 30m",
        ] {
            let e = wrong.parse::<HumanDuration>().unwrap_err();
            assert!(e.contains("like \"90s\""), "{wrong:?}: {e}");
        }
        assert!(
            "0s".parse::<HumanDuration>()
                .unwrap_err()
                .contains("longer than zero")
        );
        assert!("99999999999999999h".parse::<HumanDuration>().is_err());
        assert!("-5m".parse::<HumanDuration>().is_err());
        assert!("soon".parse::<HumanDuration>().is_err());
        let days = |s: &str| s.parse::<HumanDuration>().map(|d| d.0.as_secs());
        assert_eq!(days("10d"), Ok(864_000));
        assert_eq!(days("1d12h"), Ok(129_600));
        assert!(days("2 days").is_err(), "one syntax: no spaces, no words");
        assert!(days("d").is_err() && days("10dx").is_err() && days("0d").is_err());
        let ten: HumanDuration = "10d".parse().unwrap();
        assert_eq!(ten.to_string(), "10d");
        assert_eq!(
            ten.to_string().parse::<HumanDuration>(),
            Ok(ten),
            "prints back"
        );
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
