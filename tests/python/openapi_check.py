"""Checks a live tinyserve's OpenAPI document with the real validator, openapi-spec-validator.

tests/docs.rs runs it against `tinyserve serve`: the document must be valid OpenAPI 3.1, every
example request must validate against its own schema (JSON Schema 2020-12), every schema must
itself be valid, every operation must list its statuses (no `4XX` ranges: the built-in routes
declare what they answer) with a JSON body for each error, and `servers` must be what the test
expects. Prints one "ok ..." line per
check, "FAIL ..." and exit code 1 on the first failure, else "all checks passed".

usage: openapi_check.py --url http://HOST:PORT[/PREFIX] --server EXPECTED_SERVER_URL
"""

import argparse
import json
import sys
import urllib.request
from importlib.metadata import version

import jsonschema
from openapi_spec_validator import OpenAPIV31SpecValidator, validate


def fail(message):
    print(f"FAIL  {message}")
    sys.exit(1)


def ok(message):
    print(f"ok    {message}")


def operations(doc):
    for path, item in doc["paths"].items():
        for method, op in item.items():
            yield path, method, op


def schemas_of(op):
    """Every (where, schema) of an operation's request body and responses."""
    for media_type, media in op.get("requestBody", {}).get("content", {}).items():
        yield f"request {media_type}", media.get("schema", {})
    for status, response in op.get("responses", {}).items():
        for media_type, media in response.get("content", {}).items():
            yield f"{status} {media_type}", media.get("schema", {})


def main():
    parser = argparse.ArgumentParser()
    parser.add_argument("--url", required=True, help="the server's base URL, with its prefix")
    parser.add_argument("--server", required=True, help="the expected servers[0].url")
    args = parser.parse_args()

    with urllib.request.urlopen(args.url.rstrip("/") + "/openapi.json", timeout=60) as res:
        doc = json.load(res)
    print(f"openapi-spec-validator {version('openapi-spec-validator')}, jsonschema {version('jsonschema')}")

    try:
        validate(doc, cls=OpenAPIV31SpecValidator)
    except Exception as err:  # the validator's error names the failing location
        fail(f"openapi-spec-validator rejects the document: {err}")
    count = sum(1 for _ in operations(doc))
    ok(f"openapi-spec-validator: valid OpenAPI {doc['openapi']} ({len(doc['paths'])} paths, {count} operations)")

    for path, method, op in operations(doc):
        for where, schema in schemas_of(op):
            try:
                jsonschema.Draft202012Validator.check_schema(schema)
            except jsonschema.SchemaError as err:
                fail(f"{method.upper()} {path} {where}: not a valid JSON Schema: {err.message}")
    ok("every request and response schema is a valid JSON Schema 2020-12")

    for path, method, op in operations(doc):
        ranges = [status for status in op.get("responses", {}) if "X" in status.upper()]
        if ranges:
            fail(f"{method.upper()} {path}: answers a status range {ranges}, not its statuses")
        for status, response in op["responses"].items():
            if status != "200" and "application/json" not in response.get("content", {}):
                fail(f"{method.upper()} {path}: {status} has no JSON error body")
    ok("every operation lists each status it answers, every error with its JSON body")

    examples = 0
    for path, method, op in operations(doc):
        media = op.get("requestBody", {}).get("content", {}).get("application/json", {})
        if "example" not in media:
            continue
        # Carry the components along, so that a "$ref": "#/components/..." resolves.
        schema = dict(media["schema"], components=doc.get("components", {}))
        errors = list(jsonschema.Draft202012Validator(schema).iter_errors(media["example"]))
        if errors:
            fail(f"{method.upper()} {path}: the example does not fit its schema: {errors[0].message}")
        examples += 1
        ok(f"{method.upper()} {path}: the example request fits its schema")
    if examples == 0:
        fail("no operation has an example request")

    servers = doc.get("servers", [])
    if servers != [{"url": args.server}]:
        fail(f"servers is {servers}, expected [{{'url': {args.server!r}}}]")
    ok(f"servers is [{{'url': {args.server!r}}}]")
    print("all checks passed")


if __name__ == "__main__":
    main()
