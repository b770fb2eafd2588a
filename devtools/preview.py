"""The AWS steps of the preview and deploy workflows, as commands that run (and are tested) outside GitHub too.

    python -m devtools.preview put-database-url NAME            the value comes from $DATABASE_URL, never argv
    python -m devtools.preview stack-output STACK KEY NAME      prints NAME=<output KEY of STACK> (for $GITHUB_OUTPUT)
    python -m devtools.preview smoke URL [--auth iam|jwt|none]  GET /health, then the steps in app.toml ([[smoke]])
    python -m devtools.preview delete STACK PARAMETER [--role-arn ARN]

AWS credentials and region come from the environment (aws-actions/configure-aws-credentials sets them). With
--auth iam the smoke test signs its requests with SigV4 for execute-api; with --auth jwt it sends the bearer token
in $SMOKE_BEARER_TOKEN. The smoke test's requests after GET /health, their expected answers and the ids that flow
from one to the next are the app's: app.toml's [[smoke]] steps (devtools.app_config); with none it checks GET /health
only. Exit status: 0 done, 1 a check or an AWS call failed, 2 bad usage (app.toml malformed included).
"""

from __future__ import annotations

import argparse
import contextlib
import json
import os
import re
import sys
import time
import urllib.error
import urllib.parse
import urllib.request
import uuid
from collections.abc import Callable, Mapping, Sequence
from dataclasses import dataclass
from typing import Any

from devtools.app_config import AppConfigError, SmokeStep, fill, json_pointer, load_app_config

EXIT_FAILED = 1
EXIT_USAGE = 2
# A preview's Neon compute may be waking up: the first health check may take a few attempts.
HEALTH_ATTEMPTS = 5
HEALTH_RETRY_SECONDS = 3.0
REQUEST_TIMEOUT_SECONDS = 35
_EXECUTE_API_HOST = re.compile(r"^[a-z0-9]+\.execute-api\.([a-z0-9-]+)\.amazonaws\.com$")


class PreviewError(RuntimeError):
    """A preview step failed; the message says which and why (never with a secret)."""


@dataclass(frozen=True)
class Response:
    """What the API answered."""

    status: int
    body: bytes

    def json(self) -> Any:
        return json.loads(self.body or b"null")


# method, url, body, headers -> response; urllib in production, a fake gateway in the tests.
Send = Callable[[str, str, bytes | None, Mapping[str, str]], Response]
# method, url, body, headers -> the headers to send (signed for IAM, a bearer token for JWT).
Authorize = Callable[[str, str, bytes | None, dict[str, str]], dict[str, str]]


def put_database_url(name: str, url: str, ssm: Any) -> None:
    """Store the pooled connection string as an SSM SecureString (AWS managed key), replacing an older value."""
    if not url:
        raise PreviewError("DATABASE_URL is empty: the Neon branch step gave no pooled connection string")
    ssm.put_parameter(Name=name, Value=url, Type="SecureString", Overwrite=True, Tier="Standard")


def stack_output(stack: str, key: str, cloudformation: Any) -> str:
    """The value of one output of a deployed stack."""
    (description,) = cloudformation.describe_stacks(StackName=stack)["Stacks"]
    outputs = {o["OutputKey"]: o["OutputValue"] for o in description.get("Outputs", [])}
    if key not in outputs:
        raise PreviewError(f"stack {stack} has no output {key!r}; it has: {', '.join(sorted(outputs)) or 'none'}")
    return str(outputs[key])


def delete_preview(stack: str, parameter: str, *, cloudformation: Any, ssm: Any, role_arn: str | None) -> None:
    """Delete the stack (waiting until it is gone) and the parameter; both may already be gone."""
    arguments: dict[str, str] = {"StackName": stack}
    if role_arn:
        arguments["RoleARN"] = role_arn
    cloudformation.delete_stack(**arguments)
    cloudformation.get_waiter("stack_delete_complete").wait(
        StackName=stack, WaiterConfig={"Delay": 10, "MaxAttempts": 90}
    )
    with contextlib.suppress(ssm.exceptions.ParameterNotFound):
        ssm.delete_parameter(Name=parameter)


