"""Alembic's environment for both histories (alembic.ini: [alembic] the app's, [dbkit] the kit's), on the kit's engine.

The engine is `lib.dbkit.engine.build_engine` in migration mode (`Settings.for_migration`): DIRECT_DATABASE_URL, else
DATABASE_URL or a secret, with the functions' sslmode → SSLContext mapping and password-safe errors; a pooler host is
refused (DDL and the version table need a session of their own). Callers in Python pass the variables as
``config.attributes["environ"]`` instead of changing os.environ.

Each history has its own version table and compares only its own tables, so neither history's autogenerate ever
proposes to drop the other's tables. A database made by the numbered-SQL runner this replaced is adopted on first
contact: the revisions that reproduce the files its `schema_migrations` ledger lists are stamped, not re-run.
"""

import importlib
import os
from collections.abc import Mapping
from dataclasses import dataclass
from logging.config import fileConfig
from typing import Any

from alembic import context
from alembic.runtime.migration import MigrationContext
from alembic.script import ScriptDirectory
from sqlalchemy import Connection, MetaData, inspect, text

from lib.dbkit.engine import build_engine
from lib.dbkit.errors import MigrationError
from lib.dbkit.settings import Settings

# The ledger of the numbered-SQL runner (lib/dbkit/migrate.py until Alembic replaced it): read to adopt a database
# it made, never written, and left in place (drop it by hand once every database has been adopted).
LEGACY_LEDGER = "schema_migrations"
# Two migrators at once (two CI jobs, a deploy and a developer) queue here instead of racing; any constant works as
# long as every migrator of the database uses the same one (the old runner's).
MIGRATION_LOCK_KEY = 0x6E656F6E


@dataclass(frozen=True)
class History:
    """One migration history: its alembic.ini section, version table, models and autogenerate scope."""

    section: str
    version_table: str
    metadata_reference: str
    own_tables_only: bool

    @property
    def metadata(self) -> MetaData:
        module_name, _, path = self.metadata_reference.partition(":")
        target: Any = importlib.import_module(module_name)
        for attribute in path.split("."):
            target = getattr(target, attribute)
        if not isinstance(target, MetaData):
            raise MigrationError(f"[{self.section}] target_metadata = {self.metadata_reference} is not a MetaData")
        return target


def histories() -> dict[str, History]:
    """Every history alembic.ini declares (a section with a version_table), by section name."""
    parser = context.config.file_config
    found = {}
    for section in parser.sections():
        if parser.has_option(section, "version_table"):
            found[section] = History(
                section=section,
                version_table=parser.get(section, "version_table"),
                metadata_reference=parser.get(section, "target_metadata"),
                own_tables_only=parser.get(section, "compare_tables", fallback="own") == "own",
            )
    return found


def include_name(this: History, others: list[History]) -> Any:
    """Alembic's include_name hook: which tables found in the database this history's autogenerate compares."""
    own = set(this.metadata.tables)
    foreign = {LEGACY_LEDGER} | {other.version_table for other in others}
    for other in others:
        foreign |= set(other.metadata.tables)

    def include(name: str | None, type_: str, parent_names: Mapping[str, str | None]) -> bool:
        if type_ != "table":
            return True
        return name in own if this.own_tables_only else name not in foreign

    return include


def adopt_legacy_database(connection: Connection, migration: MigrationContext, history: History) -> None:
    """Stamp, once, the revisions whose ids match files the old runner's ledger lists (their checksums must match)."""
    inspector = inspect(connection)
    if inspector.has_table(history.version_table) or not inspector.has_table(LEGACY_LEDGER):
        return
    ledger = connection.execute(text(f"SELECT version, checksum FROM {LEGACY_LEDGER}"))
    applied = {row.version: row.checksum for row in ledger}
    script = ScriptDirectory.from_config(context.config)
    chain = list(reversed(list(script.walk_revisions())))  # oldest first
    listed = [revision for revision in chain if revision.revision in applied]
    if listed != chain[: len(listed)]:
        raise MigrationError(
            f"{LEGACY_LEDGER} lists {[revision.revision for revision in listed]}, not a first part of history "
            f"[{history.section}]; record what the database holds by hand: alembic -n {history.section} stamp <rev>"
        )
    for revision in listed:
        if applied[revision.revision] != getattr(revision.module, "LEGACY_SQL_CHECKSUM", None):
            raise MigrationError(
                f"{LEGACY_LEDGER} lists {revision.revision}.sql with another checksum than the file revision "
                f"{revision.revision} reproduces (it was edited before it was applied): compare the schema with the "
                f"models, then record what the database holds by hand: alembic -n {history.section} stamp <rev>"
            )
    if listed:
        migration.stamp(script, listed[-1].revision)
        context.config.print_stdout(
            f"[{history.section}] adopted a database made by the SQL runner: stamped {listed[-1].revision}"
        )


def skip_empty_autogenerate(migration: MigrationContext, revision: Any, directives: list[Any]) -> None:
    """`alembic revision --autogenerate` with nothing to do writes no file (a hand-written `revision -m` still does)."""
    if getattr(context.config.cmd_opts, "autogenerate", False) and directives[0].upgrade_ops.is_empty():
        directives[:] = []
        context.config.print_stdout("No changes: the models and the migrations agree; no revision written.")


def run_migrations_offline(history: History, others: list[History]) -> None:
    """`--sql`: write the SQL instead of running it (no connection, so nothing to adopt or lock)."""
    context.configure(
        dialect_name="postgresql",
        version_table=history.version_table,
        target_metadata=history.metadata,
        include_name=include_name(history, others),
        literal_binds=True,
    )
    with context.begin_transaction():
        context.run_migrations()


def run_migrations_online(history: History, others: list[History]) -> None:
    """Run the command over one direct connection, in one transaction: a failed upgrade changes nothing."""
    environ: Mapping[str, str] = context.config.attributes.get("environ", os.environ)
    engine = build_engine(Settings.for_migration(environ))
    try:
        with engine.connect() as connection:
            context.configure(
                connection=connection,
                version_table=history.version_table,
                target_metadata=history.metadata,
                include_name=include_name(history, others),
                compare_server_default=True,
                process_revision_directives=skip_empty_autogenerate,
            )
            with context.begin_transaction():
                connection.execute(text("SELECT pg_advisory_xact_lock(:key)"), {"key": MIGRATION_LOCK_KEY})
                adopt_legacy_database(connection, context.get_context(), history)
                context.run_migrations()
    finally:
        engine.dispose()


def main() -> None:
    config = context.config
    if config.config_file_name is not None and config.attributes.get("configure_logging", True):
        # Keep the loggers that exist already (the kit's JSON logger, a test's log capture).
        fileConfig(config.config_file_name, disable_existing_loggers=False)
    found = histories()
    history = found.get(config.config_ini_section)
    if history is None:
        raise MigrationError(f"alembic.ini section [{config.config_ini_section}] has no version_table")
    others = [other for name, other in found.items() if name != history.section]
    if context.is_offline_mode():
        run_migrations_offline(history, others)
    else:
        run_migrations_online(history, others)


main()
