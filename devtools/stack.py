"""Embedded Neon-like local stack: a Neon proxy stand-in, PgBouncer in transaction mode, PostgreSQL 15; TLS and SCRAM.

Usage: ``python -m devtools.stack up|down|status|env|restart-pgbouncer|restart-postgres``.

The pooled URL goes client -> devtools/neon_standin.py (Neon's proxy: SNI endpoint, Neon's errors, scale to zero)
-> PgBouncer -> Postgres, and names the endpoint in its host name as Neon's does; ``hostaddr`` makes clients connect
to 127.0.0.1 while TLS uses the host name (SNI, certificate check), so nothing resolves it. The direct URL goes
straight to Postgres. A read replica is a second endpoint on the stand-in: a hot standby streaming from the primary
(made with pg_basebackup), behind its own PgBouncer database, like a Neon read replica compute on the same branch.

Everything lives in ``.stack/`` (git-ignored). When run as root the servers run as an unprivileged user
(``postgres`` if it exists, else ``neonstack``), because initdb/postgres/pgbouncer refuse to run as root.
"""

from __future__ import annotations

import argparse
import contextlib
import glob
import hashlib
import json
import os
import pwd
import re
import resource
import secrets
import shlex
import shutil
import signal
import socket
import subprocess
import sys
import time
from dataclasses import asdict, dataclass
from pathlib import Path
from urllib.parse import quote

from devtools.paths import ROOT

# NEON_STACK_DIR lets a test run a second, independent stack next to the shared one.
STACK_DIR = Path(os.environ.get("NEON_STACK_DIR") or ROOT / ".stack").resolve()
STATE_FILE = STACK_DIR / "state.json"
ENV_FILE = STACK_DIR / "env"


def read_env(path: Path = ENV_FILE) -> dict[str, str]:
    """The `export NAME='value'` lines of the stack's env file ({} when the stack was never started)."""
    if not path.exists():
        return {}
    values: dict[str, str] = {}
    for line in path.read_text(encoding="utf-8").splitlines():
        words = shlex.split(line, comments=True)
        if len(words) == 2 and words[0] == "export" and "=" in words[1]:
            name, _, value = words[1].partition("=")
            values[name] = value
    return values


DATABASE = "neondb"
SINGLE_POOL_DATABASE = "neondb_single"
# PgBouncer's database for the hot standby; the stand-in sends the read replica endpoint's sessions there.
REPLICA_DATABASE_SUFFIX = "_replica"
REPLICA_DATABASE = DATABASE + REPLICA_DATABASE_SUFFIX
USER = "neondb_owner"
MAX_CONNECTIONS = 20
DEFAULT_POOL_SIZE = 10
MAX_CLIENT_CONN = 4000
FALLBACK_SERVICE_USER = "neonstack"
# The local endpoint, named like Neon's; its pooled host is <endpoint>-pooler.<domain>. ".localhost" is reserved for
# loopback (RFC 6761) and never resolved here: the URL's hostaddr says where to connect.
ENDPOINT_ID = "ep-local-stack-123456"
ENDPOINT_DOMAIN = "stack.localhost"
POOLED_HOST = f"{ENDPOINT_ID}-pooler.{ENDPOINT_DOMAIN}"
# The read replica's endpoint, as Neon names a read replica compute on the same branch: its own id and host.
READ_ENDPOINT_ID = "ep-local-stack-read-123456"
READ_POOLED_HOST = f"{READ_ENDPOINT_ID}-pooler.{ENDPOINT_DOMAIN}"
LOOPBACK = "127.0.0.1"


class StackError(RuntimeError):
    """The local stack could not be started or stopped; the message says what to do."""


