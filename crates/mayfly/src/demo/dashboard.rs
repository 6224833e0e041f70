//! `mayfly demo --dashboard`: the API and the dashboard of `mayfly run`, over the demo's own
//! controller, with a token of its own.

use anyhow::Context;
use mayfly::http::{self, Api};
use mayfly::local::Controller;
use mayfly_core::Secret;
use std::io::Write;
use std::net::SocketAddr;
use std::path::{Path, PathBuf};
use std::sync::Arc;
use std::time::Duration;

/// The dashboard being served.
pub struct Served {
    pub addr: SocketAddr,
    /// Where the token is.
    token_at: PathBuf,
    /// A token made for this run: removed with the demo.
    _made: Option<tempfile::NamedTempFile>,
    stop: tokio::sync::oneshot::Sender<()>,
}

impl Served {
    /// How to get in. The token is never printed: it is in a file only its owner can read.
    pub fn banner(&self) -> String {
        format!(
            "dashboard on http://{}/ (sign in with the token in {})",
            self.addr,
            self.token_at.display()
        )
    }

    pub fn stop(self) {
        let _ = self.stop.send(());
    }
}

/// Serves the API and dashboard over `controller` on `addr`; the token from `token_file`, else
/// a new random one in a temporary file.
pub async fn serve(
    controller: &Controller,
    addr: SocketAddr,
    token_file: Option<&Path>,
) -> anyhow::Result<Served> {
    let (token, token_at, made) = match token_file {
        Some(path) => {
            let text = std::fs::read_to_string(path)
                .with_context(|| format!("--token-file {}: cannot read it", path.display()))?;
            let token = text.trim().to_string();
            anyhow::ensure!(
                !token.is_empty(),
                "--token-file {}: the file is empty",
                path.display()
            );
            (token, path.to_path_buf(), None)
        }
        None => {
            let token = hex::encode(rand::random::<[u8; 24]>());
            // NamedTempFile is created 0600.
            let mut file = tempfile::Builder::new()
                .prefix("mayfly-demo-token-")
                .tempfile()
                .context("cannot write the dashboard's token to a temporary file")?;
            file.write_all(token.as_bytes())
                .context("cannot write the dashboard's token")?;
            let at = file.path().to_path_buf();
            (token, at, Some(file))
        }
    };
    let listener = tokio::net::TcpListener::bind(addr)
        .await
        .with_context(|| format!("--dashboard: cannot listen on {addr}"))?;
    let addr = listener.local_addr().context("cannot read the address")?;
    let api = Api::new(
        &controller.reconciler,
        controller.store.clone(),
        controller.wake.clone(),
        Secret::new(token),
        Duration::from_secs(600),
    );
    let routes = http::api::router(Arc::new(api));
    let (stop, stopped) = tokio::sync::oneshot::channel::<()>();
    let options = http::serve::ServeOptions {
        header_timeout: Duration::from_secs(10),
        body_timeout: Duration::from_secs(10),
        max_connections: 256,
    };
    tokio::spawn(http::serve::serve(
        http::serve::Listeners {
            public: listener,
            private: None,
        },
        axum::Router::new(),
        routes,
        options,
        async {
            let _ = stopped.await;
        },
    ));
    Ok(Served {
        addr,
        token_at,
        _made: made,
        stop,
    })
}
