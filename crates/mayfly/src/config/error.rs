//! Configuration errors that point at the place to fix: file:line:col (or the environment
//! variable or flag), the dotted key and a hint. They never quote a configured value, so no secret leaks.

use std::fmt;
use std::path::PathBuf;

/// Where a configured value came from.
#[derive(Clone, Debug, PartialEq, Eq)]
pub enum Origin {
    /// A position in the config file; `line` and `column` start at 1 (columns count characters).
    File {
        path: PathBuf,
        line: usize,
        column: usize,
    },
    /// The config file as a whole (it could not be read).
    FileOnly(PathBuf),
    Env(&'static str),
    /// A command-line flag or its `MAYFLY_*` variable, written like `--state/MAYFLY_STATE`.
    Flag(&'static str),
}

impl fmt::Display for Origin {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        match self {
            Origin::File { path, line, column } => write!(f, "{}:{line}:{column}", path.display()),
            Origin::FileOnly(path) => write!(f, "{}", path.display()),
            Origin::Env(var) => write!(f, "environment variable {var}"),
            Origin::Flag(flag) => f.write_str(flag),
        }
    }
}

/// One thing wrong with the configuration.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct Problem {
    pub origin: Option<Origin>,
    /// Dotted path of the key, like `pools[1].max`; `None` for the document as a whole.
    pub key: Option<String>,
    pub message: String,
    /// A likely fix, such as the nearest known key.
    pub hint: Option<String>,
}

impl Problem {
    pub fn new(key: impl Into<String>, message: impl Into<String>) -> Self {
        let key = key.into();
        Problem {
            origin: None,
            key: (!key.is_empty()).then_some(key),
            message: message.into(),
            hint: None,
        }
    }

    pub fn at(mut self, origin: Option<Origin>) -> Self {
        self.origin = origin;
        self
    }

    pub fn hint(mut self, hint: Option<String>) -> Self {
        self.hint = hint;
        self
    }
}

impl fmt::Display for Problem {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        if let Some(origin) = &self.origin {
            write!(f, "{origin}: ")?;
        }
        if let Some(key) = &self.key {
            write!(f, "{key}: ")?;
        }
        f.write_str(&self.message)?;
        if let Some(hint) = &self.hint {
            write!(f, "; {hint}")?;
        }
        Ok(())
    }
}

/// Every problem found, one per line: validation reports them all at once so a user fixes a
/// file in one round rather than one error per run.
#[derive(Clone, Debug, PartialEq, Eq, thiserror::Error)]
pub struct ConfigError {
    pub problems: Vec<Problem>,
}

impl From<Problem> for ConfigError {
    fn from(p: Problem) -> Self {
        ConfigError { problems: vec![p] }
    }
}

impl fmt::Display for ConfigError {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        for (i, p) in self.problems.iter().enumerate() {
            if i > 0 {
                f.write_str("\n")?;
            }
            write!(f, "{p}")?;
        }
        Ok(())
    }
}

/// The known name nearest to `unknown`, when it is close enough to be a typo.
pub fn nearest<'a>(unknown: &str, known: impl IntoIterator<Item = &'a str>) -> Option<&'a str> {
    known
        .into_iter()
        .map(|k| (strsim::damerau_levenshtein(unknown, k), k))
        .filter(|&(d, k)| d <= 2.max(k.len() / 3))
        .min_by_key(|&(d, _)| d)
        .map(|(_, k)| k)
}

/// `did you mean `x`?` for the nearest known name, if any.
pub fn did_you_mean<'a>(unknown: &str, known: impl IntoIterator<Item = &'a str>) -> Option<String> {
    nearest(unknown, known).map(|k| format!("did you mean `{k}`?"))
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn suggests_only_close_names() {
        assert_eq!(nearest("mx", ["max", "standby", "name"]), Some("max"));
        assert_eq!(nearest("lables", ["labels", "locations"]), Some("labels"));
        assert_eq!(nearest("zzzzzz", ["max", "labels"]), None);
    }

    #[test]
    fn displays_origin_key_message_and_hint() {
        let p = Problem::new("pools[0].provider", "no provider named `hetzer`")
            .at(Some(Origin::File {
                path: "m.toml".into(),
                line: 3,
                column: 12,
            }))
            .hint(Some("did you mean `hetzner`?".into()));
        assert_eq!(
            p.to_string(),
            "m.toml:3:12: pools[0].provider: no provider named `hetzer`; did you mean `hetzner`?"
        );
    }
}
