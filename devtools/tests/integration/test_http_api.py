"""`make api` over real HTTP: httpx against the local HTTP API, the functions in awslambdaric environments.

The notes API (the template's ApiFunction) on the test database; and a template made here whose functions hold,
sleep, fail or answer oddly, for what the notes API never does: overlap, time out, exceed 6 MB.
"""

from __future__ import annotations

import base64
import json
import threading
import time
import uuid
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import httpx
import pytest

from devtools.testing.database import DatabaseTarget
from devtools.testing.error_shape import assert_error_shape
from devtools.testing.http_api import ApiServer, running_api


@pytest.fixture
def client(api_server: ApiServer) -> Iterator[httpx.Client]:
    with httpx.Client(base_url=api_server.url, timeout=60) as http:
        yield http


def _create(client: httpx.Client, title: str, **headers: str) -> httpx.Response:
    return client.post("/notes", json={"title": title, "body": "over HTTP"}, headers=headers)


def test_health_answers_through_api_gateways_response_rules(client: httpx.Client, api_server: ApiServer) -> None:
    response = client.get("/health")
    assert response.status_code == 200
    assert response.json() == {"status": "ok", "database": "reachable"}
    assert response.headers["content-type"] == "application/json"
    assert len(response.headers["apigw-requestid"]) == 16
    last = api_server.wait_for_access(1, "/health")[-1]
    assert (last.method, last.target, last.status) == ("GET", "/health", 200)
    assert last.environment.startswith("ApiFunction-")


def test_create_get_delete_a_note(client: httpx.Client) -> None:
    created = _create(client, f"crud {uuid.uuid4()}")
    assert created.status_code == 201
    note = created.json()
    assert created.headers["location"] == f"/notes/{note['id']}"
    fetched = client.get(created.headers["location"])
    assert (fetched.status_code, fetched.json()) == (200, note)
    assert client.delete(f"/notes/{note['id']}").status_code == 204
    gone = client.get(f"/notes/{note['id']}")
    assert gone.status_code == 404
    assert_error_shape(404, gone.json())
    assert gone.json()["error"]["code"] == "note_not_found"


def test_a_retried_create_with_the_same_idempotency_key_replays_the_first_answer(client: httpx.Client) -> None:
    key = f"http-{uuid.uuid4().hex}"
    first = _create(client, "idempotent over HTTP", **{"Idempotency-Key": key})
    replay = _create(client, "idempotent over HTTP", **{"Idempotency-Key": key})
    assert (first.status_code, replay.status_code) == (201, 201)
    assert replay.json() == first.json()
    assert replay.headers["idempotent-replayed"] == "true"
    assert "idempotent-replayed" not in first.headers
    conflict = _create(client, "another title", **{"Idempotency-Key": key})
    assert conflict.status_code == 409
    assert_error_shape(409, conflict.json())


def test_pages_follow_the_cursor_newest_first_without_repeats(client: httpx.Client) -> None:
    ids = [_create(client, f"page {n} {uuid.uuid4()}").json()["id"] for n in range(3)]
    seen: list[str] = []
    cursor = None
    while not set(ids) <= set(seen):
        params = {"limit": "2", **({"cursor": cursor} if cursor else {})}
        page = client.get("/notes", params=params)
        assert page.status_code == 200
        body = page.json()
        assert len(body["items"]) <= 2
        seen += [item["id"] for item in body["items"]]
        cursor = body["next_cursor"]
        assert cursor or set(ids) <= set(seen), "ran out of pages before finding the new notes"
    assert len(seen) == len(set(seen))
    assert [note_id for note_id in seen if note_id in ids] == list(reversed(ids))


