"""Round trips, new connections, server hold time and wall time per request, between the app and PgBouncer.

Round trips are counted by devtools.proxy; the time PgBouncer held a server connection comes from its SHOW STATS.
"""

from __future__ import annotations

import dataclasses
import statistics
import time
import uuid
from collections.abc import Callable, Iterator, Sequence
from contextlib import contextmanager
from dataclasses import dataclass, field
from typing import Any

from sqlalchemy import event, text

from devtools.bench import orm
from devtools.bench.app import BenchApp, BenchError, BenchRequest, bench_app, expect_success, succeeded
from devtools.bench.pooler_stats import PoolerConsole
from devtools.bench.profiles import PingCounter, Profile, counting_pings, quiet_app_logs, set_database_environment
from devtools.events import with_header
from devtools.proxy import Proxy
from lib.dbkit.replica import READ_AFTER_HEADER

# +20 ms per direction is a cross-region link; +2 ms a Lambda function and its database in one region.
DELAYS_MS = (0.0, 2.0, 20.0)
STEPS_DELAY_MS = 2.0
# Idle time after which the template pings once before reusing a connection, for the "after idle" row only.
SHORT_IDLE_PING_SECONDS = 0.1
_SETTLE_QUIET_S = 0.03
_SETTLE_TIMEOUT_S = 5.0
_SKIPPED_ATTEMPTS = 20
# How long the bench waits for the replica to replay the note its reads fetch (milliseconds on the local stack).
REPLAY_WAIT_S = 10.0


@contextmanager
def proxied_pooler(host: str, port: int) -> Iterator[tuple[Proxy, PingCounter]]:
    """The pooler at host:port behind a counting proxy, pings counted and the app's logs quiet; the profiles'
    database variables cleared after."""
    with quiet_app_logs(), counting_pings() as pings, Proxy(host, port) as proxy:
        try:
            yield proxy, pings
        finally:
            set_database_environment({})


@dataclass(frozen=True)
class Sample:
    """One measured action."""

    round_trips: int
    connections: int
    pings: int
    wall_ms: float
    # Milliseconds PgBouncer held a server connection for this action (SHOW STATS total_xact_time), and the
    # transactions it counted; None without a console.
    hold_ms: float | None = None
    transactions: int | None = None


@dataclass(frozen=True)
class Row:
    """One scenario of one profile: counts over every sample at every delay (a range when they differ), medians.

    round_trips_at: the range at each delay (a split TLS flight at +0 ms shows there). role: what the scenario is
    to the targets (Scenario.role).
    """

    scenario: str
    profile: str
    round_trips: tuple[int, int]
    connections: tuple[int, int]
    pings: tuple[int, int]
    wall_ms: dict[float, float]
    hold_ms: dict[float, float] = field(default_factory=dict)
    transactions: tuple[int, int] | None = None
    round_trips_at: dict[float, tuple[int, int]] = field(default_factory=dict)
    role: str = ""


@dataclass(frozen=True)
class Scenario:
    """An action on a profile; `fresh` starts a new execution environment before every run, else one warm-up.

    An action returning False did not do its work (a skipped scheduled run): the sample is taken again. role: which
    of app.toml's [bench] requests it sends ("read", "write", "list", "health", "scheduled"), "first" or "idle" for
    the read (or health check) in a new environment or after idle, "" for the rest (the ORM units).
    """

    name: str
    action: Callable[[Profile], bool]
    fresh: bool = False
    idle_s: float | None = None
    role: str = ""


def _settle(proxy: Proxy) -> None:
    """Wait until the proxy saw nothing new for a while: closing traffic lands after close() returns."""
    deadline = time.monotonic() + _SETTLE_TIMEOUT_S
    quiet = _SETTLE_QUIET_S + 2 * proxy.delay_ms / 1000
    last = proxy.stats
    changed = time.monotonic()
    while time.monotonic() < deadline:
        time.sleep(0.005)
        now = proxy.stats
        if (now.client_flights, now.open_connections, now.connections) != (
            last.client_flights,
            last.open_connections,
            last.connections,
        ):
            last, changed = now, time.monotonic()
        elif time.monotonic() - changed >= quiet:
            return


