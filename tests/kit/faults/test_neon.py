"""Neon's refusals and scale to zero, played by the local Neon stand-in, through the real API handler.

Each scenario sets the stand-in (devtools/neon_standin.py) at run time, invokes handlers.api.handler with a file from
events/ and a Lambda context, and checks the answer, the time it took, how many connection attempts reached the
stand-in, and what the logs say.
"""

from __future__ import annotations

import json
import time
from collections.abc import Iterator
from dataclasses import dataclass
from typing import Any
from urllib.parse import quote

import pytest
from sqlalchemy import Engine

from devtools.events import load_event
from devtools.neon_standin import StandinControl
from devtools.testing.database import DatabaseTarget
from devtools.testing.lambda_runtime import FakeLambdaContext, configure_serverless, reset_database_state
from devtools.testing.logs import JsonLines, captured_logs
from devtools.testing.secrets import assert_no_secret, secrets_manager
from handlers.api import handler
from tests.kit.faults.traffic import Client, rows_by_key

pytestmark = pytest.mark.neon_standin

WRONG_PASSWORD = "not-the-password-0123456789"
DEADLINE_MS = 10_000


@dataclass(frozen=True)
class Answer:
    status: int
    headers: dict[str, str]
    error_code: str | None
    elapsed_s: float
    attempts: int  # connection attempts that reached the stand-in (startup messages)
    logs: JsonLines
    raw: dict[str, Any]

    def messages(self, text: str) -> list[dict[str, Any]]:
        return [line for line in self.logs.records if line.get("message") == text]


@pytest.fixture
def neon_app(
    database: DatabaseTarget, standin: StandinControl, monkeypatch: pytest.MonkeyPatch, schema: None
) -> Iterator[StandinControl]:
    """The app in serverless mode on the stand-in's pooled URL, as on Neon."""
    configure_serverless(monkeypatch, pooled_url=database.pooled_url, pooler_hosts=database.pooler_hosts)
    yield standin
    reset_database_state()


def _attempts(standin: StandinControl) -> int:
    return int(standin.status()["counters"]["startups"])


def _invoke(standin: StandinControl, event: dict[str, Any], *, timeout_ms: int = DEADLINE_MS) -> Answer:
    before = _attempts(standin)
    with captured_logs() as logs:
        started = time.monotonic()
        response = handler(event, FakeLambdaContext(timeout_ms=timeout_ms))
        elapsed = time.monotonic() - started
    body = json.loads(response.get("body") or "null")
    error = body.get("error") if isinstance(body, dict) else None
    return Answer(
        status=response["statusCode"],
        headers={name.lower(): value for name, value in (response.get("headers") or {}).items()},
        error_code=error.get("code") if isinstance(error, dict) else None,
        elapsed_s=elapsed,
        attempts=_attempts(standin) - before,
        logs=logs,
        raw=response,
    )


def _health() -> dict[str, Any]:
    return load_event("api-01-health")


def _with_password(url: str, old: str, new: str) -> str:
    return url.replace(f":{quote(old, safe='')}@", f":{quote(new, safe='')}@")


def _use_secret(monkeypatch: pytest.MonkeyPatch, arn: str, database: DatabaseTarget) -> None:
    monkeypatch.delenv("DATABASE_URL", raising=False)
    monkeypatch.setenv("DATABASE_SECRET_ARN", arn)
    monkeypatch.setenv("DB_MODE", "serverless")
    monkeypatch.setenv("DB_POOLER_HOSTS", database.pooler_hosts)
    reset_database_state()


# --- refused login: re-read the secret once, then 500 misconfigured ------------------------------------------


def test_a_wrong_password_in_the_secret_is_500_misconfigured_after_one_re_read(
    database: DatabaseTarget, standin: StandinControl, monkeypatch: pytest.MonkeyPatch, schema: None
) -> None:
    wrong = _with_password(database.pooled_url, database.password, WRONG_PASSWORD)
    with secrets_manager() as secrets:
        arn = secrets.create_secret(Name="neon-standin-wrong-password", SecretString=wrong)["ARN"]
        _use_secret(monkeypatch, arn, database)
        try:
            answer = _invoke(standin, _health())
        finally:
            reset_database_state()
    assert (answer.status, answer.error_code) == (500, "misconfigured")
    assert answer.elapsed_s < 2.0
    # The first attempt, then one more with the secret read again (still wrong): no retries until the deadline.
    assert answer.attempts == 2
    assert len(answer.messages("database login refused; re-read the secret")) == 1
    [fix] = answer.messages("configuration error")
    assert "password authentication failed for user 'neondb_owner'" in fix["fix"]
    assert "password in DATABASE_URL" in fix["fix"]
    for secret in (database.password, WRONG_PASSWORD):
        assert_no_secret(secret, *answer.logs.lines, answer.raw)


def test_a_rotated_password_is_picked_up_by_re_reading_the_secret(
    database: DatabaseTarget, standin: StandinControl, monkeypatch: pytest.MonkeyPatch, schema: None
) -> None:
    # The stand-in refuses the first attempt as Neon does for a password rotated away; the secret has the new one.
    with secrets_manager() as secrets:
        arn = secrets.create_secret(Name="neon-standin-rotated", SecretString=database.pooled_url)["ARN"]
        _use_secret(monkeypatch, arn, database)
        standin.refuse("wrong_password")
        try:
            answer = _invoke(standin, _health())
        finally:
            reset_database_state()
    assert answer.status == 200
    assert answer.attempts == 2
    assert len(answer.messages("database login refused; re-read the secret")) == 1


