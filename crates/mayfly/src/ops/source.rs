//! Where a command's answers come from: the daemon's API when one listens on `listen`, else the
//! providers and GitHub read directly. Only "nothing listens" leads to the second.

use super::client::{Client, Failure};
use super::direct::Direct;
use crate::config::Config;
use anyhow::Context;
use mayfly::reconcile::Removed;
use mayfly::view::View;
use std::sync::Arc;

pub enum Source {
    Daemon(Client),
    Direct(Box<Direct>),
}

impl Source {
    /// The source and its view of the world: the daemon's last pass, or a read of our own.
    pub async fn open(config: &Config) -> anyhow::Result<(Source, Arc<View>)> {
        let token_file = config
            .api
            .token_file
            .as_ref()
            .context("no api.token_file")?;
        let client = Client::new(config.api_addr(), token_file)?;
        match client.status().await {
            Ok(view) => Ok((Source::Daemon(client), Arc::new(view))),
            Err(Failure::NoDaemon) => {
                eprintln!(
                    "no daemon at {}: reading the providers and GitHub directly",
                    client.addr()
                );
                let mut direct = Direct::open(config).await?;
                match direct.look().await {
                    Ok(view) => Ok((Source::Direct(Box::new(direct)), view)),
                    Err(e) => {
                        direct.close().await;
                        Err(e)
                    }
                }
            }
            Err(Failure::Other(e)) => Err(e),
        }
    }

    /// Before deleting on its own: makes this command the state's one writer, or refuses when
    /// a daemon holds the state (whose API did not answer). Nothing to do through a daemon.
    pub async fn hold(&mut self, config: &Config) -> anyhow::Result<()> {
        match self {
            Source::Daemon(_) => Ok(()),
            Source::Direct(direct) => direct.hold(config.api_addr()).await,
        }
    }

    /// Deletes instance `name`: `Ok(Err(why))` when that one was refused or failed.
    pub async fn delete(&mut self, name: &str) -> anyhow::Result<Result<Removed, String>> {
        match self {
            Source::Daemon(client) => Ok(client.delete(name).await?.map(|d| d.result)),
            Source::Direct(direct) => Ok(direct.delete(name).await.map_err(|e| e.to_string())),
        }
    }

    pub async fn close(self) {
        if let Source::Direct(direct) = self {
            direct.close().await;
        }
    }
}
