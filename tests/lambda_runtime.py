"""What a test needs to call a handler as Lambda would: a context object and a serverless configuration."""

from __future__ import annotations

import time
import uuid
from dataclasses import dataclass, field

import pytest

from lib.dbkit import engine, settings


@dataclass
class FakeLambdaContext:
    """The attributes of the Lambda context object that Powertools and lib.dbkit.invocation read."""

    function_name: str = "ApiFunction"
    timeout_ms: int = 25_000
    memory_limit_in_mb: int = 512
    aws_request_id: str = field(default_factory=lambda: str(uuid.uuid4()))
    _started: float = field(default_factory=time.monotonic)

    @property
    def invoked_function_arn(self) -> str:
        return f"arn:aws:lambda:us-east-1:123456789012:function:{self.function_name}"

    def get_remaining_time_in_millis(self) -> int:
        return max(0, self.timeout_ms - int((time.monotonic() - self._started) * 1000))


def reset_database_state() -> None:
    """Forget the cached settings and the engine, so the next use reads the (patched) environment again."""
    engine.dispose_engine()
    settings.clear_settings()


def configure_serverless(monkeypatch: pytest.MonkeyPatch, *, pooled_url: str, pooler_hosts: str) -> None:
    """Point lib.dbkit.settings at the pooled URL in serverless mode for one test (monkeypatch restores the env)."""
    monkeypatch.setenv("DATABASE_URL", pooled_url)
    monkeypatch.setenv("DB_MODE", "serverless")
    monkeypatch.setenv("DB_POOLER_HOSTS", pooler_hosts)
    for name in ("DATABASE_SECRET_ARN", "DATABASE_URL_PARAMETER", "DB_POOL"):
        monkeypatch.delenv(name, raising=False)
    reset_database_state()
