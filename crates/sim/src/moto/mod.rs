//! moto, the AWS emulator, as a child process on a free loopback port: started from the
//! Python of `MAYFLY_PYTHON` (scripts/py-env installs `moto[server]`), reset between uses,
//! killed when dropped; and its instances and tasks as machines for the virtual runners.

mod group;
mod machines;
mod wire;

pub use group::{GroupRegistration, MotoGroup};
pub use machines::MotoMachines;

use std::path::Path;
use std::process::Stdio;
use std::time::{Duration, Instant};
use tokio::process::{Child, Command};

/// How long moto gets to answer after it was started (about 0.6 s on an idle machine).
const START_TIMEOUT: Duration = Duration::from_secs(30);

/// A running `moto_server`; dropping it kills the process.
#[derive(Debug)]
pub struct Moto {
    url: String,
    http: reqwest::Client,
    _child: Child,
}

#[derive(Debug, thiserror::Error)]
pub enum MotoError {
    #[error("cannot start moto with {python}: {reason}")]
    Start { python: String, reason: String },
    #[error("moto did not answer within {0:?}")]
    NotReady(Duration),
    #[error("moto control call {path}: {reason}")]
    Control { path: String, reason: String },
}

impl Moto {
    /// Starts `python -m moto.server` on a free port and waits until it answers.
    pub async fn start(python: &Path) -> Result<Moto, MotoError> {
        let start_error = |reason: String| MotoError::Start {
            python: python.display().to_string(),
            reason,
        };
        let port = std::net::TcpListener::bind("127.0.0.1:0")
            .and_then(|l| l.local_addr())
            .map_err(|e| start_error(format!("no free port: {e}")))?
            .port();
        let child = Command::new(python)
            .args([
                "-m",
                "moto.server",
                "-H",
                "127.0.0.1",
                "-p",
                &port.to_string(),
            ])
            .stdin(Stdio::null())
            .stdout(Stdio::null())
            .stderr(Stdio::null())
            .kill_on_drop(true)
            .spawn()
            .map_err(|e| start_error(e.to_string()))?;
        let http = reqwest::Client::builder()
            .timeout(Duration::from_secs(10))
            .build()
            .map_err(|e| start_error(e.to_string()))?;
        let moto = Moto {
            url: format!("http://127.0.0.1:{port}"),
            http,
            _child: child,
        };
        let deadline = Instant::now() + START_TIMEOUT;
        loop {
            let up = moto
                .http
                .get(format!("{}/moto-api/data.json", moto.url))
                .send()
                .await
                .is_ok_and(|r| r.status().is_success());
            if up {
                return Ok(moto);
            }
            if Instant::now() >= deadline {
                return Err(MotoError::NotReady(START_TIMEOUT));
            }
            tokio::time::sleep(Duration::from_millis(100)).await;
        }
    }

    /// The endpoint every AWS client points at (`endpoint_url`).
    pub fn url(&self) -> &str {
        &self.url
    }

    /// Forgets every resource of every service.
    pub async fn reset(&self) -> Result<(), MotoError> {
        self.control("/moto-api/reset", serde_json::json!({})).await
    }

    /// ECS tasks stay where they are until told: moto otherwise moves a task one state further
    /// on each DescribeTasks, so a task would stop on its own after a few looks.
    pub async fn manual_ecs_tasks(&self) -> Result<(), MotoError> {
        self.control(
            "/moto-api/state-manager/set-transition",
            serde_json::json!({
                "model_name": "ecs::task",
                "transition": {"progression": "manual", "times": 1000}
            }),
        )
        .await
    }

    async fn control(&self, path: &str, body: serde_json::Value) -> Result<(), MotoError> {
        let fail = |reason: String| MotoError::Control {
            path: path.to_string(),
            reason,
        };
        let r = self
            .http
            .post(format!("{}{path}", self.url))
            .json(&body)
            .send()
            .await
            .map_err(|e| fail(e.to_string()))?;
        if r.status().is_success() {
            Ok(())
        } else {
            Err(fail(format!("status {}", r.status())))
        }
    }
}