@dataclass(frozen=True)
class StackState:
    """What a running stack needs to be found again: ports, password, where its files are."""

    pg_port: int
    pgbouncer_port: int
    password: str
    runtime_dir: str
    service_user: str
    pg_bin: str
    # Added with the Neon stand-in; 0 in state files written before it (ports are then picked at start).
    standin_port: int = 0
    standin_control_port: int = 0
    # Added with the read replica (a hot standby); 0 in older state files (a port is then picked at start).
    standby_port: int = 0

    @property
    def runtime(self) -> Path:
        return Path(self.runtime_dir)

    @property
    def ca_file(self) -> Path:
        return STACK_DIR / "certs" / "ca.crt"

    def url(self, port: int, database: str = DATABASE, *, host: str = "localhost") -> str:
        query = f"sslmode=verify-full&sslrootcert={quote(str(self.ca_file), safe='/')}"
        if host != "localhost":
            query += f"&hostaddr={LOOPBACK}"
        return f"postgresql://{USER}:{quote(self.password, safe='')}@{host}:{port}/{database}?{query}"

    @property
    def database_url(self) -> str:
        """Pooled, as Neon's: through the stand-in, the endpoint in the host name."""
        return self.url(self.standin_port, host=POOLED_HOST)

    @property
    def direct_database_url(self) -> str:
        return self.url(self.pg_port)

    @property
    def database_read_url(self) -> str:
        """The read replica, pooled, as Neon's: through the stand-in, the replica's endpoint in the host name."""
        return self.url(self.standin_port, host=READ_POOLED_HOST)

    @property
    def direct_database_read_url(self) -> str:
        """The hot standby itself (admin, tests that read its state)."""
        return self.url(self.standby_port)

    @property
    def single_pool_database_url(self) -> str:
        """PgBouncer's alias with one server connection (pooler tests), straight to PgBouncer."""
        return self.url(self.pgbouncer_port, SINGLE_POOL_DATABASE)

    @property
    def pgbouncer_database_url(self) -> str:
        """PgBouncer itself, without the stand-in in front (tests of the pooler alone, PgBouncer's admin console)."""
        return self.url(self.pgbouncer_port)

    @property
    def standin_control(self) -> str:
        return f"{LOOPBACK}:{self.standin_control_port}"

    @property
    def pooler_hosts(self) -> str:
        return (
            f"{POOLED_HOST}:{self.standin_port},{READ_POOLED_HOST}:{self.standin_port},localhost:{self.pgbouncer_port}"
        )

    def env_lines(self) -> list[str]:
        values = {
            "DATABASE_URL": self.database_url,
            "DIRECT_DATABASE_URL": self.direct_database_url,
            "DATABASE_READ_URL": self.database_read_url,
            "DIRECT_DATABASE_READ_URL": self.direct_database_read_url,
            "SINGLE_POOL_DATABASE_URL": self.single_pool_database_url,
            "PGBOUNCER_DATABASE_URL": self.pgbouncer_database_url,
            "DB_POOLER_HOSTS": self.pooler_hosts,
            "NEON_STANDIN_CONTROL": self.standin_control,
            "STACK_STANDIN_PORT": str(self.standin_port),
            "STACK_PGBOUNCER_PORT": str(self.pgbouncer_port),
            "STACK_POSTGRES_PORT": str(self.pg_port),
            "STACK_STANDBY_PORT": str(self.standby_port),
            "STACK_CA_FILE": str(self.ca_file),
        }
        return [f"export {name}='{value}'" for name, value in values.items()]


# --------------------------------------------------------------------------- helpers


def _log(message: str) -> None:
    print(f"[stack] {message}", file=sys.stderr, flush=True)


def _find_pg_bin() -> Path:
    override = os.environ.get("PG_BIN")
    candidates = [override] if override else sorted(glob.glob("/usr/lib/postgresql/*/bin"), reverse=True)
    for candidate in candidates:
        if candidate and (Path(candidate) / "initdb").exists():
            return Path(candidate)
    found = shutil.which("initdb")
    if found:
        return Path(found).parent
    raise StackError("PostgreSQL server binaries not found: run `make deps` (apt-get install postgresql) or set PG_BIN")


def _find_pgbouncer() -> str:
    found = shutil.which("pgbouncer") or shutil.which("pgbouncer", path="/usr/sbin:/usr/bin")
    if not found:
        raise StackError("pgbouncer not found: run `make deps` (apt-get install pgbouncer)")
    return found


def _service_user() -> str | None:
    """The OS user the servers run as, or None to run as the current (non-root) user."""
    if os.geteuid() != 0:
        return None
    for name in ("postgres", FALLBACK_SERVICE_USER):
        with contextlib.suppress(KeyError):
            pwd.getpwnam(name)
            return name
    subprocess.run(
        ["useradd", "--system", "--no-create-home", "--shell", "/usr/sbin/nologin", FALLBACK_SERVICE_USER],
        check=True,
    )
    return FALLBACK_SERVICE_USER


def _as_service(user: str | None, argv: list[str]) -> list[str]:
    return ["runuser", "-u", user, "--", *argv] if user else argv


def _run(user: str | None, argv: list[str], **kwargs: object) -> subprocess.CompletedProcess[str]:
    result = subprocess.run(_as_service(user, argv), capture_output=True, text=True, check=False, **kwargs)  # type: ignore[call-overload]
    if result.returncode != 0:
        raise StackError(f"{' '.join(argv[:2])} failed ({result.returncode}):\n{result.stdout}{result.stderr}")
    return result  # type: ignore[no-any-return]


