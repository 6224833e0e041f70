//! Where each poller left off: a small named value per poll source (a repository's runs as
//! last seen), kept so that a restart costs no re-reading of what has not changed.

use crate::Store;
use crate::error::{During, Result};
use mayfly_core::Time;

impl Store {
    /// The value saved under `name`, if any.
    pub async fn cursor(&self, name: &str) -> Result<Option<String>> {
        sqlx::query_scalar("SELECT value FROM cursors WHERE name = $1")
            .bind(name)
            .fetch_optional(&self.pool)
            .await
            .during(|| format!("read cursor {name}"))
    }

    /// Saves `value` under `name`, replacing what was there.
    pub async fn save_cursor(&self, name: &str, value: &str, now: Time) -> Result<()> {
        sqlx::query(
            "INSERT INTO cursors (name, value, updated_at) VALUES ($1, $2, $3)
             ON CONFLICT (name) DO UPDATE SET value = excluded.value, updated_at = excluded.updated_at",
        )
        .bind(name)
        .bind(value)
        .bind(now.millis())
        .execute(&self.pool)
        .await
        .during(|| format!("save cursor {name}"))?;
        Ok(())
    }
}
