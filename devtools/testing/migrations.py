"""Throwaway databases for migration tests, and what those tests read and run on them (`make migrate` included)."""

from __future__ import annotations

import hashlib
import os
import subprocess
import sys
import uuid
from collections.abc import Iterator, Mapping
from contextlib import contextmanager
from dataclasses import dataclass, field
from pathlib import Path

from alembic import command
from alembic.script import ScriptDirectory
from sqlalchemy import Connection, Engine, text

from devtools import migrate
from devtools.paths import ROOT
from devtools.testing.database import DatabaseTarget
from devtools.testing.urls import with_database
from lib.dbkit.engine import build_engine
from lib.dbkit.settings import Settings

BOOKKEEPING_TABLES = ("alembic_version", "alembic_version_dbkit", "schema_migrations")

# Every column, constraint and index of the current schema, each with its full definition as the server prints it.
_SCHEMA = text(
    """
    SELECT 'column ' || table_name || '.' || column_name AS name,
           concat_ws(' ', data_type, CASE WHEN is_nullable = 'NO' THEN 'NOT NULL' END,
                     'DEFAULT ' || column_default) AS definition
    FROM information_schema.columns WHERE table_schema = current_schema()
    UNION ALL
    SELECT 'constraint ' || conrelid::regclass::text || '.' || conname, pg_get_constraintdef(oid)
    FROM pg_constraint WHERE connamespace = current_schema()::regnamespace
    UNION ALL
    SELECT 'index ' || indexname, indexdef FROM pg_indexes WHERE schemaname = current_schema()
    """
)


@dataclass
class Throwaway:
    """A new, empty database on the test server, reached over the direct URL; dropped after the test."""

    name: str
    url: str = field(repr=False)
    pooler_hosts: str

    @property
    def environ(self) -> dict[str, str]:
        """The variables `make migrate` reads, naming this database (and DB_DRIVER, for a run on the stock driver)."""
        driver = {"DB_DRIVER": os.environ["DB_DRIVER"]} if "DB_DRIVER" in os.environ else {}
        return {"DIRECT_DATABASE_URL": self.url, "DB_POOLER_HOSTS": self.pooler_hosts, **driver}

    def engine(self) -> Engine:
        return build_engine(Settings.for_migration(self.environ))


def admin_engine(database: DatabaseTarget) -> Engine:
    """The test server's own database over the direct URL, on SQLAlchemy's stock pg8000 dialect (DBAPI autocommit)."""
    settings = Settings.for_migration(
        {"DIRECT_DATABASE_URL": database.direct_url, "DB_POOLER_HOSTS": database.pooler_hosts, "DB_DRIVER": "stock"}
    )
    return build_engine(settings)


def _autocommit(engine: Engine, statement: str) -> None:
    # CREATE/DROP DATABASE cannot run in a transaction; this is the direct connection (never the pooler).
    with engine.connect() as connection:
        dbapi_connection = connection.connection.dbapi_connection
        assert dbapi_connection is not None
        dbapi_connection.autocommit = True
        try:
            dbapi_connection.cursor().execute(statement)
        finally:
            dbapi_connection.autocommit = False


@contextmanager
def throwaway_database(database: DatabaseTarget, admin: Engine) -> Iterator[Throwaway]:
    """A new empty database on the test server for the block, dropped (connections and all) after it."""
    name = f"test_migrations_{uuid.uuid4().hex[:12]}"
    _autocommit(admin, f"CREATE DATABASE {name}")
    try:
        yield Throwaway(name, with_database(database.direct_url, name), database.pooler_hosts)
    finally:
        _autocommit(admin, f"DROP DATABASE IF EXISTS {name} WITH (FORCE)")


def schema_of(target: Throwaway) -> dict[str, str]:
    """The database's columns, constraints and indexes (bookkeeping tables left out) with their definitions."""
    engine = target.engine()
    try:
        with engine.connect() as connection:
            rows = connection.execute(_SCHEMA).all()
    finally:
        engine.dispose()
    return {
        row.name: row.definition
        for row in rows
        if not any(f" {table}." in row.name or f" {table}_" in row.name for table in BOOKKEEPING_TABLES)
    }