def _chown(path: Path, user: str | None) -> None:
    if user:
        entry = pwd.getpwnam(user)
        for item in [path, *path.rglob("*")]:
            os.chown(item, entry.pw_uid, entry.pw_gid)


def _can_reach(user: str | None, path: Path) -> bool:
    if user is None:
        return True
    return subprocess.run(_as_service(user, ["test", "-x", str(path)]), check=False).returncode == 0


def _free_port() -> int:
    with socket.socket(socket.AF_INET, socket.SOCK_STREAM) as sock:
        sock.bind(("127.0.0.1", 0))
        return int(sock.getsockname()[1])


def _port_free(port: int) -> bool:
    with socket.socket(socket.AF_INET, socket.SOCK_STREAM) as sock:
        try:
            sock.bind(("127.0.0.1", port))
        except OSError:
            return False
        return True


def _wait_for_port(port: int, timeout: float, what: str, log: Path) -> None:
    deadline = time.monotonic() + timeout
    while time.monotonic() < deadline:
        with contextlib.suppress(OSError), socket.create_connection(("127.0.0.1", port), timeout=0.5):
            return
        time.sleep(0.05)
    tail = log.read_text(errors="replace")[-2000:] if log.exists() else "(no log)"
    raise StackError(f"{what} did not start listening on port {port} within {timeout:.0f}s; log tail:\n{tail}")


def _pid_alive(pid_file: Path) -> int | None:
    try:
        pid = int(pid_file.read_text().split()[0])
    except (OSError, ValueError, IndexError):
        return None
    try:
        os.kill(pid, 0)
    except ProcessLookupError:
        return None
    except PermissionError:
        return pid
    return pid


# --------------------------------------------------------------------------- certificates


def _make_certs(cert_dir: Path) -> None:
    """A local CA and a server certificate for localhost/127.0.0.1/::1, made once."""
    if (cert_dir / "server.crt").exists():
        return
    cert_dir.mkdir(parents=True, exist_ok=True)
    ssl = ["openssl"]
    subprocess.run(
        [*ssl, "req", "-x509", "-newkey", "ec", "-pkeyopt", "ec_paramgen_curve:prime256v1", "-nodes",
         "-keyout", "ca.key", "-out", "ca.crt", "-days", "3650", "-subj", "/CN=neon-template local CA",
         "-addext", "basicConstraints=critical,CA:TRUE", "-addext", "keyUsage=critical,keyCertSign,cRLSign"],
        cwd=cert_dir, check=True, capture_output=True,
    )  # fmt: skip
    subprocess.run(
        [*ssl, "req", "-newkey", "ec", "-pkeyopt", "ec_paramgen_curve:prime256v1", "-nodes",
         "-keyout", "server.key", "-out", "server.csr", "-subj", "/CN=localhost"],
        cwd=cert_dir, check=True, capture_output=True,
    )  # fmt: skip
    (cert_dir / "server.ext").write_text(
        "subjectAltName=DNS:localhost,IP:127.0.0.1,IP:::1\n"
        "basicConstraints=CA:FALSE\nkeyUsage=digitalSignature\nextendedKeyUsage=serverAuth\n"
    )
    subprocess.run(
        [*ssl, "x509", "-req", "-in", "server.csr", "-CA", "ca.crt", "-CAkey", "ca.key", "-CAcreateserial",
         "-out", "server.crt", "-days", "825", "-extfile", "server.ext"],
        cwd=cert_dir, check=True, capture_output=True,
    )  # fmt: skip
    (cert_dir / "server.key").chmod(0o600)


def _make_standin_cert(cert_dir: Path) -> None:
    """The stand-in's certificate from the same CA: any endpoint under ENDPOINT_DOMAIN, and localhost; made once."""
    if (cert_dir / "standin.crt").exists():
        return
    ssl = ["openssl"]
    subprocess.run(
        [*ssl, "req", "-newkey", "ec", "-pkeyopt", "ec_paramgen_curve:prime256v1", "-nodes",
         "-keyout", "standin.key", "-out", "standin.csr", "-subj", f"/CN=*.{ENDPOINT_DOMAIN}"],
        cwd=cert_dir, check=True, capture_output=True,
    )  # fmt: skip
    (cert_dir / "standin.ext").write_text(
        f"subjectAltName=DNS:*.{ENDPOINT_DOMAIN},DNS:localhost,IP:127.0.0.1\n"
        "basicConstraints=CA:FALSE\nkeyUsage=digitalSignature\nextendedKeyUsage=serverAuth\n"
    )
    subprocess.run(
        [*ssl, "x509", "-req", "-in", "standin.csr", "-CA", "ca.crt", "-CAkey", "ca.key", "-CAcreateserial",
         "-out", "standin.crt", "-days", "825", "-extfile", "standin.ext"],
        cwd=cert_dir, check=True, capture_output=True,
    )  # fmt: skip
    (cert_dir / "standin.key").chmod(0o600)


