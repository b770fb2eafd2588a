"""`python -m lib.dbkit.doctor` against the real stack: verdicts, exit statuses and the transaction-pooler heuristic."""

from __future__ import annotations

import os
import socket
import subprocess
import sys

from devtools.paths import ROOT
from devtools.testing.database import DatabaseTarget
from lib.dbkit.dsn import parse_database_url


def _doctor(*argv: str, url: str, pooler_hosts: str, password: str) -> tuple[int, dict[str, str]]:
    # The URL travels in the environment, as in Lambda, so the password is not on a command line.
    environ = {**os.environ, "DATABASE_URL": url, "DB_POOLER_HOSTS": pooler_hosts}
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


def test_unreachable_port_exits_1(database: DatabaseTarget) -> None:
    with socket.socket() as probe:
        probe.bind(("127.0.0.1", 0))
        free_port = probe.getsockname()[1]
    # Nothing listens there now: the connection is refused at once.
    head, _, query = database.direct_url.partition("?")
    userinfo, _, host_and_path = head.rpartition("@")
    path = host_and_path.partition("/")[2]
    url = f"{userinfo}@127.0.0.1:{free_port}/{path}?{query}"
    assert parse_database_url(url).port == free_port
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