def measure(
    proxy: Proxy, pings: PingCounter, action: Callable[[], Any], console: PoolerConsole | None = None
) -> Sample:
    """Round trips of one action: client flights minus the Terminate of each connection closed (nobody waits)."""
    _settle(proxy)
    open_before = proxy.stats.open_connections
    proxy.reset_stats()
    pings_before = pings.count
    totals_before = console.totals() if console else None
    started = time.perf_counter()
    action()
    wall_ms = (time.perf_counter() - started) * 1000
    _settle(proxy)
    stats = proxy.stats
    closed = open_before + stats.connections - stats.open_connections
    sample = Sample(stats.client_flights - closed, stats.connections, pings.count - pings_before, wall_ms)
    if console is None or totals_before is None:
        return sample
    held = console.totals() - totals_before
    return dataclasses.replace(sample, hold_ms=held.xact_time_us / 1000, transactions=held.transactions)


def write_row(profile: Profile, app: BenchApp) -> str:
    """A row for the read rows, written through the profile (app.toml [bench] write); its id."""
    return app.write_row(profile.invoke)


def _run_scheduled(app: BenchApp, request: BenchRequest) -> Callable[[Profile], bool]:
    # Skipped when another run (a test on the shared stack) holds the job: that sample does not count.
    return lambda profile: not app.skipped(profile.invoke(request.function, request.event()))


def write_replica_row(profile: Profile, app: BenchApp) -> tuple[str, str]:
    """A row for the replica rows and the Read-After its write answered, once the replica has it."""
    assert app.write is not None
    assert app.read is not None
    response = expect_success(profile.invoke(app.write.function, app.write.event()), app.write.label)
    headers = {name.lower(): value for name, value in (response.get("headers") or {}).items()}
    read_after = headers.get(READ_AFTER_HEADER.lower())
    if read_after is None:
        raise BenchError(f"{app.write.label} answered no {READ_AFTER_HEADER} header: the profile has no read replica")
    row_id = app.row_id(response)
    deadline = time.monotonic() + REPLAY_WAIT_S
    # Without a token a read runs on the replica, which answers 404 until it has replayed the write.
    while not succeeded(profile.invoke(app.read.function, app.read_event(row_id))):
        if time.monotonic() > deadline:
            raise BenchError(f"the replica did not replay the bench's row within {REPLAY_WAIT_S:g} s")
        time.sleep(0.02)
    return row_id, read_after


def orm_scenario(unit: orm.OrmUnit) -> Scenario:
    """An ORM unit of work run the profile's way (devtools.bench.profiles: `orm`)."""

    def run(profile: Profile) -> bool:
        profile.orm(unit)
        return True

    return Scenario(unit.name, run)


def orm_scenarios(item_ids: list[uuid.UUID]) -> list[Scenario]:
    """The ORM units of the round-trip table, in table order, on the rows orm.prepare made (the first is read and
    modified, the others deleted one per run)."""
    key, *delete_ids = item_ids
    units = [
        orm.get_by_key(key),
        orm.select_page(),
        orm.insert_one(),
        orm.get_modify_flush(key),
        orm.get_and_delete(delete_ids),
    ]
    return [orm_scenario(unit) for unit in units]


def runs_per_scenario(runs: int) -> int:
    """How many times run_scenario runs a warm scenario's action: a warm-up and `runs` samples per delay."""
    return len(DELAYS_MS) * (runs + 1)


def scenarios(app: BenchApp, row_id: str | None) -> list[Scenario]:
    """The request mix of the round-trip table, in table order: what app.toml [bench] names."""

    def send(request: BenchRequest, event: Callable[[], dict[str, Any]]) -> Callable[[Profile], bool]:
        return lambda profile: bool(expect_success(profile.invoke(request.function, event()), request.label))

    def read_row() -> dict[str, Any]:
        assert row_id is not None
        return app.read_event(row_id)

    requests = [
        (request, read_row if request is app.read else request.event)
        for request in (app.read, app.write, app.listing, app.health)
        if request is not None and (request is not app.read or row_id is not None)
    ]
    found = [Scenario(f"warm {request.label}", send(request, event), role=request.role) for request, event in requests]
    if app.scheduled is not None:
        name = f"warm scheduled run ({app.scheduled.function.logical_id})"
        found.append(Scenario(name, _run_scheduled(app, app.scheduled), role="scheduled"))
    # A new environment's first request, and one after idling: the read when there is one, else the health check.
    first = next(((request, event) for request, event in requests if request.role in ("read", "health")), None)
    if first is not None:
        request, event = first
        action = send(request, event)
        found.append(
            Scenario(f"first request of a new environment ({request.label})", action, fresh=True, role="first")
        )
        found.append(
            Scenario(f"{request.label} after {SHORT_IDLE_PING_SECONDS:g} s idle*", action, idle_s=0.15, role="idle")
        )
    return found


