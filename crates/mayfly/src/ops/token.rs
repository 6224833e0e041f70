//! The API token file: `mayfly run` creates it with a random token, readable by its owner only,
//! and the commands that talk to the daemon read it. Neither accepts a file others can read, or
//! one another user owns.

use anyhow::{Context, bail};
use mayfly_core::Secret;
use std::io::Write;
use std::path::Path;

/// The daemon's token: read from `path`, or made (32 random bytes, hex) and written there
/// atomically with mode 0600 when the file does not exist.
pub fn load_or_create(path: &Path) -> anyhow::Result<Secret> {
    if let Some(token) = read(path)? {
        return Ok(token);
    }
    let dir = path
        .parent()
        .filter(|d| !d.as_os_str().is_empty())
        .unwrap_or(Path::new("."));
    std::fs::create_dir_all(dir)
        .with_context(|| format!("cannot create {} for api.token_file", dir.display()))?;
    let token = hex::encode(rand::random::<[u8; 32]>());
    // A temporary file is made readable by its owner only (0600) from the start, and renamed
    // into place only once complete: no reader ever sees a partial or an open file.
    let mut file = tempfile::Builder::new()
        .prefix(".api.token.")
        .tempfile_in(dir)
        .with_context(|| format!("cannot write api.token_file in {}", dir.display()))?;
    writeln!(file, "{token}")
        .and_then(|()| file.as_file().sync_all())
        .with_context(|| format!("cannot write api.token_file {}", path.display()))?;
    match file.persist_noclobber(path) {
        Ok(_) => Ok(Secret::new(token)),
        // Another daemon made it meanwhile: use that one.
        Err(e) if e.error.kind() == std::io::ErrorKind::AlreadyExists => {
            read(path)?.with_context(|| format!("api.token_file {} vanished", path.display()))
        }
        Err(e) => {
            Err(e.error).with_context(|| format!("cannot create api.token_file {}", path.display()))
        }
    }
}

/// The token in `path`, `None` if the file does not exist. A file that group or others may
/// read is refused: the token opens the API to whoever has it.
pub fn read(path: &Path) -> anyhow::Result<Option<Secret>> {
    let meta = match std::fs::metadata(path) {
        Ok(meta) => meta,
        Err(e) if e.kind() == std::io::ErrorKind::NotFound => return Ok(None),
        Err(e) => {
            return Err(e)
                .with_context(|| format!("cannot read api.token_file {}", path.display()));
        }
    };
    owner_only(path, &meta)?;
    let text = std::fs::read_to_string(path)
        .with_context(|| format!("cannot read api.token_file {}", path.display()))?;
    let token = text.trim();
    if token.is_empty() {
        bail!(
            "api.token_file {} is empty: delete it and `mayfly run` makes a new token",
            path.display()
        );
    }
    if token.chars().any(|c| c.is_whitespace() || c.is_control()) {
        bail!(
            "api.token_file {} holds more than one word: it must hold the token alone",
            path.display()
        );
    }
    Ok(Some(Secret::new(token)))
}

/// The file must be this user's, and readable by nobody else. The owner matters as much as
/// the mode: a file another user owns (with mode 0600) can be rewritten by that user, who then
/// chooses the token this daemon accepts, or reads the one it holds.
#[cfg(unix)]
fn owner_only(path: &Path, meta: &std::fs::Metadata) -> anyhow::Result<()> {
    use std::os::unix::fs::{MetadataExt, PermissionsExt};
    let me = rustix::process::geteuid().as_raw();
    if meta.uid() != me {
        bail!(
            "api.token_file {} belongs to user id {}, not to this user (id {me}): run mayfly as \
             the file's owner, or `chown` the file to this user",
            path.display(),
            meta.uid()
        );
    }
    let mode = meta.permissions().mode() & 0o777;
    if mode & 0o077 != 0 {
        bail!(
            "api.token_file {} is readable by group or others (mode {mode:04o}): run `chmod 600 {}`",
            path.display(),
            path.display()
        );
    }
    Ok(())
}

#[cfg(not(unix))]
fn owner_only(_: &Path, _: &std::fs::Metadata) -> anyhow::Result<()> {
    Ok(())
}

