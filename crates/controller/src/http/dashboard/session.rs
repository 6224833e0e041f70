//! The dashboard's sign-in: the API token is posted once, and the answer sets a cookie that
//! proves it was known (an HMAC keyed by the token over the cookie's expiry). The token itself
//! is never in a cookie, a URL or a page.
//!
//! Stateless on purpose: nothing to keep per browser, sessions survive a restart, and changing
//! the token ends every session at once. A sign-out clears the browser's cookie; a copied
//! cookie stays valid until it expires ([`LIFETIME`]).

use axum::http::{HeaderMap, HeaderValue, header};
use hmac::{Hmac, Mac};
use mayfly_core::Secret;
use sha2::Sha256;
use std::time::Duration;
use subtle::ConstantTimeEq;

/// The cookie's name.
pub const COOKIE: &str = "mayfly_session";
/// How long a sign-in lasts unless `[dashboard] session` says otherwise.
pub const LIFETIME: Duration = Duration::from_secs(12 * 3600);

fn mac(token: &Secret, expires: u64) -> Option<Vec<u8>> {
    let key = token.expose().as_bytes();
    // An empty token signs nothing: an API without one is shut, and so is the dashboard.
    if key.is_empty() {
        return None;
    }
    let mut mac = <Hmac<Sha256> as Mac>::new_from_slice(key).ok()?;
    mac.update(b"mayfly dashboard session until ");
    mac.update(expires.to_string().as_bytes());
    Some(mac.finalize().into_bytes().to_vec())
}

/// Whether `given` is the token, compared in constant time.
pub fn is_token(given: &str, token: &Secret) -> bool {
    let expected = token.expose().as_bytes();
    !expected.is_empty() && bool::from(given.trim().as_bytes().ct_eq(expected))
}

/// The `Set-Cookie` value of a session that lasts `lifetime` from `now` (Unix seconds).
pub fn issue(token: &Secret, now: u64, lifetime: Duration) -> Option<HeaderValue> {
    let expires = now + lifetime.as_secs();
    let value = format!(
        "{COOKIE}={expires}.{}; Path=/; Max-Age={}; HttpOnly; SameSite=Strict",
        hex::encode(mac(token, expires)?),
        lifetime.as_secs()
    );
    HeaderValue::from_str(&value).ok()
}

/// The `Set-Cookie` value that ends the session in this browser.
pub fn clear() -> HeaderValue {
    HeaderValue::from_static("mayfly_session=; Path=/; Max-Age=0; HttpOnly; SameSite=Strict")
}

/// Whether `headers` carry a session cookie signed with `token` that has not expired at `now`
/// (and expires no later than `lifetime` from now).
pub fn signed_in(headers: &HeaderMap, token: &Secret, now: u64, lifetime: Duration) -> bool {
    headers
        .get_all(header::COOKIE)
        .iter()
        .filter_map(|v| v.to_str().ok())
        .flat_map(|v| v.split(';'))
        .filter_map(|pair| pair.trim().split_once('='))
        .filter(|(name, _)| *name == COOKIE)
        .any(|(_, value)| valid(value, token, now, lifetime))
}

fn valid(value: &str, token: &Secret, now: u64, lifetime: Duration) -> bool {
    let Some((expires, sig)) = value.split_once('.') else {
        return false;
    };
    let (Ok(expires), Ok(sig)) = (expires.parse::<u64>(), hex::decode(sig)) else {
        return false;
    };
    if expires <= now || expires > now + lifetime.as_secs() {
        return false;
    }
    mac(token, expires).is_some_and(|m| bool::from(m.ct_eq(&sig)))
}

/// Unix seconds now.
pub fn unix_now() -> u64 {
    std::time::SystemTime::now()
        .duration_since(std::time::UNIX_EPOCH)
        .map_or(0, |d| d.as_secs())
}

#[cfg(test)]
mod tests {
    use super::*;

    fn cookie_of(set: &HeaderValue) -> HeaderMap {
        let pair = set.to_str().unwrap().split(';').next().unwrap().to_string();
        let mut h = HeaderMap::new();
        h.insert(
            header::COOKIE,
            HeaderValue::from_str(&format!("theme=dark; {pair}")).unwrap(),
        );
        h
    }

    #[test]
    fn a_cookie_signed_with_the_token_signs_in_until_it_expires() {
        let token = Secret::new("c0ffee-token");
        let set = issue(&token, 1_000, LIFETIME).unwrap();
        let text = set.to_str().unwrap();
        assert!(text.contains("HttpOnly") && text.contains("SameSite=Strict"));
        assert!(!text.contains("c0ffee"), "the token is not in the cookie");
        let h = cookie_of(&set);
        assert!(signed_in(&h, &token, 1_000, LIFETIME));
        assert!(signed_in(
            &h,
            &token,
            1_000 + LIFETIME.as_secs() - 1,
            LIFETIME
        ));
        assert!(!signed_in(&h, &token, 1_000 + LIFETIME.as_secs(), LIFETIME));
        // Another token (rotated): every session ends.
        assert!(!signed_in(
            &h,
            &Secret::new("c0ffee-token2"),
            1_000,
            LIFETIME
        ));
        assert!(!signed_in(&HeaderMap::new(), &token, 1_000, LIFETIME));
    }

    #[test]
    fn a_forged_or_stretched_cookie_is_refused() {
        let token = Secret::new("c0ffee-token");
        let set = issue(&token, 1_000, LIFETIME).unwrap();
        let value = set.to_str().unwrap().split(';').next().unwrap();
        let (_, v) = value.split_once('=').unwrap();
        let (exp, sig) = v.split_once('.').unwrap();
        let later: u64 = exp.parse::<u64>().unwrap() + 3_600;
        for forged in [
            format!("{later}.{sig}"),
            format!("{exp}.{}", "0".repeat(sig.len())),
            format!("{exp}."),
            "garbage".to_string(),
            format!("{}.{}", u64::MAX, sig),
        ] {
            let mut h = HeaderMap::new();
            h.insert(
                header::COOKIE,
                HeaderValue::from_str(&format!("{COOKIE}={forged}")).unwrap(),
            );
            assert!(!signed_in(&h, &token, 1_000, LIFETIME), "{forged}");
        }
        assert!(issue(&Secret::new(""), 1_000, LIFETIME).is_none());
        assert!(is_token(" c0ffee-token ", &token));
        assert!(!is_token("c0ffee", &token));
        assert!(!is_token("", &Secret::new("")));
    }
}
