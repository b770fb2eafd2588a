"""Each notes route is one round trip to the database when warm, and a new execution environment's first is six."""

from __future__ import annotations

import json
import uuid
from collections.abc import Iterator
from typing import Any

import pytest

from devtools.events import load_event, with_header, with_json_body, with_path_parameter
from devtools.proxy import Proxy
from devtools.testing.database import DatabaseTarget
from devtools.testing.lambda_runtime import FakeLambdaContext
from devtools.testing.proxied import flights, proxied_app
from handlers.api import handler


@pytest.fixture
def counted(database: DatabaseTarget, schema: None, monkeypatch: pytest.MonkeyPatch) -> Iterator[Proxy]:
    with proxied_app(database.pooled_url, monkeypatch) as proxy:
        yield proxy


def _api(event: dict[str, Any], status: int) -> dict[str, Any]:
    response = handler(event, FakeLambdaContext())
    assert response["statusCode"] == status, response.get("body")
    body: dict[str, Any] = json.loads(response["body"]) if response.get("body") else {}
    return body


@pytest.mark.pipelined_driver
def test_round_trips_of_each_route_warm_and_of_a_first_request(counted: Proxy) -> None:
    def create(key: str | None = None) -> dict[str, Any]:
        event = with_json_body(load_event("api-02-create-note"), {"title": f"round trips {uuid.uuid4()}"})
        return _api(with_header(event, "Idempotency-Key", key) if key else event, 201)

    # A new execution environment: connect (5) and the statement with BEGIN-free limits (1).
    assert flights(counted, lambda: _api(load_event("api-10-get-note-unknown-id"), 404)) == 6
    note = create()
    routes = {
        "GET /notes/{id}": lambda: _api(
            with_path_parameter(load_event("api-10-get-note-unknown-id"), "id", note["id"]), 200
        ),
        "GET /notes/{id} 404": lambda: _api(load_event("api-10-get-note-unknown-id"), 404),
        "POST /notes": create,
        "POST /notes with a key": lambda: create(str(uuid.uuid4())),
        "GET /notes": lambda: _api(load_event("api-07-list-notes"), 200),
        "GET /health": lambda: _api(load_event("api-01-health"), 200),
        "DELETE /notes/{id}": lambda: _api(
            with_path_parameter(load_event("api-12-delete-note-unknown-id"), "id", note["id"]), 204
        ),
    }
    assert {route: flights(counted, action) for route, action in routes.items()} == dict.fromkeys(routes, 1)
