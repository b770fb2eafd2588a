"""Fixtures of the kit's integration tests (the shared ones come from devtools.pytest_plugin)."""

from __future__ import annotations

from collections.abc import Iterator

import pytest
from sqlalchemy import text

from devtools.testing.database import DatabaseTarget

# The kit's tests write here, never to the app's tables: they pass whatever app replaces the sample.
KIT_TEST_TABLE = "dbkit_test_rows"


@pytest.fixture(scope="session")
def kit_table(database: DatabaseTarget) -> Iterator[str]:
    """A table of the kit's tests' own (a title, a unique key), made for the session and dropped after it."""
    from lib.dbkit.engine import build_engine
    from lib.dbkit.settings import Settings

    engine = build_engine(
        Settings.from_env(
            {"DATABASE_URL": database.direct_url, "DB_POOLER_HOSTS": database.pooler_hosts, "DB_MODE": "server"}
        )
    )
    try:
        with engine.begin() as connection:
            connection.execute(
                text(
                    f"CREATE TABLE IF NOT EXISTS {KIT_TEST_TABLE} (id bigint GENERATED ALWAYS AS IDENTITY PRIMARY KEY, "
                    "title text NOT NULL, key text UNIQUE, created_at timestamptz NOT NULL DEFAULT now())"
                )
            )
        yield KIT_TEST_TABLE
        with engine.begin() as connection:
            connection.execute(text(f"DROP TABLE IF EXISTS {KIT_TEST_TABLE}"))
    finally:
        engine.dispose()
