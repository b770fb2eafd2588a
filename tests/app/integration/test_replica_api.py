"""The sample API with a read replica: which server serves each route, Read-After, requests while the replica fails.

Requests go through handlers.api.handler with the events/ files, in serverless mode with the stack's hot standby as
DATABASE_READ_URL. Which server served a request is what its invocation's pool events say: each engine tags its
own (``"role": "replica"`` or ``"primary"``), and the replica pool's connection is on a server in recovery
(``pg_is_in_recovery()``, checked here once; tests/kit/integration/test_replica.py checks the kit unit by unit).
"""

from __future__ import annotations

import json
import os
import time
import uuid
from collections.abc import Callable, Iterator
from dataclasses import dataclass
from typing import Any

import pytest
from sqlalchemy import Engine, text

from devtools.demo import served_by
from devtools.events import load_event, with_header, with_json_body, with_path_parameter, with_query
from devtools.local_lambda import LocalLambda
from devtools.neon_standin import StandinControl
from devtools.proxy import Proxy
from devtools.testing import figures
from devtools.testing.database import DatabaseTarget
from devtools.testing.lambda_runtime import FakeLambdaContext, reset_database_state
from devtools.testing.logs import captured_logs
from devtools.testing.replica import (
    FALLBACK,
    configure_replica,
    end_replica_faults,
    replay_paused,
    replica_faults,
    wait_replayed,
)
from devtools.testing.secrets import assert_no_secret
from devtools.testing.urls import connect_address, pooler_entry, with_port
from handlers.api import handler
from lib.dbkit import engine as db
from lib.dbkit.replica import parse_lsn

NOT_REPLAYED = "replica has not replayed the commit the read must see"
STOCK = os.environ.get("DB_DRIVER") == "stock"


@dataclass(frozen=True)
class Answer:
    """One invocation as the client saw it, and which pools its units used."""

    status: int
    headers: dict[str, str]
    body: Any
    # Roles of the pools a connection was checked out of (a fallback checks out of both).
    pools: frozenset[str]
    fallbacks: tuple[str, ...]
    log_lines: tuple[str, ...]

    @property
    def server(self) -> str:
        """The server whose answer the client got: the replica, the primary, or none (refused before any SQL)."""
        if not self.pools:
            return "none"
        if self.fallbacks or self.pools == {"primary"}:
            return "primary"
        assert self.pools == {"replica"}, self.pools
        return "replica"

    @property
    def read_after(self) -> str:
        return self.headers["read-after"]

    def ids(self) -> list[str]:
        return [item["id"] for item in self.body["items"]]


def call(event: dict[str, Any], timeout_ms: int = 10_000) -> Answer:
    with captured_logs() as logs:
        response = handler(event, FakeLambdaContext(timeout_ms=timeout_ms))
    pools = frozenset(line["role"] for line in logs.with_key("pool_event") if line["pool_event"] == "checkout")
    fallbacks = tuple(line["reason"] for line in logs.records if line.get("message") == FALLBACK)
    headers = {name.lower(): value for name, value in (response.get("headers") or {}).items()}
    body = json.loads(response["body"]) if response.get("body") else None
    return Answer(response["statusCode"], headers, body, pools, fallbacks, tuple(logs.lines))


def create(title: str, *, key: str | None = None) -> Answer:
    event = with_json_body(load_event("api-02-create-note"), {"title": title})
    return call(with_header(event, "Idempotency-Key", key) if key else event)


def get(note_id: str, *, read_after: str | None = None, method: str = "GET") -> Answer:
    event = with_path_parameter(load_event("api-10-get-note-unknown-id"), "id", note_id)
    event["requestContext"]["http"]["method"] = method
    return call(with_header(event, "Read-After", read_after) if read_after is not None else event)


def page(*, read_after: str | None = None) -> Answer:
    event = with_query(load_event("api-07-list-notes"), limit="100")
    return call(with_header(event, "Read-After", read_after) if read_after is not None else event)


def delete(note_id: str) -> Answer:
    return call(with_path_parameter(load_event("api-12-delete-note-unknown-id"), "id", note_id))


def unique(label: str) -> str:
    return f"{label} {uuid.uuid4().hex[:12]}"


@pytest.fixture
def replica_app(replica_app: Callable[..., None], schema: None) -> Callable[..., None]:
    """The plugin's replica_app, on the migrated schema."""
    return replica_app


# --- which server serves each route -------------------------------------------------------------------------------


