"""`make migrate`: Alembic's kit history, then the app's, to their heads over the direct URL (migration mode).

Usage: ``python -m devtools.migrate`` with DIRECT_DATABASE_URL (or DATABASE_URL) naming the direct, non-pooler host.
The same as ``alembic -n dbkit upgrade head && alembic upgrade head``; tests and the bench call `upgrade` with the
variables instead of changing os.environ. Re-running is harmless.
"""

from __future__ import annotations

import os
import sys
from collections.abc import Mapping
from logging.config import fileConfig

from alembic import command
from alembic.config import Config
from alembic.runtime.migration import MigrationContext
from alembic.script import ScriptDirectory

from devtools.paths import ROOT
from lib.dbkit.engine import build_engine
from lib.dbkit.errors import ConfigError, MigrationError
from lib.dbkit.settings import Settings

ALEMBIC_INI = ROOT / "alembic.ini"
# alembic.ini sections, in the order they run: the kit's tables first, as the app may build on them.
KIT_HISTORY = "dbkit"
APP_HISTORY = "alembic"
HISTORIES = (KIT_HISTORY, APP_HISTORY)


def alembic_config(history: str, environ: Mapping[str, str]) -> Config:
    """Alembic's configuration of one history, reading the database variables from `environ`."""
    config = Config(str(ALEMBIC_INI), ini_section=history)
    config.attributes["environ"] = dict(environ)
    # Logging is the caller's: the command line configures it from alembic.ini, a test keeps its log capture.
    config.attributes["configure_logging"] = False
    return config


def upgrade(environ: Mapping[str, str]) -> None:
    """Bring every history to its head, the kit's first; each history runs in one transaction."""
    for history in HISTORIES:
        command.upgrade(alembic_config(history, environ), "head")


def current_revisions(environ: Mapping[str, str]) -> dict[str, tuple[str, ...]]:
    """Each history's revisions as the database records them (its version table)."""
    engine = build_engine(Settings.for_migration(environ))
    try:
        with engine.connect() as connection:
            found = {}
            for history in HISTORIES:
                version_table = alembic_config(history, environ).get_main_option("version_table")
                context = MigrationContext.configure(connection, opts={"version_table": version_table})
                found[history] = context.get_current_heads()
            return found
    finally:
        engine.dispose()


def heads(history: str) -> tuple[str, ...]:
    """The head revisions of a history's scripts."""
    return tuple(ScriptDirectory.from_config(alembic_config(history, {})).get_heads())


def main() -> int:
    fileConfig(ALEMBIC_INI, disable_existing_loggers=False)
    try:
        upgrade(os.environ)
    except (ConfigError, MigrationError) as error:
        print(f"[migrate] refused: {type(error).__name__}: {error}", file=sys.stderr)
        return 2
    recorded = current_revisions(os.environ)
    app = ", ".join(recorded[APP_HISTORY]) or "no revision (an empty history)"
    print(f"[migrate] up to date: kit at {', '.join(recorded[KIT_HISTORY])}, app at {app}")
    return 0


if __name__ == "__main__":
    sys.exit(main())
