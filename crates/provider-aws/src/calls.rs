//! Every AWS call reported under the metric contract (`mayfly_core::metrics`), as the Hetzner
//! and GitHub clients report theirs: one SDK interceptor on each service client, so no call site
//! can forget it. The `api` label is the AWS service (`aws-ec2`, `aws-ecs`, …): each has its
//! own request limits. AWS sends no budget headers, so there is no remaining-budget gauge.

use aws_smithy_runtime_api::box_error::BoxError;
use aws_smithy_runtime_api::client::interceptors::Intercept;
use aws_smithy_runtime_api::client::interceptors::context::{
    BeforeTransmitInterceptorContextRef, FinalizerInterceptorContextRef,
};
use aws_smithy_runtime_api::client::runtime_components::RuntimeComponents;
use aws_smithy_types::config_bag::{ConfigBag, Storable, StoreReplace};
use mayfly_core::metrics::{API_CALLS, API_REQUEST_DURATION, ApiOutcome};
use std::time::Instant;

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

/// Counts each attempt of every call of one service client, by outcome, with its duration.
#[derive(Debug)]
pub struct CallMetrics {
    api: &'static str,
}

impl CallMetrics {
    pub fn new(api: &'static str) -> CallMetrics {
        CallMetrics { api }
    }
}

/// When the attempt under way was sent.
#[derive(Clone, Debug)]
struct Sent(Instant);

impl Storable for Sent {
    type Storer = StoreReplace<Self>;
}

impl Intercept for CallMetrics {
    fn name(&self) -> &'static str {
        "mayfly-call-metrics"
    }

    fn read_before_transmit(
        &self,
        _context: &BeforeTransmitInterceptorContextRef<'_>,
        _components: &RuntimeComponents,
        cfg: &mut ConfigBag,
    ) -> Result<(), BoxError> {
        cfg.interceptor_state().store_put(Sent(Instant::now()));
        Ok(())
    }

    fn read_after_attempt(
        &self,
        context: &FinalizerInterceptorContextRef<'_>,
        _components: &RuntimeComponents,
        cfg: &mut ConfigBag,
    ) -> Result<(), BoxError> {
        // An attempt that never reached the wire (signing failed) is not a call.
        let Some(Sent(sent)) = cfg.load::<Sent>().cloned() else {
            return Ok(());
        };
        let outcome = match context.response() {
            None => ApiOutcome::Transport,
            Some(response) => outcome(
                response.status().as_u16(),
                response.headers().get("x-amzn-errortype"),
                response.body().bytes(),
            ),
        };
        metrics::counter!(API_CALLS, "api" => self.api, "outcome" => outcome.as_str()).increment(1);
        metrics::histogram!(API_REQUEST_DURATION, "api" => self.api).record(sent.elapsed());
        Ok(())
    }
}

/// The outcome of an answer: its status, except that a throttling error is `RateLimited`
/// whatever its status (EC2 says so with 503, the JSON APIs with 400). JSON protocols name the
/// error in `x-amzn-ErrorType`; the query protocols (EC2, Auto Scaling) in the body's `<Code>`.
fn outcome(status: u16, error_type: Option<&str>, body: Option<&[u8]>) -> ApiOutcome {
    if status < 300 {
        return ApiOutcome::of_status(status);
    }
    let named = |code: &str| {
        let code = code.rsplit('#').next().unwrap_or(code);
        THROTTLED.contains(&code)
    };
    let by_header = error_type
        .map(|t| t.split(':').next().unwrap_or(t))
        .is_some_and(named);
    let by_body = body
        .and_then(|b| std::str::from_utf8(b).ok())
        .is_some_and(|text| {
            THROTTLED.iter().any(|c| {
                text.contains(&format!("<Code>{c}</Code>"))
                    || text.contains(&format!("\"__type\":\"{c}\""))
                    || text.contains(&format!("\"code\":\"{c}\""))
            })
        });
    if status == 429 || by_header || by_body {
        ApiOutcome::RateLimited
    } else {
        ApiOutcome::of_status(status)
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn throttling_is_told_apart_in_every_protocol() {
        assert_eq!(outcome(200, None, None), ApiOutcome::Ok);
        let ec2 = b"<Response><Errors><Error><Code>RequestLimitExceeded</Code></Error></Errors></Response>";
        assert_eq!(outcome(503, None, Some(ec2)), ApiOutcome::RateLimited);
        assert_eq!(
            outcome(
                400,
                Some("ThrottlingException:http://internal.amazon.com/"),
                None
            ),
            ApiOutcome::RateLimited
        );
        let json = br#"{"__type":"com.amazonaws.ecs#ThrottlingException","message":"slow"}"#;
        assert_eq!(
            outcome(
                400,
                Some("com.amazonaws.ecs#ThrottlingException"),
                Some(json)
            ),
            ApiOutcome::RateLimited
        );
        let missing = b"<Response><Errors><Error><Code>InvalidInstanceID.NotFound</Code></Error></Errors></Response>";
        assert_eq!(outcome(400, None, Some(missing)), ApiOutcome::ClientError);
        assert_eq!(outcome(500, None, None), ApiOutcome::ServerError);
        assert_eq!(outcome(429, None, None), ApiOutcome::RateLimited);
    }
}
