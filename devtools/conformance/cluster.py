"""The throwaway cluster the suites run on: PostgreSQL, PgBouncer (transaction mode) and the Neon stand-in.

Created fresh under ``.stack/conformance/`` for each run and removed after it, with devtools/stack.py's functions
(binaries, service user, certificates, start and stop). It is not the local stack: its pg_hba lines, roles and
databases are the ones SQLAlchemy's README.unittests.rst and pg8000's test/dbapi ask for, and nothing here touches
the stack's ``neondb``.
"""

from __future__ import annotations

import contextlib
import hashlib
import secrets
import shutil
from collections.abc import Iterator
from dataclasses import dataclass, field
from pathlib import Path
from typing import Final

from devtools import stack

HOME: Final = stack.STACK_DIR / "conformance"
LOOPBACK: Final = "127.0.0.1"
# The server certificate names localhost: TLS routes connect to it by that name and verify it.
TLS_HOST: Final = "localhost"

# SQLAlchemy's README.unittests.rst: an empty UTF8 database `test`, schemas test_schema and test_schema_2, hstore
# and citext, English full-text search, prepared transactions. Its Docker recipe makes the user a superuser.
SQLA_USER: Final = "scott"
SQLA_DATABASE: Final = "test"
SQLA_SCHEMAS: Final = ("test_schema", "test_schema_2")
SQLA_EXTENSIONS: Final = ("hstore", "citext")
# pg8000's test/dbapi/conftest.py connects as postgres (a superuser: its tests create databases and ALTER SYSTEM)
# to the database postgres; its CI creates hstore there.
PG8000_USER: Final = "postgres"
PG8000_EXTENSIONS: Final = ("hstore",)
# test/dbapi/auth/test_<method>.py expect these databases to be refused or reached by that method (pg_hba.conf).
PG8000_AUTH_DATABASES: Final = {"pg8000_md5": "md5", "pg8000_gss": "gss", "pg8000_password": "password"}
# The stand-in routes by endpoint; the pooled endpoint name is the one it serves.
STANDIN_ENDPOINT_OPTION: Final = f"endpoint={stack.ENDPOINT_ID}-pooler"

_POSTGRES_CONF: Final = """
# devtools/conformance: more connections than the local stack (SQLAlchemy's engine tests open pools), and
# prepared transactions for its two-phase tests.
max_connections = 100
superuser_reserved_connections = 3
max_prepared_transactions = 10
"""


class ClusterError(RuntimeError):
    """The throwaway cluster could not be set up; the message says what to do."""


@dataclass(frozen=True)
class Route:
    """How a pg8000 test run reaches the server: port, TLS, negotiation, extra startup options."""

    name: str
    port: int
    tls: bool
    sslnegotiation: str = "postgres"
    startup_options: str | None = None


@dataclass(frozen=True)
class Cluster:
    """A running throwaway cluster: devtools.stack's state (ports, runtime dir, service user) plus the suites' roles."""

    state: stack.StackState
    home: Path
    sqla_password: str = field(repr=False)
    pg8000_password: str = field(repr=False)

    @property
    def ca_file(self) -> Path:
        return self.home / "certs" / "ca.crt"

    def sqla_url(self, drivername: str) -> str:
        """SQLAlchemy's test database, straight to Postgres (its suite needs session state: no pooler)."""
        return f"{drivername}://{SQLA_USER}:{self.sqla_password}@{LOOPBACK}:{self.state.pg_port}/{SQLA_DATABASE}"

    def routes(self) -> dict[str, Route]:
        """pg8000's suite: plain to Postgres (as pg8000's CI), PgBouncer, TLS by SSLRequest, TLS from the first byte."""
        return {
            "postgres": Route("postgres", self.state.pg_port, tls=False),
            "pgbouncer": Route("pgbouncer", self.state.pgbouncer_port, tls=True),
            "tls": Route("tls", self.state.pg_port, tls=True),
            # PostgreSQL before 17 and PgBouncer 1.18 take no direct TLS; the stand-in does: a Neon pooled endpoint,
            # stand-in -> PgBouncer -> Postgres (straight to Postgres, SCRAM-SHA-256-PLUS would bind the wrong TLS).
            "tls-direct": Route(
                "tls-direct",
                self.state.standin_port,
                tls=True,
                sslnegotiation="direct",
                startup_options=STANDIN_ENDPOINT_OPTION,
            ),
        }


def _runtime_dir(user: str | None, home: Path) -> Path:
    if stack._can_reach(user, home):
        return home / "run"
    # As devtools.stack: a checkout the service user cannot traverse keeps the servers' files in /tmp.
    return Path("/tmp") / f"neon-template-conformance-{hashlib.sha256(str(home).encode()).hexdigest()[:12]}"  # noqa: S108


