"""devtools.demo's verdict: each answer held to what app.toml expects of its event."""

from __future__ import annotations

import sys
from pathlib import Path
from typing import Any

import pytest

from devtools.app_config import AppConfig, Expected
from devtools.demo import verdict
from devtools.local_lambda import InvokeResult
from devtools.runtime_python import RuntimePython

APP = AppConfig(events={"api-01": Expected(status=200), "job-01": Expected(), "job-02": Expected(raises="BadEvent")})


def _result(response: Any, error_type: str | None = None) -> InvokeResult:
    error = {"errorType": error_type, "errorMessage": "boom"} if error_type else None
    return InvokeResult(
        function_id="F",
        request_id="r",
        environment_id="F-1",
        cold=False,
        python=RuntimePython(Path(sys.executable), "3.13.0", "python3.13", matches=True),
        response=error or response,
        payload=b"",
        error=error,
        error_kind=None,
        logs="",
        duration_ms=1.0,
        init_duration_ms=None,
        memory_mb=128,
        max_memory_used_mb=64,
        trace_id="t",
    )


@pytest.mark.parametrize(
    ("event", "result", "expected"),
    [
        ("api-01", _result({"statusCode": 200}), ("as expected (HTTP 200)", True)),
        ("api-01", _result({"statusCode": 500}), ("UNEXPECTED: expected HTTP 200, HTTP 500", False)),
        ("job-01", _result({"purged": 0}), ("as expected (returns)", True)),
        ("job-01", _result(None, "Boom"), ("UNEXPECTED: expected returns, raised Boom", False)),
        ("job-02", _result(None, "BadEvent"), ("as expected (raises BadEvent)", True)),
        ("job-02", _result({"purged": 0}), ("UNEXPECTED: expected raises BadEvent, returned", False)),
        ("other", _result({"statusCode": 404}), ("(no expectation in app.toml)", True)),
        ("other", _result(None, "Boom"), ("(no expectation in app.toml)", False)),
    ],
)
def test_each_answer_is_held_to_app_toml(event: str, result: InvokeResult, expected: tuple[str, bool]) -> None:
    assert verdict(result, event, APP) == expected
