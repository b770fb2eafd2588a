"""The pipelined driver degrades to SQLAlchemy's stock pg8000 dialect instead of failing at import."""

from __future__ import annotations

import json

import pg8000.core
import pytest

from devtools.testing.logs import captured_logs
from lib.dbkit import engine as db
from lib.dbkit import pg8000_internals, pg_dbapi, pg_pipeline
from lib.dbkit.errors import InvalidDatabaseUrlError
from lib.dbkit.settings import Settings

URL = "postgresql://app:secret-pw@ep-cool-darkness-123456-pooler.us-east-2.aws.neon.tech/neondb?sslmode=require"


def _settings(**environ: str) -> Settings:
    return Settings.from_env({"DATABASE_URL": URL, "DB_MODE": "serverless", **environ})


def test_the_pinned_pg8000_has_every_internal_the_pipeline_uses() -> None:
    assert pg8000_internals.problems() == []


@pytest.mark.parametrize("found", ["1.30.5", "1.31.3", "1.31.7", "2.0.0", "1.31.6rc1"])
def test_a_version_outside_the_tested_range_is_a_problem(found: str) -> None:
    assert pg8000_internals.problems(found) == [f"pg8000 {found} is outside the tested range 1.31.4 to 1.31.6"]


def test_a_missing_internal_is_named(monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.delattr(pg8000.core, "_write")
    monkeypatch.delattr(pg8000.core.CoreConnection, "send_PARSE")
    assert pg8000_internals.problems() == [
        "pg8000.core._write is missing",
        "CoreConnection.send_PARSE is missing",
    ]


def test_a_connection_that_stops_setting_its_socket_is_found(monkeypatch: pytest.MonkeyPatch) -> None:
    def init_without_usock(self: object, **_kwargs: object) -> None:
        self._sock = None  # type: ignore[attr-defined]
        self.py_types = {}  # type: ignore[attr-defined]

    monkeypatch.setattr(pg8000.core.CoreConnection, "__init__", init_without_usock)
    assert pg8000_internals.problems() == ["CoreConnection no longer sets _usock"]


def test_the_pipeline_is_used_when_nothing_is_missing() -> None:
    with captured_logs() as logs:
        engine = db.build_engine(_settings())
    try:
        assert type(engine.dialect) is pg_pipeline.PipelineDialect
    finally:
        engine.dispose()
    assert [(r["level"], r["driver"]) for r in logs.records] == [("INFO", pg_pipeline.DRIVERNAME)]


def test_a_mismatch_builds_the_stock_dialect_with_one_warning_and_a_metric(
    monkeypatch: pytest.MonkeyPatch, capsys: pytest.CaptureFixture[str]
) -> None:
    monkeypatch.setattr(pg8000_internals, "installed_version", lambda: "1.30.5")
    with captured_logs() as logs:
        engine = db.build_engine(_settings())
    try:
        assert type(engine.dialect) is pg_dbapi.DbapiDialect
        assert engine.dialect.driver == "pg8000"
        assert engine.pool.size() == 1  # type: ignore[attr-defined]
    finally:
        engine.dispose()
    lines = [json.loads(line) for line in capsys.readouterr().out.splitlines() if line.startswith("{")]
    warnings = [record for record in logs.records if record["level"] == "WARNING"]
    assert [w["message"] for w in warnings] == [
        "pipelined pg8000 driver unavailable; using SQLAlchemy's stock pg8000 dialect"
    ]
    assert warnings[0]["problems"] == ["pg8000 1.30.5 is outside the tested range 1.31.4 to 1.31.6"]
    assert "DB_DRIVER=stock" in warnings[0]["fix"]
    metric = next(line for line in lines if "DbDriverFallback" in line)
    assert metric["DbDriverFallback"] == [1.0]
    assert metric["_aws"]["CloudWatchMetrics"][0]["Namespace"] == "NeonTemplate"
    assert [r["driver"] for r in logs.records if r["message"] == "database engine created"] == [pg_dbapi.DRIVERNAME]
    assert "secret-pw" not in json.dumps(lines) + "".join(logs.lines)


def test_db_driver_stock_builds_the_stock_dialect_without_a_warning(capsys: pytest.CaptureFixture[str]) -> None:
    with captured_logs() as logs:
        engine = db.build_engine(_settings(DB_DRIVER="stock"))
    try:
        assert type(engine.dialect) is pg_dbapi.DbapiDialect
    finally:
        engine.dispose()
    assert [r["level"] for r in logs.records] == ["INFO"]
    assert logs.records[0]["driver"] == pg_dbapi.DRIVERNAME
    assert logs.records[0]["database"]["driver"] == "stock"
    assert "DbDriverFallback" not in capsys.readouterr().out


def test_an_unknown_db_driver_is_a_startup_error_naming_the_choices() -> None:
    with pytest.raises(Exception, match=r"DB_DRIVER.*pipeline.*stock"):
        _settings(DB_DRIVER="psycopg")


def test_an_endpoint_option_on_a_pg8000_without_startup_params_is_a_startup_error(
    monkeypatch: pytest.MonkeyPatch,
) -> None:
    monkeypatch.setattr(pg8000_internals, "accepts_startup_params", lambda: False)
    url = URL.replace("-pooler.us-east-2.aws.neon.tech", "-pooler.example.com") + "&options=endpoint%3Dep-x-1"
    settings = Settings.from_env({"DATABASE_URL": url, "DB_POOLER_HOSTS": "ep-x-1-pooler.example.com"})
    with pytest.raises(InvalidDatabaseUrlError, match=r"needs pg8000 >= 1\.31\.4.*upgrade pg8000") as raised:
        db.build_engine(settings)
    assert "secret-pw" not in str(raised.value)


def test_the_pinned_pg8000_accepts_startup_params() -> None:
    assert pg8000_internals.accepts_startup_params()