def test_reads_run_on_the_replica_and_writes_and_idempotency_keys_on_the_primary(
    replica_app: Callable[..., None], standby: Engine, database: DatabaseTarget
) -> None:
    created = create(unique("replica routes"))
    assert (created.status, created.server) == (201, "primary")
    token = created.read_after
    assert parse_lsn(token) == token  # a WAL position exactly as Postgres prints it
    note_id = created.body["id"]
    key, title = str(uuid.uuid4()), unique("replica keyed")
    keyed, replayed = create(title, key=key), create(title, key=key)
    assert (keyed.status, keyed.server, replayed.status, replayed.server) == (201, "primary", 201, "primary")
    assert replayed.headers["idempotent-replayed"] == "true"
    assert replayed.body == keyed.body
    wait_replayed(standby, replayed.read_after)

    listed = page()
    assert (listed.status, listed.server) == (200, "replica")
    assert {note_id, keyed.body["id"]} <= set(listed.ids())
    fetched = get(note_id)
    assert (fetched.status, fetched.server, fetched.body["title"]) == (200, "replica", created.body["title"])
    head = get(note_id, method="HEAD")
    assert (head.status, head.server) == (200, "replica")
    with_token = get(note_id, read_after=token)
    assert (with_token.status, with_token.server, with_token.fallbacks) == (200, "replica", ())
    assert "read-after" not in fetched.headers  # only writes answer one
    unknown = get(str(uuid.uuid4()))
    assert (unknown.status, unknown.server) == (404, "replica")

    deleted = delete(note_id)
    assert (deleted.status, deleted.server) == (204, "primary")
    assert parse_lsn(deleted.read_after) == deleted.read_after
    # The replica's pool is on the hot standby, the primary's is not.
    who = text("select pg_is_in_recovery()")
    assert db.run_in_transaction(lambda c: c.execute(who).scalar_one(), read_only=True, single_statement=True)
    assert not db.run_in_transaction(lambda c: c.execute(who).scalar_one(), single_statement=True)
    every_line = [line for answer in (created, keyed, listed, fetched, deleted) for line in answer.log_lines]
    assert_no_secret(database.password, *every_line)


def test_make_demo_and_make_api_give_the_api_the_replica_and_say_who_served(
    database: DatabaseTarget, replica_url: str, schema: None
) -> None:
    # The local Lambda as `make demo` and `make api` run it (awslambdaric, template.yaml's environment), with the
    # variables .stack/env exports.
    environ = {
        "DATABASE_URL": database.pooled_url,
        "DB_POOLER_HOSTS": database.pooler_hosts,
        "DATABASE_READ_URL": replica_url,
    }
    with LocalLambda(environ=environ, parameters={"LogLevel": "DEBUG"}) as runtime:
        assert runtime.database("ApiFunction").endswith("read-only units on the read replica from DATABASE_READ_URL")
        assert runtime.database("PurgeFunction").endswith("no read replica")
        listed = runtime.invoke("ApiFunction", load_event("api-07-list-notes"))
        created = runtime.invoke("ApiFunction", with_json_body(load_event("api-02-create-note"), {"title": "demo"}))
    assert (listed.status_code, served_by(listed)) == (200, "replica")
    checkouts = [line for line in listed.logs.splitlines() if '"pool_event":"checkout"' in line]
    assert checkouts
    assert all('"role":"replica"' in line for line in checkouts)
    assert (created.status_code, served_by(created)) == (201, "primary")
    assert isinstance(created.response, dict)
    assert parse_lsn(created.response["headers"]["read-after"]) == created.response["headers"]["read-after"]
    assert_no_secret(database.password, listed.logs, created.logs)


def test_a_malformed_read_after_is_400_before_either_database_is_used(replica_app: Callable[..., None]) -> None:
    answers = [
        call(load_event("api-19-list-notes-malformed-read-after")),
        page(read_after="0/1; select 1"),
        get(str(uuid.uuid4()), read_after="16/B374D848/0"),
        get(str(uuid.uuid4()), read_after="", method="HEAD"),
    ]
    assert [(answer.status, answer.server) for answer in answers] == [(400, "none")] * 4
    for answer in answers[:3]:
        assert answer.body["error"]["code"] == "invalid_read_after"
        assert "send back a write's Read-After value unchanged" in answer.body["error"]["message"]
        assert [detail["field"] for detail in answer.body["error"]["details"]] == ["Read-After"]


# --- read-your-writes and bounded staleness, with the standby's replay paused ----------------------------------------