@pytest.mark.parametrize(
    ("request_args", "status", "code"),
    [
        ({"method": "POST", "url": "/notes", "json": {"title": ""}}, 422, "validation_error"),
        ({"method": "POST", "url": "/notes", "json": {"title": "x", "extra": 1}}, 422, "validation_error"),
        (
            {
                "method": "POST",
                "url": "/notes",
                "content": b'{"title": ',
                "headers": {"content-type": "application/json"},
            },
            400,
            "invalid_json",
        ),
        # Not valid UTF-8: API Gateway cannot pass it as text, so it arrives base64-encoded.
        (
            {
                "method": "POST",
                "url": "/notes",
                "content": b'{"title": "\xff"}',
                "headers": {"content-type": "application/json"},
            },
            400,
            "invalid_json",
        ),
        # A non-text media type also arrives base64-encoded; the app refuses it by its Content-Type.
        (
            {
                "method": "POST",
                "url": "/notes",
                "content": b"title=x",
                "headers": {"content-type": "application/x-www-form-urlencoded"},
            },
            415,
            "unsupported_media_type",
        ),
        ({"method": "GET", "url": "/notes", "params": {"cursor": "not-a-cursor"}}, 400, "invalid_cursor"),
        ({"method": "GET", "url": "/notes", "params": {"limit": "0"}}, 422, "validation_error"),
        ({"method": "GET", "url": "/notes/not-a-uuid"}, 422, "validation_error"),
        ({"method": "GET", "url": f"/notes/{uuid.UUID(int=0)}"}, 404, "note_not_found"),
        ({"method": "GET", "url": "/no/such/route"}, 404, "not_found"),
        ({"method": "PUT", "url": "/notes"}, 405, "method_not_allowed"),
    ],
)
def test_bad_requests_get_the_one_error_shape(
    client: httpx.Client, request_args: dict[str, Any], status: int, code: str
) -> None:
    response = client.request(**request_args)
    assert response.status_code == status, response.text
    assert_error_shape(status, response.json())
    assert response.json()["error"]["code"] == code
    if status == 405:
        assert response.headers["allow"] == "GET, HEAD, POST"


def test_sequential_requests_reuse_one_warm_environment(client: httpx.Client, api_server: ApiServer) -> None:
    before = len(api_server.access_log())
    for _ in range(3):
        assert client.get("/health").status_code == 200
    lines = api_server.wait_for_access(before + 3)[before:]
    assert all(line.temperature == "warm" for line in lines)
    assert len({line.environment for line in lines}) == 1


# A template of our own: functions that overlap, sleep past their timeout, answer more than 6 MB, fail, or answer
# with what the notes API never sends (no statusCode, cookies, multiValueHeaders, base64 bodies).
TEMPLATE = """\
Transform: AWS::Serverless-2016-10-31
Globals:
  Function:
    Runtime: python3.13
    CodeUri: .
    MemorySize: 128
    Environment:
      Variables:
        DATABASE_URL: postgresql://nobody@localhost:1/none
        HOLD_DIR: {hold_dir}
Resources:
  Api:
    Type: AWS::Serverless::HttpApi
  HoldFunction:
    Type: AWS::Serverless::Function
    Properties:
      Handler: gateway.handler
      Timeout: 30
      ReservedConcurrentExecutions: 3
      Events:
        Hold: { Type: HttpApi, Properties: { ApiId: !Ref Api, Method: GET, Path: "/hold/{round}" } }
        Answer: { Type: HttpApi, Properties: { ApiId: !Ref Api, Method: GET, Path: "/answer/{kind}" } }
        Echo: { Type: HttpApi, Properties: { ApiId: !Ref Api, Method: ANY, Path: "/echo/{proxy+}" } }
  SlowFunction:
    Type: AWS::Serverless::Function
    Properties:
      Handler: gateway.handler
      Timeout: 1
      Events:
        Sleep: { Type: HttpApi, Properties: { ApiId: !Ref Api, Method: GET, Path: /sleep } }
"""

