//! The forge seam against both fakes over real HTTP: one suite of the same assertions run on
//! GitHub and on GitLab (owning jobs, runner lists, credentials for a name and the same name
//! again, deregistration idle, busy and by name, job confirmations), with the calls each
//! operation costs on each forge asserted where they are the point.

use mayfly_core::forge::{Confirmation, Credential, RegisteredRunner, ScopeId};
use mayfly_core::{ForgeKind, JobKey, JobStatus, Labels};
use mayfly_forge::forge::{Forge, ForgeError, GithubForge, GitlabForge, GitlabRunners};
use mayfly_forge::{github, gitlab};
use mayfly_sim::clock::Clock as SimClock;
use mayfly_sim::stats::Stats;
use std::sync::Arc;
use std::time::Duration;

const GITHUB_TOKEN: &str = "ghp_TESTONLYsecret0123456789";
const GITLAB_TOKEN: &str = "glpat-TESTONLY-secret-0123";
const REPO: &str = "acme/app";

enum Fake {
    Github(Arc<mayfly_sim::github::Github>, String),
    Gitlab(Arc<mayfly_sim::gitlab::Gitlab>, String),
}

/// A forge on its fake, and what the suite does on the fake's side (a machine booting with a
/// credential, a job arriving or ending).
struct World {
    forge: Arc<dyn Forge>,
    fake: Fake,
    stats: Arc<Stats>,
    kind: ForgeKind,
}

async fn github_world() -> World {
    let clock = SimClock::new(1.0);
    let stats = Arc::new(Stats::default());
    let gh = mayfly_sim::github::Github::new(
        mayfly_sim::github::GithubConfig {
            tokens: vec![GITHUB_TOKEN.into()],
            writes_per_minute: 10_000,
            ..Default::default()
        },
        clock.clone(),
        stats.clone(),
    );
    let api = gh.serve_local().await.unwrap();
    let config: github::GithubConfig = serde_json::from_value(serde_json::json!({
        "api_url": api,
        "auth": {"token": GITHUB_TOKEN},
        "limits": {"write_interval_ms": 0},
        "repositories": [REPO],
    }))
    .unwrap();
    let client = github::Client::with_clock(&config.client, Arc::new(clock)).unwrap();
    let api = config.client.api_url.clone();
    World {
        forge: Arc::new(GithubForge::new(client, config)),
        fake: Fake::Github(gh, api),
        stats,
        kind: ForgeKind::Github,
    }
}

async fn gitlab_world() -> World {
    let clock = SimClock::new(1.0);
    let stats = Arc::new(Stats::default());
    let gl = mayfly_sim::gitlab::Gitlab::new(
        mayfly_sim::gitlab::GitlabConfig {
            tokens: vec![mayfly_sim::gitlab::AccessToken::full(GITLAB_TOKEN)],
            ..Default::default()
        },
        clock.clone(),
        stats.clone(),
    );
    let url = gl.serve_local().await.unwrap();
    gl.project(REPO).unwrap();
    let config: gitlab::GitlabConfig = serde_json::from_value(serde_json::json!({
        "url": url, "token": GITLAB_TOKEN, "projects": [REPO],
    }))
    .unwrap();
    let client = gitlab::Client::with_clock(&config.client(), Arc::new(clock)).unwrap();
    World {
        forge: Arc::new(GitlabForge::resolve(client, &config).await.unwrap()),
        fake: Fake::Gitlab(gl, url),
        stats,
        kind: ForgeKind::Gitlab,
    }
}

impl World {
    fn key(&self, scope: &str, id: u64) -> JobKey {
        JobKey {
            forge: self.kind,
            scope: scope.into(),
            id,
        }
    }

    fn total(&self) -> u64 {
        self.stats.total(self.kind.as_str())
    }

    /// Calls and 304s on routes ending in `suffix`.
    fn calls(&self, method: &str, suffix: &str) -> (u64, u64) {
        self.stats
            .rows()
            .iter()
            .filter(|r| r.key.method == method && r.key.route.ends_with(suffix))
            .fold((0, 0), |(c, n), r| {
                (c + r.count.calls, n + r.count.not_modified)
            })
    }

