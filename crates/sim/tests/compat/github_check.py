"""Checks the fake GitHub with third-party tools: PyGithub drives it as it drives github.com, and
every response body of the covered endpoints is validated against GitHub's OpenAPI schemas.

Usage: github_check.py BASE_URL TOKEN [APP_ID INSTALLATION_ID PRIVATE_KEY_PEM_FILE]
The fake must hold runs of `acme/app` with jobs in progress on a repository and an organization
runner. With MAYFLY_WEBHOOK_PAYLOADS naming a directory of *.json webhook bodies, those are
checked against the workflow_job schemas of @octokit/webhooks-schemas too. Exits 1 on any failure.
"""

import json
import os
import pathlib
import sys
import urllib.error
import urllib.request

import jsonschema
from github import Auth, Github, GithubIntegration

FIXTURES = pathlib.Path(__file__).resolve().parent.parent / "fixtures" / "github"
failures = []


def check(ok, what):
    print(("ok   " if ok else "FAIL ") + what)
    if not ok:
        failures.append(what)


def openapi_to_jsonschema(s):
    """OpenAPI 3.0 marks nulls with `nullable`; JSON Schema wants "null" among the types."""
    if isinstance(s, list):
        return [openapi_to_jsonschema(x) for x in s]
    if not isinstance(s, dict):
        return s
    s = {k: openapi_to_jsonschema(v) for k, v in s.items()}
    if s.pop("nullable", False):
        if "type" in s:
            s["type"] = [s["type"], "null"] if isinstance(s["type"], str) else s["type"] + ["null"]
        if "enum" in s and None not in s["enum"]:
            s["enum"] = s["enum"] + [None]
        if "type" not in s and "enum" not in s:
            s = {"anyOf": [s, {"type": "null"}]}
    return s


def schemas():
    out = {}
    for pattern in ("get_*.json", "post_*.json", "delete_*.json"):
        for f in sorted(FIXTURES.glob(pattern)):
            doc = json.loads(f.read_text())
            out[(doc["method"], doc["path"], doc["status"])] = openapi_to_jsonschema(doc["schema"])
    return out


def call(base, token, method, path, body=None, scheme="token"):
    """Status and JSON body of one request; error statuses are answers too, not exceptions."""
    data = None if body is None else json.dumps(body).encode()
    req = urllib.request.Request(base + path, data=data, method=method)
    req.add_header("Authorization", f"{scheme} {token}")
    req.add_header("Accept", "application/vnd.github+json")
    if data is not None:
        req.add_header("Content-Type", "application/json")
    try:
        with urllib.request.urlopen(req) as r:
            return r.status, json.loads(r.read() or b"null")
    except urllib.error.HTTPError as e:
        return e.code, json.loads(e.read() or b"null")


def validate(table, method, template, path, status, data, covered):
    """Checks one answer against the schema of its endpoint and status."""
    schema = table.get((method, template, status))
    check(schema is not None, f"{method} {path}: status {status} is one the description lists")
    if schema is None:
        return
    errors = sorted(jsonschema.Draft7Validator(schema).iter_errors(data), key=lambda e: list(e.path))
    for e in errors[:5]:
        print(f"     at {'/'.join(map(str, e.path))}: {e.message[:200]}")
    check(not errors, f"{method} {path} ({status}): matches the OpenAPI schema")
    covered.add((method, template, status))


