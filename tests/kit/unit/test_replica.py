"""lib.dbkit.replica without a server: the LSN a client carries, the guard statement, and what calls for a fallback."""

from __future__ import annotations

import pg8000.dbapi
import pytest
import sqlalchemy.exc

from lib.dbkit.errors import DatabaseLoginError, DatabaseProviderRefusedError, InvalidLsnError
from lib.dbkit.replica import (
    BEHIND_COMMIT_SQLSTATE,
    LAG_SQLSTATE,
    READ_AFTER_HEADER,
    REFUSED_COOLDOWN_SECONDS,
    UNREACHABLE_COOLDOWN_SECONDS,
    begin_invocation,
    fallback_for,
    guard_sql,
    parse_lsn,
    read_after,
    read_after_headers,
    record_commit_lsn,
)


def _server_error(code: str, message: str = "x") -> pg8000.dbapi.DatabaseError:
    return pg8000.dbapi.DatabaseError({"S": "ERROR", "C": code, "M": message})


@pytest.mark.parametrize(
    ("given", "normal"), [("16/b374d848", "16/B374D848"), (" 0/1 ", "0/1"), ("FFFFFFFF/0", "FFFFFFFF/0")]
)
def test_an_lsn_is_normalised(given: str, normal: str) -> None:
    assert parse_lsn(given) == normal


@pytest.mark.parametrize(
    "given", ["", "0", "0/", "/1", "1/2/3", "123456789/0", "0/1'; drop table notes; --", "0x1/0", "g/1", "x" * 300]
)
def test_anything_else_is_refused_with_the_form_it_should_have(given: str) -> None:
    with pytest.raises(InvalidLsnError, match="expected two hex numbers like 16/B374D848") as caught:
        parse_lsn(given)
    assert len(str(caught.value)) < 200  # a long token is not echoed in full


def test_a_read_after_header_is_an_lsn_or_absent() -> None:
    assert read_after(None) is None
    assert read_after(" 16/b374d848") == "16/B374D848"


@pytest.mark.parametrize("given", ["", " ", "16/B374D848, 16/B374D849", "0/1'; drop table notes; --", "y" * 5000])
def test_a_malformed_read_after_header_names_the_header_and_what_to_send(given: str) -> None:
    with pytest.raises(InvalidLsnError) as caught:
        read_after(given)
    message = str(caught.value)
    assert message.startswith(f"{READ_AFTER_HEADER} header: ")
    assert "expected two hex numbers like 16/B374D848" in message
    assert message.endswith(f"send back a write's {READ_AFTER_HEADER} value unchanged")
    assert len(message) < 300


def test_a_write_answers_its_commit_lsn_as_read_after_and_nothing_without_one() -> None:
    begin_invocation()
    assert read_after_headers() == {}
    record_commit_lsn("0/3030118")
    assert read_after_headers() == {"Read-After": "0/3030118"}
    begin_invocation()
    assert read_after_headers() == {}


def test_no_guard_without_a_bound_or_a_token() -> None:
    assert guard_sql(max_lag=None, after_lsn=None) is None


def test_the_guard_checks_only_in_recovery_and_counts_lag_only_with_wal_left_to_replay() -> None:
    sql = guard_sql(max_lag=2.5, after_lsn=None)
    assert sql is not None
    assert sql.startswith("DO $$BEGIN IF pg_is_in_recovery() THEN ")
    assert "pg_last_wal_receive_lsn() IS DISTINCT FROM pg_last_wal_replay_lsn()" in sql
    assert "interval '2.500 seconds'" in sql
    assert f"ERRCODE = '{LAG_SQLSTATE}'" in sql
    assert BEHIND_COMMIT_SQLSTATE not in sql


def test_the_token_guard_compares_the_replay_position() -> None:
    sql = guard_sql(max_lag=None, after_lsn="16/b374d848")
    assert sql is not None
    assert "pg_last_wal_replay_lsn() < '16/B374D848'::pg_lsn" in sql
    assert f"ERRCODE = '{BEHIND_COMMIT_SQLSTATE}'" in sql
    with pytest.raises(InvalidLsnError):
        guard_sql(max_lag=None, after_lsn="16/B374D848'::pg_lsn OR true --")


@pytest.mark.parametrize(
    ("error", "connected", "reason", "cooldown"),
    [
        (_server_error(LAG_SQLSTATE), True, "replica lags more than DB_REPLICA_MAX_LAG", 0.0),
        (_server_error(BEHIND_COMMIT_SQLSTATE), True, "replica has not replayed the commit the read must see", 0.0),
        (_server_error("40001", "canceling statement due to conflict with recovery"), True,
         "replica cancelled the read (conflict with recovery)", 0.0),
        (sqlalchemy.exc.TimeoutError(), False, "replica pool exhausted", 0.0),
        (DatabaseProviderRefusedError("r", reason="endpoint disabled", action="enable it", retry_after=60), False,
         "replica refused by the provider", REFUSED_COOLDOWN_SECONDS),
        (DatabaseLoginError("the database refused the login"), False, "replica misconfigured",
         REFUSED_COOLDOWN_SECONDS),
        (_server_error("XX000", "Couldn't connect to compute node"), False, "replica unreachable",
         UNREACHABLE_COOLDOWN_SECONDS),
        (TimeoutError("timed out"), False, "replica unreachable", UNREACHABLE_COOLDOWN_SECONDS),
        (ValueError("anything at all while connecting"), False, "replica unreachable", UNREACHABLE_COOLDOWN_SECONDS),
        (_server_error("57P01", "terminating connection due to administrator command"), True,
         "replica connection lost", 0.0),
        (ConnectionResetError(), True, "replica connection lost", 0.0),
    ],
)  # fmt: skip
def test_what_the_replica_could_not_serve_falls_back(
    error: BaseException, connected: bool, reason: str, cooldown: float
) -> None:
    fallback = fallback_for(error, connected=connected)
    assert fallback is not None
    assert (fallback.reason, fallback.cooldown) == (reason, cooldown)


@pytest.mark.parametrize(
    "error",
    [
        _server_error("25006", "cannot execute INSERT in a read-only transaction"),
        _server_error("42601", "syntax error"),
        _server_error("57014", "canceling statement due to statement timeout"),
        ZeroDivisionError(),
        DatabaseLoginError("an app error that happens to be a ConfigError, raised by the work"),
    ],
)
def test_what_the_work_itself_caused_is_raised_not_hidden_by_a_fallback(error: BaseException) -> None:
    assert fallback_for(error, connected=True) is None
