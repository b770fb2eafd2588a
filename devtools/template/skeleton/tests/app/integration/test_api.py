"""handlers.api.handler with the app's events against the local stack (make test starts it)."""

from __future__ import annotations

import json
from collections.abc import Iterator
from typing import Any

import pytest

from devtools.app_config import load_app_config
from devtools.events import event_names, load_event
from devtools.testing.database import DatabaseTarget
from devtools.testing.lambda_runtime import FakeLambdaContext, configure_serverless, reset_database_state
from handlers.api import handler

# What each event in events/ answers: app.toml's [events] (a new event file needs its line there), which `make demo`
# and the tooling's tests hold the API to too.
EXPECTED_STATUS = {
    name: expected.status
    for name, expected in load_app_config().events.items()
    if name.startswith("api-") and expected.status is not None
}


@pytest.fixture
def serverless(monkeypatch: pytest.MonkeyPatch, database: DatabaseTarget, schema: None) -> Iterator[None]:
    configure_serverless(monkeypatch, pooled_url=database.pooled_url, pooler_hosts=database.pooler_hosts)
    yield
    reset_database_state()


def invoke(event: dict[str, Any]) -> tuple[int, dict[str, str], Any]:
    response = handler(event, FakeLambdaContext())
    return response["statusCode"], response["headers"], json.loads(response["body"])


@pytest.mark.usefixtures("serverless")
def test_every_event_answers_as_documented() -> None:
    assert set(EXPECTED_STATUS) == set(event_names("api-")), "add the new event file's status to app.toml [events]"
    for name in event_names("api-"):
        status, headers, body = invoke(load_event(name))
        assert status == EXPECTED_STATUS[name], (name, body)
        assert headers["content-type"] == "application/json"


@pytest.mark.usefixtures("serverless")
def test_health_reports_the_database_reachable() -> None:
    status, _, body = invoke(load_event("api-01-health"))
    assert (status, body) == (200, {"status": "ok", "database": "reachable"})
