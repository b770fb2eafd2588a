"""lib.dbkit.doctor offline: verdicts, exit statuses and report lines without touching the network."""

from __future__ import annotations

import io

import pytest

from lib.dbkit.doctor import EXIT_ACCEPTED, EXIT_REFUSED, Probe, _report, main
from lib.dbkit.settings import Settings

PASSWORD = "Zq9-pw-LEAKCHECK"
NEON_POOLED = "ep-cool-darkness-123456-pooler.us-east-2.aws.neon.tech"
POOLED_URL = f"postgresql://neondb_owner:{PASSWORD}@{NEON_POOLED}/neondb?sslmode=require&channel_binding=require"
DIRECT_URL = POOLED_URL.replace("-pooler", "")


def _run(*argv: str, environ: dict[str, str] | None = None) -> tuple[int, dict[str, str]]:
    out = io.StringIO()
    status = main(list(argv), environ=environ or {}, out=out)
    text = out.getvalue()
    assert PASSWORD not in text
    lines = dict(line.split(": ", 1) for line in text.splitlines())
    return status, lines


def test_pooled_neon_url_is_accepted_offline_in_serverless_mode() -> None:
    status, lines = _run(POOLED_URL, "--offline")
    assert status == EXIT_ACCEPTED
    assert lines["mode"] == "serverless"
    assert lines["verdict"] == "accepted (offline: not connected)"
    assert lines["tls"].startswith("verify-full (upgraded from require")
    assert lines["host"] == f"{NEON_POOLED}:5432 (Neon pooler)"
    assert lines["url"].startswith("postgresql://neondb_owner:****@")


def test_direct_neon_url_is_refused_with_the_pooled_host() -> None:
    status, lines = _run(DIRECT_URL, "--offline")
    assert status == EXIT_REFUSED
    assert lines["verdict"].startswith("refused: PoolerRequiredError: ")
    assert f"use the pooled hostname {NEON_POOLED}" in lines["verdict"]
    assert lines["url"].startswith("postgresql://neondb_owner:****@ep-cool-darkness-123456.us-east-2")


def test_refusal_happens_before_any_connection_attempt() -> None:
    # No --offline: a refused configuration must exit 2 without connecting (the unit tier blocks sockets).
    status, _ = _run(DIRECT_URL)
    assert status == EXIT_REFUSED


def test_mode_option_and_environment_default() -> None:
    assert _run(DIRECT_URL, "--offline", "--mode", "server")[0] == EXIT_ACCEPTED
    assert _run(DIRECT_URL, "--offline", environ={"DB_MODE": "migration"})[0] == EXIT_ACCEPTED
    assert _run(POOLED_URL, "--offline", "--mode", "migration")[0] == EXIT_REFUSED


def test_pooler_hosts_option_overrides_the_environment() -> None:
    url = f"postgresql://u:{PASSWORD}@pgbouncer.internal:6432/db?sslmode=verify-full"
    environ = {"DB_POOLER_HOSTS": "other:1"}
    assert _run(url, "--offline", environ=environ)[0] == EXIT_REFUSED
    status, lines = _run(url, "--offline", "--pooler-hosts", "pgbouncer.internal:6432", environ=environ)
    assert status == EXIT_ACCEPTED
    assert lines["host"] == "pgbouncer.internal:6432 (pooler listed in DB_POOLER_HOSTS)"


def test_url_comes_from_the_environment_when_not_given() -> None:
    status, lines = _run("--offline", environ={"DATABASE_URL": POOLED_URL})
    assert status == EXIT_ACCEPTED
    assert lines["source"] == "DATABASE_URL"


def test_no_url_anywhere_is_refused() -> None:
    status, lines = _run("--offline")
    assert status == EXIT_REFUSED
    assert lines["verdict"].startswith("refused: MissingDatabaseUrlError")


def test_unparseable_url_is_refused_without_echo() -> None:
    status, lines = _run(f"postgresql://u:{PASSWORD}/x@h/db", "--offline")
    assert status == EXIT_REFUSED
    assert lines["url"] == "(not parseable)"


def test_invalid_mode_is_a_usage_error() -> None:
    with pytest.raises(SystemExit) as caught:
        main(["--mode", "lambda", POOLED_URL], environ={}, out=io.StringIO())
    assert caught.value.code == 2


