"""The kit's engine behaves as SQLAlchemy's own pg8000 dialect where users look: exception classes, default schema,
isolation level, a failed transaction. Run on both kit drivers (the Makefile runs this file again with DB_DRIVER=stock).
"""

from __future__ import annotations

import os
import secrets
import uuid
from collections.abc import Callable, Iterator
from urllib.parse import quote, urlsplit

import pytest
import sqlalchemy.exc
from sqlalchemy import Connection, Engine, inspect, text

from devtools import stack
from devtools.testing.database import DatabaseTarget
from devtools.testing.lambda_runtime import configure_serverless
from devtools.testing.urls import with_params
from lib.dbkit import engine as db
from lib.dbkit.pg_errors import sqlstate
from lib.dbkit.settings import Settings

DRIVER = os.environ.get("DB_DRIVER", "pipeline")


def _engine(url: str, database: DatabaseTarget, mode: str) -> Engine:
    settings = Settings.from_env(
        {"DATABASE_URL": url, "DB_MODE": mode, "DB_POOLER_HOSTS": database.pooler_hosts, "DB_DRIVER": DRIVER}
    )
    return db.build_engine(settings)


@pytest.fixture
def tables(database: DatabaseTarget) -> Iterator[tuple[str, str]]:
    """A parent and a child table of this test's own (a foreign key between them), dropped afterwards."""
    suffix = uuid.uuid4().hex[:10]
    parent, child = f"semantics_parent_{suffix}", f"semantics_child_{suffix}"
    engine = _engine(database.direct_url, database, "migration")
    try:
        with engine.begin() as connection:
            connection.execute(
                text(f"CREATE TABLE {parent} (id int PRIMARY KEY, name text NOT NULL CHECK (name <> ''))")
            )
            connection.execute(text(f"CREATE TABLE {child} (id int PRIMARY KEY, parent_id int REFERENCES {parent})"))
        yield parent, child
    finally:
        with engine.begin() as connection:
            connection.execute(text(f"DROP TABLE IF EXISTS {child}, {parent}"))
        engine.dispose()


@pytest.fixture
def serverless(database: DatabaseTarget, monkeypatch: pytest.MonkeyPatch) -> Iterator[None]:
    configure_serverless(monkeypatch, pooled_url=database.pooled_url, pooler_hosts=database.pooler_hosts)
    monkeypatch.setenv("DB_DRIVER", DRIVER)
    yield
    db.dispose_engine()


def _insert(table: str, **values: object) -> Callable[[Connection], object]:
    columns = ", ".join(values)
    placeholders = ", ".join(f":{name}" for name in values)
    return lambda connection: connection.execute(
        text(f"INSERT INTO {table} ({columns}) VALUES ({placeholders})"), values
    )


@pytest.mark.usefixtures("serverless")
def test_a_duplicate_key_is_an_integrity_error_users_can_catch(tables: tuple[str, str]) -> None:
    parent, _ = tables
    db.run_in_transaction(_insert(parent, id=1, name="first"))

    try:
        db.run_in_transaction(_insert(parent, id=1, name="again"))
    except sqlalchemy.exc.IntegrityError as error:
        caught = error
    else:
        pytest.fail("a duplicate key was stored")
    assert sqlstate(caught) == "23505"
    # Nothing of the failed unit was kept; the engine serves the next unit.
    rows = db.run_in_transaction(lambda c: c.execute(text(f"SELECT id, name FROM {parent}")).all(), read_only=True)
    assert [tuple(row) for row in rows] == [(1, "first")]


@pytest.mark.usefixtures("serverless")
@pytest.mark.parametrize(
    ("statement", "value", "literal", "expected", "code"),
    [
        ("INSERT INTO {child} (id, parent_id) VALUES (1, {v})", 99, "99", sqlalchemy.exc.IntegrityError, "23503"),
        ("INSERT INTO {parent} (id, name) VALUES (2, {v})", None, "NULL", sqlalchemy.exc.IntegrityError, "23502"),
        ("INSERT INTO {parent} (id, name) VALUES (3, {v})", "", "''", sqlalchemy.exc.IntegrityError, "23514"),
        ("SELECT CAST({v} AS int) / (SELECT count(*) FROM {parent})", 1, "1", sqlalchemy.exc.DataError, "22012"),
        ("SELECT CAST({v} AS int) FROM {parent}", "x", "'x'", sqlalchemy.exc.DataError, "22P02"),
        ("SELECT missing_column, {v} FROM {parent}", 1, "1", sqlalchemy.exc.ProgrammingError, "42703"),
    ],
)
def test_server_errors_reach_users_as_their_sqlalchemy_class(
    tables: tuple[str, str], statement: str, value: object, literal: str, expected: type[Exception], code: str
) -> None:
    parent, child = tables
    # Literal and bound: the pipelined driver sends the first as a simple Query, the second as an extended one.
    for sql, parameters in (
        (statement.format(parent=parent, child=child, v=literal), {}),
        (statement.format(parent=parent, child=child, v=":v"), {"v": value}),
    ):

        def work(connection: Connection, sql: str = sql, parameters: dict[str, object] = parameters) -> object:
            result = connection.execute(text(sql), parameters)
            return result.all() if result.returns_rows else result.rowcount

        with pytest.raises(expected) as raised:
            db.run_in_transaction(work)
        assert type(raised.value) is expected
        assert sqlstate(raised.value) == code


