//! One writer per SQLite file: `mayfly run` (and `mayfly delete` when it acts on its own) hold
//! an OS lock on a file beside the database for as long as they may write.
//!
//! SQLite itself would let two processes write the same file, one transaction at a time; two
//! controllers would then plan against each other. The lock is `flock(2)` through std's
//! `File::try_lock` (stable since Rust 1.89): it is released when the process dies, however it
//! dies, so a crash never leaves a stale lock behind, and it is held per open file description,
//! so a second open in the same process is refused too. A lock file beside the database rather
//! than the database itself: SQLite takes its own POSIX locks on the database, which `flock`
//! must not be mixed with. PostgreSQL needs none of this: replicas share it, and the leader
//! lease decides who acts.

use crate::error::{Result, StoreError};
use crate::{Backend, Store};
use std::fs::{File, TryLockError};
use std::io::{Read, Write};
use std::path::{Path, PathBuf};

/// The single-writer lock of a SQLite store; released when dropped or when the process ends.
#[derive(Debug)]
pub struct WriterLock {
    _file: File,
    path: PathBuf,
}

impl WriterLock {
    pub fn path(&self) -> &Path {
        &self.path
    }
}

/// `mayfly.db` → `mayfly.db.lock`.
fn lock_path(database: &Path) -> PathBuf {
    let mut name = database.as_os_str().to_os_string();
    name.push(".lock");
    PathBuf::from(name)
}

/// Who wrote the lock file: `pid N`, or `None` when it is empty or unreadable.
fn holder(file: &mut File) -> Option<String> {
    let mut text = String::new();
    file.read_to_string(&mut text).ok()?;
    let text = text.trim();
    (!text.is_empty() && text.len() < 200).then(|| text.to_string())
}

fn open(lock: &Path) -> Result<File> {
    File::options()
        .read(true)
        .write(true)
        .create(true)
        .truncate(false)
        .open(lock)
        .map_err(|source| StoreError::Lock {
            path: lock.to_path_buf(),
            source,
        })
}

impl Store {
    /// Makes this process the one writer of a SQLite store, or says who is
    /// ([`StoreError::Held`]). `None` on PostgreSQL, where replicas share the store and the
    /// leader lease decides who acts, and in memory, where no other process can reach it.
    ///
    /// Any leader lease recorded in a SQLite store belongs to a process that has ended (the
    /// lock proves no other one runs): it is cleared, so this process need not wait for it to
    /// run out.
    pub async fn lock_single_writer(&self) -> Result<Option<WriterLock>> {
        let Some(database) = &self.sqlite_path else {
            return Ok(None);
        };
        let path = lock_path(database);
        let mut file = open(&path)?;
        match file.try_lock() {
            Ok(()) => {}
            Err(TryLockError::WouldBlock) => {
                return Err(StoreError::Held {
                    database: database.clone(),
                    holder: holder(&mut file),
                    lock: path,
                });
            }
            Err(TryLockError::Error(source)) => return Err(StoreError::Lock { path, source }),
        }
        let mine = format!("pid {}", std::process::id());
        file.set_len(0)
            .and_then(|()| file.write_all(mine.as_bytes()))
            .map_err(|source| StoreError::Lock {
                path: path.clone(),
                source,
            })?;
        self.clear_lease().await?;
        Ok(Some(WriterLock { _file: file, path }))
    }

    /// Whether another process writes this store, and who: on SQLite, the holder of the
    /// single-writer lock; on PostgreSQL, the replica whose leader lease is live. `mayfly
    /// delete` asks, so that it never acts on its own beside a daemon.
    pub async fn writer_elsewhere(&self) -> Result<Option<String>> {
        match (self.backend, &self.sqlite_path) {
            (Backend::Sqlite, Some(database)) => {
                let path = lock_path(database);
                let mut file = open(&path)?;
                match file.try_lock() {
                    // Ours for an instant: nobody else holds it. Dropping the file releases it.
                    Ok(()) => Ok(None),
                    Err(TryLockError::WouldBlock) => Ok(Some(
                        holder(&mut file).unwrap_or_else(|| "another process".into()),
                    )),
                    Err(TryLockError::Error(source)) => Err(StoreError::Lock { path, source }),
                }
            }
            (Backend::Sqlite, None) => Ok(None),
            (Backend::Postgres, _) => Ok(self.lease().await?.live_holder().map(String::from)),
        }
    }
}
