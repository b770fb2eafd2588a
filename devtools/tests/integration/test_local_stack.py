"""The embedded stack is Neon-like: verified TLS, SCRAM, PgBouncer in transaction mode, a small Postgres."""

from __future__ import annotations

import os
import socket
import ssl
import subprocess
import sys
import time
from collections.abc import Iterator
from pathlib import Path
from urllib.parse import unquote, urlsplit

import pg8000.native
import pytest

from devtools import stack
from devtools.paths import ROOT
from devtools.testing.database import DatabaseTarget
from devtools.testing.urls import with_params

pytestmark = pytest.mark.local_stack


def _psql(url: str, sql: str) -> subprocess.CompletedProcess[str]:
    return subprocess.run(
        ["psql", url, "-X", "-A", "-t", "-v", "ON_ERROR_STOP=1", "-c", sql],
        capture_output=True, text=True, timeout=30, check=False,
    )  # fmt: skip


def _native(url: str) -> pg8000.native.Connection:
    parts = urlsplit(url)
    query = dict(item.split("=", 1) for item in parts.query.split("&"))
    context = ssl.create_default_context(cafile=unquote(query["sslrootcert"]))
    return pg8000.native.Connection(
        user=unquote(parts.username or ""),
        password=unquote(parts.password or ""),
        host=parts.hostname or "",
        port=parts.port or 5432,
        database=parts.path.lstrip("/"),
        ssl_context=context,
        timeout=10,
    )


def test_psql_reaches_the_pooler_over_verified_tls(database: DatabaseTarget) -> None:
    result = _psql(database.pooled_url, "select 40 + 2")
    assert result.returncode == 0, result.stderr
    assert result.stdout.strip() == "42"
    assert "sslmode=verify-full" in database.pooled_url


def test_direct_connections_are_tls_13(database: DatabaseTarget) -> None:
    result = _psql(database.direct_url, "select ssl, version from pg_stat_ssl where pid = pg_backend_pid()")
    assert result.returncode == 0, result.stderr
    assert result.stdout.strip() == "t|TLSv1.3"


def test_pooler_refuses_plaintext(database: DatabaseTarget) -> None:
    plaintext = database.pooler_url.replace("sslmode=verify-full", "sslmode=disable")
    result = _psql(plaintext, "select 1")
    assert result.returncode != 0
    assert "SSL required" in result.stderr


def test_postgres_refuses_plaintext(database: DatabaseTarget) -> None:
    plaintext = database.direct_url.replace("sslmode=verify-full", "sslmode=disable")
    result = _psql(plaintext, "select 1")
    assert result.returncode != 0
    assert "no encryption" in result.stderr


def test_wrong_ca_fails_closed(database: DatabaseTarget, tmp_path: Path) -> None:
    other_ca = tmp_path / "other-ca.crt"
    subprocess.run(
        ["openssl", "req", "-x509", "-newkey", "ec", "-pkeyopt", "ec_paramgen_curve:prime256v1", "-nodes",
         "-keyout", str(tmp_path / "k"), "-out", str(other_ca), "-days", "1", "-subj", "/CN=other"],
        check=True, capture_output=True,
    )  # fmt: skip
    result = _psql(with_params(database.pooled_url, sslrootcert=str(other_ca)), "select 1")
    assert result.returncode != 0
    assert "certificate verify failed" in result.stderr


def test_wrong_password_is_refused_by_scram(database: DatabaseTarget) -> None:
    url = database.pooler_url.replace(database.password, "not-the-password")
    result = _psql(url, "select 1")
    assert result.returncode != 0
    assert "SASL authentication failed" in result.stderr


def test_pgbouncer_runs_transaction_mode_with_scram(database: DatabaseTarget) -> None:
    admin = database.pooler_url.replace("/neondb?", "/pgbouncer?")
    result = _psql(admin, "SHOW CONFIG")
    assert result.returncode == 0, result.stderr
    config = {line.split("|")[0]: line.split("|")[1] for line in result.stdout.splitlines() if "|" in line}
    assert config["pool_mode"] == "transaction"
    assert config["auth_type"] == "scram-sha-256"
    assert config["client_tls_sslmode"] == "require"


def test_postgres_is_small_so_exhaustion_is_observable(database: DatabaseTarget) -> None:
    result = _psql(database.direct_url, "show max_connections")
    assert result.stdout.strip() == str(stack.MAX_CONNECTIONS) == "20"
    result = _psql(database.direct_url, "select rolpassword like 'SCRAM-SHA-256$%' from pg_authid limit 0")
    # pg_authid is superuser-only: the app role is not a superuser, like Neon's neondb_owner.
    assert result.returncode != 0


def test_two_clients_share_one_server_backend_through_the_pooler(database: DatabaseTarget) -> None:
    assert database.single_pool_url is not None
    first, second = _native(database.single_pool_url), _native(database.single_pool_url)
    try:
        pids = [conn.run("select pg_backend_pid()")[0][0] for conn in (first, second, first, second)]
    finally:
        first.close()
        second.close()
    assert len(set(pids)) == 1, f"two client connections on a pool_size=1 pooler got backends {pids}"