    /// One job with `labels` queued in the repository or project; its id.
    fn enqueue(&self, labels: &[&str]) -> u64 {
        let labels: Vec<String> = labels.iter().map(|s| s.to_string()).collect();
        match &self.fake {
            Fake::Github(gh, _) => gh.enqueue(
                REPO,
                vec![mayfly_sim::github::NewJob {
                    labels,
                    duration: Duration::from_secs(600),
                }],
            )[0],
            Fake::Gitlab(gl, _) => {
                gl.enqueue(
                    REPO,
                    vec![mayfly_sim::gitlab::NewJob {
                        name: "build".into(),
                        stage: 0,
                        tags: labels,
                        duration: Duration::from_secs(600),
                        protected: false,
                    }],
                )
                .unwrap()
                .1[0]
            }
        }
    }

    /// A machine boots with the credential and its runner takes a job: (session, job id).
    fn boot_and_take(&self, credential: &Credential) -> (u64, u64) {
        match (&self.fake, credential) {
            (Fake::Github(gh, _), Credential::Jit(jit)) => {
                let runner = gh
                    .redeem(&format!("./run.sh --jitconfig {}", jit.expose()), "host")
                    .unwrap();
                (runner, gh.next_job(runner).expect("a job").job_id)
            }
            (Fake::Gitlab(gl, url), Credential::Gitlab { url: u, token }) => {
                assert_eq!(u, url, "the instance, not its API");
                let session = gl
                    .redeem(&format!(
                        "gitlab-runner run-single --url {u} --token {} --executor shell --max-builds 1",
                        token.expose()
                    ))
                    .unwrap();
                (session, gl.next_job(session).expect("a job").job_id)
            }
            _ => panic!("{} issued {credential}", self.kind.as_str()),
        }
    }

    fn finish(&self, session: u64, job: u64) {
        match &self.fake {
            Fake::Github(gh, _) => gh.finish_job(session, job, "success"),
            Fake::Gitlab(gl, _) => gl.finish_job(session, job, "success"),
        }
    }
}

/// A GitLab forge of its own on the fake at `url` (a restarted mayfly, or another
/// configuration): `scopes` is the `[gitlab]` section's projects or groups.
async fn gitlab_forge(url: &str, scopes: serde_json::Value) -> GitlabForge {
    let mut section = serde_json::json!({ "url": url, "token": GITLAB_TOKEN });
    section
        .as_object_mut()
        .unwrap()
        .extend(scopes.as_object().unwrap().clone());
    let config: gitlab::GitlabConfig = serde_json::from_value(section).unwrap();
    let client = gitlab::Client::new(&config.client()).unwrap();
    let scopes = client.resolve(&config).await.unwrap();
    GitlabForge::new(client, scopes, GitlabRunners::default())
}

fn named<'a>(runners: &'a [RegisteredRunner], name: &str) -> Vec<&'a RegisteredRunner> {
    runners.iter().filter(|r| r.name == name).collect()
}

