//! What both forges' clients do alike on the wire: build the HTTP client, exchange one request
//! for its whole answer, and describe a failure without repeating a header, a body or a token.
//! Each forge keeps its own error enum; these give its `Transport` variant the same words.

use mayfly_core::metrics::ApiOutcome;
use reqwest::RequestBuilder;
use reqwest::header::HeaderMap;
use std::time::{Duration, Instant};

/// Gives a forge's error enum what both forges' errors do alike: `http` (an `Http { status,
/// message }` variant with the message clipped), `transport` and `decode` (a
/// `Transport(String)` variant in the words of [`transport_text`] and [`decode_text`]), and
/// `From<Refusal>` (a limiter's wait is `RateLimited { retry_after }`, its kept reserve
/// `Postponed`).
macro_rules! shared_errors {
    ($error:ty) => {
        impl $error {
            /// An answer that is no success, with the forge's message clipped.
            pub(crate) fn http(status: u16, message: &str) -> $error {
                Self::Http {
                    status,
                    message: $crate::http::clip(message),
                }
            }

            /// No answer came.
            pub(crate) fn transport(e: &reqwest::Error) -> $error {
                Self::Transport($crate::http::transport_text(e))
            }

            /// An answer that could not be decoded, named by where only.
            pub(crate) fn decode(e: &serde_json::Error) -> $error {
                Self::Transport($crate::http::decode_text(e))
            }
        }

        impl From<$crate::budget::Refusal> for $error {
            fn from(r: $crate::budget::Refusal) -> $error {
                match r {
                    $crate::budget::Refusal::Wait(d) => Self::RateLimited {
                        retry_after: Some(d),
                    },
                    $crate::budget::Refusal::Postponed => Self::Postponed,
                }
            }
        }
    };
}
pub(crate) use shared_errors;

/// How much of a forge's message an error repeats.
const MESSAGE_LIMIT: usize = 300;

/// The HTTP client of one forge client: every request and every connect bounded by `timeout`.
/// `None` when the TLS backend cannot start (the caller names its own configuration error).
pub(crate) fn client(timeout: Duration) -> Option<reqwest::Client> {
    reqwest::Client::builder()
        .timeout(timeout)
        .connect_timeout(timeout)
        .build()
        .ok()
}

/// A whole answer: status, headers, the body read to its end, and when the call was sent (for
/// its duration metric).
pub(crate) type Answer = (u16, HeaderMap, Vec<u8>, Instant);

/// Sends `request` and reads its answer. `observe` sees the headers as soon as they come, so a
/// rate-limit budget is taken in even when the body then fails to arrive; `record` counts a
/// call that got no answer (the caller counts the others, once it knows their outcome).
pub(crate) async fn exchange(
    request: RequestBuilder,
    observe: impl FnOnce(&HeaderMap),
    record: fn(ApiOutcome, Instant),
) -> Result<Answer, reqwest::Error> {
    let started = Instant::now();
    let answer = async {
        let response = request.send().await?;
        let status = response.status().as_u16();
        let headers = response.headers().clone();
        observe(&headers);
        let body = response.bytes().await?.to_vec();
        Ok((status, headers, body, started))
    }
    .await;
    if answer.is_err() {
        record(ApiOutcome::Transport, started);
    }
    answer
}

/// What went wrong when no answer came: the kind, then the innermost cause ("Connection refused
/// (os error 111)"), which says what happened; reqwest's own text adds the URL, which the caller
/// knows already. Neither holds a header.
pub(crate) fn transport_text(e: &reqwest::Error) -> String {
    let kind = if e.is_timeout() {
        "timed out"
    } else if e.is_connect() {
        "could not connect"
    } else if e.is_decode() || e.is_body() {
        "could not read the body"
    } else {
        "request failed"
    };
    let mut innermost = None;
    let mut next = std::error::Error::source(e);
    while let Some(cause) = next {
        innermost = Some(cause);
        next = cause.source();
    }
    match innermost {
        Some(cause) => format!("{kind}: {}", clip(&cause.to_string())),
        None => kind.to_string(),
    }
}

/// An answer that could not be decoded, named by where only, never by its value (which may be
/// a token).
pub(crate) fn decode_text(e: &serde_json::Error) -> String {
    format!(
        "could not decode the answer ({:?} at line {}, column {})",
        e.classify(),
        e.line(),
        e.column()
    )
}

/// `, retry after Ns` when the forge said how long, for a rate-limit error's text.
pub(crate) fn retry_hint(retry_after: &Option<Duration>) -> String {
    retry_after.map_or_else(String::new, |d| format!(", retry after {}s", d.as_secs()))
}

/// At most `MESSAGE_LIMIT` characters of a forge's message.
pub(crate) fn clip(message: &str) -> String {
    message.chars().take(MESSAGE_LIMIT).collect()
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn texts_stay_short_and_name_no_value() {
        assert_eq!(clip(&"x".repeat(1000)).len(), MESSAGE_LIMIT);
        let e = serde_json::from_str::<u32>("\"ghp_secret\"").unwrap_err();
        let text = decode_text(&e);
        assert!(text.starts_with("could not decode the answer"), "{text}");
        assert!(!text.contains("ghp_secret"), "{text}");
        assert_eq!(
            retry_hint(&Some(Duration::from_secs(7))),
            ", retry after 7s"
        );
        assert_eq!(retry_hint(&None), "");
    }
}
