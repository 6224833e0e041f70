//! GitLab API calls per job, measured on the fake GitLab: 10 projects x 50 pending jobs. Prints
//! calls per job served with Job Hooks and with polling, and what an idle hour of polling costs.
//! Run with `cargo bench -p mayfly-forge --bench gitlab_calls`.
//!
//! Serving a job here is what the forge does for it: find it (Job Hook: no call, but its tags
//! are not in the hook, so one read; poll: the project's list, tags included), create its
//! runner record (one call), list each scope's runners once per reconcile pass (one pass for
//! the burst), and after the job remove the record: `deregister` (a busy check and the delete)
//! or, when the job's end is known from its hook, `delete_runner` alone. The job itself runs
//! on an in-process virtual runner, whose own protocol calls are not mayfly's.

use mayfly_core::{Labels, Secret};
use mayfly_forge::gitlab::{Client, ClientSettings, LimitsConfig, Poller, Project, RunnerScope};
use mayfly_sim::clock::Clock as SimClock;
use mayfly_sim::gitlab::{AccessToken, Gitlab, GitlabConfig, NewJob};
use mayfly_sim::stats::Stats;
use std::sync::Arc;
use std::time::Duration;

const TOKEN: &str = "bench-token";
const PROJECTS: usize = 10;
const JOBS_PER_PROJECT: usize = 50;

struct World {
    clock: SimClock,
    stats: Arc<Stats>,
    gl: Arc<Gitlab>,
    url: String,
    client: Client,
    projects: Vec<Project>,
}

async fn world(speed: f64, jobs_per_project: usize) -> World {
    let clock = SimClock::new(speed);
    let stats = Arc::new(Stats::default());
    let config = GitlabConfig {
        tokens: vec![AccessToken::full(TOKEN)],
        rate_limit_per_minute: 1_000_000,
        ..GitlabConfig::default()
    };
    let gl = Gitlab::new(config, clock.clone(), stats.clone());
    let url = gl.serve_local().await.expect("serve the fake GitLab");
    let client = Client::with_clock(
        &ClientSettings {
            url: url.clone(),
            token: Secret::new(TOKEN),
            limits: LimitsConfig::default(),
        },
        Arc::new(clock.clone()),
    )
    .expect("client");
    let mut projects = Vec::new();
    for p in 0..PROJECTS {
        let path = format!("acme/project{p}");
        let id = gl.project(&path).expect("project");
        for _ in 0..jobs_per_project {
            let job = NewJob {
                name: "build".into(),
                stage: 0,
                tags: vec!["linux".into()],
                duration: Duration::from_secs(60),
                protected: false,
            };
            gl.enqueue(&path, vec![job]).expect("pipeline");
        }
        projects.push(Project {
            id,
            path_with_namespace: path,
        });
    }
    World {
        clock,
        stats,
        gl,
        url,
        client,
        projects,
    }
}

/// Serves every pending job: its tags (when `read_tags`), a runner record, one runner list per
/// scope; the job runs on the record's virtual runner; then the record goes, checked or not.
async fn serve(w: &World, read_tags: bool, checked: bool) {
    let tags = Labels::new(["linux"]);
    for project in &w.projects {
        let scope = RunnerScope::Project {
            id: project.id,
            path: project.path_with_namespace.clone(),
        };
        let pending: Vec<u64> =
            w.gl.jobs()
                .iter()
                .filter(|j| j.project_id == project.id && j.status == "pending")
                .map(|j| j.id)
                .collect();
        let mut records = Vec::new();
        for (n, job) in pending.iter().enumerate() {
            if read_tags {
                w.client.job_tags(project.id, *job).await.expect("tags");
            }
            let created = w
                .client
                .create_runner(&scope, &format!("mayfly-{}-{n}", project.id), &tags, None)
                .await
                .expect("runner");
            let session =
                w.gl.redeem(&format!(
                    "gitlab-runner run-single --url {} --token {} --executor shell --max-builds 1",
                    w.url,
                    created.token.expose()
                ))
                .expect("verify");
            let taken = w.gl.next_job(session).expect("a job");
            w.gl.finish_job(session, taken.job_id, "success");
            records.push(created.id);
        }
        w.client.list_runners(&scope).await.expect("runners");
        for id in records {
            if checked {
                w.client.deregister(id).await.expect("deregister");
            } else {
                w.client.delete_runner(id).await.expect("delete");
            }
        }
    }
}

#[tokio::main]
async fn main() {
    let jobs = (PROJECTS * JOBS_PER_PROJECT) as f64;

    // Job Hooks: no call to find a job, one to learn its tags.
    let w = world(1.0, JOBS_PER_PROJECT).await;
    serve(&w, true, true).await;
    let hooks_checked = w.stats.total("gitlab") as f64 / jobs;
    let w = world(1.0, JOBS_PER_PROJECT).await;
    serve(&w, true, false).await;
    let hooks_unchecked = w.stats.total("gitlab") as f64 / jobs;

    // Polling: one pass finds every job with its tags.
    let w = world(1.0, JOBS_PER_PROJECT).await;
    let mut poller = Poller::new(w.client.clone(), w.projects.clone());
    let found = poller.poll().await;
    assert_eq!(
        found.jobs.len(),
        PROJECTS * JOBS_PER_PROJECT,
        "the poll finds every job"
    );
    let discovery = w.stats.total("gitlab");
    serve(&w, false, true).await;
    let poll = w.stats.total("gitlab") as f64 / jobs;

    // An idle hour of polling every 60 s in simulated time.
    let w = world(3600.0, 0).await;
    let mut poller = Poller::new(w.client.clone(), w.projects.clone());
    poller.poll().await;
    let before = w.stats.total("gitlab");
    for _ in 0..60 {
        w.clock.sleep(Duration::from_secs(60)).await;
        let report = poller.poll().await;
        assert!(report.jobs.is_empty() && report.failed.is_empty());
    }
    let idle = w.stats.total("gitlab") - before;

    println!("{PROJECTS} projects x {JOBS_PER_PROJECT} pending jobs");
    println!(
        "GitLab API calls per job served, Job Hooks: {hooks_unchecked:.2} with the record deleted when its job's hook said it ended, {hooks_checked:.2} with deregister's busy check (target <= 3)"
    );
    println!(
        "GitLab API calls per job served, polling: {poll:.2} with deregister's busy check ({discovery} calls to find {} jobs with their tags)",
        PROJECTS * JOBS_PER_PROJECT
    );
    println!(
        "idle hour of polling at 60 s: {idle} calls ({:.1} per pass per project; {:.1}% of GitLab.com's 2,000 a minute)",
        idle as f64 / 60.0 / PROJECTS as f64,
        idle as f64 / 60.0 / 2000.0 * 100.0
    );
}
