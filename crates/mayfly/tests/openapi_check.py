"""Checks answers of mayfly's HTTP API against its OpenAPI 3.1 description with jsonschema (the
validator the fake GitHub's compatibility check uses), JSON Schema draft 2020-12 as OpenAPI 3.1 is.

Usage: openapi_check.py OPENAPI_JSON ANSWERS_JSON
ANSWERS_JSON holds [{"method", "template", "path", "status", "content_type", "body"}]. Every
answer's status must be described for its path and method, and its body must match the schema
of that status and content type. Each failure names the method, the path, the status and the
field. Exits 1 on any failure.
"""

import json
import sys
import urllib.parse

from jsonschema import Draft202012Validator
from referencing import Registry, Resource
from referencing.jsonschema import DRAFT202012

URI = "urn:mayfly:openapi"


def pointer(*parts):
    return "/" + "/".join(str(p).replace("~", "~0").replace("/", "~1") for p in parts)


def main(description, answers_file):
    with open(description) as f:
        doc = json.load(f)
    with open(answers_file) as f:
        answers = json.load(f)
    registry = Registry().with_resource(URI, Resource.from_contents(doc, default_specification=DRAFT202012))
    failures = []

    def fail(what):
        print("FAIL " + what)
        failures.append(what)

    for name, schema in doc["components"]["schemas"].items():
        try:
            Draft202012Validator.check_schema(schema)
        except Exception as e:  # noqa: BLE001 - any schema error is a failure to report
            fail(f"components/schemas/{name} is no valid JSON Schema: {e}")

    for a in answers:
        what = f"{a['method']} {a['path']} ({a['status']})"
        op = doc["paths"].get(a["template"], {}).get(a["method"].lower())
        if op is None:
            fail(f"{what}: {a['method']} {a['template']} is not in the description")
            continue
        at = ["paths", a["template"], a["method"].lower(), "responses", str(a["status"])]
        response = op["responses"].get(str(a["status"]))
        if response is None:
            fail(f"{what}: status {a['status']} is not described")
            continue
        while "$ref" in response:
            at = response["$ref"].lstrip("#/").split("/")
            response = doc
            for part in at:
                response = response[part]
        content = response.get("content")
        if content is None:
            if a["body"] not in ("", None):
                fail(f"{what}: a body, where the description has none")
            continue
        ctype = (a["content_type"] or "").split(";")[0].strip()
        if ctype not in content:
            fail(f"{what}: content type {ctype!r} is not described (only {sorted(content)})")
            continue
        ref = URI + "#" + urllib.parse.quote(pointer(*at, "content", ctype, "schema"), safe="/~")
        validator = Draft202012Validator({"$ref": ref}, registry=registry)
        errors = sorted(validator.iter_errors(a["body"]), key=lambda e: list(e.absolute_path))
        for e in errors:
            field = "/".join(str(p) for p in e.absolute_path) or "(the body)"
            fail(f"{what}: at {field}: {e.message[:300]}")
        if not errors:
            print(f"ok   {what}")

    print(f"{len(answers)} answers checked, {len(failures)} failures")
    return 1 if failures else 0


if __name__ == "__main__":
    sys.exit(main(sys.argv[1], sys.argv[2]))
