//! Store URLs: which backend a URL names, where a SQLite file lives, and how a URL is shown in
//! errors and logs — never with its password.

use crate::error::{Result, StoreError};
use std::path::{Path, PathBuf};

/// What `Store::open` was asked to open.
#[derive(Debug, PartialEq, Eq)]
pub(crate) enum Target {
    SqliteFile(PathBuf),
    SqliteMemory,
    Postgres,
}

pub(crate) fn target(url: &str) -> Result<Target> {
    let bad = |reason: &str| StoreError::BadUrl {
        url: redact_url(url),
        reason: reason.into(),
    };
    let lower = url.to_ascii_lowercase();
    if lower.starts_with("postgres://") || lower.starts_with("postgresql://") {
        return Ok(Target::Postgres);
    }
    let path = if lower.starts_with("sqlite:") {
        let rest = &url["sqlite:".len()..];
        let rest = rest.strip_prefix("//").unwrap_or(rest);
        if rest.contains('?') {
            return Err(bad(
                "query parameters are not supported; mayfly sets the SQLite options itself",
            ));
        }
        percent_decode(rest).ok_or_else(|| bad("the path is not valid percent-encoded UTF-8"))?
    } else if has_scheme(url) {
        return Err(bad(
            "unsupported scheme; expected a file path, sqlite:PATH or postgres://",
        ));
    } else {
        url.to_string()
    };
    match path.as_str() {
        "" => Err(bad("no file path")),
        ":memory:" => Ok(Target::SqliteMemory),
        _ => Ok(Target::SqliteFile(PathBuf::from(path))),
    }
}

/// Whether `url` starts like `scheme:`; a bare file name such as `./a:b.db` does not.
fn has_scheme(url: &str) -> bool {
    url.split_once(':').is_some_and(|(scheme, _)| {
        scheme.len() > 1
            && scheme.starts_with(|c: char| c.is_ascii_alphabetic())
            && scheme
                .chars()
                .all(|c| c.is_ascii_alphanumeric() || "+-.".contains(c))
    })
}

/// The URL sqlx's `Any` driver gets for a SQLite file. The path is made absolute and
/// percent-encoded so that no file name can be read as a host, a query or a fragment;
/// `mode=rwc` creates the file when it is missing.
pub(crate) fn sqlite_url(path: &Path) -> Result<String> {
    let what = || format!("SQLite path {}", path.display());
    let abs = std::path::absolute(path).map_err(|e| crate::error::invalid(what(), e))?;
    let abs = abs
        .to_str()
        .ok_or_else(|| crate::error::invalid(what(), "not valid UTF-8"))?;
    let mut encoded = String::with_capacity(abs.len());
    for b in abs.bytes() {
        if b.is_ascii_alphanumeric() || b"/-._~".contains(&b) {
            encoded.push(char::from(b));
        } else {
            encoded.push_str(&format!("%{b:02X}"));
        }
    }
    Ok(format!("sqlite://{encoded}?mode=rwc"))
}

/// `url` with its password, and any `password=` query parameter, replaced by `***`.
///
/// User info is taken to end at the last `@`, so a password holding unescaped `@`, `/` or `?`
/// is still hidden whole; when in doubt this hides too much rather than too little.
pub fn redact_url(url: &str) -> String {
    let Some(at) = url.find("://") else {
        return url.to_string();
    };
    let (head, rest) = url.split_at(at + 3);
    let mut out = String::from(head);
    let location = match rest.rsplit_once('@') {
        Some((userinfo, location)) => {
            match userinfo.split_once(':') {
                Some((user, _)) => out.push_str(&format!("{user}:***@")),
                None => out.push_str(&format!("{userinfo}@")),
            }
            location
        }
        None => rest,
    };
    match location.split_once('?') {
        Some((path, query)) => {
            let pairs: Vec<String> = query
                .split('&')
                .map(|pair| match pair.split_once('=') {
                    Some((k, _)) if is_password_key(k) => format!("{k}=***"),
                    _ => pair.to_string(),
                })
                .collect();
            out.push_str(&format!("{path}?{}", pairs.join("&")));
        }
        None => out.push_str(location),
    }
    out
}

/// `text` (a driver's error message) with every form of `url`'s password replaced by `***`.
pub(crate) fn scrub(text: &str, url: &str) -> String {
    let mut out = text.to_string();
    for secret in secrets(url) {
        out = out.replace(&secret, "***");
    }
    out
}

