"""The local Neon stand-in answers like Neon's proxy: TLS both ways, SNI endpoints, Neon's refusals, scale to zero.

Each test drives pg8000 (through lib.pg_pipeline, which honours hostaddr and direct TLS) or psql against the stack's
stand-in and reads what came back on the wire; the stand-in's counters say what it saw.
"""

from __future__ import annotations

import contextlib
import os
import struct
import subprocess
import sys
import time
from dataclasses import replace
from typing import Any

import pg8000.dbapi
import pytest

from devtools.neon_standin import MISSING_ENDPOINT, StandinControl, parse_fields
from devtools.paths import ROOT
from devtools.testing.database import DatabaseTarget
from lib.dbkit import pg_pipeline
from lib.dbkit.dsn import DatabaseUrl, parse_database_url

pytestmark = pytest.mark.neon_standin


@pytest.fixture
def pooled(database: DatabaseTarget, standin: StandinControl) -> DatabaseUrl:
    return parse_database_url(database.pooled_url)


def _connect(url: DatabaseUrl, **changes: Any) -> Any:
    return pg_pipeline.connect(**{**replace(url, **changes).connect_args(timeout=10)})


def _refusal(url: DatabaseUrl, **changes: Any) -> dict[str, str]:
    with pytest.raises(pg8000.dbapi.DatabaseError) as raised:
        _connect(url, **changes).close()
    fields = raised.value.args[0]
    assert isinstance(fields, dict)
    return fields


def _neon(message: str) -> dict[str, str]:
    return {"S": "ERROR", "C": "XX000", "M": message}


def _select(connection: Any, sql: str) -> Any:
    cursor = connection.cursor()
    cursor.execute(sql)
    row = cursor.fetchone()
    connection.commit()
    return row


def _counters(standin: StandinControl) -> dict[str, Any]:
    counters: dict[str, Any] = standin.status()["counters"]
    return counters


@pytest.mark.parametrize("negotiation", ["postgres", "direct"])
def test_sslrequest_and_direct_tls_both_reach_the_pooler(
    pooled: DatabaseUrl, standin: StandinControl, negotiation: str
) -> None:
    before = _counters(standin)
    connection = _connect(pooled, sslnegotiation=negotiation)
    try:
        assert _select(connection, "select current_setting('client_encoding'), 40 + 2") == ["UTF8", 42]
        tls = connection._usock
        assert tls.version() == "TLSv1.3"
        assert tls.server_hostname == pooled.host  # SNI: the endpoint's host name, though we connected to hostaddr
        assert tls.selected_alpn_protocol() == ("postgresql" if negotiation == "direct" else None)
    finally:
        connection.close()
    after = _counters(standin)
    counter = "tls_direct" if negotiation == "direct" else "tls_sslrequest"
    assert after[counter] == before[counter] + 1
    assert after["sessions"] == before["sessions"] + 1


def test_the_session_behind_it_is_pgbouncer_in_transaction_mode(pooled: DatabaseUrl) -> None:
    first, second = _connect(pooled, application_name="standin-test"), _connect(pooled)
    try:
        # One server backend serves both clients in turn: a transaction pooler is behind the stand-in.
        pids = {_select(connection, "select pg_backend_pid()")[0] for connection in (first, second, first)}
        name = _select(first, "select current_setting('application_name')")[0]
    finally:
        first.close()
        second.close()
    assert len(pids) <= 2
    assert name == "standin-test"  # forwarded like Neon does


def test_plaintext_is_refused_with_neons_message(pooled: DatabaseUrl) -> None:
    fields = _refusal(pooled, sslmode="disable")
    assert fields == _neon("connection is insecure (try using `sslmode=require`)")


def test_without_sni_or_endpoint_option_neon_asks_for_the_endpoint(pooled: DatabaseUrl) -> None:
    # An IP literal as host: pg8000 sends no SNI (the certificate covers 127.0.0.1, so TLS still verifies).
    assert _refusal(pooled, host="127.0.0.1", hostaddr=None) == _neon(MISSING_ENDPOINT)


def test_the_endpoint_option_stands_in_for_sni(pooled: DatabaseUrl) -> None:
    connection = _connect(pooled, host="127.0.0.1", hostaddr=None, endpoint_id="ep-local-stack-123456-pooler")
    try:
        assert _select(connection, "select 1") == [1]
    finally:
        connection.close()


