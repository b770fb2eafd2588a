"""The Alembic setup without a database: two histories, no URL in alembic.ini, reversible revisions, dev-only."""

from __future__ import annotations

import ast
import configparser
import hashlib
import re
from pathlib import Path

import pytest
from alembic.script import ScriptDirectory

from devtools import migrate
from devtools.paths import ROOT

LEGACY_SCHEMA = ROOT / "tests" / "kit" / "integration" / "legacy_schema"


def ini() -> configparser.ConfigParser:
    parser = configparser.ConfigParser(interpolation=None)
    parser.read(migrate.ALEMBIC_INI, encoding="utf-8")
    return parser


def scripts(history: str) -> ScriptDirectory:
    return ScriptDirectory.from_config(migrate.alembic_config(history, {}))


def revision_files() -> list[Path]:
    return sorted((ROOT / "migrations").glob("*/*.py"))


def test_alembic_ini_names_no_database_url() -> None:
    text = migrate.ALEMBIC_INI.read_text(encoding="utf-8")
    assert not re.search(r"(?m)^\s*sqlalchemy\.url\s*=", text)
    assert "postgresql://" not in text


def test_the_kit_and_the_app_keep_separate_histories_and_version_tables() -> None:
    parser = ini()
    sections = {name: parser[name] for name in migrate.HISTORIES}
    assert migrate.HISTORIES == ("dbkit", "alembic"), "the kit's history runs first"
    assert {section["version_table"] for section in sections.values()} == {"alembic_version", "alembic_version_dbkit"}
    assert len({section["version_locations"] for section in sections.values()}) == 2
    assert sections["dbkit"]["target_metadata"].startswith("lib.dbkit.")
    assert sections["dbkit"]["compare_tables"] == "own"
    assert len(migrate.heads("dbkit")) == 1, "dbkit: one head, no unmerged branches"
    # The app's history may be empty (the empty app of copier copy): no head then, never two.
    assert len(migrate.heads("alembic")) <= 1, "alembic: at most one head, no unmerged branches"


@pytest.mark.parametrize("path", revision_files(), ids=lambda path: path.name)
def test_every_revision_has_a_downgrade_that_does_something(path: Path) -> None:
    tree = ast.parse(path.read_text(encoding="utf-8"))
    functions = {node.name: node for node in tree.body if isinstance(node, ast.FunctionDef)}
    for name in ("upgrade", "downgrade"):
        body = functions[name].body
        assert not all(isinstance(statement, ast.Pass) for statement in body), f"{path.name}: {name}() is empty"


def legacy_revisions() -> list[tuple[str, str]]:
    """The revisions that replace a file of the old SQL runner, each in its history (the empty app has none)."""
    revisions = {
        history: {script.revision for script in scripts(history).walk_revisions()} for history in migrate.HISTORIES
    }
    return [
        (history, sql.stem)
        for sql in sorted(LEGACY_SCHEMA.glob("*.sql"))
        for history in migrate.HISTORIES
        if sql.stem in revisions[history]
    ]


def test_the_kits_legacy_revision_is_checked() -> None:
    assert ("dbkit", "0002_job_leases") in legacy_revisions()


@pytest.mark.parametrize(("history", "revision"), legacy_revisions())
def test_the_revisions_that_replace_sql_files_know_the_checksum_the_old_runner_recorded(
    history: str, revision: str
) -> None:
    script = scripts(history).get_revision(revision)
    assert script is not None
    sql = (LEGACY_SCHEMA / f"{revision}.sql").read_text(encoding="utf-8")
    assert hashlib.sha256(sql.encode()).hexdigest() == script.module.LEGACY_SQL_CHECKSUM


def test_alembic_is_a_pinned_dev_dependency_never_in_the_deploy_artifact() -> None:
    dev = (ROOT / "requirements-dev.txt").read_text(encoding="utf-8")
    runtime = (ROOT / "requirements.txt").read_text(encoding="utf-8")
    assert re.search(r"(?m)^alembic==\d+\.\d+\.\d+$", dev)
    assert "alembic" not in runtime.lower()
    for path in [*(ROOT / "lib").rglob("*.py"), *(ROOT / "handlers").rglob("*.py")]:
        for node in ast.walk(ast.parse(path.read_text(encoding="utf-8"))):
            names = [alias.name for alias in node.names] if isinstance(node, ast.Import) else []
            if isinstance(node, ast.ImportFrom):
                names = [node.module or ""]
            assert not any(name.split(".")[0] == "alembic" for name in names), f"{path}: runtime code imports Alembic"