@pytest.mark.local_stack
def test_a_client_sees_its_own_writes_with_read_after_while_the_replica_lags(
    replica_app: Callable[..., None], standby: Engine
) -> None:
    with replay_paused():
        created = create(unique("read your writes"))
        note_id, token = created.body["id"], created.read_after
        # Without the token the replica answers, without the write; with it, the primary does.
        stale = get(note_id)
        assert (stale.status, stale.server) == (404, "replica")
        fresh = get(note_id, read_after=token)
        assert (fresh.status, fresh.server, fresh.fallbacks) == (200, "primary", (NOT_REPLAYED,))
        assert note_id not in page().ids()
        listed = page(read_after=token)
        assert (listed.server, listed.fallbacks) == ("primary", (NOT_REPLAYED,))
        assert note_id in listed.ids()
    wait_replayed(standby, token)
    caught_up = get(note_id, read_after=token)
    assert (caught_up.status, caught_up.server, caught_up.fallbacks) == (200, "replica", ())

    with replay_paused():
        deleted = delete(note_id)
        gone = deleted.read_after
        # The replica still has the note; the client that deleted it, carrying the token, does not see it.
        still_there = get(note_id)
        assert (still_there.status, still_there.server) == (200, "replica")
        after_delete = get(note_id, read_after=gone)
        assert (after_delete.status, after_delete.server) == (404, "primary")
    wait_replayed(standby, gone)
    replayed_delete = get(note_id, read_after=gone)
    assert (replayed_delete.status, replayed_delete.server, replayed_delete.fallbacks) == (404, "replica", ())


@pytest.mark.local_stack
def test_get_by_id_runs_on_the_primary_once_the_replica_lags_past_the_bound(
    replica_app: Callable[..., None], standby: Engine
) -> None:
    replica_app(DB_REPLICA_MAX_LAG="2")
    # A commit replayed just now: the bound counts from the last one the replica replayed.
    wait_replayed(standby, create(unique("lag start")).read_after)
    with replay_paused():
        note_id = create(unique("lag bound")).body["id"]
        within = get(note_id)
        assert (within.status, within.server) == (404, "replica")  # stale, but within the bound
        time.sleep(2.3)
        past = get(note_id)
        assert (past.status, past.server) == (200, "primary")
        assert past.fallbacks == ("replica lags more than DB_REPLICA_MAX_LAG",)


# --- faults on the replica's endpoint: every request answered while the primary is up --------------------------------


@pytest.mark.neon_standin
def test_no_request_fails_while_the_replica_fails(
    replica_app: Callable[..., None], replica: StandinControl, database: DatabaseTarget
) -> None:
    replica_app(DB_REPLICA_MAX_LAG="0.5", DB_REPLICA_CONNECT_BUDGET="0.5")
    scenarios = replica_faults(replica, local_stack=database.local_stack)
    failed: list[str] = []
    lines: list[str] = []
    for name, inject in scenarios.items():
        replica_app(DB_REPLICA_MAX_LAG="0.5", DB_REPLICA_CONNECT_BUDGET="0.5")
        # A warm replica connection when the fault starts: after the previous fault the standby may still be
        # replaying what the primary wrote meanwhile (past the 0.5 s bound on a loaded machine), so wait for it.
        deadline = time.monotonic() + 15
        while page().server != "replica":
            assert time.monotonic() < deadline, f"{name}: the replica did not serve again within 15 s of the last fault"
            time.sleep(0.1)
        inject()
        served = {"replica": 0, "primary": 0}
        try:
            note: Answer | None = None
            for request in range(8):
                answers: list[tuple[int, Answer]] = []
                if note is None or request % 3 == 0:
                    note = create(unique(f"fault {name}"))
                    answers.append((201, note))
                answers.append((200, get(note.body["id"], read_after=note.read_after)))
                listed = page(read_after=note.read_after)
                answers.append((200, listed))
                for expected, answer in answers:
                    lines.extend(answer.log_lines)
                    if answer.status != expected:
                        failed.append(f"{name}: {answer.status} {answer.body}")
                    elif expected == 200:
                        served[answer.server] += 1
                if note.body["id"] not in listed.ids():
                    failed.append(f"{name}: the list after a write did not show it")
                time.sleep(0.05)
        finally:
            end_replica_faults(replica, local_stack=database.local_stack)
        figures.record(
            "read replica (sample API)",
            f"{name}: {sum(served.values())} reads ({served['primary']} on the primary, {served['replica']} on the "
            f"replica) with Read-After, and their writes; {len(failed)} failed so far",
        )
        assert served["replica"] == 0, f"{name}: the replica served reads while it could not"
    assert failed == []
    assert_no_secret(database.password, *lines)


# --- round trips: a read costs on the replica what it costs on the primary ------------------------------------------


@dataclass
class Counted:
    """The app with each database behind its own counting proxy (round trips per server)."""

    primary: Proxy
    replica: Proxy

    def flights(self, action: Callable[[], Any]) -> tuple[int, int]:
        """(primary, replica) client flights of one action."""
        for proxy in (self.primary, self.replica):
            proxy.reset_stats()
        action()
        return self.primary.stats.client_flights, self.replica.stats.client_flights

    def delay(self, ms: float) -> None:
        self.primary.delay_ms = self.replica.delay_ms = ms

    def settle(self) -> None:
        """Wait until the connections an old environment closed are gone (their Terminate is not a round trip)."""
        deadline = time.monotonic() + 5
        while self.primary.stats.open_connections or self.replica.stats.open_connections:
            assert time.monotonic() < deadline, "connections still open 5 s after the environment ended"
            time.sleep(0.01)


