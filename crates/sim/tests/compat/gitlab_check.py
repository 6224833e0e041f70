"""python-gitlab against the fake GitLab: every call mayfly's GitLab client makes, made by the
client GitLab users run, with its own parsing, pagination and rate-limit handling.

Usage: gitlab_check.py URL TOKEN PROJECT GROUP PENDING
  URL      the fake's instance URL (the API is under /api/v4; the control API under /_sim)
  TOKEN    a personal access token with api, create_runner and manage_runner (an admin's)
  PROJECT  the full path of a project with PENDING pending jobs tagged `linux`
  GROUP    the full path of its top-level group
Exits non-zero with a message on the first mismatch.
"""

import sys
import time

import gitlab
import requests

url, token, project_path, group_path, pending = sys.argv[1:6]
pending = int(pending)


def check(cond, what):
    if not cond:
        sys.exit(f"FAILED: {what}")
    print(f"ok: {what}")


gl = gitlab.Gitlab(url, private_token=token)
gl.auth()
check(gl.user.username == "root", "auth() reads the current user")

project = gl.projects.get(project_path)
group = gl.groups.get(group_path)
check(project.path_with_namespace == project_path, "projects.get by full path")
check(group.full_path == group_path, "groups.get by full path")

# Runner records (POST /user/runners; python-gitlab sends tag_list as a comma-separated string).
mine = gl.user.runners.create(
    {
        "runner_type": "project_type",
        "project_id": project.id,
        "tag_list": ["linux", "docker"],
        "description": "compat-1",
        "run_untagged": False,
        "locked": True,
        "maximum_timeout": 3600,
    }
)
check(mine.token.startswith("glrt-") and mine.id > 0, "user.runners.create gives an id and a glrt- token")
theirs = gl.user.runners.create({"runner_type": "group_type", "group_id": group.id, "tag_list": ["gpu"]})

gl.runners.verify(mine.token)
check(True, "runners.verify accepts a live token")
try:
    gl.runners.verify("glrt-not-a-token")
    check(False, "runners.verify refuses an unknown token")
except gitlab.exceptions.GitlabVerifyError as e:
    check(e.response_code == 403, "runners.verify refuses an unknown token with 403")

runner = gl.runners.get(mine.id)
check(runner.description == "compat-1", "runners.get: description")
check(runner.tag_list == ["linux", "docker"], "runners.get: tag_list")
check(runner.runner_type == "project_type" and runner.locked and not runner.run_untagged, "runners.get: settings")
check(runner.status in ("online", "never_contacted"), f"runners.get: status {runner.status}")


def ids(items):
    return sorted(r.id for r in items)


check(ids(gl.runners.list(get_all=True)) == sorted([mine.id, theirs.id]), "runners.list")
check(ids(gl.runners.list(type="group_type", get_all=True)) == [theirs.id], "runners.list(type=)")
check(ids(gl.runners.list(tag_list=["linux", "docker"], get_all=True)) == [mine.id], "runners.list(tag_list=[...])")
check(ids(gl.runners.list(paused=False, get_all=True)) == sorted([mine.id, theirs.id]), "runners.list(paused=)")
check(ids(gl.runners.list(status="never_contacted", get_all=True)) == [theirs.id], "runners.list(status=)")
check(set(ids(gl.runners_all.list(get_all=True))) >= {mine.id, theirs.id}, "runners_all.list")
check(mine.id in ids(project.runners.list(get_all=True)), "project.runners.list")
check(ids(project.runners.list(type="project_type", get_all=True)) == [mine.id], "project.runners.list(type=)")
check(theirs.id in ids(group.runners.list(get_all=True)), "group.runners.list")

# Demand: pending jobs across pages (20 a page by default), then one job with its tags.
listed = project.jobs.list(scope=["pending"], iterator=True)
jobs = list(listed)
check(len(jobs) == pending, f"project.jobs.list(scope=[pending], iterator=True) follows every page ({len(jobs)})")
check(listed.total == pending and listed.total_pages == (pending + 19) // 20, "x-total and x-total-pages")
check(len({j.id for j in jobs}) == pending, "no job twice across pages")
check(all(j.status == "pending" for j in jobs), "every listed job is pending")
one = project.jobs.get(jobs[0].id)
check(one.tag_list == ["linux"] and one.status == "pending", "project.jobs.get carries tag_list")
keyset = list(project.jobs.list(pagination="keyset", order_by="id", sort="desc", per_page=20, iterator=True))
check([j.id for j in keyset] == sorted((j.id for j in jobs), reverse=True), "keyset pagination by id")
first_page = project.jobs.list(scope=["pending", "created"], get_all=False)
check(len(first_page) == 20, "a single page without get_all")

# A runner takes a job (the runner API, which python-gitlab does not speak: plain HTTP), and the
# busy check sees it.
check(runner.jobs.list(status="running", get_all=True) == [], "runner.jobs.list(status=running): idle")
body = {
    "token": mine.token,
    "system_id": "s_compat",
    "info": {"features": {"two_phase_job_commit": True}},
}
got = requests.post(f"{url}/api/v4/jobs/request", json=body, timeout=10)
check(got.status_code == 201, "jobs/request hands out a job")
job = got.json()
acked = requests.put(f"{url}/api/v4/jobs/{job['id']}", json={"token": job["token"], "state": "running"}, timeout=10)
check(acked.status_code == 200 and acked.headers["Job-Status"] == "running", "PUT jobs/:id confirms it")
busy = runner.jobs.list(status="running", get_all=True)
check([j.id for j in busy] == [job["id"]], "runner.jobs.list(status=running): busy")

# Hooks.
hook = project.hooks.create({"url": "http://127.0.0.1:9/hook", "job_events": True, "token": "hook-secret"})
check(hook.job_events and [h.id for h in project.hooks.list(get_all=True)] == [hook.id], "project.hooks.create and list")

# Deletion by id and by token.
gl.runners.delete(mine.id)
try:
    gl.runners.get(mine.id)
    check(False, "a deleted runner is gone")
except gitlab.exceptions.GitlabGetError as e:
    check(e.response_code == 404, "a deleted runner is gone (404)")
gl.runners.delete(token=theirs.token)
check(theirs.id not in ids(gl.runners_all.list(get_all=True)), "runners.delete(token=) deletes the runner")

# Rate limits: python-gitlab waits out a 429 (Retry-After) and tries again.
requests.post(f"{url}/_sim/faults", json={"gitlab": {"api": {"next_rate_limited": 2, "retry_after_secs": 1}}}, timeout=10)
started = time.monotonic()
again = gl.projects.get(project.id)
waited = time.monotonic() - started
check(again.id == project.id and waited >= 2.0, f"obey_rate_limit waits out two 429s ({waited:.1f}s)")
requests.post(f"{url}/_sim/faults", json={"gitlab": {"api": {"next_rate_limited": 1, "retry_after_secs": 1}}}, timeout=10)
try:
    gl.projects.get(project.id, obey_rate_limit=False)
    check(False, "without obey_rate_limit a 429 is an error")
except gitlab.exceptions.GitlabGetError as e:
    check(e.response_code == 429, "without obey_rate_limit a 429 is an error")
print("python-gitlab: all checks passed")
