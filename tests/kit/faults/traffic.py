"""Requests flowing through handlers.api.handler as API Gateway and a well-behaved client would send them."""

from __future__ import annotations

import json
import threading
import time
import uuid
from collections.abc import Callable
from dataclasses import dataclass, field
from typing import Any

from sqlalchemy import Engine, text

from devtools.events import load_event, with_header, with_json_body, with_path_parameter
from devtools.testing.lambda_runtime import FakeLambdaContext
from handlers.api import handler

# A realistic API function timeout; every invocation must end before it (plus scheduling slack on 2 cores).
TIMEOUT_MS = 10_000
DEADLINE_SLACK_S = 1.0
# A real client waits Retry-After (1 s); a shorter pause keeps the scenarios short without changing what they show.
CLIENT_RETRY_PAUSE_S = 0.1
ERROR_KEYS = {"code", "message", "details"}


@dataclass(frozen=True)
class Outcome:
    """One invocation as the client saw it."""

    route: str
    status: int
    elapsed_s: float
    headers: dict[str, str]
    body: Any
    raw: str


@dataclass
class Client:
    """One client of one execution environment: sequential requests, idempotent writes retried on 503."""

    label: str
    timeout_ms: int = TIMEOUT_MS
    outcomes: list[Outcome] = field(default_factory=list)
    # Idempotency-Key → (title, note id) for every write answered 201.
    acknowledged: dict[str, tuple[str, str]] = field(default_factory=dict)
    attempted: set[str] = field(default_factory=set)
    client_retries: int = 0
    problems: list[str] = field(default_factory=list)

    def invoke(self, route: str, event: dict[str, Any]) -> Outcome:
        context = FakeLambdaContext(timeout_ms=self.timeout_ms)
        started = time.monotonic()
        response = handler(event, context)
        elapsed = time.monotonic() - started
        raw = response.get("body") or ""
        body = json.loads(raw) if raw else None
        headers = {name.lower(): value for name, value in (response.get("headers") or {}).items()}
        outcome = Outcome(route, response["statusCode"], elapsed, headers, body, raw)
        self.outcomes.append(outcome)
        self._check(outcome)
        return outcome

    def _check(self, outcome: Outcome) -> None:
        if outcome.elapsed_s > self.timeout_ms / 1000 + DEADLINE_SLACK_S:
            self.problems.append(f"{outcome.route} took {outcome.elapsed_s:.2f}s, past the deadline")
        if outcome.status == 503:
            retry_after = outcome.headers.get("retry-after", "")
            if not retry_after.isdigit() or int(retry_after) < 1:
                self.problems.append(f"{outcome.route} 503 without a usable Retry-After: {outcome.headers}")
            error = outcome.body.get("error") if isinstance(outcome.body, dict) else None
            if set(outcome.body or {}) != {"error"} or not isinstance(error, dict) or set(error) != ERROR_KEYS:
                self.problems.append(f"{outcome.route} 503 not in the error shape: {outcome.raw[:200]}")
            elif error["code"] not in {"database_unavailable", "database_busy", "commit_outcome_unknown"}:
                self.problems.append(f"{outcome.route} 503 with code {error['code']}")
        elif outcome.status >= 300:
            self.problems.append(f"{outcome.route} answered {outcome.status}: {outcome.raw[:300]}")

    def health(self) -> Outcome:
        return self.invoke("GET /health", load_event("api-01-health"))

    def write(self, *, give_up_at: float) -> str | None:
        """Create one note with an Idempotency-Key, retrying on 503 like a client; the note id once acknowledged."""
        key = str(uuid.uuid4())
        title = f"{self.label} {key[:8]}"
        self.attempted.add(key)
        event = with_header(with_json_body(load_event("api-02-create-note"), {"title": title}), "Idempotency-Key", key)
        while True:
            outcome = self.invoke("POST /notes", json.loads(json.dumps(event)))
            if outcome.status == 201:
                if outcome.body.get("title") != title:
                    self.problems.append(f"create answered someone else's note: {outcome.body} for {title}")
                self.acknowledged[key] = (title, outcome.body["id"])
                return str(outcome.body["id"])
            if outcome.status != 503 or time.monotonic() > give_up_at:
                return None
            self.client_retries += 1
            time.sleep(CLIENT_RETRY_PAUSE_S)

    def read(self, note_id: str) -> Outcome:
        """GET one note; a 200 must be exactly the note written."""
        outcome = self.invoke(
            "GET /notes/{id}", with_path_parameter(load_event("api-10-get-note-unknown-id"), "id", note_id)
        )
        if outcome.status == 200:
            expected = next((title for title, nid in self.acknowledged.values() if nid == note_id), None)
            if outcome.body.get("id") != note_id or outcome.body.get("title") != expected:
                self.problems.append(f"read of {note_id} returned {outcome.body}")
        return outcome

    def step(self, *, give_up_at: float) -> None:
        """One write and, when acknowledged, one read of it."""
        note_id = self.write(give_up_at=give_up_at)
        if note_id is not None:
            self.read(note_id)

    def statuses(self) -> dict[int, int]:
        counts: dict[int, int] = {}
        for outcome in self.outcomes:
            counts[outcome.status] = counts.get(outcome.status, 0) + 1
        return counts

    def max_elapsed(self) -> float:
        return max(outcome.elapsed_s for outcome in self.outcomes)


def run_with_fault(client: Client, fault: Callable[[], None], *, min_steps: int = 3, budget_s: float = 60.0) -> None:
    """Keep requests flowing while `fault` runs on another thread; stop once it returned and min_steps are done."""
    failure: list[BaseException] = []

    def run_fault() -> None:
        try:
            fault()
        except BaseException as error:  # noqa: BLE001 - reported on the test's thread below
            failure.append(error)

    thread = threading.Thread(target=run_fault, name="fault", daemon=True)
    stop_at = time.monotonic() + budget_s
    thread.start()
    steps = 0
    while (thread.is_alive() or steps < min_steps) and time.monotonic() < stop_at:
        client.step(give_up_at=stop_at)
        steps += 1
    thread.join(timeout=max(0.0, stop_at - time.monotonic()))
    assert not thread.is_alive(), "the fault did not end within the scenario budget"
    if failure:
        raise failure[0]


def rows_by_key(direct: Engine, keys: set[str]) -> dict[str, list[tuple[str, str]]]:
    """For each Idempotency-Key, every (title, id) row in the database (over the direct URL)."""
    found: dict[str, list[tuple[str, str]]] = {key: [] for key in keys}
    with direct.connect() as connection:
        rows = connection.execute(
            # Every note with the title its key's request sent (titles are unique per write): a doubled write shows.
            text(
                "SELECT k.key, n.title, n.id::text FROM idempotency_keys k JOIN notes n ON n.title = k.title "
                "WHERE k.key = ANY(:keys)"
            ),
            {"keys": list(keys)},
        )
        for key, title, note_id in rows:
            found[key].append((title, note_id))
    return found