def test_an_endpoint_option_that_contradicts_the_host_is_refused(pooled: DatabaseUrl) -> None:
    fields = _refusal(pooled, endpoint_id="ep-local-stack-123456")
    assert fields == _neon(
        "Inconsistent project name inferred from SNI ('ep-local-stack-123456-pooler') and project option "
        "('ep-local-stack-123456')."
    )


def test_a_malformed_endpoint_is_refused(pooled: DatabaseUrl) -> None:
    fields = _refusal(pooled, host="127.0.0.1", hostaddr=None, endpoint_id="ep_local")
    assert fields == _neon("Project name ('ep_local') must contain only alphanumeric characters and hyphen.")


def test_an_unknown_endpoint_is_not_found(pooled: DatabaseUrl) -> None:
    fields = _refusal(pooled, host="127.0.0.1", hostaddr=None, endpoint_id="ep-some-other-999999-pooler")
    assert fields == _neon("Control plane request failed: endpoint cannot be found")


def test_a_wrong_password_comes_back_in_neons_words(pooled: DatabaseUrl, standin: StandinControl) -> None:
    before = _counters(standin)
    fields = _refusal(pooled, password="not-the-password-0123456789")
    assert fields == _neon(f"password authentication failed for user '{pooled.user}'")
    # The real SCRAM exchange with PgBouncer failed; the stand-in re-worded PgBouncer's error.
    assert _counters(standin)["refused"].get("password_failed", 0) == before["refused"].get("password_failed", 0) + 1


def test_psql_sees_neons_refusals_too(database: DatabaseTarget, standin: StandinControl) -> None:
    standin.refuse("endpoint_disabled")
    result = subprocess.run(
        ["psql", database.pooled_url, "-X", "-A", "-t", "-c", "select 1"],
        capture_output=True, text=True, timeout=30, check=False,
    )  # fmt: skip
    assert result.returncode != 0
    assert "ERROR:  The endpoint has been disabled. Enable it using Neon API and retry." in result.stderr


def test_a_one_shot_refusal_refuses_once(pooled: DatabaseUrl, standin: StandinControl) -> None:
    standin.refuse("compute_unreachable", times=2)
    assert _refusal(pooled) == _neon("Couldn't connect to compute node")
    assert _refusal(pooled) == _neon("Couldn't connect to compute node")
    _connect(pooled).close()


def test_a_sticky_refusal_lasts_until_reset(pooled: DatabaseUrl, standin: StandinControl) -> None:
    standin.refuse("quota_exceeded", times=None)
    quota = _neon("Your account or project has exceeded the compute time quota. Upgrade your plan to increase limits.")
    assert [_refusal(pooled) for _ in range(3)] == [quota] * 3
    standin.reset()
    _connect(pooled).close()


def test_a_suspend_ends_open_sessions_with_57p01_and_the_next_connect_wakes_the_compute(
    pooled: DatabaseUrl, standin: StandinControl
) -> None:
    connection = _connect(pooled)
    try:
        assert _select(connection, "select 1") == [1]
        standin.configure(suspend_after=0.2, wake_delay=0.5)
        deadline = time.monotonic() + 5
        while not standin.status()["suspended"] and time.monotonic() < deadline:
            time.sleep(0.05)
        assert standin.status()["suspended"]
        # Read what the stand-in sent before anything is written: a write to the closed connection draws a reset,
        # which can discard the unread message (a client then sees EOF or "network error" instead, as with Neon).
        tls = connection._usock
        tls.settimeout(5)
        sent = tls.recv(4096)
    finally:
        with contextlib.suppress(OSError, pg8000.dbapi.InterfaceError):
            connection.close()  # the stand-in closed it already
    assert sent[:1] == b"E"
    fields = parse_fields(sent[5 : 1 + struct.unpack("!I", sent[1:5])[0]])
    assert (fields["S"], fields["C"], fields["M"]) == (
        "FATAL",
        "57P01",
        "terminating connection due to administrator command",
    )
    standin.configure(suspend_after=None)
    started = time.monotonic()
    _connect(pooled).close()
    woke_after = time.monotonic() - started
    status = standin.status()
    assert not status["suspended"]
    assert woke_after >= 0.5  # the first connect after the suspend waited for the wake
    assert status["counters"]["terminated"] >= 1


