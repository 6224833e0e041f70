//! GitHub's JSON shapes for repositories, workflow runs, jobs and runners, with every field the
//! OpenAPI description requires, and the URLs pointing back at the fake itself.

use super::state::{Job, Repo, Run, Runner};
use serde_json::{Value, json};

/// RFC 3339 UTC with whole seconds (`2026-01-02T03:04:05Z`), as GitHub writes times.
pub fn iso8601(ms: i64) -> String {
    let secs = ms.div_euclid(1000);
    let (days, rem) = (secs.div_euclid(86_400), secs.rem_euclid(86_400));
    // Civil date from days since 1970-01-01 (Howard Hinnant's algorithm).
    let z = days + 719_468;
    let era = z.div_euclid(146_097);
    let doe = z - era * 146_097;
    let yoe = (doe - doe / 1460 + doe / 36_524 - doe / 146_096) / 365;
    let doy = doe - (365 * yoe + yoe / 4 - yoe / 100);
    let mp = (5 * doy + 2) / 153;
    let day = doy - (153 * mp + 2) / 5 + 1;
    let month = if mp < 10 { mp + 3 } else { mp - 9 };
    let year = yoe + era * 400 + i64::from(month <= 2);
    format!(
        "{year:04}-{month:02}-{day:02}T{:02}:{:02}:{:02}Z",
        rem / 3600,
        rem % 3600 / 60,
        rem % 60
    )
}

fn node_id(kind: &str, id: u64) -> String {
    use base64::Engine;
    base64::engine::general_purpose::STANDARD_NO_PAD.encode(format!("0:{kind}{id}"))
}

/// A user or organization account.
pub fn owner(base: &str, login: &str, id: u64) -> Value {
    let u = format!("{base}/users/{login}");
    json!({
        "login": login, "id": id, "node_id": node_id("Organization", id),
        "avatar_url": format!("https://avatars.githubusercontent.com/u/{id}?v=4"), "gravatar_id": "",
        "url": u, "html_url": format!("https://github.com/{login}"),
        "followers_url": format!("{u}/followers"), "following_url": format!("{u}/following{{/other_user}}"),
        "gists_url": format!("{u}/gists{{/gist_id}}"), "starred_url": format!("{u}/starred{{/owner}}{{/repo}}"),
        "subscriptions_url": format!("{u}/subscriptions"), "organizations_url": format!("{u}/orgs"),
        "repos_url": format!("{u}/repos"), "events_url": format!("{u}/events{{/privacy}}"),
        "received_events_url": format!("{u}/received_events"), "type": "Organization",
        "site_admin": false,
    })
}

/// The organization object of webhook payloads.
pub fn organization(base: &str, login: &str, id: u64) -> Value {
    let u = format!("{base}/orgs/{login}");
    json!({
        "login": login, "id": id, "node_id": node_id("Organization", id), "url": u,
        "repos_url": format!("{u}/repos"), "events_url": format!("{u}/events"), "hooks_url": format!("{u}/hooks"),
        "issues_url": format!("{u}/issues"), "members_url": format!("{u}/members{{/member}}"),
        "public_members_url": format!("{u}/public_members{{/member}}"),
        "avatar_url": format!("https://avatars.githubusercontent.com/u/{id}?v=4"), "description": null,
    })
}

/// GET /orgs/{org}: the organization with its counts.
pub fn organization_full(base: &str, login: &str, id: u64, created_ms: i64) -> Value {
    let mut v = organization(base, login, id);
    let t = iso8601(created_ms);
    let extra = json!({
        "html_url": format!("https://github.com/{login}"), "has_organization_projects": true,
        "has_repository_projects": true, "public_repos": 0, "public_gists": 0, "followers": 0, "following": 0,
        "type": "Organization", "created_at": t, "updated_at": t, "archived_at": null,
    });
    if let (Some(m), Value::Object(e)) = (v.as_object_mut(), extra) {
        m.extend(e);
    }
    v
}