def validate_all(base, token, app):
    table = schemas()
    _, runs = call(base, token, "GET", "/repos/acme/app/actions/runs")
    run_id = runs["workflow_runs"][0]["id"]
    job_ids = [j["id"] for r in runs["workflow_runs"] for j in call(base, token, "GET", f"/repos/acme/app/actions/runs/{r['id']}/jobs")[1]["jobs"]]
    _, repo_runners = call(base, token, "GET", "/repos/acme/app/actions/runners")
    check(repo_runners["total_count"] >= 1, "the seeded repository runner is listed")
    runner_id = repo_runners["runners"][0]["id"]
    _, org_jit = call(base, token, "POST", "/orgs/acme/actions/runners/generate-jitconfig",
                      {"name": "schema-org", "runner_group_id": 1, "labels": ["linux"]})
    jit_body = {"name": "schema-repo", "runner_group_id": 1, "labels": ["linux"], "work_folder": "_work"}
    concrete = [
        ("GET", "/repos/{owner}/{repo}", "/repos/acme/app", None),
        ("GET", "/repos/{owner}/{repo}/actions/runs", "/repos/acme/app/actions/runs?per_page=100", None),
        ("GET", "/repos/{owner}/{repo}/actions/runs", "/repos/acme/app/actions/runs?status=queued", None),
        ("GET", "/repos/{owner}/{repo}/actions/runs", "/repos/acme/app/actions/runs?status=completed&created=%3E%3D2000-01-01", None),
        ("GET", "/repos/{owner}/{repo}/actions/runs/{run_id}", f"/repos/acme/app/actions/runs/{run_id}", None),
        ("GET", "/repos/{owner}/{repo}/actions/runs/{run_id}/jobs", f"/repos/acme/app/actions/runs/{run_id}/jobs", None),
        ("GET", "/repos/{owner}/{repo}/actions/runners", "/repos/acme/app/actions/runners", None),
        ("GET", "/repos/{owner}/{repo}/actions/runners/{runner_id}", f"/repos/acme/app/actions/runners/{runner_id}", None),
        ("POST", "/repos/{owner}/{repo}/actions/runners/registration-token", "/repos/acme/app/actions/runners/registration-token", {}),
        ("POST", "/repos/{owner}/{repo}/actions/runners/remove-token", "/repos/acme/app/actions/runners/remove-token", {}),
        ("POST", "/repos/{owner}/{repo}/actions/runners/generate-jitconfig", "/repos/acme/app/actions/runners/generate-jitconfig", jit_body),
        ("GET", "/orgs/{org}", "/orgs/acme", None),
        ("GET", "/orgs/{org}/actions/runners", "/orgs/acme/actions/runners", None),
        ("GET", "/orgs/{org}/actions/runners/{runner_id}", f"/orgs/acme/actions/runners/{org_jit['runner']['id']}", None),
        ("POST", "/orgs/{org}/actions/runners/registration-token", "/orgs/acme/actions/runners/registration-token", {}),
        ("POST", "/orgs/{org}/actions/runners/remove-token", "/orgs/acme/actions/runners/remove-token", {}),
        ("POST", "/orgs/{org}/actions/runners/generate-jitconfig", "/orgs/acme/actions/runners/generate-jitconfig",
         {"name": "schema-org-2", "runner_group_id": 1, "labels": ["linux", "x64"]}),
        ("GET", "/rate_limit", "/rate_limit", None),
    ] + [("GET", "/repos/{owner}/{repo}/actions/jobs/{job_id}", f"/repos/acme/app/actions/jobs/{j}", None) for j in job_ids]
    busy = lambda scope: next(r["id"] for r in call(base, token, "GET", f"{scope}/actions/runners")[1]["runners"] if r["busy"])
    taken = {"name": "schema-repo", "runner_group_id": 1, "labels": ["linux"]}
    no_labels = {"name": "schema-none", "runner_group_id": 1, "labels": []}
    concrete += [
        ("DELETE", "/repos/{owner}/{repo}/actions/runners/{runner_id}", f"/repos/acme/app/actions/runners/{busy('/repos/acme/app')}", None),
        ("DELETE", "/orgs/{org}/actions/runners/{runner_id}", f"/orgs/acme/actions/runners/{busy('/orgs/acme')}", None),
        ("POST", "/repos/{owner}/{repo}/actions/runners/generate-jitconfig", "/repos/acme/app/actions/runners/generate-jitconfig", taken),
        ("POST", "/repos/{owner}/{repo}/actions/runners/generate-jitconfig", "/repos/acme/app/actions/runners/generate-jitconfig", no_labels),
        ("POST", "/orgs/{org}/actions/runners/generate-jitconfig", "/orgs/acme/actions/runners/generate-jitconfig", dict(taken, name="schema-org")),
        ("POST", "/orgs/{org}/actions/runners/generate-jitconfig", "/orgs/acme/actions/runners/generate-jitconfig", no_labels),
    ]
    covered = set()
    for method, template, path, body in concrete:
        status, data = call(base, token, method, path, body)
        validate(table, method, template, path, status, data, covered)
    # The seeded jobs cover every status, so nullable runner fields are checked filled and empty.
    statuses = {call(base, token, "GET", f"/repos/acme/app/actions/jobs/{j}")[1]["status"] for j in job_ids}
    check({"queued", "in_progress", "completed"} <= statuses, f"jobs in every status were validated: {sorted(statuses)}")
    if app:
        covered |= {k for k in table if k[1] == "/app/installations/{installation_id}/access_tokens"}
    missing = set(table) - covered
    check(not missing, f"every vendored schema was used (missing: {sorted(missing)})")
    return table


