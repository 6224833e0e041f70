//! Every AWS call reported under the metric contract (`mayfly_core::metrics`), as the Hetzner
//! and GitHub clients report theirs: the one HTTP client (`wire`) records each attempt, so no
//! call site can forget it. The `api` label is the AWS service (`aws-ec2`, `aws-ecs`, …): each
//! has its own request limits. AWS sends no budget headers, so there is no remaining-budget gauge.

use mayfly_core::metrics::{API_CALLS, API_REQUEST_DURATION, ApiOutcome};
use std::time::Duration;

pub const EC2: &str = "aws-ec2";
pub const ECS: &str = "aws-ecs";
pub const AUTOSCALING: &str = "aws-autoscaling";
pub const SSM: &str = "aws-ssm";

/// The error codes AWS answers a throttled call with, across its protocols.
const THROTTLED: &[&str] = &[
    "Throttling",
    "ThrottlingException",
    "ThrottledException",
    "RequestLimitExceeded",
    "RequestThrottled",
    "RequestThrottledException",
    "TooManyRequestsException",
    "SlowDown",
];

/// One attempt of one call, counted by outcome and timed.
pub fn record(api: &'static str, outcome: ApiOutcome, took: Duration) {
    metrics::counter!(API_CALLS, "api" => api, "outcome" => outcome.as_str()).increment(1);
    metrics::histogram!(API_REQUEST_DURATION, "api" => api).record(took);
}

/// An attempt that got no answer.
pub fn transport() -> ApiOutcome {
    ApiOutcome::Transport
}

/// The outcome of an answer: its status, except that a throttling error is `RateLimited`
/// whatever its status (EC2 says so with 503, the JSON APIs with 400). `code` is the error
/// code the protocol read from the answer (the XML `<Code>` or the JSON `__type`).
pub fn outcome(status: u16, code: Option<&str>) -> ApiOutcome {
    if status < 300 {
        return ApiOutcome::of_status(status);
    }
    if status == 429 || code.is_some_and(|c| THROTTLED.contains(&c)) {
        ApiOutcome::RateLimited
    } else {
        ApiOutcome::of_status(status)
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::wire;

    /// The codes each protocol reads from real answers feed the outcome.
    #[test]
    fn throttling_is_told_apart_in_every_protocol() {
        assert_eq!(outcome(200, None), ApiOutcome::Ok);
        let ec2 = b"<Response><Errors><Error><Code>RequestLimitExceeded</Code></Error></Errors></Response>";
        let (code, _) = wire::query_error(503, ec2);
        assert_eq!(outcome(503, Some(&code)), ApiOutcome::RateLimited);
        let (code, _) = wire::json_error(
            400,
            Some("ThrottlingException:http://internal.amazon.com/"),
            b"",
        );
        assert_eq!(outcome(400, Some(&code)), ApiOutcome::RateLimited);
        let json = br#"{"__type":"com.amazonaws.ecs#ThrottlingException","message":"slow"}"#;
        let (code, _) = wire::json_error(400, None, json);
        assert_eq!(outcome(400, Some(&code)), ApiOutcome::RateLimited);
        let missing = b"<Response><Errors><Error><Code>InvalidInstanceID.NotFound</Code></Error></Errors></Response>";
        let (code, _) = wire::query_error(400, missing);
        assert_eq!(outcome(400, Some(&code)), ApiOutcome::ClientError);
        assert_eq!(outcome(500, Some("Unknown")), ApiOutcome::ServerError);
        assert_eq!(outcome(429, None), ApiOutcome::RateLimited);
    }
}