/// A repository: the minimal form (inside runs and webhooks), or the full one (GET /repos/{o}/{r}).
pub fn repository(base: &str, repo: &Repo, full: bool) -> Value {
    let name = repo.full_name();
    let u = format!("{base}/repos/{name}");
    let html = format!("https://github.com/{name}");
    let mut v = json!({
        "id": repo.id, "node_id": node_id("Repository", repo.id), "name": repo.name, "full_name": name,
        "private": true, "owner": owner(base, &repo.owner, repo.owner_id), "html_url": html,
        "description": null, "fork": false, "url": u,
    });
    // The `*_url` hypermedia fields the schema requires, relative to the repository's URL.
    const URLS: [(&str, &str); 37] = [
        ("archive_url", "/{archive_format}{/ref}"),
        ("assignees_url", "/assignees{/user}"),
        ("blobs_url", "/git/blobs{/sha}"),
        ("branches_url", "/branches{/branch}"),
        ("collaborators_url", "/collaborators{/collaborator}"),
        ("comments_url", "/comments{/number}"),
        ("commits_url", "/commits{/sha}"),
        ("compare_url", "/compare/{base}...{head}"),
        ("contents_url", "/contents/{+path}"),
        ("contributors_url", "/contributors"),
        ("deployments_url", "/deployments"),
        ("downloads_url", "/downloads"),
        ("events_url", "/events"),
        ("forks_url", "/forks"),
        ("git_commits_url", "/git/commits{/sha}"),
        ("git_refs_url", "/git/refs{/sha}"),
        ("git_tags_url", "/git/tags{/sha}"),
        ("hooks_url", "/hooks"),
        ("issue_comment_url", "/issues/comments{/number}"),
        ("issue_events_url", "/issues/events{/number}"),
        ("issues_url", "/issues{/number}"),
        ("keys_url", "/keys{/key_id}"),
        ("labels_url", "/labels{/name}"),
        ("languages_url", "/languages"),
        ("merges_url", "/merges"),
        ("milestones_url", "/milestones{/number}"),
        (
            "notifications_url",
            "/notifications{?since,all,participating}",
        ),
        ("pulls_url", "/pulls{/number}"),
        ("releases_url", "/releases{/id}"),
        ("stargazers_url", "/stargazers"),
        ("statuses_url", "/statuses/{sha}"),
        ("subscribers_url", "/subscribers"),
        ("subscription_url", "/subscription"),
        ("tags_url", "/tags"),
        ("teams_url", "/teams"),
        ("trees_url", "/git/trees{/sha}"),
        ("deployments_url", "/deployments"),
    ];
    if let Some(m) = v.as_object_mut() {
        for (k, suffix) in URLS {
            m.insert(k.into(), Value::String(format!("{u}{suffix}")));
        }
    }
    if full && let Some(m) = v.as_object_mut() {
        let t = iso8601(repo.created_ms);
        let extra = json!({
            "clone_url": format!("{html}.git"), "git_url": format!("git://github.com/{name}.git"),
            "ssh_url": format!("git@github.com:{name}.git"), "svn_url": html, "mirror_url": null, "homepage": null,
            "default_branch": "main", "forks": 0, "forks_count": 0, "has_issues": true, "has_projects": true,
            "has_wiki": true, "has_pages": false, "has_discussions": false, "has_downloads": true,
            "language": null, "archived": false, "disabled": false, "open_issues": 0, "open_issues_count": 0,
            "license": null, "pushed_at": t, "size": 0, "stargazers_count": 0, "watchers": 0,
            "watchers_count": 0, "created_at": t, "updated_at": t, "network_count": 0, "subscribers_count": 0,
            "visibility": "private", "is_template": false, "topics": [], "web_commit_signoff_required": false,
            "custom_properties": {},
        });
        if let Value::Object(e) = extra {
            m.extend(e);
        }
    }
    v
}

/// The repository of webhook payloads: the full form without the REST-only counters.
pub fn webhook_repository(base: &str, repo: &Repo) -> Value {
    let mut v = repository(base, repo, true);
    if let Some(m) = v.as_object_mut() {
        m.remove("network_count");
        m.remove("subscribers_count");
    }
    v
}