def region_of(api_url: str) -> str:
    """The region in an execute-api URL, else AWS_REGION."""
    host = urllib.parse.urlsplit(api_url).hostname or ""
    match = _EXECUTE_API_HOST.match(host)
    region = match.group(1) if match else os.environ.get("AWS_REGION") or os.environ.get("AWS_DEFAULT_REGION")
    if not region:
        raise PreviewError(f"cannot tell the region of {api_url}; set AWS_REGION")
    return region


def sigv4(credentials: Any, region: str) -> Authorize:
    """Headers signed with SigV4 for execute-api, as an IAM-authorized HTTP API route requires."""
    from botocore.auth import SigV4Auth  # type: ignore[import-untyped]
    from botocore.awsrequest import AWSRequest  # type: ignore[import-untyped]

    def authorize(method: str, url: str, body: bytes | None, headers: dict[str, str]) -> dict[str, str]:
        request = AWSRequest(method=method, url=url, data=body or b"", headers=headers)
        SigV4Auth(credentials, "execute-api", region).add_auth(request)
        return dict(request.headers.items())

    return authorize


def bearer(token: str) -> Authorize:
    """An Authorization: Bearer header, as a JWT-authorized route requires."""

    def authorize(_method: str, _url: str, _body: bytes | None, headers: dict[str, str]) -> dict[str, str]:
        return {**headers, "Authorization": f"Bearer {token}"}

    return authorize


def send_http(method: str, url: str, body: bytes | None, headers: Mapping[str, str]) -> Response:
    """One HTTPS request; an HTTP error status is an answer, not an exception."""
    if not url.startswith("https://") and not url.startswith("http://127.0.0.1"):
        raise PreviewError(f"refusing to send to {url}: the API URL must be https")
    request = urllib.request.Request(url, data=body, method=method, headers=dict(headers))  # noqa: S310 - checked above
    try:
        with urllib.request.urlopen(request, timeout=REQUEST_TIMEOUT_SECONDS) as answer:  # noqa: S310
            return Response(answer.status, answer.read())
    except urllib.error.HTTPError as error:
        return Response(error.code, error.read())


def _unchanged(_method: str, _url: str, _body: bytes | None, headers: dict[str, str]) -> dict[str, str]:
    return headers


def _expect(response: Response, status: int, what: str) -> Response:
    if response.status != status:
        raise PreviewError(f"{what}: expected {status}, got {response.status}: {response.body[:300]!r}")
    return response


def smoke(
    api_url: str,
    *,
    authorize: Authorize | None,
    steps: Sequence[SmokeStep] = (),
    send: Send = send_http,
    sleep: Callable[[float], None] = time.sleep,
) -> list[str]:
    """Check a deployed API end to end: GET /health, then `steps` (app.toml's [[smoke]]); returns what was checked.

    Raises PreviewError at the first failure, AppConfigError when a step names a value no earlier step saved.
    """
    base = api_url.rstrip("/")
    checked: list[str] = []
    for attempt in range(1, HEALTH_ATTEMPTS + 1):
        health = send("GET", f"{base}/health", None, {})
        if health.status == 200 or attempt == HEALTH_ATTEMPTS:
            break
        sleep(HEALTH_RETRY_SECONDS)
    _expect(health, 200, "GET /health (open)")
    if health.json().get("status") != "ok":
        raise PreviewError(f"GET /health answered {health.body[:300]!r}")
    checked.append("GET /health answered 200 ok")
    if not steps:
        checked.append("no [[smoke]] steps in app.toml: GET /health only")
        return checked
    values = {"run": uuid.uuid4().hex[:12]}

    def request(step: SmokeStep) -> tuple[str, bytes | None, dict[str, str]]:
        where = f"app.toml [[smoke]] {step.name}"
        path, payload = fill(step.path, values, where), fill(step.json_body, values, where)
        body = json.dumps(payload).encode() if payload is not None else None
        return f"{base}{path}", body, {"content-type": "application/json"} if body is not None else {}

    authorized: Authorize = _unchanged
    if authorize is not None:
        first = steps[0]
        url, body, headers = request(first)
        unauthorized = send(first.method, url, body, headers)
        if unauthorized.status not in (401, 403):
            raise PreviewError(f"{first.name} without credentials answered {unauthorized.status}: the API is open")
        checked.append(f"{first.name} without credentials refused ({unauthorized.status})")
        authorized = authorize

    for step in steps:
        url, body, headers = request(step)
        what = f"{step.method} {url.removeprefix(base)}"
        answer = _expect(send(step.method, url, body, authorized(step.method, url, body, headers)), step.status, what)
        if step.save or step.expect:
            try:
                document = answer.json()
                for pointer, wanted in step.expect.items():
                    found = json_pointer(document, pointer)
                    expected = fill(wanted, values, f"app.toml [[smoke]] {step.name} expect")
                    if found != expected:
                        raise PreviewError(f"{what}: {pointer} is {found!r}, expected {expected!r}")
                values.update({name: str(json_pointer(document, pointer)) for name, pointer in step.save.items()})
            except (ValueError, LookupError) as error:
                raise PreviewError(f"{what}: the answer is not what the step reads: {error}") from error
        checked.append(f"{step.name} answered {step.status}")
    return checked