# --------------------------------------------------------------------------- neon stand-in


def _standin_pid_file(home: Path | None = None) -> Path:
    return (home or STACK_DIR) / "standin.pid"


def _start_standin(state: StackState, *, home: Path | None = None, upstream_port: int | None = None) -> None:
    """Start devtools/neon_standin.py as this user (it needs no server files); its log is .stack/standin.log.

    ``home`` holds its certificates, pid and log (.stack/ by default); ``upstream_port`` is PgBouncer's by default.
    """
    home = home or STACK_DIR
    if _pid_alive(_standin_pid_file(home)):
        return
    certs = home / "certs"
    log = home / "standin.log"
    argv = [
        sys.executable, "-m", "devtools.neon_standin", "serve",
        "--listen-port", str(state.standin_port), "--control-port", str(state.standin_control_port),
        "--upstream-port", str(upstream_port or state.pgbouncer_port),
        "--cert", str(certs / "standin.crt"), "--key", str(certs / "standin.key"), "--ca", str(certs / "ca.crt"),
        "--endpoint", ENDPOINT_ID, "--domain", ENDPOINT_DOMAIN,
        "--replica-endpoint", READ_ENDPOINT_ID, "--replica-database-suffix", REPLICA_DATABASE_SUFFIX,
    ]  # fmt: skip
    with log.open("ab") as output:
        process = subprocess.Popen(
            argv, cwd=ROOT, stdin=subprocess.DEVNULL, stdout=output, stderr=output, start_new_session=True
        )
    _standin_pid_file(home).write_text(f"{process.pid}\n")
    _wait_for_port(state.standin_port, 30, "the Neon stand-in", log)
    _wait_for_port(state.standin_control_port, 30, "the Neon stand-in's control port", log)


def _stop_standin(home: Path | None = None) -> None:
    pid_file = _standin_pid_file(home)
    pid = _pid_alive(pid_file)
    if pid is not None:
        _terminate(pid)
    with contextlib.suppress(FileNotFoundError):
        pid_file.unlink()


def _terminate(pid: int) -> None:
    os.kill(pid, signal.SIGTERM)
    deadline = time.monotonic() + 15
    while time.monotonic() < deadline:
        # A child of this process (the stand-in, when the same process started it) stays a zombie until reaped,
        # and kill(pid, 0) succeeds on a zombie: reap it, or this waits the whole 15 s for nothing.
        with contextlib.suppress(ChildProcessError):
            if os.waitpid(pid, os.WNOHANG)[0] == pid:
                return
        try:
            os.kill(pid, 0)
        except ProcessLookupError:
            return
        time.sleep(0.05)
    os.kill(pid, signal.SIGKILL)


# --------------------------------------------------------------------------- postgres


def _init_postgres(state: StackState) -> None:
    data = state.runtime / "pgdata"
    if (data / "PG_VERSION").exists():
        return
    user = state.service_user or None
    pwfile = state.runtime / "superuser.pw"
    pwfile.write_text(secrets.token_urlsafe(24) + "\n")
    _chown(state.runtime, user)
    pwfile.chmod(0o600)
    _run(user, [
        str(Path(state.pg_bin) / "initdb"), "-D", str(data), "-U", "postgres", "--pwfile", str(pwfile),
        "--auth-local=trust", "--auth-host=scram-sha-256", "-E", "UTF8", "--locale=C.UTF-8",
    ])  # fmt: skip
    pwfile.unlink()
    certs = state.runtime / "certs"
    conf = f"""
listen_addresses = '127.0.0.1'
port = {state.pg_port}
unix_socket_directories = '{state.runtime / "sock"}'
max_connections = {MAX_CONNECTIONS}
superuser_reserved_connections = 2
password_encryption = 'scram-sha-256'
ssl = on
ssl_cert_file = '{certs / "server.crt"}'
ssl_key_file = '{certs / "server.key"}'
ssl_min_protocol_version = 'TLSv1.2'
shared_buffers = 32MB
fsync = off
synchronous_commit = off
full_page_writes = off
log_min_messages = warning
log_connections = off
{_PRIMARY_REPLICATION_CONF}"""
    with (data / "postgresql.conf").open("a") as handle:
        handle.write(conf)
    # TCP clients must use TLS and SCRAM, like Neon; the local socket (0700, service user only) is for admin.
    (data / "pg_hba.conf").write_text(
        "local all postgres trust\n"
        f"{_REPLICATION_HBA}\n"
        "local all all scram-sha-256\n"
        "hostssl all all 127.0.0.1/32 scram-sha-256\n"
        "hostssl all all ::1/128 scram-sha-256\n"
    )
    _chown(data, user)