def _hba() -> str:
    lines = [
        "local all postgres trust",
        # PgBouncer reaches Postgres over the socket with the client's SCRAM secret.
        "local all all scram-sha-256",
    ]
    for address in ("127.0.0.1/32", "::1/128"):
        lines += [f"host {database} all {address} {method}" for database, method in PG8000_AUTH_DATABASES.items()]
        # `host` takes TLS and plaintext: pg8000's suite runs both ways.
        lines.append(f"host all all {address} scram-sha-256")
    return "\n".join(lines) + "\n"


def _pgbouncer_ini(state: stack.StackState) -> str:
    runtime = state.runtime
    certs = runtime / "certs"
    return f"""[databases]
* = host={runtime / "sock"} port={state.pg_port}

[pgbouncer]
listen_addr = {LOOPBACK}
listen_port = {state.pgbouncer_port}
unix_socket_dir =
pool_mode = transaction
auth_type = scram-sha-256
auth_file = {runtime / "userlist.txt"}
default_pool_size = 20
max_client_conn = 400
client_tls_sslmode = allow
client_tls_cert_file = {certs / "server.crt"}
client_tls_key_file = {certs / "server.key"}
client_tls_ca_file = {certs / "ca.crt"}
client_tls_protocols = tlsv1.2,tlsv1.3
ignore_startup_parameters = extra_float_digits,options
# pg8000's tests connect to missing databases on purpose: PgBouncer then holds further logins to one for
# server_login_retry (15 s by default), longer than the stand-in waits, and the outcome would depend on timing.
server_login_retry = 1
logfile = {runtime / "pgbouncer.log"}
pidfile = {runtime / "pgbouncer.pid"}
log_connections = 0
log_disconnections = 0
"""


def _quote(text: str) -> str:
    return "'" + text.replace("'", "''") + "'"


def start(home: Path = HOME) -> Cluster:
    """A new cluster under ``home`` (any earlier one there is stopped and removed first)."""
    remove(home)
    user = stack._service_user()
    pg_bin = stack._find_pg_bin()
    home.mkdir(parents=True)
    runtime = _runtime_dir(user, home)
    state = stack.StackState(
        pg_port=stack._free_port(),
        pgbouncer_port=stack._free_port(),
        password="",
        runtime_dir=str(runtime),
        service_user=user or "",
        pg_bin=str(pg_bin),
        standin_port=stack._free_port(),
        standin_control_port=stack._free_port(),
    )
    (home / "runtime").write_text(str(runtime) + "\n")
    cluster = Cluster(state, home, secrets.token_urlsafe(18), secrets.token_urlsafe(18))
    runtime.mkdir(parents=True, exist_ok=True)
    runtime.chmod(0o700)
    stack._make_certs(home / "certs")
    stack._make_standin_cert(home / "certs")
    (runtime / "certs").mkdir(exist_ok=True)
    for name in ("ca.crt", "server.crt", "server.key"):
        shutil.copy2(home / "certs" / name, runtime / "certs" / name)
    (runtime / "sock").mkdir(exist_ok=True)
    stack._init_postgres(state)
    data = runtime / "pgdata"
    with (data / "postgresql.conf").open("a") as handle:
        handle.write(_POSTGRES_CONF)
    (data / "pg_hba.conf").write_text(_hba())
    stack._chown(runtime, user)
    stack._start_postgres(state)
    _bootstrap(cluster)
    userlist = runtime / "userlist.txt"
    userlist.write_text(f'"{PG8000_USER}" "{cluster.pg8000_password}"\n"{SQLA_USER}" "{cluster.sqla_password}"\n')
    userlist.chmod(0o600)
    ini = runtime / "pgbouncer.ini"
    ini.write_text(_pgbouncer_ini(state))
    stack._chown(runtime, user)
    stack._start_pgbouncer(state, ini)
    stack._start_standin(state, home=home)
    return cluster


def _bootstrap(cluster: Cluster) -> None:
    state = cluster.state
    stack.psql_admin(state, f"ALTER ROLE {PG8000_USER} PASSWORD {_quote(cluster.pg8000_password)}")
    stack.psql_admin(state, f"CREATE ROLE {SQLA_USER} LOGIN SUPERUSER PASSWORD {_quote(cluster.sqla_password)}")
    _create_extensions(state, PG8000_EXTENSIONS, "postgres")
    fresh_sqla_database(cluster)


def _psql_script(state: stack.StackState, script: str, database: str = "postgres") -> None:
    """Run a psql script as the superuser over the admin socket: one session, each statement on its own."""
    argv = [str(Path(state.pg_bin) / "psql"), "-X", "-q", "-t", "-A", "-v", "ON_ERROR_STOP=1", "-f", "-",
            "-h", str(state.runtime / "sock"), "-p", str(state.pg_port), "-U", "postgres", "-d", database]  # fmt: skip
    stack._run(state.service_user or None, argv, input=script)


