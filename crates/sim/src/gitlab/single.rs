//! Reads the `gitlab-runner run-single` command line a machine's user data (or a container's
//! environment) carries, strictly, as gitlab-runner's flag parser would: unknown flags, a missing
//! executor, a token that is not a runner authentication token are errors, not guesses.
//!
//! The form mayfly's bootstrap writes (crates/provider/src/bootstrap/gitlab.rs):
//! `gitlab-runner run-single --url 'URL' --token 'glrt-…' --executor shell --shell bash
//! --builds-dir 'DIR' --cache-dir 'DIR' --max-builds 1 --wait-timeout N`, on one line. As
//! gitlab-runner does, `CI_SERVER_URL=` and `CI_SERVER_TOKEN=` stand in for `--url` and
//! `--token` (a container gets them in its environment).

use std::time::Duration;

/// A parsed `run-single` invocation.
#[derive(Clone, PartialEq, Eq)]
pub struct SingleRun {
    /// The GitLab instance (`https://gitlab.com`), not its API.
    pub url: String,
    pub token: String,
    pub executor: String,
    /// Jobs to take before exiting; 0 is forever.
    pub max_builds: u32,
    /// Exit when no job came this long after the start (or the last job); `None`: wait forever.
    pub wait_timeout: Option<Duration>,
}

impl std::fmt::Debug for SingleRun {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("SingleRun")
            .field("url", &self.url)
            .field("token", &"<redacted>")
            .field("executor", &self.executor)
            .field("max_builds", &self.max_builds)
            .field("wait_timeout", &self.wait_timeout)
            .finish()
    }
}

/// Why no runner starts. The texts never include the token.
#[derive(Clone, Debug, PartialEq, Eq, thiserror::Error)]
pub enum SingleError {
    #[error("no `gitlab-runner run-single` command found")]
    NoCommand,
    #[error("run-single: unknown flag {0:?}")]
    UnknownFlag(String),
    #[error("run-single: {0} needs a value")]
    MissingValue(&'static str),
    #[error("run-single: {flag} is not a number: {value:?}")]
    NotANumber { flag: &'static str, value: String },
    #[error("run-single: no --url (or CI_SERVER_URL)")]
    NoUrl,
    #[error("run-single: --url {0:?} is not the http(s) URL of a GitLab instance")]
    BadUrl(String),
    #[error("run-single: no --token (or CI_SERVER_TOKEN)")]
    NoToken,
    #[error("run-single: the token is not a runner authentication token (glrt-…)")]
    NotAnAuthenticationToken,
    #[error("run-single: no --executor")]
    NoExecutor,
    #[error("run-single: a quote is not closed")]
    Unquoted,
}

/// Whether the text means to start a GitLab runner (so the GitHub fake need not look at it).
pub fn looks_like(text: &str) -> bool {
    text.contains("run-single") || text.contains("CI_SERVER_TOKEN=")
}

/// Splits one shell line into words: whitespace separates, single and double quotes group,
/// a backslash escapes the next character outside single quotes. Enough for the command lines
/// mayfly writes; `$` expansions are taken literally.
fn words(line: &str) -> Result<Vec<String>, SingleError> {
    let mut out = Vec::new();
    let mut word = String::new();
    let mut in_word = false;
    let mut chars = line.chars();
    while let Some(c) = chars.next() {
        match c {
            '\'' => {
                in_word = true;
                loop {
                    match chars.next() {
                        Some('\'') => break,
                        Some(c) => word.push(c),
                        None => return Err(SingleError::Unquoted),
                    }
                }
            }
            '"' => {
                in_word = true;
                loop {
                    match chars.next() {
                        Some('"') => break,
                        Some('\\') => word.extend(chars.next()),
                        Some(c) => word.push(c),
                        None => return Err(SingleError::Unquoted),
                    }
                }
            }
            '\\' => {
                in_word = true;
                word.extend(chars.next());
            }
            c if c.is_whitespace() => {
                if in_word {
                    out.push(std::mem::take(&mut word));
                    in_word = false;
                }
            }
            // A comment, a command separator or a redirection ends the command.
            '#' | ';' | '&' | '|' | '>' | '<' if !in_word => break,
            c => {
                in_word = true;
                word.push(c);
            }
        }
    }
    if in_word {
        out.push(word);
    }
    Ok(out)
}

/// The value of an environment assignment `NAME=value` anywhere in the text.
fn assignment(text: &str, name: &str) -> Result<Option<String>, SingleError> {
    for line in text.lines() {
        for w in words(line)? {
            if let Some(v) = w.strip_prefix(name).and_then(|r| r.strip_prefix('=')) {
                return Ok(Some(v.to_string()));
            }
        }
    }
    Ok(None)
}

/// Reads the first `run-single` command of `text`.
pub fn parse(text: &str) -> Result<SingleRun, SingleError> {
    // Backslash-newline continues a line, as in the shell.
    let joined = text.replace("\\\n", " ");
    let mut args = None;
    for line in joined.lines() {
        let w = words(line)?;
        if let Some(at) = w.iter().position(|w| w == "run-single") {
            args = Some(w[at + 1..].to_vec());
            break;
        }
    }
    let args = match args {
        Some(a) => a,
        None if assignment(text, "CI_SERVER_TOKEN")?.is_some() => Vec::new(),
        None => return Err(SingleError::NoCommand),
    };
    let mut url = assignment(text, "CI_SERVER_URL")?;
    let mut token = assignment(text, "CI_SERVER_TOKEN")?;
    let mut executor = assignment(text, "RUNNER_EXECUTOR")?;
    let mut max_builds = 0;
    let mut wait_timeout = None;
    let mut it = args.into_iter();
    while let Some(arg) = it.next() {
        let (flag, inline) = match arg.split_once('=') {
            Some((f, v)) if f.starts_with("--") => (f.to_string(), Some(v.to_string())),
            _ => (arg.clone(), None),
        };
        let name: &'static str = match flag.as_str() {
            "--url" | "-u" => "--url",
            "--token" | "-t" => "--token",
            "--executor" => "--executor",
            "--shell" => "--shell",
            "--builds-dir" => "--builds-dir",
            "--cache-dir" => "--cache-dir",
            "--name" | "--description" => "--name",
            "--max-builds" => "--max-builds",
            "--wait-timeout" => "--wait-timeout",
            _ => return Err(SingleError::UnknownFlag(clip(&flag))),
        };
        let value = match inline {
            Some(v) => v,
            None => it.next().ok_or(SingleError::MissingValue(name))?,
        };
        let number = |v: &str| {
            v.parse::<u32>().map_err(|_| SingleError::NotANumber {
                flag: name,
                value: clip(v),
            })
        };
        match name {
            "--url" => url = Some(value),
            "--token" => token = Some(value),
            "--executor" => executor = Some(value),
            "--max-builds" => max_builds = number(&value)?,
            "--wait-timeout" => {
                let secs = number(&value)?;
                wait_timeout = (secs > 0).then(|| Duration::from_secs(u64::from(secs)));
            }
            _ => {}
        }
    }
    let url = url.filter(|u| !u.is_empty()).ok_or(SingleError::NoUrl)?;
    let trimmed = url.trim_end_matches('/');
    if !(trimmed.starts_with("http://") || trimmed.starts_with("https://"))
        || trimmed.ends_with("/api/v4")
        || trimmed.contains(char::is_whitespace)
    {
        return Err(SingleError::BadUrl(clip(&url)));
    }
    let token = token
        .filter(|t| !t.is_empty())
        .ok_or(SingleError::NoToken)?;
    if !token.starts_with("glrt-") {
        return Err(SingleError::NotAnAuthenticationToken);
    }
    let executor = executor
        .filter(|e| !e.is_empty())
        .ok_or(SingleError::NoExecutor)?;
    Ok(SingleRun {
        url,
        token,
        executor,
        max_builds,
        wait_timeout,
    })
}

fn clip(s: &str) -> String {
    s.chars().take(40).collect()
}

#[cfg(test)]
mod tests {
    use super::*;