/// The same assertions on either forge.
async fn suite(w: World) {
    let forge = &w.forge;
    let kind = w.kind.as_str();
    let linux = Labels::new(["linux", "x64"]);

    // Owning: no call to the forge.
    let before = w.total();
    assert_eq!(forge.kind(), w.kind);
    assert!(forge.owns(&w.key(REPO, 1)), "{kind}");
    assert!(
        forge.owns(&w.key("ACME/App", 1)),
        "{kind}: names are case-insensitive"
    );
    assert!(!forge.owns(&w.key("acme/other", 1)), "{kind}");
    assert!(!forge.owns(&w.key("else/app", 1)), "{kind}");
    let other_forge = JobKey {
        forge: match w.kind {
            ForgeKind::Github => ForgeKind::Gitlab,
            ForgeKind::Gitlab => ForgeKind::Github,
        },
        scope: REPO.into(),
        id: 1,
    };
    assert!(!forge.owns(&other_forge), "{kind}: another forge's job");
    let scope = forge.scope_for(Some(&w.key(REPO, 1))).expect("a scope");
    assert_eq!(scope.forge, w.kind);
    assert_eq!(forge.scope_for(None).as_ref(), Some(&scope), "{kind}");
    assert_eq!(forge.scope_for(Some(&w.key("else/app", 1))), None, "{kind}");
    assert_eq!(forge.scopes(), vec![scope.clone()], "{kind}");
    assert_eq!(
        forge.runner_scope(),
        mayfly_core::RunnerScope::Repository {
            standby: Some(REPO.into())
        },
        "{kind}: a runner takes its own repository's or project's jobs"
    );
    assert_eq!(w.total(), before, "{kind}: owning costs no call");

    // Credentials: one call each, the id of the runner made, no secret in Debug or errors.
    let before = w.total();
    let a = forge
        .credential(&scope, "mayfly-a-1", &linux)
        .await
        .unwrap();
    let b = forge
        .credential(&scope, "mayfly-b-1", &linux)
        .await
        .unwrap();
    assert_eq!(w.total() - before, 2, "{kind}: one call per credential");
    let (a_id, b_id) = (a.runner_id.unwrap(), b.runner_id.unwrap());
    let secret = match &a.credential {
        Credential::Jit(s) | Credential::Gitlab { token: s, .. } => s.expose().to_string(),
        other => panic!("{kind}: {other}"),
    };
    assert!(
        !format!("{a:?} {}", a.credential).contains(&secret),
        "{kind}"
    );
    let foreign_scope = ScopeId::new(w.kind, "repo:else/app");
    assert!(matches!(
        forge.credential(&foreign_scope, "x", &linux).await,
        Err(ForgeError::NotServed { .. })
    ));

    // A job; runner a takes it.
    let taken = w.enqueue(&["linux", "x64"]);
    let (session, job) = w.boot_and_take(&a.credential);
    assert_eq!(job, taken, "{kind}");
    let queued = w.enqueue(&["gpu"]);

    // Lists: both runners with their scope, labels and state; a busy, b not yet booted.
    let runners = forge.runners().await.unwrap();
    let ra = named(&runners, "mayfly-a-1");
    let rb = named(&runners, "mayfly-b-1");
    assert_eq!((ra.len(), rb.len()), (1, 1), "{kind}: {runners:?}");
    assert_eq!(
        (ra[0].id, ra[0].online, ra[0].busy),
        (a_id, true, true),
        "{kind}"
    );
    assert_eq!(
        (rb[0].id, rb[0].online, rb[0].busy),
        (b_id, false, false),
        "{kind}"
    );
    assert!(
        ra[0].labels.contains("linux") && rb[0].labels.contains("x64"),
        "{kind}"
    );
    assert!(runners.iter().all(|r| r.scope == scope), "{kind}");

    // The same list again: GitHub answers 304 (free); GitLab, without ETags, reads the list
    // and the one online runner's newest job, and no tags again.
    let before = w.total();
    assert_eq!(forge.runners().await.unwrap(), runners, "{kind}");
    match w.kind {
        ForgeKind::Github => {
            assert_eq!(w.total() - before, 1, "github");
            assert_eq!(w.calls("GET", "/actions/runners").1, 1, "github: a 304");
        }
        ForgeKind::Gitlab => assert_eq!(w.total() - before, 2, "gitlab: list + a busy check"),
    }

    // The same name again: the idle runner b is replaced, one runner keeps the name.
    let before = w.total();
    let b2 = forge
        .credential(&scope, "mayfly-b-1", &linux)
        .await
        .unwrap();
    let b2_id = b2.runner_id.unwrap();
    assert_ne!(b2_id, b_id, "{kind}");
    let cost = w.total() - before;
    match w.kind {
        // 409, the runner by name, its delete, the JIT config again.
        ForgeKind::Github => assert_eq!(cost, 4, "github"),
        // The earlier record's newest job, its delete, the create.
        ForgeKind::Gitlab => assert_eq!(cost, 3, "gitlab"),
    }
    let runners = forge.runners().await.unwrap();
    let rb = named(&runners, "mayfly-b-1");
    assert_eq!(rb.len(), 1, "{kind}: {runners:?}");
    assert_eq!(rb[0].id, b2_id, "{kind}");
    // The same name as the busy runner a: refused, a keeps its job.
    assert!(
        forge
            .credential(&scope, "mayfly-a-1", &linux)
            .await
            .unwrap_err()
            .is_busy(),
        "{kind}"
    );

    // Deregistration: busy refused with the distinct answer, idle gone, repeated fine.
    let before = w.total();
    let busy = forge.deregister(&scope, a_id).await.unwrap_err();
    assert_eq!(busy, ForgeError::Busy { forge: w.kind }, "{kind}");
    match w.kind {
        ForgeKind::Github => assert_eq!(w.total() - before, 1, "github: the 422"),
        ForgeKind::Gitlab => assert_eq!(w.total() - before, 1, "gitlab: the check, no delete"),
    }
    forge.deregister(&scope, b2_id).await.unwrap();
    forge.deregister(&scope, b2_id).await.unwrap();
    let runners = forge.runners().await.unwrap();
    assert!(named(&runners, "mayfly-b-1").is_empty(), "{kind}");
    assert_eq!(
        named(&runners, "mayfly-a-1").len(),
        1,
        "{kind}: the busy one stays"
    );

    // By name: a registration whose answer is forgotten is found and removed; an unknown
    // name is nothing to do; a busy one is refused.
    forge
        .credential(&scope, "mayfly-c-1", &linux)
        .await
        .unwrap();
    forge
        .deregister_by_name(&scope, "mayfly-c-1")
        .await
        .unwrap();
    forge.deregister_by_name(&scope, "nobody").await.unwrap();
    assert!(
        forge
            .deregister_by_name(&scope, "mayfly-a-1")
            .await
            .unwrap_err()
            .is_busy(),
        "{kind}"
    );
    let runners = forge.runners().await.unwrap();
    assert!(named(&runners, "mayfly-c-1").is_empty(), "{kind}");

    // Confirmations: one call each; queued, running with its runner, finished, gone.
    let before = w.total();
    assert_eq!(
        forge.confirm(&w.key(REPO, queued)).await.unwrap(),
        Confirmation::Status {
            status: JobStatus::Queued,
            runner: None
        },
        "{kind}"
    );
    assert_eq!(w.total() - before, 1, "{kind}: one read");
    assert_eq!(
        forge.confirm(&w.key(REPO, job)).await.unwrap(),
        Confirmation::Status {
            status: JobStatus::InProgress,
            runner: Some("mayfly-a-1".into())
        },
        "{kind}"
    );
    // Asked again unchanged: GitHub's conditional read is a free 304.
    let again = forge.confirm(&w.key(REPO, job)).await.unwrap();
    match w.kind {
        ForgeKind::Github => assert_eq!(again, Confirmation::Unchanged, "github"),
        ForgeKind::Gitlab => assert!(
            matches!(
                again,
                Confirmation::Status {
                    status: JobStatus::InProgress,
                    ..
                }
            ),
            "gitlab"
        ),
    }
    w.finish(session, job);
    assert!(
        matches!(
            forge.confirm(&w.key(REPO, job)).await.unwrap(),
            Confirmation::Status {
                status: JobStatus::Completed,
                ..
            }
        ),
        "{kind}"
    );
    forge.forget_job(&w.key(REPO, job));
    assert_eq!(
        forge.confirm(&w.key(REPO, 987_654)).await.unwrap(),
        Confirmation::Gone,
        "{kind}"
    );
    let before = w.total();
    assert!(matches!(
        forge.confirm(&w.key("else/app", job)).await,
        Err(ForgeError::NotServed { .. })
    ));
    assert_eq!(
        w.total(),
        before,
        "{kind}: a foreign job is not asked about"
    );

    // The job is over: a goes (GitHub removed the ephemeral runner already; GitLab's record
    // stays until deleted), and nothing of mayfly's is left.
    forge.deregister(&scope, a_id).await.unwrap();
    let left = forge.runners().await.unwrap();
    assert!(left.is_empty(), "{kind}: {left:?}");
}

