"""`python -m lib.dbkit.doctor` against the real stack: verdicts, exit statuses and the transaction-pooler heuristic."""

from __future__ import annotations

import os
import socket
import subprocess
import sys

from devtools.paths import ROOT
from devtools.testing.database import DatabaseTarget
from lib.dbkit.dsn import parse_database_url


def _doctor(
    *argv: str, url: str, pooler_hosts: str, password: str, read_url: str | None = None
) -> tuple[int, dict[str, str]]:
    # The URL travels in the environment, as in Lambda, so the password is not on a command line.
    environ = {**os.environ, "DATABASE_URL": url, "DB_POOLER_HOSTS": pooler_hosts}
    if read_url is not None:
        environ["DATABASE_READ_URL"] = read_url
    result = subprocess.run(
        [sys.executable, "-m", "lib.dbkit.doctor", *argv],
        cwd=ROOT,
        env=environ,
        capture_output=True,
        text=True,
        timeout=60,
        check=False,
    )
    output = result.stdout + result.stderr
    assert password not in output
    lines = dict(line.split(": ", 1) for line in result.stdout.splitlines() if ": " in line)
    return result.returncode, lines


def test_pooled_url_is_accepted_and_behaves_as_a_transaction_pooler(database: DatabaseTarget) -> None:
    status, lines = _doctor(
        "--mode", "serverless", url=database.pooled_url, pooler_hosts=database.pooler_hosts, password=database.password
    )
    assert status == 0, lines
    assert lines["verdict"] == "accepted"
    assert lines["transaction pooler"].startswith("yes (backend pids ")
    assert lines["tls version"] in ("TLSv1.2", "TLSv1.3")
    assert lines["round trip"].endswith("ms (median of 5 'select 1')")
    assert lines["url"].count("****") == 1


def test_direct_url_is_refused_in_serverless_mode(database: DatabaseTarget) -> None:
    status, lines = _doctor(
        "--mode", "serverless", url=database.direct_url, pooler_hosts=database.pooler_hosts, password=database.password
    )
    assert status == 2
    assert lines["verdict"].startswith("refused: PoolerRequiredError: ")


def test_direct_url_in_server_mode_is_not_pooled(database: DatabaseTarget) -> None:
    status, lines = _doctor(
        "--mode", "server", url=database.direct_url, pooler_hosts=database.pooler_hosts, password=database.password
    )
    assert status == 0, lines
    pids = lines["transaction pooler"]
    assert pids.startswith("no (backend pids ")
    first, second = pids.removeprefix("no (backend pids ").rstrip(")").split(", ")
    assert first != second


def test_migration_mode_accepts_direct_and_refuses_the_pooler(database: DatabaseTarget) -> None:
    direct = _doctor(
        "--mode", "migration", url=database.direct_url, pooler_hosts=database.pooler_hosts, password=database.password
    )
    assert direct[0] == 0, direct[1]
    pooled = _doctor(
        "--mode", "migration", url=database.pooled_url, pooler_hosts=database.pooler_hosts, password=database.password
    )
    assert pooled[0] == 2
    assert pooled[1]["verdict"].startswith("refused: DirectConnectionRequiredError: ")


def _nowhere(database: DatabaseTarget) -> str:
    """The direct URL on a free port: nothing listens there now, so the connection is refused at once."""
    with socket.socket() as probe:
        probe.bind(("127.0.0.1", 0))
        free_port = probe.getsockname()[1]
    head, _, query = database.direct_url.partition("?")
    userinfo, _, host_and_path = head.rpartition("@")
    path = host_and_path.partition("/")[2]
    url = f"{userinfo}@127.0.0.1:{free_port}/{path}?{query}"
    assert parse_database_url(url).port == free_port
    return url


def test_unreachable_port_exits_1(database: DatabaseTarget) -> None:
    url = _nowhere(database)
    status, lines = _doctor("--mode", "server", url=url, pooler_hosts=database.pooler_hosts, password=database.password)
    assert status == 1
    assert lines["verdict"].startswith("unreachable: ")


def test_url_given_as_argument(database: DatabaseTarget) -> None:
    status, lines = _doctor(
        database.pooled_url,
        "--mode",
        "serverless",
        "--pooler-hosts",
        database.pooler_hosts,
        url="",
        pooler_hosts="",
        password=database.password,
    )
    assert status == 0, lines
    assert lines["source"] == "DATABASE_URL"


def test_the_read_replica_is_probed_and_says_it_is_in_recovery(database: DatabaseTarget, replica_url: str) -> None:
    status, lines = _doctor(
        "--mode",
        "serverless",
        url=database.pooled_url,
        read_url=replica_url,
        pooler_hosts=database.pooler_hosts,
        password=database.password,
    )
    assert status == 0, lines
    assert lines["in recovery"] == "no (a primary: takes writes)"
    assert lines["replica in recovery"] == "yes (a hot standby: read-only)"
    assert lines["replica transaction pooler"].startswith("yes (backend pids ")
    assert lines["replica tls version"] in ("TLSv1.2", "TLSv1.3")
    assert "replica warning" not in lines
    assert lines["verdict"] == "accepted"


def test_primary_and_replica_swapped_are_each_warned(database: DatabaseTarget, replica_url: str) -> None:
    status, lines = _doctor(
        "--mode",
        "serverless",
        url=replica_url,
        read_url=database.pooled_url,
        pooler_hosts=database.pooler_hosts,
        password=database.password,
    )
    assert status == 0, lines
    assert lines["warning"].startswith("DATABASE_URL reaches a hot standby (a read replica): every write will fail")
    assert lines["replica warning"].startswith("DATABASE_READ_URL reaches a server that is not in recovery")


def test_an_unreachable_replica_is_the_verdict_while_the_primary_is_accepted(database: DatabaseTarget) -> None:
    status, lines = _doctor(
        "--mode",
        "server",
        url=database.direct_url,
        read_url=_nowhere(database),
        pooler_hosts=database.pooler_hosts,
        password=database.password,
    )
    assert status == 1
    assert lines["verdict"].startswith("the read replica (DATABASE_READ_URL) is unreachable: ")
    assert lines["verdict"].endswith("; the primary is accepted (read-only units run there)")
