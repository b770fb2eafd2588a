"""Apply every lib/*/schema/*.sql in version order over the direct URL (migration mode); applied files are skipped.

Usage: ``python -m lib.dbkit.migrate`` with DATABASE_URL set to the direct (non-pooler) URL; ``make migrate`` does that.

Plain SQL rather than Alembic: the schema is two tables, the app uses SQL text (no ORM models to autogenerate
from), files stay readable and runnable with psql, and nothing is added to the deploy artifact. Each file is
written to be idempotent (IF NOT EXISTS) and the ledger makes re-runs skip it anyway; editing an applied file is
refused (checksum) — add a new one. All pending files run in one transaction (Postgres DDL is transactional), so
a failed run changes nothing; a file therefore cannot use CREATE INDEX CONCURRENTLY.

Each package under lib/ may carry a schema/ folder (the kit's job_leases, the app's tables); their files share
one numbering, so a number may appear in only one of them.
"""

from __future__ import annotations

import hashlib
import os
import re
import sys
from collections.abc import Mapping
from dataclasses import dataclass
from pathlib import Path

from sqlalchemy import Connection, text

from lib.dbkit.engine import build_engine
from lib.dbkit.errors import ConfigError, MigrationError
from lib.dbkit.observability import logger
from lib.dbkit.settings import Settings

LIB_DIR = Path(__file__).resolve().parent.parent


def schema_dirs() -> list[Path]:
    """Every package's schema/ folder under lib/ (found by convention: the kit imports no app)."""
    return sorted(path for path in LIB_DIR.glob("*/schema") if path.is_dir())


_FILE_NAME = re.compile(r"^(\d{4})_[a-z0-9_]+\.sql$")
# Any constant works; it only has to be the same for every migrator of this database.
_MIGRATION_LOCK_KEY = 0x6E656F6E  # "neon"

_CREATE_LEDGER = text(
    """
    CREATE TABLE IF NOT EXISTS schema_migrations (
        version    text        PRIMARY KEY,
        checksum   text        NOT NULL,
        applied_at timestamptz NOT NULL DEFAULT now()
    )
    """
)


@dataclass(frozen=True)
class Migration:
    """One schema file: its version (file name without .sql), SQL text and checksum."""

    version: str
    sql: str

    @property
    def checksum(self) -> str:
        return hashlib.sha256(self.sql.encode()).hexdigest()


def load_migrations(*directories: Path) -> list[Migration]:
    """The schema files of `directories` (default: schema_dirs()) in version order; stray names are errors."""
    found: dict[str, Path] = {}
    for directory in directories or schema_dirs():
        for path in directory.glob("*.sql"):
            if not _FILE_NAME.match(path.name):
                raise MigrationError(f"{path.name}: schema files are named NNNN_lowercase_words.sql")
            number = path.name[:4]
            clash = next((other for version, other in found.items() if version[:4] == number), None)
            if clash is not None:
                raise MigrationError(f"{path} and {clash} share the number {number}; renumber the newer one")
            found[path.stem] = path
    return [Migration(version=version, sql=found[version].read_text(encoding="utf-8")) for version in sorted(found)]


def apply(connection: Connection, migrations: list[Migration]) -> list[str]:
    """Apply the pending migrations in one transaction; returns the versions applied (empty when up to date)."""
    with connection.begin():
        # Two migrators at once (two CI jobs, a deploy and a developer) queue here instead of racing.
        connection.execute(text("SELECT pg_advisory_xact_lock(:key)"), {"key": _MIGRATION_LOCK_KEY})
        connection.execute(_CREATE_LEDGER)
        ledger = connection.execute(text("SELECT version, checksum FROM schema_migrations"))
        applied = {row.version: row.checksum for row in ledger}
        pending = []
        for migration in migrations:
            recorded = applied.get(migration.version)
            if recorded is None:
                pending.append(migration)
            elif recorded != migration.checksum:
                raise MigrationError(
                    f"{migration.version}.sql changed after it was applied; add a new file instead of editing it"
                )
        for migration in pending:
            # No parameters: pg8000 sends the file as one simple query, so a file may hold several statements.
            connection.exec_driver_sql(migration.sql)
            connection.execute(
                text("INSERT INTO schema_migrations (version, checksum) VALUES (:version, :checksum)"),
                {"version": migration.version, "checksum": migration.checksum},
            )
            logger.info("migration applied", extra={"version": migration.version})
    return [migration.version for migration in pending]


def migrate(environ: Mapping[str, str]) -> list[str]:
    """Apply the schema to the database named by `environ` (always in migration mode: direct URL only)."""
    settings = Settings.from_env({**environ, "DB_MODE": "migration"})
    engine = build_engine(settings)
    try:
        with engine.connect() as connection:
            return apply(connection, load_migrations())
    finally:
        engine.dispose()


def main() -> int:
    try:
        applied = migrate(os.environ)
    except (ConfigError, MigrationError) as error:
        logger.error("migration refused", extra={"error": type(error).__name__, "reason": str(error)})
        return 2
    logger.info("schema up to date", extra={"applied": applied, "database": "direct"})
    return 0


if __name__ == "__main__":
    sys.exit(main())