def _start_postgres(state: StackState) -> None:
    _start_cluster(state, state.runtime / "pgdata", state.pg_port, state.runtime / "postgres.log", "PostgreSQL")


def _start_cluster(state: StackState, data: Path, port: int, log: Path, what: str) -> None:
    user = state.service_user or None
    status = subprocess.run(
        _as_service(user, [str(Path(state.pg_bin) / "pg_ctl"), "status", "-D", str(data)]),
        capture_output=True, check=False,
    )  # fmt: skip
    if status.returncode == 0:
        return
    _run(user, [str(Path(state.pg_bin) / "pg_ctl"), "start", "-w", "-t", "60", "-D", str(data), "-l", str(log),
                "-o", f"-p {port}"])  # fmt: skip
    _wait_for_port(port, 30, what, log)


def psql_admin(state: StackState, sql: str, *, database: str = "postgres", port: int | None = None) -> str:
    """Run `sql` as superuser over the admin socket (the primary, or the cluster on `port`); returns psql's output."""
    argv = [str(Path(state.pg_bin) / "psql"), "-X", "-q", "-t", "-A", "-v", "ON_ERROR_STOP=1",
            "-h", str(state.runtime / "sock"), "-p", str(port or state.pg_port), "-U", "postgres", "-d", database,
            "-c", sql]  # fmt: skip
    return _run(state.service_user or None, argv).stdout


def _bootstrap_database(state: StackState) -> None:
    # CREATEDB as Neon's console roles have it: the migration tests make throwaway databases over the direct URL.
    can_create_databases = psql_admin(state, f"SELECT rolcreatedb FROM pg_roles WHERE rolname = '{USER}'").strip()
    if not can_create_databases:
        psql_admin(state, f"CREATE ROLE {USER} LOGIN CREATEDB PASSWORD '{state.password}'")
    elif can_create_databases != "t":
        psql_admin(state, f"ALTER ROLE {USER} CREATEDB")
    if not psql_admin(state, f"SELECT 1 FROM pg_database WHERE datname = '{DATABASE}'").strip():
        psql_admin(state, f"CREATE DATABASE {DATABASE} OWNER {USER}")


def _stop_postgres(state: StackState) -> None:
    _stop_cluster(state, state.runtime / "pgdata")


def _stop_cluster(state: StackState, data: Path) -> None:
    if _pid_alive(data / "postmaster.pid") is None:
        return
    subprocess.run(
        _as_service(state.service_user or None,
                    [str(Path(state.pg_bin) / "pg_ctl"), "stop", "-w", "-t", "60", "-m", "fast", "-D", str(data)]),
        capture_output=True, check=False,
    )  # fmt: skip


# --------------------------------------------------------------------------- hot standby (the read replica)

# The standby streams WAL from the primary over the admin socket (the superuser, trusted on the local socket only).
# WAL is kept for a standby that was stopped a while (a replication slot would keep it forever once the standby is
# gone).
_REPLICATION_HBA = "local replication postgres trust"
_PRIMARY_REPLICATION_CONF = """wal_level = replica
wal_keep_size = '256MB'
"""
# hot_standby_feedback: a long read on the standby is not cancelled by the vacuum of rows it still sees.
_STANDBY_CONF = """hot_standby = on
hot_standby_feedback = on
"""


def _standby_data(state: StackState) -> Path:
    return state.runtime / "standby"


def _ensure_replication_access(state: StackState) -> None:
    """Clusters made before the read replica: allow the local replication connection (a reload, no restart)."""
    data = state.runtime / "pgdata"
    hba = data / "pg_hba.conf"
    rules = hba.read_text()
    if _REPLICATION_HBA in rules.splitlines():
        return
    hba.write_text(f"{_REPLICATION_HBA}\n{rules}")
    with (data / "postgresql.conf").open("a") as handle:
        handle.write(_PRIMARY_REPLICATION_CONF)
    psql_admin(state, "SELECT pg_reload_conf()")


