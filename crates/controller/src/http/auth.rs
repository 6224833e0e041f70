//! The API's bearer token: every request under `/api/v1/` carries `Authorization: Bearer …`,
//! compared in constant time. Refusals never repeat what was sent.

use super::api::{Api, error};
use axum::extract::{Request, State};
use axum::http::{HeaderMap, HeaderValue, StatusCode, header};
use axum::middleware::Next;
use axum::response::Response;
use mayfly_core::Secret;
use std::sync::Arc;
use subtle::ConstantTimeEq;
use tracing::debug;

pub async fn require_token(State(api): State<Arc<Api>>, req: Request, next: Next) -> Response {
    if authorized(req.headers(), &api.token) {
        return next.run(req).await;
    }
    debug!(path = %req.uri().path(), "API request without the right token refused");
    let mut refused = error(
        StatusCode::UNAUTHORIZED,
        "missing or wrong API token: send `Authorization: Bearer TOKEN` with the token of \
         api.token_file",
    );
    refused.headers_mut().insert(
        header::WWW_AUTHENTICATE,
        HeaderValue::from_static("Bearer realm=\"mayfly\""),
    );
    refused
}

/// Whether `headers` carry `token`. An empty token never matches: an API without one is shut.
fn authorized(headers: &HeaderMap, token: &Secret) -> bool {
    let Some(value) = headers
        .get(header::AUTHORIZATION)
        .and_then(|v| v.to_str().ok())
    else {
        return false;
    };
    let Some((scheme, given)) = value.trim().split_once(' ') else {
        return false;
    };
    let expected = token.expose().as_bytes();
    scheme.eq_ignore_ascii_case("bearer")
        && !expected.is_empty()
        && bool::from(given.trim().as_bytes().ct_eq(expected))
}

#[cfg(test)]
mod tests {
    use super::*;

    fn with(value: &str) -> HeaderMap {
        let mut h = HeaderMap::new();
        h.insert(header::AUTHORIZATION, HeaderValue::from_str(value).unwrap());
        h
    }

    #[test]
    fn only_the_bearer_token_itself_is_let_in() {
        let token = Secret::new("c0ffee");
        assert!(authorized(&with("Bearer c0ffee"), &token));
        assert!(authorized(&with("bearer  c0ffee "), &token));
        assert!(!authorized(&with("Bearer c0ffe"), &token));
        assert!(!authorized(&with("Bearer c0ffee0"), &token));
        assert!(!authorized(&with("Basic c0ffee"), &token));
        assert!(!authorized(&with("c0ffee"), &token));
        assert!(!authorized(&HeaderMap::new(), &token));
        assert!(!authorized(&with("Bearer "), &Secret::new("")));
    }
}