@pytest.mark.parametrize(
    ("pids", "mode", "pooled", "warning"),
    [
        ((7, 7), "serverless", "yes (backend pids 7, 7)", None),
        ((7, 8), "serverless", "no (backend pids 7, 8)", "serverless mode expects a transaction pooler"),
        ((7, 8), "server", "no (backend pids 7, 8)", None),
    ],
)
def test_report_lines(pids: tuple[int, int], mode: str, pooled: str, warning: str | None) -> None:
    environ = {"DATABASE_URL": POOLED_URL, "DB_MODE": mode}
    settings = Settings.from_env(environ)
    probe = Probe(
        tls_version="TLSv1.3",
        sni_sent=True,
        auth_mechanism="SCRAM-SHA-256",
        server_version="16.4",
        backend_pids=pids,
        rtt_ms=1.234,
    )
    out = io.StringIO()
    _report(out, settings, probe)
    lines = dict(line.split(": ", 1) for line in out.getvalue().splitlines() if not line.startswith("warning"))
    assert lines["transaction pooler"] == pooled
    assert lines["tls version"] == "TLSv1.3"
    assert lines["sni sent"] == f"yes ({NEON_POOLED})"
    assert lines["authentication"] == "SCRAM-SHA-256 (channel binding not used)"
    assert lines["round trip"] == "1.23 ms (median of 5 'select 1')"
    warnings = [line for line in out.getvalue().splitlines() if line.startswith("warning")]
    # channel_binding=require in the URL, SCRAM without -PLUS: always warned.
    assert any("channel_binding=require" in line for line in warnings)
    assert any(warning in line for line in warnings) if warning else len(warnings) == 1


def test_offline_verdict_prints_the_neon_warnings() -> None:
    out = io.StringIO()
    url = POOLED_URL + "&options=endpoint%3Dep-cool-darkness-123456"
    assert main([url, "--offline"], environ={}, out=out) == EXIT_ACCEPTED
    warnings = [line for line in out.getvalue().splitlines() if line.startswith("warning: ")]
    assert len(warnings) == 2
    assert "issues/12897" in warnings[0]
    assert "contradicts the host" in warnings[1]


NEON_READ_POOLED = "ep-still-lake-654321-pooler.us-east-2.aws.neon.tech"
READ_URL = f"postgresql://neondb_owner:{PASSWORD}@{NEON_READ_POOLED}/neondb?sslmode=require"


def test_the_read_replica_is_checked_by_the_same_rules_and_named() -> None:
    status, lines = _run("--offline", environ={"DATABASE_URL": POOLED_URL, "DATABASE_READ_URL": READ_URL})
    assert status == EXIT_ACCEPTED
    assert lines["read replica"].startswith(f"postgresql://neondb_owner:****@{NEON_READ_POOLED}")
    assert "from DATABASE_READ_URL (Neon pooler)" in lines["read replica"]
    direct = READ_URL.replace("-pooler", "")
    status, lines = _run("--offline", environ={"DATABASE_URL": POOLED_URL, "DATABASE_READ_URL": direct})
    assert status == EXIT_REFUSED
    assert lines["verdict"].startswith("refused: PoolerRequiredError: DATABASE_READ_URL: ")
    assert f"use the pooled hostname {NEON_READ_POOLED}" in lines["verdict"]


def test_a_url_argument_leaves_the_environments_replica_out_unless_read_url_names_one() -> None:
    environ = {"DATABASE_READ_URL": READ_URL.replace("-pooler", "")}  # would be refused if checked
    status, lines = _run(POOLED_URL, "--offline", environ=environ)
    assert status == EXIT_ACCEPTED
    assert lines["read replica"] == "not checked: a URL was given without --read-url"
    status, lines = _run(POOLED_URL, "--offline", "--read-url", READ_URL, environ=environ)
    assert status == EXIT_ACCEPTED
    assert "from DATABASE_READ_URL (Neon pooler)" in lines["read replica"]


@pytest.mark.parametrize(
    ("replica", "in_recovery", "standby", "warned"),
    [
        (False, False, "no (a primary: takes writes)", None),
        (False, True, "yes (a hot standby: read-only)", "DATABASE_URL reaches a hot standby"),
        (True, True, "yes (a hot standby: read-only)", None),
        (True, False, "no (a primary: takes writes)", "DATABASE_READ_URL reaches a server that is not in recovery"),
    ],
)
def test_each_probe_says_whether_the_server_is_in_recovery(
    replica: bool, in_recovery: bool, standby: str, warned: str | None
) -> None:
    primary = POOLED_URL.removesuffix("&channel_binding=require")
    settings = Settings.from_env({"DATABASE_URL": primary, "DATABASE_READ_URL": READ_URL, "DB_MODE": "serverless"})
    assert settings.replica is not None
    checked = settings.replica.settings if replica else settings
    probe = Probe(
        tls_version="TLSv1.3",
        sni_sent=True,
        auth_mechanism="SCRAM-SHA-256",
        server_version="16.4",
        backend_pids=(7, 7),
        rtt_ms=1.0,
        in_recovery=in_recovery,
    )
    out = io.StringIO()
    _report(out, checked, probe, replica=replica)
    prefix = "replica " if replica else ""
    printed = out.getvalue().splitlines()
    assert f"{prefix}in recovery: {standby}" in printed
    assert all(line.startswith(prefix) for line in printed)
    # The test URLs ask for no channel binding: any warning here is about recovery.
    warnings = [line.removeprefix(f"{prefix}warning: ") for line in printed if line.startswith(f"{prefix}warning: ")]
    if warned is None:
        assert warnings == []
    else:
        assert len(warnings) == 1
        assert warnings[0].startswith(warned)
