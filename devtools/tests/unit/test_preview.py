"""devtools.preview: the AWS steps of the preview workflow, against moto (SSM), botocore's Stubber, a fake gateway."""

from __future__ import annotations

import json
import re
from collections.abc import Iterator, Mapping
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import boto3  # type: ignore[import-untyped]
import pytest
from botocore.auth import SigV4Auth  # type: ignore[import-untyped]
from botocore.awsrequest import AWSRequest  # type: ignore[import-untyped]
from botocore.credentials import Credentials  # type: ignore[import-untyped]
from botocore.stub import Stubber  # type: ignore[import-untyped]
from moto import mock_aws

from devtools.app_config import SmokeStep, load_app_config
from devtools.preview import (
    PreviewError,
    Response,
    bearer,
    delete_preview,
    main,
    put_database_url,
    region_of,
    sigv4,
    smoke,
    stack_output,
)

API_URL = "https://abc123defg.execute-api.eu-central-1.amazonaws.com/"
CREDENTIALS = Credentials("AKIDEXAMPLE", "wJalrXUtnFEMI/K7MDENG+bPxRfiCYEXAMPLEKEY")
POOLED = "postgresql://app:pw@ep-calm-sun-123456-pooler.eu-central-1.aws.neon.tech/neondb?sslmode=require"


@pytest.fixture
def aws(monkeypatch: pytest.MonkeyPatch) -> Iterator[None]:
    monkeypatch.setenv("AWS_DEFAULT_REGION", "eu-central-1")
    monkeypatch.setenv("AWS_ACCESS_KEY_ID", "testing")
    monkeypatch.setenv("AWS_SECRET_ACCESS_KEY", "testing")
    with mock_aws():
        yield


@pytest.mark.usefixtures("aws")
def test_the_pooled_string_is_stored_as_a_secure_string_and_replaced_on_the_next_push() -> None:
    ssm = boto3.client("ssm")
    put_database_url("/neon-notes/preview/pr-7/database-url", POOLED, ssm)
    put_database_url("/neon-notes/preview/pr-7/database-url", POOLED + "&x=1", ssm)
    parameter = ssm.get_parameter(Name="/neon-notes/preview/pr-7/database-url", WithDecryption=True)["Parameter"]
    assert (parameter["Type"], parameter["Value"], parameter["Version"]) == ("SecureString", POOLED + "&x=1", 2)


def test_an_empty_string_is_refused_before_any_aws_call() -> None:
    with pytest.raises(PreviewError, match="DATABASE_URL is empty"):
        put_database_url("/x", "", ssm=None)


