//! What gitlab-runner tells each executable about the job: the job's variables prefixed
//! `CUSTOM_ENV_`, the exit codes it wants, and the files it reads back.

use std::path::PathBuf;

/// gitlab-runner's documented defaults, used when its variables are missing (a manual run).
const BUILD_FAILURE: i32 = 1;
const SYSTEM_FAILURE: i32 = 2;

#[derive(Clone, Debug)]
pub struct JobEnv {
    pub job_id: u64,
    pub project_path: String,
    /// The runner's tags (`CI_RUNNER_TAGS`): its `[[runners]]` entry's, which pick the pool.
    pub runner_tags: Vec<String>,
    /// `MAYFLY_POOL` set by the job: a pool by name, as FARGATE_TASK_DEFINITION picks a task.
    pub pool: Option<String>,
    /// `CI_JOB_TIMEOUT` in seconds.
    pub timeout_secs: Option<u64>,
    pub build_failure: i32,
    pub system_failure: i32,
    /// Where the script's own exit code goes on a build failure (for `allow_failure: exit_codes`).
    pub build_exit_code_file: Option<PathBuf>,
}

impl JobEnv {
    /// Reads the variables through `get` (the process environment, or a test's map).
    pub fn read(get: impl Fn(&str) -> Option<String>) -> Result<JobEnv, String> {
        let custom = |name: &str| get(&format!("CUSTOM_ENV_{name}")).filter(|v| !v.is_empty());
        let code = |name: &str, default: i32| -> Result<i32, String> {
            match get(name) {
                None => Ok(default),
                Some(v) => v
                    .parse()
                    .map_err(|_| format!("{name}={v:?} is not an exit code")),
            }
        };
        let job_id = custom("CI_JOB_ID").ok_or(
            "CUSTOM_ENV_CI_JOB_ID is not set: run me from gitlab-runner's [runners.custom]",
        )?;
        let job_id = job_id
            .parse()
            .map_err(|_| format!("CUSTOM_ENV_CI_JOB_ID={job_id:?} is not a job id"))?;
        Ok(JobEnv {
            job_id,
            project_path: custom("CI_PROJECT_PATH").unwrap_or_default(),
            runner_tags: custom("CI_RUNNER_TAGS")
                .map(|t| super::settings::parse_tags(&t))
                .unwrap_or_default(),
            pool: custom("MAYFLY_POOL"),
            timeout_secs: custom("CI_JOB_TIMEOUT").and_then(|t| t.parse().ok()),
            build_failure: code("BUILD_FAILURE_EXIT_CODE", BUILD_FAILURE)?,
            system_failure: code("SYSTEM_FAILURE_EXIT_CODE", SYSTEM_FAILURE)?,
            build_exit_code_file: get("BUILD_EXIT_CODE_FILE")
                .filter(|f| !f.is_empty())
                .map(PathBuf::from),
        })
    }

    pub fn from_process() -> Result<JobEnv, String> {
        JobEnv::read(|k| std::env::var(k).ok())
    }

    /// The job's deterministic name: its record in the store, its key directory, the
    /// `hostname` gitlab-runner shows, and its first machine's name.
    pub fn machine_name(&self) -> String {
        machine_name(self.job_id)
    }

    /// The name of the machine of `prepare`'s attempt `attempt` (0, 1, 2): the create's
    /// idempotency key (RunTask's client token, EC2's, Hetzner's unique name). A later attempt
    /// makes another machine with other keys, which the cloud would refuse (ECS: a token used
    /// with other parameters is a `ConflictException` for 24 hours) or answer with the first
    /// machine under the same key; so each attempt has a name of its own: `mayfly-gl-7`,
    /// `mayfly-gl-7-2`, `mayfly-gl-7-3`.
    pub fn attempt_name(&self, attempt: u32) -> String {
        match attempt {
            0 => machine_name(self.job_id),
            n => format!("{}-{}", machine_name(self.job_id), n + 1),
        }
    }
}

pub fn machine_name(job_id: u64) -> String {
    format!("mayfly-gl-{job_id}")
}

/// The job id back from a machine name (of any attempt), for the reaper.
pub fn job_of(name: &str) -> Option<u64> {
    let rest = name.strip_prefix("mayfly-gl-")?;
    let (job, attempt) = match rest.split_once('-') {
        Some((job, attempt)) => (job, Some(attempt)),
        None => (rest, None),
    };
    if let Some(a) = attempt
        && (a.parse::<u32>().is_err() || a.starts_with('0') || a.starts_with('+'))
    {
        return None;
    }
    if job.starts_with('+') {
        return None;
    }
    job.parse().ok()
}

#[cfg(test)]
mod tests {
    use super::*;
    use std::collections::HashMap;

    #[test]
    fn reads_gitlab_runners_variables() {
        let env: HashMap<&str, &str> = [
            ("CUSTOM_ENV_CI_JOB_ID", "42"),
            ("CUSTOM_ENV_CI_RUNNER_TAGS", r#"["a", "b"]"#),
            ("CUSTOM_ENV_CI_JOB_TIMEOUT", "3600"),
            ("BUILD_FAILURE_EXIT_CODE", "7"),
            ("SYSTEM_FAILURE_EXIT_CODE", "8"),
        ]
        .into();
        let j = JobEnv::read(|k| env.get(k).map(|v| v.to_string())).unwrap();
        assert_eq!((j.job_id, j.build_failure, j.system_failure), (42, 7, 8));
        assert_eq!(j.runner_tags, ["a", "b"]);
        assert_eq!(j.timeout_secs, Some(3600));
        assert_eq!(job_of(&j.machine_name()), Some(42));
        assert_eq!(j.attempt_name(0), "mayfly-gl-42");
        assert_eq!(j.attempt_name(2), "mayfly-gl-42-3");
        assert_eq!(job_of(&j.attempt_name(2)), Some(42));
        for other in [
            "mayfly-gl-",
            "mayfly-gl-x",
            "mayfly-gl-4-",
            "mayfly-gl-4-x",
            "mayfly-x64-4",
        ] {
            assert_eq!(job_of(other), None, "{other}");
        }
        let e = JobEnv::read(|_| None).unwrap_err();
        assert!(e.contains("CUSTOM_ENV_CI_JOB_ID"), "{e}");
    }
}