def _init_standby(state: StackState) -> None:
    """A hot standby of the running primary, made once with pg_basebackup (streaming the WAL it needs)."""
    data = _standby_data(state)
    if (data / "PG_VERSION").exists():
        return
    _ensure_replication_access(state)
    shutil.rmtree(data, ignore_errors=True)
    # --no-sync: a throwaway cluster (the primary runs with fsync off too); --checkpoint=fast: no wait for one.
    _run(state.service_user or None, [
        str(Path(state.pg_bin) / "pg_basebackup"), "-h", str(state.runtime / "sock"), "-p", str(state.pg_port),
        "-U", "postgres", "-D", str(data), "--write-recovery-conf", "--wal-method=stream", "--checkpoint=fast",
        "--no-sync",
    ])  # fmt: skip
    with (data / "postgresql.conf").open("a") as handle:
        handle.write(_STANDBY_CONF)


def _follow_primary_port(state: StackState, data: Path) -> bool:
    """Point the standby's primary_conninfo at the primary's port of this start (it moves when another took it)."""
    auto_conf = data / "postgresql.auto.conf"
    if not auto_conf.exists():
        return False
    text = auto_conf.read_text()
    followed = re.sub(r"(primary_conninfo = '.*?\bport=)\d+", rf"\g<1>{state.pg_port}", text)
    if followed == text:
        return False
    auto_conf.write_text(followed)
    return True


def _start_standby(state: StackState) -> None:
    data = _standby_data(state)
    log = state.runtime / "standby.log"
    moved = _follow_primary_port(state, data)
    try:
        _start_cluster(state, data, state.standby_port, log, "the hot standby")
        if moved:  # a standby left running reads primary_conninfo again on a reload (PostgreSQL 13+)
            psql_admin(state, "SELECT pg_reload_conf()", port=state.standby_port)
    except StackError:
        # A standby that cannot start (its primary's WAL it needs is gone, settings changed): make it again.
        _log("the hot standby did not start; making it again from the primary")
        shutil.rmtree(data, ignore_errors=True)
        _init_standby(state)
        _start_cluster(state, data, state.standby_port, log, "the hot standby")


def set_replay_paused(paused: bool) -> dict[str, object]:
    """Pause (or resume) the hot standby's WAL replay: the read replica then lags; returns its replication state."""
    state = require_state()
    psql_admin(state, f"SELECT pg_wal_replay_{'pause' if paused else 'resume'}()", port=state.standby_port)
    return replica_status(state)


def replica_status(state: StackState) -> dict[str, object]:
    """The hot standby's replication state, as it reports it."""
    row = psql_admin(
        state,
        "SELECT pg_is_in_recovery(), pg_get_wal_replay_pause_state(), pg_last_wal_receive_lsn(), "
        "pg_last_wal_replay_lsn(), round(extract(epoch FROM now() - pg_last_xact_replay_timestamp()), 3)",
        port=state.standby_port,
    )
    in_recovery, pause_state, received, replayed, since_last_replay = row.strip().split("|")
    return {
        "in_recovery": in_recovery == "t",
        "replay": pause_state,
        "received_lsn": received or None,
        "replayed_lsn": replayed or None,
        "seconds_since_last_replayed_commit": float(since_last_replay) if since_last_replay else None,
    }


# --------------------------------------------------------------------------- pgbouncer


def _write_pgbouncer_config(state: StackState) -> Path:
    runtime = state.runtime
    certs = runtime / "certs"
    server = f"host={runtime / 'sock'} port={state.pg_port} dbname={DATABASE}"
    ini = f"""[databases]
{DATABASE} = {server}
{SINGLE_POOL_DATABASE} = {server} pool_size=1
{REPLICA_DATABASE} = host={runtime / "sock"} port={state.standby_port} dbname={DATABASE}

[pgbouncer]
listen_addr = 127.0.0.1
listen_port = {state.pgbouncer_port}
unix_socket_dir =
pool_mode = transaction
auth_type = scram-sha-256
auth_file = {runtime / "userlist.txt"}
default_pool_size = {DEFAULT_POOL_SIZE}
max_client_conn = {MAX_CLIENT_CONN}
max_db_connections = {MAX_CONNECTIONS - 4}
query_wait_timeout = 120
client_tls_sslmode = require
client_tls_cert_file = {certs / "server.crt"}
client_tls_key_file = {certs / "server.key"}
client_tls_ca_file = {certs / "ca.crt"}
client_tls_protocols = tlsv1.2,tlsv1.3
ignore_startup_parameters = extra_float_digits,options
admin_users = {USER}
stats_users = {USER}
logfile = {runtime / "pgbouncer.log"}
pidfile = {runtime / "pgbouncer.pid"}
log_connections = 0
log_disconnections = 0
"""
    config = runtime / "pgbouncer.ini"
    config.write_text(ini)
    userlist = runtime / "userlist.txt"
    userlist.write_text(f'"{USER}" "{state.password}"\n')
    userlist.chmod(0o600)
    _chown(runtime, state.service_user or None)
    return config