def test_two_direct_clients_have_their_own_backends(database: DatabaseTarget) -> None:
    first, second = _native(database.direct_url), _native(database.direct_url)
    try:
        pids = {conn.run("select pg_backend_pid()")[0][0] for conn in (first, second)}
    finally:
        first.close()
        second.close()
    assert len(pids) == 2


def test_second_start_reuses_the_running_stack(database: DatabaseTarget) -> None:
    before = stack.status()
    again = stack.up()
    assert stack.status() == before
    assert again.database_url == database.pooled_url


def test_stack_files_are_ignored_by_git() -> None:
    root = Path(ROOT)
    for path in (".stack/env", ".stack/run/pgdata/PG_VERSION", ".venv/bin/python"):
        result = subprocess.run(["git", "check-ignore", "-q", path], cwd=root, check=False)
        assert result.returncode == 0, f"{path} is not git-ignored"


@pytest.fixture
def separate_stack(tmp_path: Path) -> Iterator[dict[str, str]]:
    env = {**os.environ, "NEON_STACK_DIR": str(tmp_path / "stack")}
    yield env
    subprocess.run([sys.executable, "-m", "devtools.stack", "clean"], env=env, cwd=ROOT, check=False)


def _port_open(port: int) -> bool:
    with socket.socket() as sock:
        sock.settimeout(1)
        return sock.connect_ex(("127.0.0.1", port)) == 0


def test_stack_down_leaves_nothing_running(separate_stack: dict[str, str]) -> None:
    cli = [sys.executable, "-m", "devtools.stack"]
    subprocess.run([*cli, "up"], env=separate_stack, cwd=ROOT, check=True, capture_output=True)
    env_file = Path(separate_stack["NEON_STACK_DIR"]) / "env"
    exports = dict(
        line.removeprefix("export ").split("=", 1) for line in env_file.read_text().splitlines() if "=" in line
    )
    pooled = exports["DATABASE_URL"].strip("'")
    assert _psql(pooled, "select 1").stdout.strip() == "1"
    # The read replica: a hot standby of this stack's Postgres, through the stand-in's second endpoint.
    replica = exports["DATABASE_READ_URL"].strip("'")
    assert "ep-local-stack-read-123456-pooler." in replica
    assert _psql(replica, "select pg_is_in_recovery(), current_database()").stdout.strip() == "t|neondb"
    servers = ("STACK_STANDIN_PORT", "STACK_PGBOUNCER_PORT", "STACK_POSTGRES_PORT", "STACK_STANDBY_PORT")
    ports = [int(exports[name].strip("'")) for name in servers]
    assert all(_port_open(port) for port in ports)

    subprocess.run([*cli, "down"], env=separate_stack, cwd=ROOT, check=True, capture_output=True)
    assert not any(_port_open(port) for port in ports)
    status = subprocess.run([*cli, "status"], env=separate_stack, cwd=ROOT, capture_output=True, text=True)
    assert '"postgres": false' in status.stdout
    assert '"standby": false' in status.stdout
    assert '"pgbouncer": false' in status.stdout
    assert '"neon_standin": false' in status.stdout


def _exports(env_file: Path) -> dict[str, str]:
    return {
        key: value.strip("'")
        for key, value in (
            line.removeprefix("export ").split("=", 1) for line in env_file.read_text().splitlines() if "=" in line
        )
    }


def test_the_standby_follows_the_primary_to_a_new_port(separate_stack: dict[str, str]) -> None:
    """Another process took the primary's port while the stack was down: the standby streams from the new one."""
    cli = [sys.executable, "-m", "devtools.stack"]
    env_file = Path(separate_stack["NEON_STACK_DIR"]) / "env"
    subprocess.run([*cli, "up"], env=separate_stack, cwd=ROOT, check=True, capture_output=True)
    old_port = int(_exports(env_file)["STACK_POSTGRES_PORT"])
    subprocess.run([*cli, "down"], env=separate_stack, cwd=ROOT, check=True, capture_output=True)
    with socket.socket() as squatter:
        squatter.bind(("127.0.0.1", old_port))
        squatter.listen()
        subprocess.run([*cli, "up"], env=separate_stack, cwd=ROOT, check=True, capture_output=True)
    exports = _exports(env_file)
    assert int(exports["STACK_POSTGRES_PORT"]) != old_port
    primary, replica = exports["DIRECT_DATABASE_URL"], exports["DATABASE_READ_URL"]
    written = _psql(primary, "create table if not exists moved (id int); select pg_current_wal_insert_lsn()")
    assert written.returncode == 0, written.stderr
    lsn = written.stdout.split()[-1]
    deadline = time.monotonic() + 20  # the walreceiver retries every 5 s (wal_retrieve_retry_interval)
    while _psql(replica, f"select pg_last_wal_replay_lsn() >= '{lsn}'::pg_lsn").stdout.strip() != "t":
        assert time.monotonic() < deadline, f"the standby never replayed {lsn} from the primary's new port"
        time.sleep(0.2)
