//! RunTask until a task exists or every capacity has said no: `failures[]` is read on every
//! answer, so a job is never lost to a RunTask that quietly started nothing. A capacity or
//! transient failure is retried, then tried on the next capacity (Fargate Spot → Fargate);
//! a failure that no retry can fix (a missing task definition) answers at once.

use super::client::{EcsApi, EcsTask, Failure, RunTask};
use super::config::Capacity;
use super::mapping;
use mayfly_provider::Error;

/// A failure another try, or another capacity, may not have.
pub fn is_retryable(f: &Failure) -> bool {
    let r = f.reason.to_ascii_uppercase();
    r.starts_with("RESOURCE:")
        || r.contains("CAPACITY")
        || r.contains("TIMEOUT")
        || r.contains("TRY AGAIN")
        || r.contains("AGENT")
        || r.contains("THROTTL")
}

fn describe(failures: &[Failure]) -> String {
    failures
        .iter()
        .map(|f| match &f.detail {
            Some(d) => format!("{} ({d})", f.reason),
            None => f.reason.clone(),
        })
        .collect::<Vec<_>>()
        .join("; ")
}

/// Runs `base` on each capacity in turn, `attempts` times each.
pub async fn run(
    api: &dyn EcsApi,
    base: &RunTask,
    capacities: &[Capacity],
    attempts: u32,
) -> Result<(EcsTask, Capacity), Error> {
    let mut tried = Vec::new();
    let token: String = base.client_token.chars().take(58).collect();
    for (i, &capacity) in capacities.iter().enumerate() {
        for attempt in 1..=attempts.max(1) {
            // Each attempt its own token: ECS answers a token it saw with that call's answer.
            let call = RunTask {
                capacity,
                client_token: format!("{token}-{i}-{attempt}"),
                ..base.clone()
            };
            let out = api.run(&call).await.map_err(|e| mapping::error(&e))?;
            if let Some(task) = out.tasks.into_iter().next() {
                if !out.failures.is_empty() {
                    tracing::warn!(failures = %describe(&out.failures), "ECS: a task started despite failures");
                }
                return Ok((task, capacity));
            }
            if out.failures.is_empty() {
                return Err(Error::Api {
                    status: 200,
                    code: "NoTask".into(),
                    message: "RunTask answered with neither a task nor a failure".into(),
                });
            }
            let why = describe(&out.failures);
            if !out.failures.iter().all(is_retryable) {
                return Err(Error::Invalid {
                    message: format!("RunTask on {}: {why}", capacity.as_str()),
                });
            }
            tracing::info!(capacity = capacity.as_str(), attempt, failures = %why, "ECS: RunTask failed, trying again");
            tried.push(format!("{} #{attempt}: {why}", capacity.as_str()));
        }
    }
    Err(Error::CapacityUnavailable {
        message: format!("RunTask failed: {}", tried.join(", ")),
    })
}

#[cfg(test)]
mod tests {
    use super::super::catalogue::Family;
    use super::super::client::RunOutcome;
    use super::*;
    use crate::ApiError;
    use async_trait::async_trait;
    use mayfly_core::Secret;
    use std::sync::Mutex;

    /// Answers RunTask from a script, one answer per call; records the capacity of each call.
    struct Scripted {
        answers: Mutex<Vec<RunOutcome>>,
        calls: Mutex<Vec<Capacity>>,
    }

    impl Scripted {
        fn new(answers: Vec<RunOutcome>) -> Scripted {
            Scripted {
                answers: Mutex::new(answers),
                calls: Mutex::new(Vec::new()),
            }
        }
        fn calls(&self) -> Vec<Capacity> {
            self.calls.lock().unwrap().clone()
        }
    }