HANDLER = """\
import base64
import json
import os
import time
from pathlib import Path


def handler(event, context):
    path = event["rawPath"]
    if path.startswith("/hold/"):
        hold = Path(os.environ["HOLD_DIR"]) / event["pathParameters"]["round"]
        hold.mkdir(exist_ok=True)
        (hold / context.aws_request_id).touch()
        wanted = int(event["queryStringParameters"]["n"])
        for _ in range(1000):
            if len(list(hold.iterdir())) >= wanted or (hold / "release").exists():
                break
            time.sleep(0.01)
        return {"statusCode": 200, "body": str(os.getpid())}
    if path == "/sleep":
        time.sleep(30)
    kind = event.get("pathParameters", {}).get("kind")
    if kind == "inferred":
        return {"hello": "world"}
    if kind == "string":
        return "plain words"
    if kind == "big":
        return {"statusCode": 200, "body": "x" * (6 * 1024 * 1024)}
    if kind == "fail":
        raise RuntimeError("the function failed")
    if kind == "malformed":
        return {"statusCode": "two hundred"}
    if kind == "rich":
        return {
            "statusCode": 201,
            "headers": {"content-type": "application/octet-stream", "x-single": "one"},
            "multiValueHeaders": {"x-multi": ["a", "b"]},
            "cookies": ["first=1; Path=/", "second=2; HttpOnly"],
            "body": base64.b64encode(bytes(range(256))).decode(),
            "isBase64Encoded": True,
        }
    return {"statusCode": 200, "headers": {"content-type": "application/json"}, "body": json.dumps(event)}
"""


@pytest.fixture(scope="module")
def gateway_root(tmp_path_factory: pytest.TempPathFactory) -> Path:
    """The folder of the template above: its handler module and the hold/ folder the held requests meet in."""
    return tmp_path_factory.mktemp("gateway")


@pytest.fixture(scope="module")
def gateway_api(gateway_root: Path, database: DatabaseTarget) -> Iterator[ApiServer]:
    root = gateway_root
    (root / "hold").mkdir()
    (root / "gateway.py").write_text(HANDLER, encoding="utf-8")
    template = root / "template.yaml"
    template.write_text(TEMPLATE.replace("{hold_dir}", str(root / "hold")), encoding="utf-8")
    with running_api({}, template=template) as server:
        yield server


@pytest.fixture
def gateway(gateway_api: ApiServer) -> Iterator[httpx.Client]:
    with httpx.Client(base_url=gateway_api.url, timeout=60) as http:
        yield http


def test_the_event_is_what_api_gateway_sends(gateway: httpx.Client) -> None:
    response = gateway.post(
        "/echo/a/b%20c?tag=1&tag=2&empty=&q=x%2By",
        content=b"\x00\x01binary",
        headers=[
            ("Content-Type", "application/octet-stream"),
            ("X-Repeated", "one"),
            ("X-Repeated", "two"),
            ("Cookie", "session=abc; theme=dark"),
            ("User-Agent", "tests/1.0"),
        ],
    )
    assert response.status_code == 200
    event = response.json()
    assert event["version"] == "2.0"
    assert event["routeKey"] == "ANY /echo/{proxy+}"
    assert event["rawPath"] == "/echo/a/b%20c"
    assert event["rawQueryString"] == "tag=1&tag=2&empty=&q=x%2By"
    assert event["queryStringParameters"] == {"tag": "1,2", "empty": "", "q": "x+y"}
    assert event["pathParameters"] == {"proxy": "a/b c"}
    assert event["cookies"] == ["session=abc", "theme=dark"]
    headers = event["headers"]
    assert headers["x-repeated"] == "one,two"
    assert "cookie" not in headers
    assert headers["content-type"] == "application/octet-stream"
    assert headers["x-forwarded-for"] == "127.0.0.1"
    assert headers["x-amzn-trace-id"].startswith("Root=1-")
    assert all(name == name.lower() for name in headers)
    assert event["isBase64Encoded"] is True
    assert base64.b64decode(event["body"]) == b"\x00\x01binary"
    context = event["requestContext"]
    assert context["http"] == {
        "method": "POST",
        "path": "/echo/a/b%20c",
        "protocol": "HTTP/1.1",
        "sourceIp": "127.0.0.1",
        "userAgent": "tests/1.0",
    }
    assert (context["routeKey"], context["stage"]) == ("ANY /echo/{proxy+}", "$default")
    assert context["requestId"] == response.headers["apigw-requestid"]
    assert abs(context["timeEpoch"] / 1000 - time.time()) < 60
    text = gateway.post("/echo/x", json={"é": 1}).json()
    assert (text["isBase64Encoded"], json.loads(text["body"])) == (False, {"é": 1})
    bare = gateway.get("/echo/x").json()
    assert "body" not in bare
    assert "queryStringParameters" not in bare
    assert "cookies" not in bare


