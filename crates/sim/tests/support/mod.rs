//! Helpers the simulator's integration tests share. Each test file includes this module; not
//! every file uses every helper.
#![allow(dead_code)]

use serde_json::Value;

/// The Python of the compatibility tests' virtual environment (`scripts/py-env`), or `None`
/// when the test should be skipped. Under CI a missing environment is a failure, not a skip.
pub fn python_or_skip() -> Option<String> {
    match std::env::var("MAYFLY_PYTHON") {
        Ok(p) if !p.is_empty() => Some(p),
        _ => {
            assert!(
                std::env::var_os("CI").is_none(),
                "run scripts/py-env and set MAYFLY_PYTHON"
            );
            println!("skipped: MAYFLY_PYTHON not set");
            None
        }
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