def _start_pgbouncer(state: StackState, config: Path | None = None) -> None:
    """Start PgBouncer with the stack's configuration, or ``config`` (its pidfile and logfile in the runtime dir)."""
    pid_file = state.runtime / "pgbouncer.pid"
    if _pid_alive(pid_file):
        return
    config = config or _write_pgbouncer_config(state)
    log = state.runtime / "pgbouncer.log"
    # runuser resets the soft descriptor limit to 1024; PgBouncer needs one per client and server connection.
    _soft, hard = resource.getrlimit(resource.RLIMIT_NOFILE)
    limit = min(hard, MAX_CLIENT_CONN * 2 + 100) if hard != resource.RLIM_INFINITY else MAX_CLIENT_CONN * 2 + 100
    shell = f'ulimit -n {limit} 2>/dev/null; exec "$0" "$@"'
    _run(state.service_user or None, ["sh", "-c", shell, _find_pgbouncer(), "-d", "-q", str(config)])
    _wait_for_port(state.pgbouncer_port, 30, "PgBouncer", log)


def _stop_pgbouncer(state: StackState) -> None:
    pid_file = state.runtime / "pgbouncer.pid"
    pid = _pid_alive(pid_file)
    if pid is None:
        return
    _terminate(pid)
    with contextlib.suppress(FileNotFoundError):
        pid_file.unlink()


# --------------------------------------------------------------------------- state


def _load_state() -> StackState | None:
    try:
        return StackState(**json.loads(STATE_FILE.read_text()))
    except (OSError, ValueError, TypeError):
        return None


def _new_state() -> StackState:
    user = _service_user()
    STACK_DIR.mkdir(exist_ok=True)
    runtime = STACK_DIR / "run"
    if not _can_reach(user, STACK_DIR):
        # The checkout sits somewhere the service user cannot traverse (e.g. under /root): keep the servers'
        # files in a private folder of their own instead.
        runtime = Path("/tmp") / f"neon-template-stack-{hashlib.sha256(str(STACK_DIR).encode()).hexdigest()[:12]}"  # noqa: S108
    return StackState(
        pg_port=_free_port(),
        standby_port=_free_port(),
        pgbouncer_port=_free_port(),
        password=secrets.token_urlsafe(18),
        runtime_dir=str(runtime),
        service_user=user or "",
        pg_bin=str(_find_pg_bin()),
        standin_port=_free_port(),
        standin_control_port=_free_port(),
    )


def _write_env(state: StackState) -> None:
    ENV_FILE.write_text("# Written by `make stack-up`; source it: . .stack/env\n" + "\n".join(state.env_lines()) + "\n")
    ENV_FILE.chmod(0o600)


def up() -> StackState:
    """Start the stack (or reuse the running one) and write .stack/env."""
    state = _load_state()
    if state is None or not (state.runtime / "pgdata" / "PG_VERSION").exists():
        state = _new_state()
    else:
        # Reuse the ports unless something else took them while the stack was down.
        pg_running = _postgres_pid(state) is not None
        bouncer_running = _pid_alive(state.runtime / "pgbouncer.pid") is not None
        if (not pg_running and not _port_free(state.pg_port)) or (
            not bouncer_running and not _port_free(state.pgbouncer_port)
        ):
            state = StackState(**{**asdict(state), "pg_port": _free_port(), "pgbouncer_port": _free_port()})
        standby_running = _pid_alive(_standby_data(state) / "postmaster.pid") is not None
        if not standby_running and not (state.standby_port and _port_free(state.standby_port)):
            state = StackState(**{**asdict(state), "standby_port": _free_port()})
        standin_running = _pid_alive(_standin_pid_file()) is not None
        if not standin_running and not all(
            port and _port_free(port) for port in (state.standin_port, state.standin_control_port)
        ):
            state = StackState(**{**asdict(state), "standin_port": _free_port(), "standin_control_port": _free_port()})
    state.runtime.mkdir(parents=True, exist_ok=True)
    state.runtime.chmod(0o700)
    _make_certs(STACK_DIR / "certs")
    _make_standin_cert(STACK_DIR / "certs")
    runtime_certs = state.runtime / "certs"
    runtime_certs.mkdir(exist_ok=True)
    for name in ("ca.crt", "server.crt", "server.key"):
        shutil.copy2(STACK_DIR / "certs" / name, runtime_certs / name)
    (state.runtime / "sock").mkdir(exist_ok=True)
    STATE_FILE.write_text(json.dumps(asdict(state), indent=2))
    STATE_FILE.chmod(0o600)
    _init_postgres(state)
    _chown(state.runtime, state.service_user or None)
    _start_postgres(state)
    _bootstrap_database(state)
    _init_standby(state)
    _start_standby(state)
    _start_pgbouncer(state)
    _start_standin(state)
    _write_env(state)
    return state


