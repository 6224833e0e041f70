//! Who the service runs as: the user who ran `mayfly service install`, the one behind `sudo`
//! when there is one. Accounts come from `getent` (so LDAP and other NSS users work too).

use anyhow::Context;
use std::os::unix::fs::MetadataExt;
use std::path::PathBuf;
use std::time::Duration;

/// `getent` answers from local files or a directory service; a hung one must not hang mayfly.
const LOOKUP_TIMEOUT: Duration = Duration::from_secs(10);

/// One account of the system.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct Account {
    pub name: String,
    pub uid: u32,
    pub gid: u32,
    /// The primary group's name, or its number when it has none.
    pub group: String,
    pub home: PathBuf,
}

/// The effective user id of this process: the owner of `/proc/self` (no libc call needed).
pub fn effective_uid() -> anyhow::Result<u32> {
    Ok(std::fs::metadata("/proc/self")
        .context("cannot tell which user runs mayfly (/proc/self)")?
        .uid())
}

/// The user the service should run as, and whether mayfly runs through sudo.
pub async fn invoking(sudo_user: Option<&str>) -> anyhow::Result<(Account, bool)> {
    let uid = effective_uid()?;
    match sudo_user.filter(|u| uid == 0 && !u.is_empty() && *u != "root") {
        Some(user) => Ok((lookup(user).await?, true)),
        None => Ok((lookup(&uid.to_string()).await?, false)),
    }
}

/// An account by name or uid.
pub async fn lookup(key: &str) -> anyhow::Result<Account> {
    let line = getent("passwd", key)
        .await?
        .with_context(|| format!("no user `{key}` on this system"))?;
    let (name, uid, gid, home) =
        parse_passwd(&line).with_context(|| format!("cannot read the account of `{key}`"))?;
    let group = match getent("group", &gid.to_string()).await {
        Ok(Some(line)) => line.split(':').next().unwrap_or_default().to_string(),
        _ => String::new(),
    };
    Ok(Account {
        name,
        uid,
        gid,
        group: if group.is_empty() {
            gid.to_string()
        } else {
            group
        },
        home,
    })
}

/// `getent DATABASE KEY`'s line; `None` when the key is unknown (exit 2).
async fn getent(database: &str, key: &str) -> anyhow::Result<Option<String>> {
    let run = tokio::process::Command::new("getent")
        .args([database, key])
        .kill_on_drop(true)
        .output();
    let out = tokio::time::timeout(LOOKUP_TIMEOUT, run)
        .await
        .map_err(|_| {
            anyhow::anyhow!("`getent {database} {key}` gave no answer within {LOOKUP_TIMEOUT:?}")
        })?
        .context("cannot run getent")?;
    if out.status.code() == Some(2) {
        return Ok(None);
    }
    if !out.status.success() {
        anyhow::bail!("`getent {database} {key}` failed ({})", out.status);
    }
    Ok(String::from_utf8_lossy(&out.stdout)
        .lines()
        .next()
        .map(str::to_string))
}

/// `name:x:uid:gid:gecos:home:shell`.
fn parse_passwd(line: &str) -> Option<(String, u32, u32, PathBuf)> {
    let f: Vec<&str> = line.trim_end().split(':').collect();
    if f.len() < 7 || f[0].is_empty() {
        return None;
    }
    Some((
        f[0].to_string(),
        f[2].parse().ok()?,
        f[3].parse().ok()?,
        PathBuf::from(f[5]),
    ))
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn passwd_lines_are_read() {
        assert_eq!(
            parse_passwd("alice:x:1000:1000:Alice,,,:/home/alice:/bin/bash\n"),
            Some(("alice".into(), 1000, 1000, "/home/alice".into()))
        );
        assert_eq!(parse_passwd("broken:x:1000"), None);
        assert_eq!(parse_passwd("x:x:a:1:g:/h:/bin/sh"), None);
    }

    #[tokio::test]
    async fn root_is_found_by_name_and_uid() {
        let by_name = lookup("root").await.unwrap();
        assert_eq!((by_name.uid, by_name.gid), (0, 0));
        assert_eq!(lookup("0").await.unwrap(), by_name);
        let e = lookup("no-such-user-mayfly").await.unwrap_err();
        assert!(format!("{e:#}").contains("no user `no-such-user-mayfly`"));
    }
}