#[tokio::test]
async fn github_speaks_the_forge_seam() {
    suite(github_world().await).await;
}

/// GitHub's names are case-insensitive: a job whose repository is spelled otherwise than the
/// configuration spells it gets its runner registered in the configured repository.
#[tokio::test]
async fn a_github_job_spelled_in_another_case_gets_a_credential() {
    let w = github_world().await;
    let scope = w
        .forge
        .scope_for(Some(&w.key("ACME/App", 1)))
        .expect("a scope");
    w.forge
        .credential(&scope, "mayfly-case-1", &Labels::new(["linux"]))
        .await
        .expect("a credential");
    let seen = w.forge.runners().await.unwrap();
    assert_eq!(named(&seen, "mayfly-case-1").len(), 1, "{seen:?}");
}

#[tokio::test]
async fn gitlab_speaks_the_forge_seam() {
    suite(gitlab_world().await).await;
}

#[tokio::test]
async fn an_organization_owns_its_repositories_and_a_group_its_projects() {
    let gh = github_world().await;
    let config: github::GithubConfig = serde_json::from_value(serde_json::json!({
        "api_url": "http://127.0.0.1:9",
        "auth": {"token": GITHUB_TOKEN},
        "organization": "Acme",
    }))
    .unwrap();
    let client = github::Client::new(&config.client).unwrap();
    let org = GithubForge::new(client, config);
    assert!(org.owns(&gh.key("acme/any", 1)) && !org.owns(&gh.key("other/any", 1)));
    assert_eq!(
        org.scope_for(Some(&gh.key("acme/any", 1))),
        Some(ScopeId::new(ForgeKind::Github, "org:Acme"))
    );
    assert_eq!(org.runner_scope(), mayfly_core::RunnerScope::Shared);

    let gl = gitlab_world().await;
    let Fake::Gitlab(fake, url) = &gl.fake else {
        unreachable!()
    };
    fake.project("platform/deep/web").unwrap();
    let group = gitlab_forge(url, serde_json::json!({ "groups": ["platform"] })).await;
    assert!(group.owns(&gl.key("platform/deep/web", 1)));
    assert!(!group.owns(&gl.key(REPO, 1)), "a project outside the group");
    assert_eq!(
        group.scope_for(Some(&gl.key("platform/deep/web", 1))),
        Some(ScopeId::new(ForgeKind::Gitlab, "group:platform"))
    );
    assert_eq!(group.runner_scope(), mayfly_core::RunnerScope::Shared);

    let missing: gitlab::GitlabConfig = serde_json::from_value(serde_json::json!({
        "url": url, "token": GITLAB_TOKEN, "projects": ["nobody/here"],
    }))
    .unwrap();
    let client = gitlab::Client::new(&missing.client()).unwrap();
    assert_eq!(
        GitlabForge::resolve(client, &missing).await.err(),
        Some(ForgeError::NotFound {
            forge: ForgeKind::Gitlab
        })
    );
}

