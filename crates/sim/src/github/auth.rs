//! Who is calling: personal access tokens and installation tokens from the Authorization header,
//! and the RS256 JWT a GitHub App signs to ask for an installation token.

use super::config::AppConfig;
use axum::http::HeaderMap;
use base64::Engine;
use base64::engine::general_purpose::URL_SAFE_NO_PAD;
use rsa::RsaPublicKey;
use rsa::pkcs1::DecodeRsaPublicKey;
use rsa::pkcs1v15::{Signature, VerifyingKey};
use rsa::pkcs8::DecodePublicKey;
use rsa::signature::Verifier;
use serde::Deserialize;
use sha2::Sha256;

/// The credential of `Authorization: token X` or `Authorization: Bearer X`.
pub fn credential(headers: &HeaderMap) -> Option<&str> {
    let value = headers
        .get(axum::http::header::AUTHORIZATION)?
        .to_str()
        .ok()?
        .trim();
    let (scheme, rest) = value.split_once(' ')?;
    let ok = scheme.eq_ignore_ascii_case("token") || scheme.eq_ignore_ascii_case("bearer");
    let rest = rest.trim();
    (ok && !rest.is_empty()).then_some(rest)
}

/// Why an App JWT was refused; the texts are GitHub's own answers.
#[derive(Debug, thiserror::Error, PartialEq, Eq)]
pub enum JwtError {
    #[error("A JSON web token could not be decoded")]
    Malformed,
    #[error(
        "'Expiration time' claim ('exp') must be a numeric value representing the future time at which the assertion expires"
    )]
    Expired,
    #[error(
        "'Issued at' claim ('iat') must be an Integer representing the time that the assertion was issued"
    )]
    IssuedInFuture,
    #[error("'Expiration time' claim ('exp') is too far in the future")]
    TooLong,
    #[error("Integration not found")]
    WrongApp,
}

#[derive(Deserialize)]
struct Header {
    alg: String,
}

#[derive(Deserialize)]
struct Claims {
    iss: serde_json::Value,
    iat: i64,
    exp: i64,
}

/// GitHub's tolerance for clock drift on `iat`, and the longest JWT lifetime it accepts.
const SKEW_SECS: i64 = 60;
const MAX_LIFETIME_SECS: i64 = 600;

/// Checks an App JWT: RS256 signature by the app's key, `iss` the app id, not expired, at most
/// ten minutes long. `now_secs` is the wall clock: the client signs with real time, so simulated
/// time (which runs ahead) would reject every honest token.
pub fn verify_app_jwt(app: &AppConfig, jwt: &str, now_secs: i64) -> Result<(), JwtError> {
    let mut parts = jwt.split('.');
    let (Some(h), Some(c), Some(s), None) =
        (parts.next(), parts.next(), parts.next(), parts.next())
    else {
        return Err(JwtError::Malformed);
    };
    let decode = |p: &str| {
        URL_SAFE_NO_PAD
            .decode(p.trim_end_matches('='))
            .map_err(|_| JwtError::Malformed)
    };
    let header: Header = serde_json::from_slice(&decode(h)?).map_err(|_| JwtError::Malformed)?;
    if header.alg != "RS256" {
        return Err(JwtError::Malformed);
    }
    let key = RsaPublicKey::from_public_key_pem(&app.public_key_pem)
        .or_else(|_| RsaPublicKey::from_pkcs1_pem(&app.public_key_pem))
        .map_err(|_| JwtError::Malformed)?;
    let signature = Signature::try_from(decode(s)?.as_slice()).map_err(|_| JwtError::Malformed)?;
    VerifyingKey::<Sha256>::new(key)
        .verify(format!("{h}.{c}").as_bytes(), &signature)
        .map_err(|_| JwtError::Malformed)?;
    let claims: Claims = serde_json::from_slice(&decode(c)?).map_err(|_| JwtError::Malformed)?;
    let iss = match &claims.iss {
        serde_json::Value::Number(n) => n.to_string(),
        serde_json::Value::String(s) => s.clone(),
        _ => return Err(JwtError::Malformed),
    };
    if iss != app.app_id.to_string() {
        return Err(JwtError::WrongApp);
    }
    if claims.exp <= now_secs {
        return Err(JwtError::Expired);
    }
    if claims.iat > now_secs + SKEW_SECS {
        return Err(JwtError::IssuedInFuture);
    }
    if claims.exp - claims.iat > MAX_LIFETIME_SECS + SKEW_SECS {
        return Err(JwtError::TooLong);
    }
    Ok(())
}

#[cfg(test)]
mod tests {
    use super::*;
    use axum::http::HeaderValue;

    #[test]
    fn both_authorization_schemes_are_accepted() {
        let mut h = HeaderMap::new();
        assert_eq!(credential(&h), None);
        h.insert("authorization", HeaderValue::from_static("token abc"));
        assert_eq!(credential(&h), Some("abc"));
        h.insert("authorization", HeaderValue::from_static("Bearer xyz"));
        assert_eq!(credential(&h), Some("xyz"));
        h.insert("authorization", HeaderValue::from_static("Basic xyz"));
        assert_eq!(credential(&h), None);
    }

    #[test]
    fn garbage_is_malformed_not_a_panic() {
        let app = AppConfig {
            app_id: 1,
            installation_id: 2,
            public_key_pem: "nope".into(),
        };
        for jwt in [
            "",
            "a.b",
            "a.b.c.d",
            "!!.!!.!!",
            "eyJhbGciOiJSUzI1NiJ9.e30.AAAA",
        ] {
            assert_eq!(
                verify_app_jwt(&app, jwt, 0),
                Err(JwtError::Malformed),
                "{jwt}"
            );
        }
    }
}