def _boto3_client(service: str) -> Any:
    import boto3  # type: ignore[import-untyped]

    return boto3.client(service)


def main(argv: list[str] | None = None, *, client: Callable[[str], Any] = _boto3_client) -> int:
    parser = argparse.ArgumentParser(prog="python -m devtools.preview", description=__doc__.split("\n\n")[0])
    commands = parser.add_subparsers(dest="command", required=True)
    put = commands.add_parser("put-database-url", help="store $DATABASE_URL as an SSM SecureString")
    put.add_argument("name")
    output = commands.add_parser("stack-output", help="print NAME=<output KEY of STACK>")
    output.add_argument("stack")
    output.add_argument("key")
    output.add_argument("name")
    check = commands.add_parser("smoke", help="GET /health, then app.toml's [[smoke]] steps")
    check.add_argument("url")
    check.add_argument("--auth", choices=["iam", "jwt", "none"], default="iam")
    delete = commands.add_parser("delete", help="delete the stack and the parameter")
    delete.add_argument("stack")
    delete.add_argument("parameter")
    delete.add_argument("--role-arn", default=None)
    args = parser.parse_args(argv)
    try:
        if args.command == "put-database-url":
            put_database_url(args.name, os.environ.get("DATABASE_URL", ""), client("ssm"))
            print(f"stored {args.name}", file=sys.stderr)
        elif args.command == "stack-output":
            print(f"{args.name}={stack_output(args.stack, args.key, client('cloudformation'))}")
        elif args.command == "smoke":
            authorize: Authorize | None = None
            if args.auth == "iam":
                import boto3

                credentials = boto3.Session().get_credentials()
                if credentials is None:
                    print("smoke: no AWS credentials in the environment", file=sys.stderr)
                    return EXIT_USAGE
                authorize = sigv4(credentials.get_frozen_credentials(), region_of(args.url))
            elif args.auth == "jwt":
                token = os.environ.get("SMOKE_BEARER_TOKEN", "")
                if not token:
                    print("smoke: --auth jwt needs SMOKE_BEARER_TOKEN", file=sys.stderr)
                    return EXIT_USAGE
                authorize = bearer(token)
            for line in smoke(args.url, authorize=authorize, steps=load_app_config().smoke):
                print(f"smoke ok: {line}", file=sys.stderr)
        else:
            delete_preview(
                args.stack,
                args.parameter,
                cloudformation=client("cloudformation"),
                ssm=client("ssm"),
                role_arn=args.role_arn,
            )
            print(f"deleted {args.stack} and {args.parameter}", file=sys.stderr)
    except PreviewError as error:
        print(f"{args.command} FAILED: {error}", file=sys.stderr)
        return EXIT_FAILED
    except AppConfigError as error:
        print(f"{args.command}: {error}", file=sys.stderr)
        return EXIT_USAGE
    return 0


if __name__ == "__main__":
    sys.exit(main())