    #[async_trait]
    impl EcsApi for Scripted {
        async fn families(&self, _: &str) -> Result<Vec<Family>, ApiError> {
            Ok(Vec::new())
        }
        async fn run(&self, r: &RunTask) -> Result<RunOutcome, ApiError> {
            self.calls.lock().unwrap().push(r.capacity);
            let mut a = self.answers.lock().unwrap();
            Ok(if a.is_empty() {
                RunOutcome::default()
            } else {
                a.remove(0)
            })
        }
        async fn list(
            &self,
            _: &str,
            _: &str,
            _: Option<String>,
        ) -> Result<(Vec<String>, Option<String>), ApiError> {
            Ok((Vec::new(), None))
        }
        async fn describe(
            &self,
            _: &str,
            _: &[String],
        ) -> Result<(Vec<EcsTask>, Vec<Failure>), ApiError> {
            Ok((Vec::new(), Vec::new()))
        }
        async fn stop(&self, _: &str, _: &str, _: &str) -> Result<(), ApiError> {
            Ok(())
        }
        async fn put_parameter(&self, _: &str, _: &Secret) -> Result<(), ApiError> {
            Ok(())
        }
        async fn delete_parameter(&self, _: &str) -> Result<(), ApiError> {
            Ok(())
        }
        async fn parameters(&self, _: &str) -> Result<Vec<(String, i64)>, ApiError> {
            Ok(Vec::new())
        }
    }

    fn failed(reason: &str) -> RunOutcome {
        RunOutcome {
            tasks: Vec::new(),
            failures: vec![Failure {
                arn: None,
                reason: reason.into(),
                detail: Some("injected".into()),
            }],
        }
    }

    fn started() -> RunOutcome {
        RunOutcome {
            tasks: vec![EcsTask {
                arn: "arn:task/1".into(),
                ..EcsTask::default()
            }],
            failures: Vec::new(),
        }
    }

    fn base() -> RunTask {
        RunTask {
            cluster: "ci".into(),
            task_definition: "runner".into(),
            capacity: Capacity::FargateSpot,
            subnets: vec!["subnet-1".into()],
            security_groups: Vec::new(),
            assign_public_ip: false,
            container: "runner".into(),
            environment: Vec::new(),
            tags: Vec::new(),
            started_by: "ctl".into(),
            client_token: "t".into(),
        }
    }

    const SPOT_THEN_FARGATE: &[Capacity] = &[Capacity::FargateSpot, Capacity::Fargate];

    #[tokio::test]
    async fn a_capacity_failure_is_retried_on_the_same_capacity() {
        let api = Scripted::new(vec![
            failed("Capacity is unavailable at this time"),
            started(),
        ]);
        let (t, c) = run(&api, &base(), SPOT_THEN_FARGATE, 2).await.unwrap();
        assert_eq!((t.arn.as_str(), c), ("arn:task/1", Capacity::FargateSpot));
        assert_eq!(api.calls(), [Capacity::FargateSpot, Capacity::FargateSpot]);
    }

    #[tokio::test]
    async fn spot_without_capacity_moves_to_fargate() {
        let api = Scripted::new(vec![
            failed("Capacity is unavailable at this time"),
            failed("RESOURCE:FARGATE_SPOT"),
            started(),
        ]);
        let (_, c) = run(&api, &base(), SPOT_THEN_FARGATE, 2).await.unwrap();
        assert_eq!(c, Capacity::Fargate);
        assert_eq!(
            api.calls(),
            [
                Capacity::FargateSpot,
                Capacity::FargateSpot,
                Capacity::Fargate
            ]
        );
    }

    #[tokio::test]
    async fn no_capacity_anywhere_is_an_error_never_a_silent_loss() {
        let api = Scripted::new((0..4).map(|_| failed("RESOURCE:MEMORY")).collect());
        let e = run(&api, &base(), SPOT_THEN_FARGATE, 2).await.unwrap_err();
        assert!(matches!(e, Error::CapacityUnavailable { .. }), "{e}");
        assert!(
            e.to_string().contains("FARGATE_SPOT #2") && e.to_string().contains("FARGATE #2"),
            "{e}"
        );
        // An answer with neither a task nor a failure is an error too.
        let api = Scripted::new(vec![RunOutcome::default()]);
        let e = run(&api, &base(), SPOT_THEN_FARGATE, 2).await.unwrap_err();
        assert!(
            e.to_string().contains("neither a task nor a failure"),
            "{e}"
        );
    }

    #[tokio::test]
    async fn a_failure_no_retry_fixes_answers_at_once() {
        let api = Scripted::new(vec![failed("MISSING")]);
        let e = run(&api, &base(), SPOT_THEN_FARGATE, 2).await.unwrap_err();
        assert!(matches!(e, Error::Invalid { .. }), "{e}");
        assert_eq!(api.calls().len(), 1);
    }
}
