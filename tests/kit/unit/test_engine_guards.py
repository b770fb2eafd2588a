"""The engine factory's guards and lifecycle hooks, without a database."""

import sys
import types
from collections.abc import Callable
from typing import Any

import pytest

from devtools.testing.lambda_runtime import FakeLambdaContext
from lib.dbkit import engine as db
from lib.dbkit import invocation, pg_pipeline
from lib.dbkit.errors import UnsafeEngineOptionError
from lib.dbkit.settings import Settings

URL = "postgresql://app:secret-pw@ep-cool-darkness-123456-pooler.us-east-2.aws.neon.tech/neondb?sslmode=require"


def _settings() -> Settings:
    return Settings.from_env({"DATABASE_URL": URL, "DB_MODE": "serverless"})


@pytest.mark.parametrize(
    "options",
    [
        {"isolation_level": "AUTOCOMMIT"},
        {"isolation_level": "SERIALIZABLE"},
        {"execution_options": {"isolation_level": "AUTOCOMMIT"}},
        {"execution_options": {"postgresql_readonly": True}},
    ],
)
def test_the_factory_refuses_options_unsafe_behind_a_transaction_pooler(options: dict[str, Any]) -> None:
    with pytest.raises(UnsafeEngineOptionError, match="SET LOCAL") as raised:
        db.build_engine(_settings(), **options)
    assert "secret-pw" not in str(raised.value)


@pytest.mark.parametrize("option", ["isolation_level", "postgresql_readonly", "postgresql_deferrable"])
def test_an_engine_refuses_them_later_too(option: str) -> None:
    engine = db.build_engine(_settings())
    try:
        with pytest.raises(UnsafeEngineOptionError):
            engine.execution_options(**{option: "AUTOCOMMIT" if option == "isolation_level" else True})
    finally:
        engine.dispose()


def test_the_engine_uses_the_pipelined_driver_and_the_tiny_pool() -> None:
    engine = db.build_engine(_settings())
    try:
        assert type(engine.dialect) is pg_pipeline.PipelineDialect
        assert engine.pool.size() == 1  # type: ignore[attr-defined]
        assert "secret-pw" not in repr(engine)
    finally:
        engine.dispose()


def test_snapstart_disposes_the_engine_before_the_snapshot_and_after_restore(
    monkeypatch: pytest.MonkeyPatch,
) -> None:
    registered: dict[str, Callable[[], None]] = {}
    hooks = types.ModuleType("snapshot_restore_py")
    hooks.register_before_snapshot = lambda fn: registered.__setitem__("before", fn)  # type: ignore[attr-defined]
    hooks.register_after_restore = lambda fn: registered.__setitem__("after", fn)  # type: ignore[attr-defined]
    monkeypatch.setitem(sys.modules, "snapshot_restore_py", hooks)
    monkeypatch.setenv("AWS_LAMBDA_INITIALIZATION_TYPE", "snap-start")
    db._register_snapstart_hooks()
    assert registered == {"before": db.dispose_engine, "after": db.dispose_engine}


def test_without_snapstart_no_hooks_are_registered(monkeypatch: pytest.MonkeyPatch) -> None:
    registered: dict[str, Callable[[], None]] = {}
    hooks = types.ModuleType("snapshot_restore_py")
    hooks.register_before_snapshot = lambda fn: registered.__setitem__("before", fn)  # type: ignore[attr-defined]
    hooks.register_after_restore = lambda fn: registered.__setitem__("after", fn)  # type: ignore[attr-defined]
    monkeypatch.setitem(sys.modules, "snapshot_restore_py", hooks)  # importable, so only the guard can stop it
    monkeypatch.setenv("AWS_LAMBDA_INITIALIZATION_TYPE", "on-demand")
    db._register_snapstart_hooks()
    assert registered == {}


def test_the_deadline_comes_from_the_lambda_context() -> None:
    assert not invocation.has_deadline()
    invocation.start(FakeLambdaContext(timeout_ms=3_000))
    try:
        assert invocation.has_deadline()
        assert 2.5 < invocation.remaining_seconds() <= 3.0
    finally:
        invocation.finish()
    assert not invocation.has_deadline()
    assert invocation.remaining_seconds() == invocation.DEFAULT_BUDGET_SECONDS


@pytest.mark.parametrize(
    ("variables", "asks"),
    [
        ({"DB_MODE": "serverless"}, False),
        ({"DB_MODE": "server"}, True),
        ({"DB_MODE": "server", "DATABASE_URL": URL + "&options=-csearch_path%3Dtenant"}, True),
        ({"DB_MODE": "migration", "DATABASE_URL": URL.replace("-pooler", "")}, True),
    ],
)
def test_only_serverless_engines_skip_asking_the_server_for_the_default_schema(
    variables: dict[str, str], asks: bool
) -> None:
    settings = Settings.from_env({"DATABASE_URL": URL, **variables})
    assert db.asks_server_defaults(settings) is asks
    engine = db.build_engine(settings)
    try:
        assert isinstance(engine.dialect, pg_pipeline.PipelineDialect)
        assert engine.dialect.ask_server_defaults is asks
    finally:
        engine.dispose()
