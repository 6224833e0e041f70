//! When no daemon runs: the commands read the providers and GitHub themselves, through the
//! reconciler `mayfly run` would build, and delete with the same code the API uses.

use crate::config::Config;
use anyhow::Context;
use mayfly::reconcile::{DeleteError, Reconciler, Removed};
use mayfly::view::View;
use mayfly_forge::github::Client;
use mayfly_store::Store;
use std::sync::Arc;

pub struct Direct {
    reconciler: Reconciler,
    store: Store,
}

impl Direct {
    pub async fn open(config: &Config) -> anyhow::Result<Direct> {
        let state = config.state.as_ref().context("no state URL configured")?;
        let store = Store::open(state.expose())
            .await
            .context("cannot open the state store")?;
        let client =
            Client::new(&config.github().client).context("cannot set up the GitHub client")?;
        let reconciler = crate::daemon::build_reconciler(config, client, store.clone()).await?;
        Ok(Direct { reconciler, store })
    }

    /// One read of the world, planned but not acted on.
    pub async fn look(&mut self) -> anyhow::Result<Arc<View>> {
        self.reconciler
            .look()
            .await
            .context("cannot read the world")
    }

    pub async fn delete(&self, name: &str) -> Result<Removed, DeleteError> {
        self.reconciler.operator().delete(name).await
    }

    pub async fn close(self) {
        self.store.close().await;
    }
}