def test_the_control_cli_reads_the_address_from_the_environment(database: DatabaseTarget) -> None:
    assert database.standin_control is not None
    env = {**os.environ, "NEON_STANDIN_CONTROL": database.standin_control}
    cli = [sys.executable, "-m", "devtools.neon_standin", "ctl"]
    refused = subprocess.run([*cli, "refuse", "too_many_connections", "--times", "3"], env=env, cwd=ROOT,
                             capture_output=True, text=True, timeout=30, check=True)  # fmt: skip
    assert '"too_many_connections": 3' in refused.stdout
    reset = subprocess.run([*cli, "reset"], env=env, cwd=ROOT, capture_output=True, text=True, timeout=30, check=True)
    assert '"refusals": {}' in reset.stdout
    bad = subprocess.run([*cli, "suspend-after", "-1"], env=env, cwd=ROOT, capture_output=True, text=True,
                         timeout=30, check=False)  # fmt: skip
    assert bad.returncode == 1
    assert "seconds" in bad.stderr


def test_the_replica_endpoint_is_a_compute_of_its_own(
    database: DatabaseTarget, pooled: DatabaseUrl, standin: StandinControl
) -> None:
    assert database.read_url is not None
    replica_url = parse_database_url(database.read_url)
    primary, replica = _connect(pooled), _connect(replica_url)
    try:
        assert _select(replica, "select pg_is_in_recovery(), current_database()") == [True, "neondb"]
        assert _select(primary, "select pg_is_in_recovery()") == [False]
        env = {**os.environ, "NEON_STANDIN_CONTROL": database.standin_control or ""}
        cli = [sys.executable, "-m", "devtools.neon_standin", "ctl", "--endpoint", "replica"]
        subprocess.run([*cli, "suspend"], env=env, cwd=ROOT, capture_output=True, text=True, timeout=30, check=True)
        with pytest.raises((pg8000.dbapi.DatabaseError, pg8000.dbapi.InterfaceError)):
            _select(replica, "select 1")  # its session ended with the replica's compute
        assert _select(primary, "select 1") == [1]  # the primary's did not
        subprocess.run([*cli, "refuse", "endpoint_disabled", "--sticky"], env=env, cwd=ROOT, capture_output=True,
                       text=True, timeout=30, check=True)  # fmt: skip
        assert _refusal(replica_url) == _neon("The endpoint has been disabled. Enable it using Neon API and retry.")
        _connect(pooled).close()  # the primary's endpoint still accepts
    finally:
        primary.close()
        with contextlib.suppress(OSError, pg8000.dbapi.InterfaceError):
            replica.close()
    replica_status = standin.on("replica").endpoint_status()
    assert replica_status["suspended"] is True
    assert replica_status["counters"]["refused"]["endpoint_disabled"] >= 1
    assert standin.endpoint_status()["suspended"] is False


@pytest.mark.local_stack
def test_pause_replay_stops_the_standby_replaying_until_resumed(database: DatabaseTarget) -> None:
    env = {**os.environ, "NEON_STANDIN_CONTROL": database.standin_control or ""}
    cli = [sys.executable, "-m", "devtools.neon_standin", "ctl"]
    try:
        paused = subprocess.run([*cli, "pause-replay"], env=env, cwd=ROOT, capture_output=True, text=True,
                                timeout=30, check=True)  # fmt: skip
        assert '"replay": "pause' in paused.stdout  # "pause requested", then "paused"
    finally:
        resumed = subprocess.run([*cli, "resume-replay"], env=env, cwd=ROOT, capture_output=True, text=True,
                                 timeout=30, check=True)  # fmt: skip
    assert '"replay": "not paused"' in resumed.stdout
    primary_only = subprocess.run([*cli, "--endpoint", "primary", "pause-replay"], env=env, cwd=ROOT,
                                  capture_output=True, text=True, timeout=30, check=False)  # fmt: skip
    assert primary_only.returncode == 1
    assert "read replica only" in primary_only.stderr