@pytest.fixture
def counted(
    database: DatabaseTarget, replica_url: str, schema: None, monkeypatch: pytest.MonkeyPatch
) -> Iterator[tuple[Counted, Callable[[bool], None]]]:
    """Both databases behind proxies; call the second item for a new environment with or without the replica."""
    with Proxy(*connect_address(database.pooled_url)) as primary, Proxy(*connect_address(replica_url)) as on_replica:
        proxies = Counted(primary, on_replica)
        primary_url = with_port(database.pooled_url, primary.port)
        read_url = with_port(replica_url, on_replica.port)
        hosts = f"{pooler_entry(database.pooled_url, primary.port)},{pooler_entry(replica_url, on_replica.port)}"

        def new_environment(with_replica: bool) -> None:
            configure_replica(monkeypatch, pooled_url=primary_url, read_url=read_url, pooler_hosts=hosts)
            if not with_replica:
                monkeypatch.delenv("DATABASE_READ_URL")
                reset_database_state()
            proxies.settle()

        try:
            yield proxies, new_environment
        finally:
            reset_database_state()


def _ok(status: int, answer: Callable[[], Answer]) -> Callable[[], None]:
    def run() -> None:
        got = answer()
        assert got.status == status, got.body

    return run


def test_a_warm_read_on_the_replica_costs_the_round_trips_it_costs_on_the_primary(
    counted: tuple[Counted, Callable[[bool], None]], standby: Engine
) -> None:
    proxies, new_environment = counted
    new_environment(True)
    note = create(unique("round trips"))
    wait_replayed(standby, note.read_after)  # the replica has the note the reads fetch
    note_id = note.body["id"]
    reads: dict[str, Callable[[], None]] = {
        "GET /notes": _ok(200, page),
        "GET /notes/{id}": _ok(200, lambda: get(note_id)),
        "GET /notes/{id} with Read-After": _ok(200, lambda: get(note_id, read_after=note.read_after)),
    }
    routes = {**reads, "POST /notes": _ok(201, lambda: create(unique("round trips")))}
    counts: dict[bool, dict[str, tuple[int, int]]] = {}
    first: dict[bool, tuple[int, int]] = {}
    for with_replica in (False, True):
        proxies.delay(0)
        new_environment(with_replica)
        for action in routes.values():
            action()  # warm: each engine has its connection
        counts[with_replica] = {name: proxies.flights(action) for name, action in routes.items()}
        proxies.delay(2)  # a startup message never trails TLS's session ticket as a flight of its own
        new_environment(with_replica)
        first[with_replica] = proxies.flights(reads["GET /notes"])
    on_primary, on_replica = counts[False], counts[True]

    # Every read goes to the replica alone, with the round trips it takes on the primary (the guard rides along).
    for name in reads:
        assert on_primary[name][1] == 0, name
        assert on_replica[name] == (0, on_primary[name][0]), name
    # A write stays on the primary; its commit LSN rides in the commit's flight, or is one more query on stock.
    primary_write = on_primary["POST /notes"][0]
    assert on_replica["POST /notes"] == (primary_write + (1 if STOCK else 0), 0)
    # A new environment's first read connects to the replica only, as it would to the primary.
    assert first[True] == (0, first[False][0])
    if not STOCK:
        assert {on_replica[name][1] for name in reads} == {1}
        assert first[True][1] == 6
    driver = "stock" if STOCK else "pipelined"
    figures.record(
        "read replica (sample API)",
        f"round trips, {driver}: warm read on the replica {sorted({on_replica[n][1] for n in reads})} (on the primary "
        f"{sorted({on_primary[n][0] for n in reads})}); first request on the replica {first[True][1]} (on the "
        f"primary {first[False][0]}); POST with a replica {on_replica['POST /notes'][0]} (without {primary_write})",
    )


@pytest.mark.local_stack
@pytest.mark.pipelined_driver
def test_a_read_after_the_replica_has_not_reached_is_one_round_trip_there_and_one_on_the_primary(
    counted: tuple[Counted, Callable[[bool], None]],
) -> None:
    proxies, new_environment = counted
    new_environment(True)
    assert page().server == "replica"  # both engines connected: the count below is warm
    with replay_paused():
        created = create(unique("behind"))
        assert created.status == 201
        answers: list[Answer] = []
        flights = proxies.flights(lambda: answers.append(get(created.body["id"], read_after=created.read_after)))
    (answer,) = answers
    assert (answer.status, answer.server, answer.fallbacks) == (200, "primary", (NOT_REPLAYED,))
    # The replica refuses in the statement's own flight (the guard rides with it); the primary then answers.
    assert flights == (1, 1)
