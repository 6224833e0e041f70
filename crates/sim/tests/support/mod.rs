//! Helpers the simulator's integration tests share. Each test file includes this module; not
//! every file uses every helper.
#![allow(dead_code)]

use mayfly_sim::sim::{Listening, Sim};
use serde_json::Value;
use std::sync::Arc;

/// The Python of `MAYFLY_PYTHON` (`scripts/py-env` makes it, with the third-party clients).
/// The tests that need it are `#[ignore]`d with that reason (`scripts/test` runs them); run
/// without it they fail rather than pass having checked nothing.
pub fn python() -> String {
    match std::env::var("MAYFLY_PYTHON") {
        Ok(p) if !p.is_empty() => p,
        _ => panic!("MAYFLY_PYTHON is not set: run `export MAYFLY_PYTHON=$(scripts/py-env)` first"),
    }
}

/// GETs `url` and parses the body as JSON, whatever the status.
pub async fn get_json(http: &reqwest::Client, url: impl reqwest::IntoUrl) -> Value {
    http.get(url)
        .send()
        .await
        .expect("GET")
        .json()
        .await
        .expect("a JSON body")
}

/// Serves every fake of `sim` on a free loopback port.
pub async fn serve(sim: &Arc<Sim>) -> Listening {
    sim.listen(
        "127.0.0.1:0".parse().unwrap(),
        "127.0.0.1:0".parse().unwrap(),
    )
    .await
    .expect("the fakes listen on loopback")
}