def pygithub(base, token):
    g = Github(base_url=base, auth=Auth.Token(token), per_page=2, retry=None)
    repo = g.get_repo("acme/app")
    check(repo.full_name == "acme/app", "PyGithub reads the repository")
    queued = list(repo.get_workflow_runs(status="queued"))
    check(len(queued) >= 3, f"PyGithub pages through queued runs ({len(queued)})")
    all_runs = list(repo.get_workflow_runs())
    check(len(all_runs) > len(queued), "PyGithub lists runs in every status")
    since = list(repo.get_workflow_runs(created=">=2000-01-01"))
    check(len(since) == len(all_runs), f"PyGithub filters runs by creation time ({len(since)})")
    check(not list(repo.get_workflow_runs(created="<2000-01-01")), "no run was created before 2000")
    jobs = [j for r in all_runs for j in r.jobs()]
    check(len(jobs) >= 4, f"PyGithub lists the jobs of each run ({len(jobs)})")
    busy = [j for j in jobs if j.status == "in_progress"]
    check(busy and all(j.runner_name for j in busy), "jobs in progress name their runners")
    check(all(j.labels for j in jobs), "every job has labels")
    runners = list(repo.get_self_hosted_runners())
    check(any(r.busy for r in runners), f"PyGithub lists repository runners ({len(runners)}), one busy")
    one = repo.get_self_hosted_runner(runners[0].id)
    check(one.name == runners[0].name and one.labels, "PyGithub reads one runner with its labels")
    org = g.get_organization("acme")
    token_ = org.create_self_hosted_runner_registration_token()
    check(bool(token_.token) and token_.expires_at is not None, "PyGithub creates a registration token")
    jit = org.create_self_hosted_runner_jitconfig("pygithub-jit", 1, ["linux"])
    check(bool(jit.encoded_jit_config), "PyGithub creates a JIT config")
    check(any(r.name == "pygithub-jit" for r in org.get_self_hosted_runners()), "PyGithub lists organization runners")
    org.delete_self_hosted_runner(jit.runner.id)
    check(not any(r.name == "pygithub-jit" for r in org.get_self_hosted_runners()), "PyGithub deletes an idle runner")
    limit = g.get_rate_limit()
    check(limit.resources.core.limit > 0, "PyGithub reads the rate limit")


def app_token(base, table, app_id, installation_id, key_file):
    key = pathlib.Path(key_file).read_text()
    gi = GithubIntegration(base_url=base, auth=Auth.AppAuth(int(app_id), key))
    tok = gi.get_access_token(int(installation_id))
    check(tok.token.startswith("ghs_"), "PyGithub gets an installation token with an App JWT")
    g = Github(base_url=base, auth=Auth.Token(tok.token))
    check(g.get_repo("acme/app").name == "app", "the installation token works")
    # The raw bodies, validated as well: a token, a refused JWT, an unknown installation.
    jwt = Auth.AppAuth(int(app_id), key).token
    template = "/app/installations/{installation_id}/access_tokens"
    covered = set()
    for token, installation, want in [(jwt, installation_id, 201), ("not.a.jwt", installation_id, 401), (jwt, "999", 404)]:
        path = f"/app/installations/{installation}/access_tokens"
        status, data = call(base, token, "POST", path, {}, scheme="Bearer")
        check(status == want, f"POST {path}: status {status}, expected {want}")
        validate(table, "POST", template, path, status, data, covered)


def webhooks(directory):
    definitions = json.loads((FIXTURES / "webhook_workflow_job.json").read_text())["definitions"]
    actions = set()
    files = sorted(pathlib.Path(directory).glob("*.json"))
    for f in files:
        body = json.loads(f.read_text())
        actions.add(body.get("action"))
        event = {"$ref": f"#/definitions/workflow_job${body.get('action')}", "definitions": definitions}
        errors = list(jsonschema.Draft7Validator(event).iter_errors(body))
        for e in errors[:8]:
            print(f"     {f.name} at {'/'.join(map(str, e.absolute_path))}: {e.message[:200]}")
        check(not errors, f"webhook {f.name} ({body.get('action')}) matches the workflow_job event schema")
    check({"queued", "in_progress", "completed"} <= actions, f"webhooks of every action were checked: {sorted(actions, key=str)}")


def main():
    if len(sys.argv) not in (3, 6):
        print(__doc__)
        return 2
    base, token = sys.argv[1].rstrip("/"), sys.argv[2]
    app = sys.argv[3:6] if len(sys.argv) == 6 else None
    pygithub(base, token)
    table = validate_all(base, token, app)
    if app:
        app_token(base, table, *app)
    if os.environ.get("MAYFLY_WEBHOOK_PAYLOADS"):
        webhooks(os.environ["MAYFLY_WEBHOOK_PAYLOADS"])
    print(f"{len(failures)} failure(s)")
    return 1 if failures else 0


if __name__ == "__main__":
    sys.exit(main())