/// The passwords in `url`, as written and percent-decoded, longest first.
fn secrets(url: &str) -> Vec<String> {
    let Some((_, rest)) = url.split_once("://") else {
        return Vec::new();
    };
    let mut raw = Vec::new();
    if let Some((userinfo, _)) = rest.rsplit_once('@') {
        raw.extend(userinfo.split_once(':').map(|(_, password)| password));
    }
    if let Some((_, query)) = rest.split_once('?') {
        let pairs = query.split('&').filter_map(|pair| pair.split_once('='));
        raw.extend(pairs.filter(|(k, _)| is_password_key(k)).map(|(_, v)| v));
    }
    let mut all: Vec<String> = raw
        .iter()
        .flat_map(|s| [s.to_string(), percent_decode(s).unwrap_or_default()])
        .collect();
    all.retain(|s| !s.is_empty());
    all.sort_by_key(|s| std::cmp::Reverse(s.len()));
    all
}

fn is_password_key(key: &str) -> bool {
    key.to_ascii_lowercase().contains("password")
}

/// Decodes `%XX` escapes; a `%` not followed by two hex digits stays as it is.
fn percent_decode(s: &str) -> Option<String> {
    let bytes = s.as_bytes();
    let mut out = Vec::with_capacity(bytes.len());
    let mut i = 0;
    while i < bytes.len() {
        let hex = bytes
            .get(i + 1..i + 3)
            .and_then(|h| std::str::from_utf8(h).ok());
        match (bytes[i], hex.and_then(|h| u8::from_str_radix(h, 16).ok())) {
            (b'%', Some(b)) => {
                out.push(b);
                i += 3;
            }
            (b, _) => {
                out.push(b);
                i += 1;
            }
        }
    }
    String::from_utf8(out).ok()
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn redact_hides_passwords_and_keeps_the_rest() {
        let cases = [
            (
                "postgres://mayfly:s3cret@db.example:5432/mayfly",
                "postgres://mayfly:***@db.example:5432/mayfly",
            ),
            (
                "postgresql://u:p%40ss@h/db?sslmode=require",
                "postgresql://u:***@h/db?sslmode=require",
            ),
            ("postgres://u:pa@ss/?x@h/db", "postgres://u:***@h/db"),
            (
                "postgres://u@h/db?password=hunter2&sslmode=disable",
                "postgres://u@h/db?password=***&sslmode=disable",
            ),
            ("postgres://:only@h/db", "postgres://:***@h/db"),
            ("postgres://h/db", "postgres://h/db"),
            (
                "sqlite:///var/lib/mayfly/state.db",
                "sqlite:///var/lib/mayfly/state.db",
            ),
            ("/var/lib/mayfly/state.db", "/var/lib/mayfly/state.db"),
        ];
        for (url, want) in cases {
            assert_eq!(redact_url(url), want, "{url}");
        }
    }

    #[test]
    fn scrub_removes_raw_and_decoded_passwords() {
        let url = "postgres://u:p%40ss@h/db?password=other";
        let text = "failed for p%40ss, p@ss and other";
        assert_eq!(scrub(text, url), "failed for ***, *** and ***");
        assert_eq!(scrub("nothing here", "sqlite:a.db"), "nothing here");
    }

    #[test]
    fn targets_cover_every_accepted_form() {
        let file = |p: &str| Some(Target::SqliteFile(PathBuf::from(p)));
        assert_eq!(target("sqlite:///var/lib/m.db").ok(), file("/var/lib/m.db"));
        assert_eq!(target("sqlite://rel/m.db").ok(), file("rel/m.db"));
        assert_eq!(target("sqlite:m.db").ok(), file("m.db"));
        assert_eq!(target("sqlite:a%20b.db").ok(), file("a b.db"));
        assert_eq!(target("./state/m.db").ok(), file("./state/m.db"));
        assert_eq!(target("./a:b?.db").ok(), file("./a:b?.db"));
        assert_eq!(target("sqlite::memory:").ok(), Some(Target::SqliteMemory));
        assert_eq!(target("postgres://u:p@h/db").ok(), Some(Target::Postgres));
        assert_eq!(target("PostgreSQL://h/db").ok(), Some(Target::Postgres));
    }

    #[test]
    fn bad_urls_say_why_without_the_password() {
        for url in [
            "mysql://root:hunter2@h/db",
            "redis://:hunter2@h",
            "file:x",
            "sqlite:",
            "",
            "sqlite:a.db?mode=ro",
        ] {
            let err = target(url).expect_err(url).to_string();
            assert!(!err.contains("hunter2"), "{err}");
            assert!(err.starts_with("store URL"), "{err}");
        }
    }

    #[test]
    fn sqlite_urls_are_absolute_and_escaped() {
        let url = sqlite_url(Path::new("/tmp/a b?#%.db")).unwrap();
        assert_eq!(url, "sqlite:///tmp/a%20b%3F%23%25.db?mode=rwc");
        assert!(
            sqlite_url(Path::new("rel.db"))
                .unwrap()
                .starts_with("sqlite:///")
        );
    }
}
