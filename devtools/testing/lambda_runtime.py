"""What a test needs to call a handler as Lambda would: a context object and a serverless configuration."""

from __future__ import annotations

import pytest

from devtools.lambda_context import FakeLambdaContext
from lib.dbkit import engine, settings
from lib.dbkit.settings import READ_URL_VARIABLES, URL_VARIABLES

__all__ = ["FakeLambdaContext", "configure_serverless", "reset_database_state"]


def reset_database_state() -> None:
    """Forget the cached settings and the engine, so the next use reads the (patched) environment again."""
    engine.dispose_engine()
    settings.clear_settings()


def configure_serverless(monkeypatch: pytest.MonkeyPatch, *, pooled_url: str, pooler_hosts: str) -> None:
    """Point lib.dbkit.settings at the pooled URL in serverless mode for one test (monkeypatch restores the env)."""
    monkeypatch.setenv("DATABASE_URL", pooled_url)
    monkeypatch.setenv("DB_MODE", "serverless")
    monkeypatch.setenv("DB_POOLER_HOSTS", pooler_hosts)
    for name in (*(v for v in URL_VARIABLES if v != "DATABASE_URL"), *READ_URL_VARIABLES, "DB_POOL"):
        monkeypatch.delenv(name, raising=False)
    reset_database_state()