def tables_of(target: Throwaway) -> set[str]:
    """The names of the database's tables."""
    return {str(row[0]) for row in run_sql(target, "SELECT tablename FROM pg_tables WHERE schemaname = 'public'")}


def run_sql(target: Throwaway, sql: str, parameters: Mapping[str, object] | None = None) -> list[tuple[object, ...]]:
    """One statement in its own transaction; its rows, if it returns any."""
    engine = target.engine()
    try:
        with engine.begin() as connection:
            result = connection.execute(text(sql), dict(parameters or {}))
            return [tuple(row) for row in result] if result.returns_rows else []
    finally:
        engine.dispose()


def apply_legacy_files(target: Throwaway, files: list[Path]) -> None:
    """What the numbered-SQL runner (before Alembic) did: each file as one simple query, recorded with its checksum."""
    engine = target.engine()
    try:
        with engine.begin() as connection:
            connection.exec_driver_sql(
                "CREATE TABLE IF NOT EXISTS schema_migrations (version text PRIMARY KEY, checksum text NOT NULL, "
                "applied_at timestamptz NOT NULL DEFAULT now())"
            )
            for path in files:
                sql = path.read_text(encoding="utf-8")
                connection.exec_driver_sql(sql)
                _record(connection, path.stem, hashlib.sha256(sql.encode()).hexdigest())
    finally:
        engine.dispose()


def _record(connection: Connection, version: str, checksum: str) -> None:
    connection.execute(
        text("INSERT INTO schema_migrations (version, checksum) VALUES (:version, :checksum)"),
        {"version": version, "checksum": checksum},
    )


def make_migrate(target: Throwaway) -> subprocess.CompletedProcess[str]:
    """`make migrate` as CI runs it: DIRECT_DATABASE_URL set, so no local stack is started or read."""
    env = {"PATH": os.environ.get("PATH", ""), "HOME": os.environ.get("HOME", ""), **target.environ}
    return subprocess.run(
        ["make", "--no-print-directory", "migrate"], cwd=ROOT, env=env, capture_output=True, text=True, timeout=300
    )


def script_heads() -> dict[str, tuple[str, ...]]:
    """Each history's head revisions, as its scripts declare them."""
    return {history: migrate.heads(history) for history in migrate.HISTORIES}


def revisions_oldest_first(history: str) -> list[str]:
    """A history's revisions, its first one first."""
    script = ScriptDirectory.from_config(migrate.alembic_config(history, {}))
    return [revision.revision for revision in reversed(list(script.walk_revisions()))]


def assert_each_revision_reverses(target: Throwaway, history: str) -> None:
    """Up one revision at a time (each changes the schema), then down again through the same schemas, then up."""
    config = migrate.alembic_config(history, target.environ)
    revisions = revisions_oldest_first(history)
    schemas = [schema_of(target)]
    for revision in revisions:
        command.upgrade(config, revision)
        schemas.append(schema_of(target))
        assert schemas[-1] != schemas[-2], f"{revision} changed nothing"
    for step in range(len(revisions), 0, -1):
        command.downgrade(config, "-1")
        assert schema_of(target) == schemas[step - 1], f"downgrade of {revisions[step - 1]}"
    command.upgrade(config, "head")
    assert schema_of(target) == schemas[-1]


def autogenerate_everything(target: Throwaway, history: str, directory: Path) -> Path:
    """The revision autogenerate writes for a history with no revisions yet (every model new), in `directory`."""
    config = migrate.alembic_config(history, target.environ)
    config.set_main_option("version_locations", str(directory))
    command.revision(config, message="everything", autogenerate=True)
    (generated,) = directory.glob("*.py")
    return generated


def assert_ruff_clean(path: Path) -> None:
    """`ruff check` and `ruff format --check` pass on the file, with the project's configuration."""
    ruff = [sys.executable, "-m", "ruff"]
    for check in (["check"], ["format", "--check"]):
        result = subprocess.run(
            [*ruff, *check, "--config", str(ROOT / "pyproject.toml"), str(path)],
            capture_output=True,
            text=True,
            check=False,
        )
        source = path.read_text(encoding="utf-8")
        assert result.returncode == 0, f"ruff {' '.join(check)}:\n{result.stdout}{result.stderr}\n{source}"