def fresh_sqla_database(cluster: Cluster) -> None:
    """Drop and create SQLAlchemy's `test` database as its README asks: each target starts from an empty one."""
    state = cluster.state
    _psql_script(
        state,
        f"""DROP DATABASE IF EXISTS {SQLA_DATABASE} WITH (FORCE);
CREATE DATABASE {SQLA_DATABASE} OWNER {SQLA_USER} ENCODING 'UTF8' TEMPLATE template0;
ALTER DATABASE {SQLA_DATABASE} SET default_text_search_config = 'pg_catalog.english';
""",
    )
    schemas = "".join(f"CREATE SCHEMA {schema} AUTHORIZATION {SQLA_USER};\n" for schema in SQLA_SCHEMAS)
    _psql_script(state, schemas, SQLA_DATABASE)
    _create_extensions(state, SQLA_EXTENSIONS, SQLA_DATABASE)
    # test_array_str_collation uses COLLATE "en_US", which a C.UTF-8 cluster lacks unless the OS has that locale.
    with contextlib.suppress(stack.StackError):
        _psql_script(
            state, """CREATE COLLATION IF NOT EXISTS "en_US" (provider = icu, locale = 'en-US');""", SQLA_DATABASE
        )


# Undoes what a run leaves in the cluster (SQLAlchemy's own database is made anew before each of its runs).
_RESET: Final = f"""SELECT pg_terminate_backend(pid, 10000) FROM pg_stat_activity
  WHERE pid <> pg_backend_pid() AND backend_type = 'client backend';
SELECT format('DROP DATABASE %I WITH (FORCE)', datname) FROM pg_database
  WHERE datname NOT IN ('postgres', 'template0', 'template1', '{SQLA_DATABASE}') \\gexec
DO $$DECLARE r record; BEGIN
FOR r IN SELECT rolname FROM pg_roles WHERE rolname NOT IN ('{PG8000_USER}', '{SQLA_USER}') AND rolname !~ '^pg_' LOOP
  EXECUTE format('DROP OWNED BY %I CASCADE', r.rolname);
  EXECUTE format('DROP ROLE %I', r.rolname);
END LOOP; END$$;
DO $$DECLARE r record; BEGIN
FOR r IN SELECT nspname FROM pg_namespace WHERE nspname !~ '^pg_' AND nspname <> 'information_schema' LOOP
  EXECUTE format('DROP SCHEMA %I CASCADE', r.nspname);
END LOOP; END$$;
CREATE SCHEMA public AUTHORIZATION pg_database_owner;
GRANT USAGE ON SCHEMA public TO PUBLIC;
{"".join(f"CREATE EXTENSION {name};" for name in PG8000_EXTENSIONS)}
ALTER SYSTEM RESET ALL;
SELECT pg_reload_conf();
"""


def reset(cluster: Cluster) -> None:
    """Undo what a run left behind, so every run starts alike: sessions, databases, roles, objects, ALTER SYSTEM.

    A failing test skips its own cleanup (pg8000's leave roles and tables behind), and PgBouncer's server connections
    carry session state (temporary tables, settings) from one client to the next: without this, a run would see
    what the run before it left, and the comparison would be of the order, not of the drivers. Every session is
    ended, PgBouncer's server connections too (it drops them when their server goes, and opens new ones).
    """
    _psql_script(cluster.state, _RESET)


def _create_extensions(state: stack.StackState, names: tuple[str, ...], database: str) -> None:
    try:
        stack.psql_admin(
            state, "; ".join(f"CREATE EXTENSION IF NOT EXISTS {name}" for name in names), database=database
        )
    except stack.StackError as error:
        raise ClusterError(
            f"could not create the extensions {', '.join(names)} the suites need: install PostgreSQL's contrib "
            f"modules (`make deps`; apt-get install postgresql-contrib)\n{error}"
        ) from error


def _load(home: Path) -> stack.StackState | None:
    """What stop() needs of a cluster left behind (a crashed run): where its servers' files are."""
    marker = home / "runtime"
    if not marker.exists():
        return None
    runtime = Path(marker.read_text().strip())
    data = runtime / "pgdata"
    if not (data / "PG_VERSION").exists():
        return None
    user = stack._service_user()
    return stack.StackState(
        pg_port=0,
        pgbouncer_port=0,
        password="",
        runtime_dir=str(runtime),
        service_user=user or "",
        pg_bin=str(stack._find_pg_bin()),
    )


def stop(home: Path = HOME) -> None:
    """Stop the cluster's servers (nothing is left running)."""
    stack._stop_standin(home)
    state = _load(home)
    if state is not None:
        stack._stop_pgbouncer(state)
        stack._stop_postgres(state)


def remove(home: Path = HOME) -> None:
    """Stop the cluster and delete its files."""
    stop(home)
    marker = home / "runtime"
    if marker.exists():
        shutil.rmtree(Path(marker.read_text().strip()), ignore_errors=True)
    shutil.rmtree(home, ignore_errors=True)


@contextlib.contextmanager
def running(home: Path = HOME, *, keep: bool = False) -> Iterator[Cluster]:
    """A fresh cluster for the duration of the block; removed after it unless ``keep``."""
    cluster = start(home)
    try:
        yield cluster
    finally:
        if keep:
            stop(home)
        else:
            remove(home)