    const LINE: &str = "    as_runner \"$GITLAB_RUNNER\" run-single --url 'https://gitlab.example.com' \
         --token 'glrt-abc_DEF-123' --executor shell --shell bash --builds-dir '/home/runner/builds' \
         --cache-dir '/home/runner/cache' --max-builds 1 --wait-timeout 600";

    #[test]
    fn the_bootstraps_line_parses() {
        let r = parse(&format!("#!/bin/bash\nstart_runner() {{\n{LINE}\n}}\n")).unwrap();
        assert_eq!(r.url, "https://gitlab.example.com");
        assert_eq!(r.token, "glrt-abc_DEF-123");
        assert_eq!((r.executor.as_str(), r.max_builds), ("shell", 1));
        assert_eq!(r.wait_timeout, Some(Duration::from_secs(600)));
        assert!(!format!("{r:?}").contains("glrt-abc"));
        assert!(looks_like(LINE));
    }

    #[test]
    fn continuations_inline_values_and_the_environment_count() {
        let r = parse(
            "gitlab-runner run-single \\\n  --url=http://127.0.0.1:9/ -t glrt-x --executor=shell\n",
        )
        .unwrap();
        assert_eq!((r.max_builds, r.wait_timeout), (0, None));
        let r = parse(
            "CI_SERVER_URL=https://gl.example CI_SERVER_TOKEN=glrt-y RUNNER_EXECUTOR=shell\n",
        )
        .unwrap();
        assert_eq!(
            (r.url.as_str(), r.token.as_str()),
            ("https://gl.example", "glrt-y")
        );
    }

    #[test]
    fn anything_else_is_refused_by_name() {
        let base =
            "gitlab-runner run-single --url https://g.example --token glrt-z --executor shell";
        let cases = [
            ("echo hello", SingleError::NoCommand),
            (
                &format!("{base} --forever") as &str,
                SingleError::UnknownFlag("--forever".into()),
            ),
            (
                &format!("{base} --wait-timeout"),
                SingleError::MissingValue("--wait-timeout"),
            ),
            (
                &format!("{base} --max-builds one"),
                SingleError::NotANumber {
                    flag: "--max-builds",
                    value: "one".into(),
                },
            ),
            (
                "gitlab-runner run-single --url https://g.example/api/v4 --token glrt-z --executor shell",
                SingleError::BadUrl("https://g.example/api/v4".into()),
            ),
            (
                "gitlab-runner run-single --url https://g.example --token GR1348941x --executor shell",
                SingleError::NotAnAuthenticationToken,
            ),
            (
                "gitlab-runner run-single --url https://g.example --token glrt-z",
                SingleError::NoExecutor,
            ),
            (
                "gitlab-runner run-single --url https://g.example --executor shell",
                SingleError::NoToken,
            ),
            (
                "gitlab-runner run-single --url 'https://g",
                SingleError::Unquoted,
            ),
        ];
        for (text, want) in cases {
            assert_eq!(parse(text).unwrap_err(), want, "{text}");
        }
    }
}
