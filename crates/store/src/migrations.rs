//! The schema migrations of each backend, embedded in the binary and applied on open.
//! Listed here rather than found by `sqlx::migrate!`: see below for why, and the test for the check.
//!
//! The macro would need sqlx's `macros` feature, and with it a second build of sqlx's drivers,
//! the bundled SQLite, rustls and aws-lc for the compiler's own use (the proc-macro runs on the
//! host): about an eighth of a cold build (docs/performance.md#build). The list is what the
//! macro made of the directories: version and description from the file name, the file's text,
//! its checksum (so databases migrated by earlier builds see the same migrations), and
//! `-- no-transaction` honoured. The test reads the directories the way sqlx does and fails when
//! a file is added, renamed or edited without this list following.

use sqlx::SqlStr;
use sqlx::migrate::{Migration, MigrationType, Migrator};
use std::borrow::Cow;
use std::sync::LazyLock;

/// (version, description, SQL) of each migration, oldest first.
type List = &'static [(i64, &'static str, &'static str)];

const SQLITE: List = &[
    (
        20260601000000,
        "initial",
        include_str!("../migrations/sqlite/20260601000000_initial.sql"),
    ),
    (
        20260801000000,
        "replicas and retention",
        include_str!("../migrations/sqlite/20260801000000_replicas_and_retention.sql"),
    ),
    (
        20261207000000,
        "cursors",
        include_str!("../migrations/sqlite/20261207000000_cursors.sql"),
    ),
    (
        20261207120000,
        "samples",
        include_str!("../migrations/sqlite/20261207120000_samples.sql"),
    ),
];

const POSTGRES: List = &[
    (
        20260601000000,
        "initial",
        include_str!("../migrations/postgres/20260601000000_initial.sql"),
    ),
    (
        20260801000000,
        "replicas and retention",
        include_str!("../migrations/postgres/20260801000000_replicas_and_retention.sql"),
    ),
    (
        20261207000000,
        "cursors",
        include_str!("../migrations/postgres/20261207000000_cursors.sql"),
    ),
    (
        20261207120000,
        "samples",
        include_str!("../migrations/postgres/20261207120000_samples.sql"),
    ),
];

pub(crate) static SQLITE_MIGRATIONS: LazyLock<Migrator> = LazyLock::new(|| migrator(SQLITE));
pub(crate) static POSTGRES_MIGRATIONS: LazyLock<Migrator> = LazyLock::new(|| migrator(POSTGRES));

fn migrator(list: List) -> Migrator {
    Migrator::with_migrations(
        list.iter()
            .map(|&(version, description, sql)| {
                Migration::new(
                    version,
                    Cow::Borrowed(description),
                    MigrationType::Simple,
                    SqlStr::from_static(sql),
                    sql.starts_with("-- no-transaction"),
                )
            })
            .collect(),
    )
}

#[cfg(test)]
mod tests {
    use super::*;
    use std::path::Path;

    async fn same_as_the_directory(dir: &str, ours: &Migrator) {
        let path = Path::new(env!("CARGO_MANIFEST_DIR"))
            .join("migrations")
            .join(dir);
        let read = Migrator::new(path.as_path()).await.unwrap();
        let summary = |m: &Migrator| {
            m.iter()
                .map(|m| {
                    (
                        m.version,
                        m.description.to_string(),
                        m.migration_type,
                        m.checksum.to_vec(),
                        m.no_tx,
                        m.sql.as_str().to_owned(),
                    )
                })
                .collect::<Vec<_>>()
        };
        assert_eq!(
            summary(ours),
            summary(&read),
            "crates/store/src/migrations.rs lists other migrations than {}",
            path.display()
        );
    }

    #[tokio::test]
    async fn the_lists_are_the_migration_directories() {
        same_as_the_directory("sqlite", &SQLITE_MIGRATIONS).await;
        same_as_the_directory("postgres", &POSTGRES_MIGRATIONS).await;
    }
}
