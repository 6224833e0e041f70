//! When no daemon runs: the commands read the providers and GitHub themselves, through the
//! reconciler `mayfly run` would build, and delete with the same code the API uses.
//!
//! A delete made here writes the state, so it first makes this command the state's one writer
//! (SQLite's file lock, then the leader lease on either database) and is refused while a daemon
//! holds either: deletes then go through that daemon's API, which takes turns with its passes.

use crate::config::Config;
use anyhow::{Context, anyhow};
use mayfly::reconcile::{DeleteError, Reconciler, Removed};
use mayfly::view::View;
use mayfly_store::{Acquired, Lease, Store, StoreError, WriterLock};
use std::sync::Arc;
use std::time::Duration;

/// How long this command holds the leader lease between two deletes; renewed before each.
const DELETE_LEASE: Duration = Duration::from_secs(180);

pub struct Direct {
    reconciler: Reconciler,
    store: Store,
    /// Held while this command may write: the SQLite lock, the leader lease.
    writer: Option<WriterLock>,
    lease: Option<Lease>,
}

impl Direct {
    pub async fn open(config: &Config) -> anyhow::Result<Direct> {
        let state = config.state.as_ref().context("no state URL configured")?;
        let store = Store::open(state.expose())
            .await
            .context("cannot open the state store")?;
        let forges = crate::daemon::Forges::build(config).await?;
        let reconciler = crate::daemon::build_reconciler(config, &forges, store.clone()).await?;
        Ok(Direct {
            reconciler,
            store,
            writer: None,
            lease: None,
        })
    }

    /// One read of the world, planned but not acted on.
    pub async fn look(&mut self) -> anyhow::Result<Arc<View>> {
        self.reconciler
            .look()
            .await
            .context("cannot read the world")
    }

    /// Makes this command the state's one writer, or says which daemon is.
    pub async fn hold(&mut self, api: std::net::SocketAddr) -> anyhow::Result<()> {
        let taken = |who: &str| {
            anyhow!(
                "a running mayfly ({who}) holds this state, so deletes go through its API; none \
                 answered at {api}: run `mayfly delete` with the daemon's configuration (its \
                 listen or api.listen address and api.token_file), or stop the daemon first"
            )
        };
        match self.store.lock_single_writer().await {
            Ok(lock) => self.writer = lock,
            Err(StoreError::Held { holder, .. }) => {
                return Err(taken(holder.as_deref().unwrap_or("another process")));
            }
            Err(e) => return Err(e).context("cannot lock the state"),
        }
        let me = format!("mayfly-delete-{}", mayfly::leader::replica_id());
        match self.store.acquire_lease(&me, DELETE_LEASE).await? {
            Acquired::Leading(lease) => self.lease = Some(lease),
            Acquired::Held(state) => {
                return Err(taken(state.live_holder().unwrap_or("another replica")));
            }
        }
        Ok(())
    }

    pub async fn delete(&mut self, name: &str) -> Result<Removed, DeleteError> {
        if let Some(lease) = &self.lease {
            let renewed = self.store.renew_lease(&lease.fence, DELETE_LEASE).await;
            match renewed {
                Ok(Some(lease)) => self.lease = Some(lease),
                Ok(None) => {
                    return Err(DeleteError::Failed {
                        name: name.to_string(),
                        why: "a daemon took the state over meanwhile: delete through its API"
                            .into(),
                    });
                }
                Err(e) => {
                    return Err(DeleteError::Failed {
                        name: name.to_string(),
                        why: format!("cannot renew this command's hold on the state: {e}"),
                    });
                }
            }
        }
        self.reconciler.operator().delete(name).await
    }

    pub async fn close(self) {
        if let Some(lease) = &self.lease
            && let Err(e) = self.store.release_lease(&lease.fence).await
        {
            tracing::warn!(error = %e, "the lease of this command was not released; it runs out");
        }
        drop(self.writer);
        self.store.close().await;
    }
}