#[tokio::test]
async fn a_refused_credential_is_one_error_on_both_forges_and_shows_no_token() {
    let gh = github_world().await;
    let Fake::Github(fake, _) = &gh.fake else {
        unreachable!()
    };
    fake.set_config(|c| c.tokens = vec!["ghp_other".into()]);
    let gl = gitlab_world().await;
    let Fake::Gitlab(fake, _) = &gl.fake else {
        unreachable!()
    };
    fake.set_config(|c| c.tokens = vec![mayfly_sim::gitlab::AccessToken::full("glpat-other")]);
    for (w, token) in [(&gh, GITHUB_TOKEN), (&gl, GITLAB_TOKEN)] {
        let scope = w.forge.scopes().remove(0);
        let e = w
            .forge
            .credential(&scope, "mayfly-a-1", &Labels::new(["linux"]))
            .await
            .unwrap_err();
        assert_eq!(e, ForgeError::Unauthorized { forge: w.kind });
        assert!(!e.is_transient() && !format!("{e} {e:?}").contains(token));
        assert!(matches!(
            w.forge.runners().await,
            Err(ForgeError::Unauthorized { .. })
        ));
    }
}

/// A powered-off machine's GitLab record goes with one `DELETE`: the machine runs nothing, so
/// no busy check first, whatever GitLab last heard of its job; the forge finds the record it
/// made for the name without a list. A record it does not know is looked for by description.
/// GitHub keeps no used runners: its `deregister_stopped` is its usual deregistration.
#[tokio::test]
async fn an_off_machines_gitlab_record_goes_with_one_delete() {
    let w = gitlab_world().await;
    assert!(w.forge.keeps_used_runners());
    let scope = w.forge.scopes().remove(0);
    let issued = w
        .forge
        .credential(&scope, "mayfly-off-1", &Labels::new(["linux"]))
        .await
        .unwrap();
    w.enqueue(&["linux"]);
    // Its runner took a job and the machine went off without finishing it.
    w.boot_and_take(&issued.credential);
    let before = w.total();
    w.forge
        .deregister_stopped(&scope, None, "mayfly-off-1")
        .await
        .unwrap();
    assert_eq!(w.total() - before, 1, "one DELETE, no busy check, no list");
    assert_eq!(w.calls("DELETE", "/runners/{runner_id}").0, 1);
    assert!(named(&w.forge.runners().await.unwrap(), "mayfly-off-1").is_empty());

    // Unknown to this forge (made before a restart): found by its description first.
    let other = w
        .forge
        .credential(&scope, "mayfly-off-2", &Labels::new(["linux"]))
        .await
        .unwrap();
    let id = other.runner_id.expect("a record id");
    let Fake::Gitlab(_, url) = &w.fake else {
        unreachable!()
    };
    let restarted = gitlab_forge(url, serde_json::json!({ "projects": [REPO] })).await;
    restarted
        .deregister_stopped(&scope, None, "mayfly-off-2")
        .await
        .unwrap();
    assert!(
        restarted
            .runners()
            .await
            .unwrap()
            .iter()
            .all(|r| r.id != id),
        "the record found by its description is gone"
    );
    assert!(!github_world().await.forge.keeps_used_runners());
}