# --- provider refusals: fast, not retried, their own code, the console action in the log -------------------


@pytest.mark.parametrize(
    ("refusal", "reason", "action"),
    [("endpoint_disabled", "endpoint disabled", "enable the endpoint"), ("quota_exceeded", "quota exceeded", "plan")],
)
def test_a_provider_refusal_is_a_fast_503_with_its_own_code_and_the_console_action(
    neon_app: StandinControl, refusal: str, reason: str, action: str
) -> None:
    neon_app.refuse(refusal, times=None)
    answer = _invoke(neon_app, _health())
    assert (answer.status, answer.error_code) == (503, "database_provider_refused")
    assert answer.headers["retry-after"] == "60"
    assert answer.attempts == 1, "a provider refusal is not retried within the invocation"
    assert answer.elapsed_s < 2.0
    [logged] = answer.messages("database provider refused the connection")
    assert logged["level"] == "ERROR"
    assert logged["reason"] == reason
    assert "Neon console" in logged["action"]
    assert action in logged["action"]
    assert not answer.messages("database connect attempt failed")


# --- transient refusals: retried with backoff within the remaining time ------------------------------------


@pytest.mark.parametrize("refusal", ["compute_unreachable", "too_many_connections"])
def test_a_transient_refusal_twice_then_success_is_200(neon_app: StandinControl, refusal: str) -> None:
    neon_app.refuse(refusal, times=2)
    answer = _invoke(neon_app, _health())
    assert answer.status == 200
    assert answer.attempts == 3
    failed = answer.messages("database connect attempt failed")
    assert [line["sqlstate"] for line in failed] == ["XX000", "XX000"]
    assert all(line["retry_in_ms"] is not None for line in failed)
    [summary] = [line["pool_summary"] for line in answer.logs.with_key("pool_summary")]
    assert summary["connect_retries"] == 2


# --- scale to zero -----------------------------------------------------------------------------------------


def _wait_until_suspended(standin: StandinControl, budget_s: float = 5.0) -> None:
    deadline = time.monotonic() + budget_s
    while not standin.status()["suspended"]:
        assert time.monotonic() < deadline, "the stand-in did not suspend"
        time.sleep(0.05)


@pytest.mark.parametrize("idle_ping_seconds", ["60", "0.1"], ids=["no-idle-ping-due", "idle-ping-due"])
def test_a_suspend_while_warm_is_transparent_and_loses_no_acknowledged_write(
    neon_app: StandinControl,
    direct: Engine,
    monkeypatch: pytest.MonkeyPatch,
    idle_ping_seconds: str,
) -> None:
    monkeypatch.setenv("DB_IDLE_PING_SECONDS", idle_ping_seconds)
    reset_database_state()
    client = Client(label=f"neon suspend {idle_ping_seconds}")
    client.step(give_up_at=time.monotonic())  # warm: the environment holds a pooled connection
    neon_app.configure(suspend_after=0.3, wake_delay=0.3)
    _wait_until_suspended(neon_app)
    neon_app.configure(suspend_after=None)
    with captured_logs() as logs:
        client.step(give_up_at=time.monotonic())  # no client retry allowed: it must work at once
        client.health()
    assert client.problems == []
    assert [outcome.status for outcome in client.outcomes] == [201, 200, 201, 200, 200]
    status = neon_app.status()
    assert status["counters"]["terminated"] >= 1
    assert status["counters"]["wakes"] >= 1
    stored = rows_by_key(direct, client.attempted)
    for key, (title, note_id) in client.acknowledged.items():
        assert stored[key] == [(title, note_id)], f"acknowledged write {key} is missing or doubled"
    messages = [line.get("message") for line in logs.records]
    # The suspend's parting message (57P01) or EOF waits on the idle pooled connection: the checkout sees it and
    # connects anew before anything is sent, so there is neither a failed unit to re-run nor an idle ping to pay.
    assert "transaction failed on a dead connection" not in messages
    assert "invalidate" in [line["pool_event"] for line in logs.with_key("pool_event")]
    assert next(line["pool_summary"]["idle_pings"] for line in logs.with_key("pool_summary")) == 0


@pytest.mark.parametrize(
    ("wake_delay", "expected"),
    [(2.0, 200), (4.0, 503)],
    ids=["wake-fits-the-deadline", "wake-outlasts-the-deadline"],
)
def test_a_slow_wake_is_answered_before_a_3_s_deadline(
    neon_app: StandinControl, wake_delay: float, expected: int
) -> None:
    neon_app.configure(wake_delay=wake_delay)
    neon_app.suspend()
    started = time.monotonic()
    answer = _invoke(neon_app, _health(), timeout_ms=3_000)
    assert answer.elapsed_s < 3.0
    assert answer.status == expected
    if expected == 503:
        assert answer.error_code == "database_unavailable"
        assert answer.headers["retry-after"] == "1"
        # The compute keeps starting after the client gave up; once it is up the next invocation is served.
        time.sleep(max(0.0, wake_delay - (time.monotonic() - started)) + 0.2)
        assert _invoke(neon_app, _health(), timeout_ms=3_000).status == 200
