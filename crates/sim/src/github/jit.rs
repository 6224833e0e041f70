//! Single-use runner credentials: JIT configs shaped like GitHub's (base64 JSON whose values are
//! base64 JSON too, with a random secret) and registration tokens, and finding them in user data.

use base64::Engine;
use base64::engine::general_purpose::STANDARD;
use rand::Rng;
use rand::distr::Alphanumeric;
use serde_json::json;

/// Random upper-case letters and digits, the alphabet of GitHub's registration tokens.
pub fn registration_token() -> String {
    const ALPHABET: &[u8] = b"ABCDEFGHIJKLMNOPQRSTUVWXYZ234567";
    let mut rng = rand::rng();
    let mut t = String::from("A");
    t.extend((0..28).map(|_| ALPHABET[rng.random_range(0..ALPHABET.len())] as char));
    t
}

/// An installation access token (`ghs_` and 36 characters, as GitHub's).
pub fn installation_token() -> String {
    let tail: String = rand::rng()
        .sample_iter(&Alphanumeric)
        .take(36)
        .map(char::from)
        .collect();
    format!("ghs_{tail}")
}

fn random_b64(bytes: usize) -> String {
    let mut buf = vec![0u8; bytes];
    rand::rng().fill(buf.as_mut_slice());
    STANDARD.encode(buf)
}

fn b64_json(v: &serde_json::Value) -> String {
    STANDARD.encode(v.to_string())
}

/// One JIT config as issued: the encoded text `./run.sh --jitconfig` takes, and the OAuth
/// client id inside it, which a runner program proves when it opens its session.
pub struct Issued {
    pub encoded: String,
    pub client_id: String,
}

/// The encoded JIT config for a runner. `server_url` is the Actions service the runner's
/// listener connects to (`ServerUrl` of `.runner`): on GitHub a pipelines host, here the fake's
/// own `/_sim/actions`, so a runner program finds the fake that issued its config.
pub fn encode(runner_id: u64, name: &str, github_url: &str, server_url: &str) -> Issued {
    let runner = json!({
        "AgentId": runner_id,
        "AgentName": name,
        "PoolId": 1,
        "PoolName": "Default",
        "DisableUpdate": false,
        "Ephemeral": true,
        "ServerUrl": server_url,
        "GitHubUrl": github_url,
        "WorkFolder": "_work",
    });
    let mut client_id = [0u8; 16];
    rand::rng().fill(&mut client_id);
    let client_id = guid(client_id);
    let credentials = json!({
        "Scheme": "OAuth",
        "Data": {
            "clientId": client_id,
            "authorizationUrl": "https://vstoken.actions.githubusercontent.com/_apis/oauth2/token/sim",
            "requireFipsCryptography": "False",
        },
    });
    let rsa = json!({
        "d": random_b64(256), "dp": random_b64(128), "dq": random_b64(128), "exponent": "AQAB",
        "inverseQ": random_b64(128), "modulus": random_b64(256), "p": random_b64(128), "q": random_b64(128),
    });
    let encoded = b64_json(&json!({
        ".runner": b64_json(&runner),
        ".credentials": b64_json(&credentials),
        ".credentials_rsaparams": b64_json(&rsa),
    }));
    Issued { encoded, client_id }
}

/// A GUID (8-4-4-4-12 hex) from 16 bytes, version 4 bits set.
pub fn guid(mut b: [u8; 16]) -> String {
    b[6] = (b[6] & 0x0f) | 0x40;
    b[8] = (b[8] & 0x3f) | 0x80;
    let h = hex::encode(b);
    format!(
        "{}-{}-{}-{}-{}",
        &h[0..8],
        &h[8..12],
        &h[12..16],
        &h[16..20],
        &h[20..32]
    )
}

/// Words of `text` that could be a credential: runs of the base64 alphabet, long enough.
pub fn candidates(text: &str) -> impl Iterator<Item = &str> {
    text.split(|c: char| !(c.is_ascii_alphanumeric() || c == '+' || c == '/' || c == '='))
        .filter(|w| w.len() >= 20)
}

/// Whether a word looks like a JIT config the fake did not issue (base64 JSON with `.runner`).
pub fn looks_like_jit(word: &str) -> bool {
    STANDARD
        .decode(word)
        .ok()
        .and_then(|b| serde_json::from_slice::<serde_json::Value>(&b).ok())
        .is_some_and(|v| v.get(".runner").is_some())
}

/// The value after `flag` (`--name X`, `--name=X`, quotes stripped), as `config.sh` reads it.
pub fn flag(text: &str, flag: &str) -> Option<String> {
    let mut words = text.split_whitespace();
    while let Some(w) = words.next() {
        let w = w.trim_matches(|c| c == '\'' || c == '"');
        let value = if w == flag {
            words.next()
        } else {
            w.strip_prefix(flag).and_then(|rest| rest.strip_prefix('='))
        };
        if let Some(v) = value {
            let v = v.trim_matches(|c: char| c == '\'' || c == '"' || c == ']' || c == ',');
            if !v.is_empty() {
                return Some(v.to_string());
            }
        }
    }
    None
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn a_jit_config_is_base64_json_of_base64_json() {
        let issued = encode(
            7,
            "r-1",
            "https://github.com/acme/app",
            "http://x/_sim/actions",
        );
        let c = issued.encoded.clone();
        let outer: serde_json::Value =
            serde_json::from_slice(&STANDARD.decode(&c).unwrap()).unwrap();
        let runner: serde_json::Value =
            serde_json::from_slice(&STANDARD.decode(outer[".runner"].as_str().unwrap()).unwrap())
                .unwrap();
        assert_eq!(runner["AgentName"], "r-1");
        assert_eq!(runner["ServerUrl"], "http://x/_sim/actions");
        let credentials: serde_json::Value = serde_json::from_slice(
            &STANDARD
                .decode(outer[".credentials"].as_str().unwrap())
                .unwrap(),
        )
        .unwrap();
        assert_eq!(credentials["Data"]["clientId"], issued.client_id.as_str());
        assert!(outer[".credentials_rsaparams"].is_string());
        assert_ne!(
            c,
            encode(
                7,
                "r-1",
                "https://github.com/acme/app",
                "http://x/_sim/actions"
            )
            .encoded,
            "each carries a fresh secret"
        );
        assert!(looks_like_jit(&c));
        let user_data = format!("runcmd:\n  - [sh, -c, './run.sh --jitconfig {c} && poweroff']");
        assert!(candidates(&user_data).any(|w| w == c));
    }

    #[test]
    fn flags_come_from_the_command_line() {
        let text = "./config.sh --url x --token T --name 'web-1' --labels=a,b --ephemeral";
        assert_eq!(flag(text, "--name").as_deref(), Some("web-1"));
        assert_eq!(flag(text, "--labels").as_deref(), Some("a,b"));
        assert_eq!(flag(text, "--missing"), None);
        assert_eq!(registration_token().len(), 29);
        assert!(installation_token().starts_with("ghs_"));
    }
}