/// GitLab's runner lists carry neither tags nor a busy flag: a forge that starts with runners
/// already registered (a restart) reads no tags (the planner matches with its machines' own
/// labels), and checks the online ones' newest job on every list.
#[tokio::test]
async fn after_a_restart_gitlab_reads_no_tags_and_checks_the_online_runner() {
    let w = gitlab_world().await;
    let Fake::Gitlab(_, url) = &w.fake else {
        unreachable!()
    };
    let scope = w.forge.scopes().remove(0);
    let a = w
        .forge
        .credential(&scope, "mayfly-a-1", &Labels::new(["linux"]))
        .await
        .unwrap();
    w.forge
        .credential(&scope, "mayfly-b-1", &Labels::new(["gpu"]))
        .await
        .unwrap();
    w.enqueue(&["linux"]);
    w.boot_and_take(&a.credential);

    let restarted = gitlab_forge(url, serde_json::json!({ "projects": [REPO] })).await;
    let before = w.total();
    let runners = restarted.runners().await.unwrap();
    assert_eq!(
        w.total() - before,
        2,
        "the list and the online runner's newest job"
    );
    assert_eq!(w.calls("GET", "/runners/{runner_id}").0, 0);
    let gpu = named(&runners, "mayfly-b-1");
    assert!(gpu[0].labels.is_empty() && !gpu[0].busy);
    assert!(named(&runners, "mayfly-a-1")[0].busy);
    let before = w.total();
    assert_eq!(restarted.runners().await.unwrap(), runners);
    assert_eq!(w.total() - before, 2, "the list and the busy check only");
}

/// Two GitHub forges on clones of one client share its ETags: the second's first list is
/// answered 304 for a list it never saw, and must not read as "no runners".
#[tokio::test]
async fn a_github_forge_never_takes_a_304_for_a_list_it_never_saw() {
    let w = github_world().await;
    let scope = w.forge.scopes().remove(0);
    w.forge
        .credential(&scope, "mayfly-a-1", &Labels::new(["linux"]))
        .await
        .unwrap();
    let Fake::Github(_, api) = &w.fake else {
        unreachable!()
    };
    let config: github::GithubConfig = serde_json::from_value(serde_json::json!({
        "api_url": api,
        "auth": {"token": GITHUB_TOKEN},
        "repositories": [REPO],
    }))
    .unwrap();
    let client = github::Client::new(&config.client).unwrap();
    let first = GithubForge::new(client.clone(), config.clone());
    assert_eq!(first.runners().await.unwrap().len(), 1);
    let second = GithubForge::new(client, config);
    let before = w.calls("GET", "/actions/runners");
    let seen = second.runners().await.unwrap();
    assert_eq!(named(&seen, "mayfly-a-1").len(), 1, "{seen:?}");
    let after = w.calls("GET", "/actions/runners");
    assert_eq!(
        (after.0 - before.0, after.1 - before.1),
        (2, 1),
        "a 304, then the list in full"
    );
}
