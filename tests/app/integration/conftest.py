"""Fixtures of the sample app's integration tests (the shared ones come from devtools.pytest_plugin)."""

from __future__ import annotations

from collections.abc import Iterator

import pytest
from sqlalchemy import text
from sqlalchemy.orm import Session

from devtools.testing.database import DatabaseTarget


@pytest.fixture
def isolated_notes(database: DatabaseTarget, schema: None) -> Iterator[Session]:
    """A Session on a direct connection inside a transaction that starts with no notes and is rolled back at the end.

    Data-level tests see exactly the rows they create, whatever earlier runs left behind, and leave nothing. The
    data functions never commit, so no SAVEPOINT is needed (SQLAlchemy's join_transaction_mode recipe is for a
    Session that does).
    """
    from lib.dbkit.engine import build_engine
    from lib.dbkit.settings import Settings

    settings = Settings.from_env(
        {"DATABASE_URL": database.direct_url, "DB_POOLER_HOSTS": database.pooler_hosts, "DB_MODE": "migration"}
    )
    engine = build_engine(settings)
    try:
        with engine.connect() as connection:
            transaction = connection.begin()
            connection.execute(text("DELETE FROM notes"))  # row locks only; rolled back with everything else
            try:
                with Session(bind=connection) as session:
                    yield session
            finally:
                transaction.rollback()
    finally:
        engine.dispose()
