"""`python -m lib.dbkit.migrate`: applies the schema over the direct URL, re-runs harmlessly, refuses the pooler."""

from __future__ import annotations

import os
import subprocess
import sys
import uuid
from collections.abc import Iterator
from pathlib import Path

import pytest
from sqlalchemy import Connection, Engine, text

from lib.dbkit import migrate
from lib.dbkit.engine import build_engine
from lib.dbkit.errors import DirectConnectionRequiredError, MigrationError
from lib.dbkit.settings import Settings
from tests.integration.conftest import DatabaseTarget
from tools.paths import ROOT


@pytest.fixture
def direct_engine(database: DatabaseTarget) -> Iterator[Engine]:
    engine = build_engine(Settings.from_env({"DATABASE_URL": database.direct_url, "DB_MODE": "migration"}))
    yield engine
    engine.dispose()


@pytest.fixture
def empty_schema(direct_engine: Engine) -> Iterator[Connection]:
    """A connection whose search_path is a new, empty schema: a fresh database as far as the migrations can tell."""
    name = f"test_migrate_{uuid.uuid4().hex[:12]}"
    with direct_engine.connect() as connection:
        connection.exec_driver_sql(f"CREATE SCHEMA {name}")
        # Session-level SET is fine here: this is the direct connection, never the pooler.
        connection.exec_driver_sql(f"SET search_path TO {name}")
        connection.commit()
        try:
            yield connection
        finally:
            connection.rollback()
            connection.exec_driver_sql(f"DROP SCHEMA {name} CASCADE")
            connection.commit()


def tables(connection: Connection) -> set[str]:
    rows = connection.execute(text("SELECT tablename FROM pg_tables WHERE schemaname = current_schema()"))
    connection.commit()
    return {row.tablename for row in rows}


def test_fresh_database_gets_every_migration_once(empty_schema: Connection) -> None:
    migrations = migrate.load_migrations()
    assert [m.version for m in migrations] == sorted(m.version for m in migrations)
    assert migrate.apply(empty_schema, migrations) == [m.version for m in migrations]
    assert {"notes", "job_leases", "schema_migrations"} <= tables(empty_schema)
    assert migrate.apply(empty_schema, migrations) == []


def test_a_new_migration_file_is_applied_after_the_existing_ones(empty_schema: Connection) -> None:
    migrations = migrate.load_migrations()
    migrate.apply(empty_schema, migrations)
    extra = migrate.Migration(version="9999_extra", sql="CREATE TABLE extra (id int); CREATE TABLE extra2 (id int);")
    assert migrate.apply(empty_schema, [*migrations, extra]) == ["9999_extra"]
    assert {"extra", "extra2"} <= tables(empty_schema)


def test_an_edited_applied_migration_is_refused_and_nothing_changes(empty_schema: Connection) -> None:
    migrations = migrate.load_migrations()
    migrate.apply(empty_schema, migrations[:1])
    edited = migrate.Migration(version=migrations[0].version, sql=migrations[0].sql + "\n-- edited")
    with pytest.raises(MigrationError, match="changed after it was applied"):
        migrate.apply(empty_schema, [edited, *migrations[1:]])
    empty_schema.rollback()
    assert "job_leases" not in tables(empty_schema), "later migrations must not run after a refusal"


def test_a_failing_migration_leaves_the_schema_untouched(empty_schema: Connection) -> None:
    broken = migrate.Migration(version="0001_broken", sql="CREATE TABLE half (id int); SELECT no_such_column;")
    with pytest.raises(Exception, match="no_such_column"):
        migrate.apply(empty_schema, [broken])
    empty_schema.rollback()
    assert "half" not in tables(empty_schema)


def test_schema_files_follow_the_naming_rule(tmp_path: Path) -> None:
    (tmp_path / "0001_ok.sql").write_text("SELECT 1;")
    (tmp_path / "second.sql").write_text("SELECT 1;")
    with pytest.raises(MigrationError, match=r"second\.sql"):
        migrate.load_migrations(tmp_path)


def test_migration_mode_refuses_the_pooled_url(database: DatabaseTarget) -> None:
    with pytest.raises(DirectConnectionRequiredError):
        migrate.migrate({"DATABASE_URL": database.pooled_url, "DB_POOLER_HOSTS": database.pooler_hosts})


def _run_cli(url: str, pooler_hosts: str) -> subprocess.CompletedProcess[str]:
    env = {"PATH": os.environ.get("PATH", ""), "DATABASE_URL": url, "DB_POOLER_HOSTS": pooler_hosts}
    return subprocess.run(
        [sys.executable, "-m", "lib.dbkit.migrate"], cwd=ROOT, env=env, capture_output=True, text=True, timeout=60
    )


def test_the_command_is_harmless_to_re_run(database: DatabaseTarget) -> None:
    for _ in range(2):
        result = _run_cli(database.direct_url, database.pooler_hosts)
        assert result.returncode == 0, result.stdout + result.stderr
    assert '"applied":[]' in result.stdout
    assert "schema up to date" in result.stdout


def test_the_command_exits_2_and_explains_when_given_the_pooler(database: DatabaseTarget) -> None:
    result = _run_cli(database.pooled_url, database.pooler_hosts)
    assert result.returncode == 2
    assert "DirectConnectionRequiredError" in result.stdout
    assert database.password not in result.stdout + result.stderr


def test_keys_recorded_on_notes_move_to_their_own_table_with_a_fresh_window(empty_schema: Connection) -> None:
    migrations = migrate.load_migrations()
    before = [m for m in migrations if m.version < "0003"]
    migrate.apply(empty_schema, before)
    empty_schema.execute(
        text("INSERT INTO notes (title, body, idempotency_key, request_hash) VALUES ('kept', 'b', 'old-key', 'v1:h')")
    )
    empty_schema.commit()
    assert "0003_idempotency_keys" in migrate.apply(empty_schema, migrations)
    row = empty_schema.execute(
        text(
            "SELECT k.title, k.body, k.request_hash, k.note_id = n.id AS same_note, "
            "k.expires_at - now() > interval '23 hours' AS fresh_window "
            "FROM idempotency_keys k JOIN notes n ON n.idempotency_key = k.key WHERE k.key = 'old-key'"
        )
    ).one()
    empty_schema.commit()
    assert tuple(row) == ("kept", "b", "v1:h", True, True)