def test_the_response_rules_of_payload_2_0(gateway: httpx.Client) -> None:
    inferred = gateway.get("/answer/inferred")
    assert (inferred.status_code, inferred.headers["content-type"], inferred.json()) == (
        200,
        "application/json",
        {"hello": "world"},
    )
    assert gateway.get("/answer/string").text == "plain words"
    rich = gateway.get("/answer/rich")
    assert rich.status_code == 201
    assert rich.content == bytes(range(256))
    assert rich.headers["x-single"] == "one"
    assert rich.headers.get_list("x-multi") == ["a", "b"]
    assert rich.headers.get_list("set-cookie") == ["first=1; Path=/", "second=2; HttpOnly"]


@pytest.mark.parametrize(
    ("path", "status", "message"),
    [
        ("/answer/fail", 500, "Internal Server Error"),
        ("/answer/malformed", 500, "Internal Server Error"),
        ("/answer/big", 502, "Internal Server Error"),
        ("/no-route-matches", 404, "Not Found"),
    ],
)
def test_api_gateways_own_answers(gateway: httpx.Client, path: str, status: int, message: str) -> None:
    response = gateway.get(path)
    assert (response.status_code, response.json()) == (status, {"message": message})


def test_a_function_past_its_timeout_answers_503_and_its_environment_is_replaced(
    gateway: httpx.Client, gateway_api: ApiServer
) -> None:
    response = gateway.get("/sleep")
    assert (response.status_code, response.json()) == (503, {"message": "Service Unavailable"})
    assert gateway.get("/sleep").status_code == 503
    first, second = gateway_api.wait_for_access(2, "/sleep")
    assert first.status == 503
    assert (first.temperature, second.temperature) == ("cold", "cold")
    assert second.environment != first.environment


def _concurrently(client: httpx.Client, paths: list[str]) -> list[httpx.Response]:
    responses: list[httpx.Response] = []
    threads = [threading.Thread(target=lambda p=path: responses.append(client.get(p))) for path in paths]
    for thread in threads:
        thread.start()
    for thread in threads:
        thread.join(timeout=60)
    return responses


def test_concurrent_requests_run_in_separate_environments_which_stay_warm(
    gateway: httpx.Client, gateway_api: ApiServer, gateway_root: Path
) -> None:
    # Each request waits until all three have arrived, so they overlap: three environments, all cold.
    first = _concurrently(gateway, ["/hold/r1?n=3"] * 3)
    assert [response.status_code for response in first] == [200] * 3
    assert len({response.text for response in first}) == 3  # three processes
    lines = gateway_api.wait_for_access(3, "/hold/r1")
    assert {line.temperature for line in lines} == {"cold"}
    environments = {line.environment for line in lines}
    assert len(environments) == 3
    # The same three, warm, when three overlap again; a fourth is beyond the reserved concurrency (3).
    second = _concurrently(gateway, ["/hold/r2?n=3"] * 3)
    assert {response.text for response in second} == {response.text for response in first}
    again = gateway_api.wait_for_access(3, "/hold/r2")
    assert {line.temperature for line in again} == {"warm"}
    assert {line.environment for line in again} == environments
    held: list[httpx.Response] = []
    holders = threading.Thread(target=lambda: held.extend(_concurrently(gateway, ["/hold/r3?n=99"] * 3)))
    holders.start()
    round_three = gateway_root / "hold" / "r3"
    deadline = time.monotonic() + 30
    while not (round_three.is_dir() and len(list(round_three.iterdir())) == 3):
        assert time.monotonic() < deadline, "the three held requests never arrived"
        time.sleep(0.02)
    throttled = gateway.get("/hold/r3?n=99")
    (round_three / "release").touch()
    holders.join(timeout=60)
    assert (throttled.status_code, throttled.json()) == (429, {"message": "Too Many Requests"})
    assert [response.status_code for response in held] == [200] * 3