#[cfg(test)]
mod tests {
    use super::*;
    use std::os::unix::fs::PermissionsExt;

    #[test]
    fn a_new_token_is_random_owner_only_and_read_back() {
        let dir = tempfile::tempdir().unwrap();
        let path = dir.path().join("state/api.token");
        let token = load_or_create(&path).unwrap();
        assert_eq!(token.expose().len(), 64);
        assert!(token.expose().bytes().all(|b| b.is_ascii_hexdigit()));
        let mode = std::fs::metadata(&path).unwrap().permissions().mode() & 0o777;
        assert_eq!(mode, 0o600);
        assert_eq!(
            load_or_create(&path).unwrap(),
            token,
            "kept across restarts"
        );
        assert_eq!(read(&path).unwrap(), Some(token));
        let other = load_or_create(&dir.path().join("other")).unwrap();
        assert_ne!(other.expose(), read(&path).unwrap().unwrap().expose());
        let leftovers: Vec<_> = std::fs::read_dir(dir.path().join("state"))
            .unwrap()
            .map(|e| e.unwrap().file_name())
            .collect();
        assert_eq!(leftovers, ["api.token"], "no temporary file left");
    }

    #[test]
    fn a_file_others_can_read_is_refused_without_showing_the_token() {
        let dir = tempfile::tempdir().unwrap();
        let path = dir.path().join("api.token");
        std::fs::write(&path, "t0k3n-DUMMY\n").unwrap();
        std::fs::set_permissions(&path, std::fs::Permissions::from_mode(0o640)).unwrap();
        for err in [read(&path).unwrap_err(), load_or_create(&path).unwrap_err()] {
            let msg = format!("{err:#}");
            assert!(
                msg.contains("readable by group or others (mode 0640)"),
                "{msg}"
            );
            assert!(msg.contains("chmod 600"), "{msg}");
            assert!(!msg.contains("t0k3n"), "{msg}");
        }
        std::fs::set_permissions(&path, std::fs::Permissions::from_mode(0o600)).unwrap();
        assert_eq!(read(&path).unwrap().unwrap().expose(), "t0k3n-DUMMY");
        assert_eq!(read(&dir.path().join("absent")).unwrap(), None);
    }

    /// A file owned by another user is refused, whatever its mode. Changing a file's owner
    /// needs root: as another user the test only checks that the owner's own file passes.
    #[test]
    fn a_file_another_user_owns_is_refused() {
        use std::os::unix::fs::MetadataExt;
        let dir = tempfile::tempdir().unwrap();
        let path = dir.path().join("api.token");
        std::fs::write(&path, "t0k3n-DUMMY\n").unwrap();
        std::fs::set_permissions(&path, std::fs::Permissions::from_mode(0o600)).unwrap();
        assert!(read(&path).is_ok(), "our own file");
        if rustix::process::geteuid().as_raw() != 0 {
            println!("skipped the foreign owner: changing a file's owner needs root");
            return;
        }
        std::os::unix::fs::chown(&path, Some(65_534), None).unwrap();
        assert_eq!(std::fs::metadata(&path).unwrap().uid(), 65_534);
        for err in [read(&path).unwrap_err(), load_or_create(&path).unwrap_err()] {
            let msg = format!("{err:#}");
            assert!(
                msg.contains("belongs to user id 65534, not to this user (id 0)"),
                "{msg}"
            );
            assert!(!msg.contains("t0k3n"), "{msg}");
        }
    }

    #[test]
    fn an_empty_or_garbled_file_is_an_error() {
        let dir = tempfile::tempdir().unwrap();
        let path = dir.path().join("api.token");
        std::fs::write(&path, "\n").unwrap();
        std::fs::set_permissions(&path, std::fs::Permissions::from_mode(0o600)).unwrap();
        assert!(format!("{:#}", read(&path).unwrap_err()).contains("is empty"));
        std::fs::write(&path, "one two\n").unwrap();
        let msg = format!("{:#}", read(&path).unwrap_err());
        assert!(
            msg.contains("more than one word") && !msg.contains("two"),
            "{msg}"
        );
    }
}