pub fn run(base: &str, run: &Run, repo: &Repo) -> Value {
    let r = repository(base, repo, false);
    let u = format!("{base}/repos/{}/actions/runs/{}", run.repo, run.id);
    let t = iso8601(run.created_ms);
    let person = json!({ "name": "Sim", "email": "sim@example.invalid" });
    json!({
        "id": run.id, "name": "CI", "node_id": node_id("WorkflowRun", run.id), "head_branch": "main",
        "head_sha": run.head_sha, "path": ".github/workflows/ci.yml", "display_title": "CI",
        "run_number": run.run_number, "run_attempt": 1, "event": "push", "status": run.status,
        "conclusion": run.conclusion, "workflow_id": 1, "check_suite_id": run.id,
        "url": u, "html_url": format!("https://github.com/{}/actions/runs/{}", run.repo, run.id),
        "pull_requests": [], "created_at": t, "updated_at": iso8601(run.updated_ms), "run_started_at": t,
        "jobs_url": format!("{u}/jobs"), "logs_url": format!("{u}/logs"),
        "check_suite_url": format!("{base}/repos/{}/check-suites/{}", run.repo, run.id),
        "artifacts_url": format!("{u}/artifacts"), "cancel_url": format!("{u}/cancel"),
        "rerun_url": format!("{u}/rerun"), "workflow_url": format!("{base}/repos/{}/actions/workflows/1", run.repo),
        "head_commit": {
            "id": run.head_sha, "tree_id": run.head_sha, "message": "sim", "timestamp": t,
            "author": person, "committer": person,
        },
        "repository": r, "head_repository": r,
    })
}

pub fn job(base: &str, job: &Job, run: Option<&Run>) -> Value {
    let u = format!("{base}/repos/{}/actions/jobs/{}", job.repo, job.id);
    let created = iso8601(job.queued_ms);
    let head_sha = run.map_or_else(String::new, |r| r.head_sha.clone());
    let assigned = job.runner_id.is_some();
    json!({
        "id": job.id, "run_id": job.run_id, "run_attempt": 1, "node_id": node_id("CheckRun", job.id),
        "run_url": format!("{base}/repos/{}/actions/runs/{}", job.repo, job.run_id),
        "head_sha": head_sha, "head_branch": "main", "workflow_name": "CI", "name": job.name,
        "url": u, "html_url": format!("https://github.com/{}/actions/runs/{}/job/{}", job.repo, job.run_id, job.id),
        "status": job.status, "conclusion": job.conclusion, "created_at": created,
        // GitHub shows a queued job as started when it was created.
        "started_at": iso8601(job.started_ms.unwrap_or(job.queued_ms)),
        "completed_at": job.completed_ms.map(iso8601),
        "check_run_url": format!("{base}/repos/{}/check-runs/{}", job.repo, job.id),
        "labels": job.labels, "steps": [],
        "runner_id": job.runner_id, "runner_name": job.runner_name,
        "runner_group_id": assigned.then_some(1), "runner_group_name": assigned.then_some("Default"),
    })
}

pub fn runner(r: &Runner) -> Value {
    let labels: Vec<Value> = r
        .labels
        .iter()
        .enumerate()
        .map(|(i, (name, kind))| json!({ "id": i + 1, "name": name, "type": kind }))
        .collect();
    json!({
        "id": r.id, "name": r.name, "os": "linux", "status": if r.online { "online" } else { "offline" },
        "busy": r.busy(), "ephemeral": r.ephemeral, "runner_group_id": 1, "labels": labels,
    })
}

#[cfg(test)]
mod tests {
    use super::iso8601;

    #[test]
    fn times_are_rfc3339_utc() {
        assert_eq!(iso8601(0), "1970-01-01T00:00:00Z");
        assert_eq!(iso8601(951_782_400_000), "2000-02-29T00:00:00Z");
        assert_eq!(iso8601(1_798_761_599_999), "2026-12-31T23:59:59Z");
    }
}
