//! The metric contract: every name, type, label and bounded label value mayfly exports, in one
//! table that the forges, the providers, the binary, the docs and the dashboard all answer to.
//!
//! It lives in core because core is the one crate every forge and provider depends on: a new
//! provider reports its API calls under the names and label values here, and its tests check
//! its output with [`check`] just as the binary's tests check the whole of `/metrics`.
//! Nothing here records anything; recording goes through the `metrics` facade in the crates
//! that do the work, and the binary installs the recorder.

mod check;
mod contract;

pub use check::{check, check_contract, sum};
pub use contract::{CONTRACT, Kind, Label, Metric, Values, markdown, metric};

/// Every call a forge or provider sends, by API and outcome (`api`, `outcome`).
pub const API_CALLS: &str = "mayfly_api_calls_total";
/// How long a call took from sending to the whole answer (`api`).
pub const API_REQUEST_DURATION: &str = "mayfly_api_request_duration_seconds";
/// The request budget the API's headers last reported (`api`).
pub const API_RATE_LIMIT_REMAINING: &str = "mayfly_api_rate_limit_remaining";

/// What every forge and provider client reports about its calls; its tests check these.
pub const API_FAMILIES: &[&str] = &[API_CALLS, API_REQUEST_DURATION, API_RATE_LIMIT_REMAINING];

/// The values of the `api` label: a forge's or provider's kind.
/// AWS by service, as each has its own request limits.
pub const APIS: &[&str] = &[
    "github",
    "gitlab",
    "hetzner",
    "aws-ec2",
    "aws-ecs",
    "aws-autoscaling",
    "aws-ssm",
];

/// What became of one API call, for the `outcome` label of [`API_CALLS`].
#[derive(Clone, Copy, Debug, PartialEq, Eq, Hash)]
pub enum ApiOutcome {
    /// A 2xx answer.
    Ok,
    /// 304: a conditional request found nothing new (GitHub does not charge its budget).
    NotModified,
    /// The API refused the call for its rate limit (429, or GitHub's 403 that says so).
    RateLimited,
    /// Any other refusal, 4xx mostly: bad credentials, not found, a conflict.
    ClientError,
    /// 5xx: the API failed.
    ServerError,
    /// No answer: a timeout, a refused connection, an answer cut off.
    Transport,
}

impl ApiOutcome {
    pub const ALL: [ApiOutcome; 6] = [
        ApiOutcome::Ok,
        ApiOutcome::NotModified,
        ApiOutcome::RateLimited,
        ApiOutcome::ClientError,
        ApiOutcome::ServerError,
        ApiOutcome::Transport,
    ];

    pub fn as_str(self) -> &'static str {
        match self {
            ApiOutcome::Ok => "ok",
            ApiOutcome::NotModified => "not_modified",
            ApiOutcome::RateLimited => "rate_limited",
            ApiOutcome::ClientError => "client_error",
            ApiOutcome::ServerError => "server_error",
            ApiOutcome::Transport => "transport",
        }
    }

    /// The outcome of an answer with this status. A 403 that is a rate limit is the caller's
    /// to tell (only the headers and the body say so).
    pub fn of_status(status: u16) -> ApiOutcome {
        match status {
            200..=299 => ApiOutcome::Ok,
            304 => ApiOutcome::NotModified,
            429 => ApiOutcome::RateLimited,
            500..=599 => ApiOutcome::ServerError,
            _ => ApiOutcome::ClientError,
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn statuses_sort_into_outcomes() {
        assert_eq!(ApiOutcome::of_status(201), ApiOutcome::Ok);
        assert_eq!(ApiOutcome::of_status(304), ApiOutcome::NotModified);
        assert_eq!(ApiOutcome::of_status(429), ApiOutcome::RateLimited);
        assert_eq!(ApiOutcome::of_status(404), ApiOutcome::ClientError);
        assert_eq!(ApiOutcome::of_status(503), ApiOutcome::ServerError);
    }

    /// The vocabulary the libraries record with is the one the contract allows.
    #[test]
    fn the_api_vocabulary_is_the_contracts() {
        let calls = metric(API_CALLS).expect("in the contract");
        let allowed = |label: &str| match calls.label(label).map(|l| l.values) {
            Some(Values::OneOf(v)) => v.to_vec(),
            other => panic!("{label}: {other:?}"),
        };
        let outcomes: Vec<&str> = ApiOutcome::ALL.iter().map(|o| o.as_str()).collect();
        assert_eq!(allowed("outcome"), outcomes);
        assert_eq!(allowed("api"), APIS);
        for name in [API_REQUEST_DURATION, API_RATE_LIMIT_REMAINING] {
            let m = metric(name).expect("in the contract");
            assert!(
                matches!(m.label("api").map(|l| l.values), Some(Values::OneOf(v)) if v == APIS)
            );
        }
    }
}