# Roles of the replica rows (devtools.bench.report reads them): reads it serves, a write beside it, a first request.
REPLICA_READ = "replica read"
REPLICA_WRITE = "replica write"
REPLICA_FIRST_REQUEST = "replica first"


def replica_scenarios(app: BenchApp, row_id: str, read_after: str) -> list[Scenario]:
    """The requests a read replica changes, in table order: reads on it (app.toml [bench] read and list, and the read
    with the Read-After the write answered), the write beside it, a first request on it."""
    assert app.read is not None
    assert app.write is not None

    def send(request: BenchRequest, event: Callable[[], dict[str, Any]]) -> Callable[[Profile], bool]:
        return lambda profile: bool(expect_success(profile.invoke(request.function, event()), request.label))

    read = send(app.read, lambda: app.read_event(row_id))
    read_after_write = send(app.read, lambda: with_header(app.read_event(row_id), READ_AFTER_HEADER, read_after))
    found = [Scenario(f"warm {app.read.label} on the replica", read, role=REPLICA_READ)]
    listing = send(app.listing, app.listing.event) if app.listing is not None else None
    if app.listing is not None and listing is not None:
        found.append(Scenario(f"warm {app.listing.label} on the replica", listing, role=REPLICA_READ))
    found += [
        Scenario(f"warm {app.read.label} with Read-After, on the replica", read_after_write, role=REPLICA_READ),
        Scenario(
            f"warm {app.write.label} with a replica (answers Read-After)",
            send(app.write, app.write.event),
            role=REPLICA_WRITE,
        ),
    ]
    first = app.listing or app.read
    found.append(
        Scenario(
            f"first request of a new environment, on the replica ({first.label})",
            listing or read,
            fresh=True,
            role=REPLICA_FIRST_REQUEST,
        )
    )
    return found


def run_replica(
    proxy: Proxy, pings: PingCounter, profiles: Sequence[Profile], runs: int, console: PoolerConsole
) -> list[Row]:
    """The replica scenarios for each profile; `console` reads the replica's pooled database, so its transaction
    count says which server served each row (at least 1 per read, none for the write): a row served elsewhere is an
    error. Needs app.toml [bench] read and write (the rows are left out without them)."""
    app = bench_app()
    if app.read is None or app.write is None:
        return []
    rows: list[Row] = []
    for profile in profiles:
        profile.activate()
        row_id, read_after = write_replica_row(profile, app)
        for scenario in replica_scenarios(app, row_id, read_after):
            row = run_scenario(proxy, pings, profile, scenario, runs, console)
            writes = scenario.role == REPLICA_WRITE
            on_replica = row.transactions or (0, 0)
            if (on_replica != (0, 0)) if writes else (on_replica[0] < 1):
                expected = "none" if writes else "at least 1 per request"
                raise BenchError(
                    f"{scenario.name} ({profile.name}): {_count_text(on_replica)} transactions on the replica's "
                    f"pooled database, {expected} expected: the replica did not serve what it should"
                )
            rows.append(row)
        profile.close()
    return rows


def run_scenario(
    proxy: Proxy,
    pings: PingCounter,
    profile: Profile,
    scenario: Scenario,
    runs: int,
    console: PoolerConsole | None = None,
) -> Row:
    """Every delay in DELAYS_MS, `runs` samples each."""
    samples: dict[float, list[Sample]] = {}
    for delay in DELAYS_MS:
        proxy.delay_ms = delay
        if scenario.idle_s is not None:
            profile.new_environment(idle_ping_seconds=SHORT_IDLE_PING_SECONDS)
        if not scenario.fresh:
            scenario.action(profile)
        samples[delay] = []
        for _ in range(runs):
            if scenario.fresh:
                profile.new_environment()
            if scenario.idle_s is not None:
                time.sleep(scenario.idle_s)
            samples[delay].append(_sample(proxy, pings, profile, scenario, console))
    proxy.delay_ms = 0
    if scenario.idle_s is not None:
        profile.new_environment()
    every = [sample for taken in samples.values() for sample in taken]
    held = {
        delay: statistics.median(s.hold_ms for s in taken if s.hold_ms is not None)
        for delay, taken in samples.items()
        if all(s.hold_ms is not None for s in taken)
    }
    transactions = [s.transactions for s in every if s.transactions is not None]
    return Row(
        scenario=scenario.name,
        profile=profile.name,
        round_trips=_span(s.round_trips for s in every),
        connections=_span(s.connections for s in every),
        pings=_span(s.pings for s in every),
        wall_ms={delay: statistics.median(s.wall_ms for s in taken) for delay, taken in samples.items()},
        hold_ms=held,
        transactions=_span(transactions) if transactions else None,
        round_trips_at={delay: _span(s.round_trips for s in taken) for delay, taken in samples.items()},
        role=scenario.role,
    )


