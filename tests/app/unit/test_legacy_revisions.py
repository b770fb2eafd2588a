"""The notes revisions that replace the old SQL runner's files know the checksums it recorded (to adopt its data)."""

from __future__ import annotations

import hashlib

import pytest
from alembic.script import ScriptDirectory

from devtools import migrate
from devtools.paths import ROOT

LEGACY_SCHEMA = ROOT / "tests" / "app" / "integration" / "legacy_schema"


@pytest.mark.parametrize("revision", ["0001_notes", "0003_idempotency_keys"])
def test_the_revisions_that_replace_sql_files_know_the_checksum_the_old_runner_recorded(revision: str) -> None:
    script = ScriptDirectory.from_config(migrate.alembic_config(migrate.APP_HISTORY, {})).get_revision(revision)
    assert script is not None
    sql = (LEGACY_SCHEMA / f"{revision}.sql").read_text(encoding="utf-8")
    assert hashlib.sha256(sql.encode()).hexdigest() == script.module.LEGACY_SQL_CHECKSUM