def down() -> None:
    """Stop both servers; leaves the data folder for a quick restart (`make stack-clean` removes it)."""
    state = _load_state()
    if state is None:
        return
    _stop_standin()
    _stop_pgbouncer(state)
    _stop_cluster(state, _standby_data(state))
    _stop_postgres(state)


def clean() -> None:
    """Stop the stack and delete its files."""
    state = _load_state()
    down()
    if state is not None and state.runtime.exists():
        shutil.rmtree(state.runtime)
    shutil.rmtree(STACK_DIR, ignore_errors=True)


def restart_pgbouncer() -> StackState:
    """Stop and start PgBouncer on the same port: every client and server connection is cut."""
    state = require_state()
    _stop_pgbouncer(state)
    _start_pgbouncer(state)
    return state


def restart_postgres() -> StackState:
    """Fast-stop and start PostgreSQL on the same port: every backend is terminated."""
    state = require_state()
    _stop_postgres(state)
    _start_postgres(state)
    return state


def _postgres_pid(state: StackState) -> int | None:
    return _pid_alive(state.runtime / "pgdata" / "postmaster.pid")


def status() -> dict[str, object]:
    state = _load_state()
    if state is None:
        return {"postgres": False, "standby": False, "pgbouncer": False, "neon_standin": False}
    return {
        "postgres": _postgres_pid(state) is not None,
        "standby": _pid_alive(_standby_data(state) / "postmaster.pid") is not None,
        "pgbouncer": _pid_alive(state.runtime / "pgbouncer.pid") is not None,
        "neon_standin": _pid_alive(_standin_pid_file()) is not None,
        "postgres_port": state.pg_port,
        "standby_port": state.standby_port,
        "pgbouncer_port": state.pgbouncer_port,
        "standin_port": state.standin_port,
    }


def require_state() -> StackState:
    """The running stack's state; StackError naming `make stack-up` when there is none."""
    state = _load_state()
    if state is None:
        raise StackError("the local stack is not set up: run `make stack-up`")
    return state


def is_running() -> bool:
    current = status()
    servers = ("postgres", "standby", "pgbouncer", "neon_standin")
    return all(bool(current[server]) for server in servers)


def run(command: list[str]) -> int:
    """Run a command with the stack up and .stack/env exported; stop the stack after only if this call started it."""
    was_running = is_running()
    state = up()
    env = {**os.environ}
    for line in state.env_lines():
        name, _, value = line.removeprefix("export ").partition("=")
        env[name] = value.strip("'")
    try:
        return subprocess.run(command, env=env, check=False).returncode
    finally:
        if not was_running:
            down()
            _log("stopped the stack this run started")


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(prog="python -m devtools.stack", description=__doc__)
    parser.add_argument(
        "command", choices=["up", "down", "clean", "status", "env", "restart-pgbouncer", "restart-postgres", "run"]
    )
    parser.add_argument("argv", nargs=argparse.REMAINDER, help="for run: the command to run with the stack up")
    args = parser.parse_args(argv)
    try:
        if args.command == "run":
            return run(args.argv[1:] if args.argv[:1] == ["--"] else args.argv)
        if args.command == "up":
            state = up()
            _log(
                f"PostgreSQL on localhost:{state.pg_port} (hot standby on localhost:{state.standby_port}), "
                f"PgBouncer on localhost:{state.pgbouncer_port}, Neon stand-in on {POOLED_HOST}:{state.standin_port} "
                f"and the read replica's {READ_POOLED_HOST} (at {LOOPBACK}), control on {state.standin_control}"
            )
            _log("environment written to .stack/env — use it with: . .stack/env ; stop with: make stack-down")
        elif args.command == "down":
            down()
            _log("stopped")
        elif args.command == "clean":
            clean()
            _log("stopped and removed .stack/")
        elif args.command == "status":
            print(json.dumps(status()))
        elif args.command == "env":
            print("\n".join(require_state().env_lines()))
        elif args.command == "restart-pgbouncer":
            restart_pgbouncer()
        elif args.command == "restart-postgres":
            restart_postgres()
    except StackError as error:
        _log(f"error: {error}")
        return 1
    return 0


if __name__ == "__main__":
    sys.exit(main())