@pytest.mark.usefixtures("aws")
def test_the_url_is_read_from_the_environment_never_from_argv(monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setenv("DATABASE_URL", POOLED)
    assert main(["put-database-url", "/neon-notes/preview/pr-8/database-url"], client=boto3.client) == 0
    stored = boto3.client("ssm").get_parameter(Name="/neon-notes/preview/pr-8/database-url", WithDecryption=True)
    assert stored["Parameter"]["Value"] == POOLED


def _cloudformation() -> Any:
    return boto3.client("cloudformation", region_name="eu-central-1", aws_access_key_id="x", aws_secret_access_key="x")


def test_stack_output_prints_the_named_output(capsys: pytest.CaptureFixture[str]) -> None:
    client = _cloudformation()
    with Stubber(client) as stub:
        stub.add_response(
            "describe_stacks",
            {
                "Stacks": [
                    {
                        "StackName": "neon-notes-pr-7",
                        "CreationTime": "2026-01-01T00:00:00Z",
                        "StackStatus": "CREATE_COMPLETE",
                        "Outputs": [{"OutputKey": "ApiUrl", "OutputValue": API_URL}],
                    }
                ]
            },
            {"StackName": "neon-notes-pr-7"},
        )
        assert main(["stack-output", "neon-notes-pr-7", "ApiUrl", "api_url"], client=lambda _s: client) == 0
    assert capsys.readouterr().out == f"api_url={API_URL}\n"


def test_a_missing_output_names_the_ones_there() -> None:
    client = _cloudformation()
    with Stubber(client) as stub:
        stub.add_response(
            "describe_stacks",
            {
                "Stacks": [
                    {
                        "StackName": "s",
                        "CreationTime": "2026-01-01T00:00:00Z",
                        "StackStatus": "CREATE_COMPLETE",
                        "Outputs": [{"OutputKey": "Other", "OutputValue": "x"}],
                    }
                ]
            },
        )
        with pytest.raises(PreviewError, match="has no output 'ApiUrl'; it has: Other"):
            stack_output("s", "ApiUrl", client)


@pytest.mark.usefixtures("aws")
def test_delete_removes_the_stack_with_the_execution_role_then_the_parameter() -> None:
    ssm = boto3.client("ssm")
    put_database_url("/p", POOLED, ssm)
    client = _cloudformation()
    role = "arn:aws:iam::123456789012:role/neon-notes-cfn-execution"
    with Stubber(client) as stub:
        stub.add_response("delete_stack", {}, {"StackName": "neon-notes-pr-7", "RoleARN": role})
        stub.add_client_error(
            "describe_stacks",
            service_error_code="ValidationError",
            service_message="Stack with id neon-notes-pr-7 does not exist",
        )
        delete_preview("neon-notes-pr-7", "/p", cloudformation=client, ssm=ssm, role_arn=role)
        stub.assert_no_pending_responses()
    assert ssm.describe_parameters()["Parameters"] == []
    # A second clean-up (the PR closed twice) finds nothing and still succeeds.
    with Stubber(client) as stub:
        stub.add_response("delete_stack", {}, {"StackName": "neon-notes-pr-7"})
        stub.add_client_error("describe_stacks", service_error_code="ValidationError", service_message="does not exist")
        delete_preview("neon-notes-pr-7", "/p", cloudformation=client, ssm=ssm, role_arn=None)


def test_region_comes_from_the_execute_api_host() -> None:
    assert region_of(API_URL) == "eu-central-1"


def _signature_is_valid(method: str, url: str, body: bytes | None, headers: Mapping[str, str]) -> bool:
    authorization = headers.get("Authorization", "")
    match = re.fullmatch(
        r"AWS4-HMAC-SHA256 Credential=AKIDEXAMPLE/\d{8}/eu-central-1/execute-api/aws4_request, "
        r"SignedHeaders=([a-z0-9;-]+), Signature=([0-9a-f]{64})",
        authorization,
    )
    if not match:
        return False
    signed = {k: v for k, v in headers.items() if k.lower() in match.group(1).split(";")}
    request = AWSRequest(method=method, url=url, data=body or b"", headers=signed)
    request.context["timestamp"] = headers["X-Amz-Date"]
    signer = SigV4Auth(CREDENTIALS, "execute-api", "eu-central-1")
    expected = signer.signature(signer.string_to_sign(request, signer.canonical_request(request)), request)
    return bool(expected == match.group(2))


SMOKE_STEPS = """
[[smoke]]
method = "POST"
path = "/items"
json = { name = "smoke {run}" }
status = 201
save = { item = "/id" }

[[smoke]]
method = "GET"
path = "/items/{item}"
status = 200
expect = { "/name" = "smoke {run}" }

[[smoke]]
method = "delete"
path = "/items/{item}"
status = 204

[[smoke]]
method = "GET"
path = "/items/{item}"
status = 404
"""


@pytest.fixture
def steps(tmp_path: Path) -> tuple[SmokeStep, ...]:
    """An app's [[smoke]] steps: create an item, read it back, delete it, see it gone."""
    app_toml = tmp_path / "app.toml"
    app_toml.write_text(SMOKE_STEPS, encoding="utf-8")
    return load_app_config(app_toml).smoke


@dataclass
class FakeGateway:
    """An HTTP API with Auth=iam in front of an in-memory items app: verifies SigV4 like API Gateway does."""

    open_api: bool = False
    verify: bool = True
    items: dict[str, dict[str, Any]] = field(default_factory=dict)
    calls: list[tuple[str, str, int]] = field(default_factory=list)
    renames: bool = False

    def __call__(self, method: str, url: str, body: bytes | None, headers: Mapping[str, str]) -> Response:
        response = self._answer(method, url.removeprefix(API_URL.rstrip("/")), body, headers, url)
        self.calls.append((method, url, response.status))
        return response

    def _answer(self, method: str, path: str, body: bytes | None, headers: Mapping[str, str], url: str) -> Response:
        if path == "/health":
            return Response(200, b'{"status":"ok","database":"reachable"}')
        if not self.open_api and not (self.verify and _signature_is_valid(method, url, body, headers)):
            return Response(403, b'{"message":"Forbidden"}')
        if method == "POST" and path == "/items":
            item = {"id": f"i-{len(self.items) + 1}", **json.loads(body or b"{}")}
            self.items[item["id"]] = item
            return Response(201, json.dumps(item).encode())
        item_id = path.removeprefix("/items/")
        if method == "GET" and item_id in self.items:
            found = self.items[item_id]
            return Response(200, json.dumps({**found, "name": "other"} if self.renames else found).encode())
        if method == "DELETE" and item_id in self.items:
            del self.items[item_id]
            return Response(204, b"")
        return Response(404, b'{"error":"not_found"}')


def test_smoke_runs_the_app_steps_with_signed_requests_and_the_saved_id(steps: tuple[SmokeStep, ...]) -> None:
    gateway = FakeGateway()
    checked = smoke(API_URL, authorize=sigv4(CREDENTIALS, "eu-central-1"), steps=steps, send=gateway)
    assert checked[1] == "POST /items without credentials refused (403)"
    assert [status for *_request, status in gateway.calls] == [200, 403, 201, 200, 204, 404]
    # The id the create answered went into the later paths.
    assert [url.removeprefix(API_URL.rstrip("/")) for _, url, _ in gateway.calls[3:]] == ["/items/i-1"] * 3
    assert gateway.items == {}
    assert checked[-1] == "GET /items/{item} answered 404"


def test_smoke_without_steps_checks_health_only_and_says_so() -> None:
    gateway = FakeGateway()
    checked = smoke(API_URL, authorize=sigv4(CREDENTIALS, "eu-central-1"), steps=(), send=gateway)
    assert checked == ["GET /health answered 200 ok", "no [[smoke]] steps in app.toml: GET /health only"]
    assert [(method, status) for method, _url, status in gateway.calls] == [("GET", 200)]


def test_smoke_fails_when_the_api_answers_without_credentials(steps: tuple[SmokeStep, ...]) -> None:
    with pytest.raises(PreviewError, match="the API is open"):
        smoke(API_URL, authorize=sigv4(CREDENTIALS, "eu-central-1"), steps=steps, send=FakeGateway(open_api=True))


def test_smoke_fails_when_signed_requests_are_refused(steps: tuple[SmokeStep, ...]) -> None:
    with pytest.raises(PreviewError, match="POST /items: expected 201, got 403"):
        smoke(API_URL, authorize=bearer("not-sigv4"), steps=steps, send=FakeGateway())


def test_smoke_fails_when_an_answer_differs_from_the_step_expectation(steps: tuple[SmokeStep, ...]) -> None:
    with pytest.raises(PreviewError, match=r"GET /items/i-1: /name is 'other', expected 'smoke [0-9a-f]{12}'"):
        smoke(API_URL, authorize=None, steps=steps, send=FakeGateway(open_api=True, renames=True))


def test_smoke_without_auth_expects_an_open_api(steps: tuple[SmokeStep, ...]) -> None:
    assert len(smoke(API_URL, authorize=None, steps=steps, send=FakeGateway(open_api=True))) == 5


def test_smoke_waits_for_a_waking_database_then_gives_up() -> None:
    answers = iter([Response(503, b""), Response(503, b""), Response(200, b'{"status":"ok"}')])
    waits: list[float] = []
    gateway = FakeGateway(open_api=True)

    def send(method: str, url: str, body: bytes | None, headers: Mapping[str, str]) -> Response:
        if url.endswith("/health"):
            return next(answers, Response(503, b"busy"))
        return gateway(method, url, body, headers)

    smoke(API_URL, authorize=None, send=send, sleep=waits.append)
    assert len(waits) == 2
    with pytest.raises(PreviewError, match="GET /health"):
        smoke(API_URL, authorize=None, send=send, sleep=waits.append)