def test_a_statement_that_fails_to_parse_leaves_the_transaction_failed(database: DatabaseTarget) -> None:
    engine = _engine(database.direct_url, database, "migration")
    try:
        with engine.connect() as connection:
            with pytest.raises(sqlalchemy.exc.ProgrammingError) as raised:
                connection.execute(text("SELEC 1"))
            assert sqlstate(raised.value) == "42601"
            # As with pg8000's own BEGIN: the transaction is open and failed until rolled back.
            with pytest.raises(sqlalchemy.exc.DBAPIError) as aborted:
                connection.execute(text("SELECT 1"))
            assert sqlstate(aborted.value) == "25P02"
            connection.rollback()
            assert connection.execute(text("SELECT 1")).scalar_one() == 1
    finally:
        engine.dispose()


@pytest.fixture
def role_with_own_defaults(database: DatabaseTarget) -> Iterator[tuple[str, str]]:
    """A login role whose own search_path starts with a schema it owns, and whose isolation default is SERIALIZABLE.

    Made over the local stack's admin socket (only a superuser creates roles); returns (direct URL, schema).
    """
    if not database.local_stack:
        pytest.skip("creates a role: needs the embedded stack's superuser")
    state = stack.require_state()
    suffix = uuid.uuid4().hex[:8]
    role, schema, password = f"kit_role_{suffix}", f"tenant_{suffix}", secrets.token_urlsafe(18)
    stack.psql_admin(state, f"CREATE ROLE {role} LOGIN PASSWORD '{password}'")
    stack.psql_admin(state, f"GRANT CREATE, CONNECT ON DATABASE {stack.DATABASE} TO {role}")
    stack.psql_admin(state, f"ALTER ROLE {role} SET search_path = {schema}, public")
    stack.psql_admin(state, f"ALTER ROLE {role} SET default_transaction_isolation = 'serializable'")
    parts = urlsplit(database.direct_url)
    url = parts._replace(netloc=f"{role}:{quote(password)}@{parts.netloc.rpartition('@')[2]}").geturl()
    engine = _engine(url, database, "migration")
    try:
        with engine.begin() as connection:
            connection.execute(text(f"CREATE SCHEMA {schema}"))
        yield url, schema
    finally:
        engine.dispose()
        # The schema, its tables and the role's grants, then the role.
        stack.psql_admin(state, f"DROP OWNED BY {role} CASCADE", database=stack.DATABASE)
        stack.psql_admin(state, f"DROP ROLE {role}")


def _current(connection: Connection) -> tuple[str, str]:
    row = connection.execute(text("SELECT current_schema(), current_setting('transaction_isolation')")).one()
    return str(row[0]), str(row[1]).upper()


def test_a_roles_own_search_path_is_the_default_schema_reflection_and_alembic_see(
    database: DatabaseTarget, role_with_own_defaults: tuple[str, str]
) -> None:
    url, schema = role_with_own_defaults
    engine = _engine(url, database, "migration")
    try:
        with engine.begin() as connection:
            connection.execute(text("CREATE TABLE reflected_here (id int PRIMARY KEY)"))
            assert _current(connection) == (schema, "SERIALIZABLE")
            # What Alembic does: tables of the default schema, named by the dialect's default_schema_name.
            inspector = inspect(connection)
            assert inspector.get_table_names(schema=inspector.default_schema_name) == ["reflected_here"]
        assert engine.dialect.default_schema_name == schema
        assert inspect(engine).default_schema_name == schema
        assert engine.dialect.default_isolation_level == "SERIALIZABLE"
    finally:
        engine.dispose()


def test_a_search_path_in_the_urls_options_is_the_default_schema(
    database: DatabaseTarget, role_with_own_defaults: tuple[str, str]
) -> None:
    url, _ = role_with_own_defaults
    # The role's default says `schema`; the URL says public first: the URL wins, as it does for current_schema().
    engine = _engine(with_params(url, options="-csearch_path=public"), database, "server")
    try:
        with engine.connect() as connection:
            assert _current(connection)[0] == "public"
        assert engine.dialect.default_schema_name == "public"
    finally:
        engine.dispose()