def _sample(
    proxy: Proxy, pings: PingCounter, profile: Profile, scenario: Scenario, console: PoolerConsole | None
) -> Sample:
    done: list[bool] = []
    for _ in range(_SKIPPED_ATTEMPTS):
        done.clear()
        sample = measure(proxy, pings, lambda: done.append(scenario.action(profile)), console)
        if done[0]:
            return sample
        time.sleep(0.25)
    raise BenchError(f"{scenario.name} was skipped {_SKIPPED_ATTEMPTS} times in a row (the job held elsewhere)")


def _count_text(span: tuple[int, int]) -> str:
    return str(span[0]) if span[0] == span[1] else f"{span[0]}-{span[1]}"


def _span(values: Any) -> tuple[int, int]:
    listed = list(values)
    return min(listed), max(listed)


# Driver steps: the pieces a request is made of, measured on the profile's engine directly.


@dataclass(frozen=True)
class Steps:
    """Round trips of each driver step for one profile."""

    profile: str
    connect: int
    first_connect_init: int
    begin_and_statement: int
    commit: int
    rollback: int
    ping: int


def driver_steps(proxy: Proxy, pings: PingCounter, profile: Profile) -> Steps:
    """Connect, SQLAlchemy's first-connect initialisation, BEGIN + one parameterised statement, COMMIT, ROLLBACK."""
    # Not at 0 ms: there the startup message can trail the server's TLS session ticket and count as a flight.
    proxy.delay_ms = STEPS_DELAY_MS
    profile.new_environment()
    engine = profile.engine()
    at_connect: list[int] = []
    # insert=True: runs right after the DB-API connect, before the dialect's first-connect initialisation.
    event.listen(engine, "connect", lambda *_: at_connect.append(proxy.stats.client_flights), insert=True)
    statement = text("SELECT CAST(:v AS int)")
    connection = None

    def open_connection() -> None:
        nonlocal connection
        connection = engine.connect()

    opened = measure(proxy, pings, open_connection)
    assert connection is not None
    try:
        begin = measure(proxy, pings, lambda: connection.execute(statement, {"v": 1}))
        commit = measure(proxy, pings, connection.commit)
        connection.execute(statement, {"v": 2})
        rollback = measure(proxy, pings, connection.rollback)
        dbapi = connection.connection.dbapi_connection
        assert dbapi is not None
        ping = measure(proxy, pings, lambda: engine.dialect.do_ping(dbapi))
    finally:
        connection.close()
        profile.new_environment()
        proxy.delay_ms = 0
    connect = at_connect[0] if at_connect else opened.round_trips
    return Steps(
        profile=profile.name,
        connect=connect,
        first_connect_init=opened.round_trips - connect,
        begin_and_statement=begin.round_trips,
        commit=commit.round_trips,
        rollback=rollback.round_trips,
        ping=ping.round_trips,
    )


def run_all(
    proxy: Proxy,
    pings: PingCounter,
    profiles: Sequence[Profile],
    runs: int,
    row_ids: dict[str, str],
    console: PoolerConsole | None = None,
) -> tuple[list[Row], list[Steps]]:
    """Every scenario for every profile (profile by profile, each its own environment), then the driver steps."""
    app = bench_app()
    rows: list[Row] = []
    steps: list[Steps] = []
    for profile in profiles:
        profile.activate()
        if app.read is not None:
            row_ids[profile.name] = write_row(profile, app)
        item_ids = profile.orm(
            orm.OrmUnit("prepare the ORM table", lambda s: orm.prepare(s, 1 + runs_per_scenario(runs)))
        )
        for scenario in [*scenarios(app, row_ids.get(profile.name)), *orm_scenarios(item_ids)]:
            rows.append(run_scenario(proxy, pings, profile, scenario, runs, console))
        profile.orm(orm.OrmUnit("drop the ORM table", orm.drop))
        steps.append(driver_steps(proxy, pings, profile))
        profile.close()
    return rows, steps
