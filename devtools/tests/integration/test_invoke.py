"""Every function in template.yaml invoked with each of its events through the local Lambda runtime (awslambdaric).

`make demo` runs them the same way: one LocalLambda, so a function's events share a warm execution environment.
"""

from __future__ import annotations

import json
import os
import subprocess
import sys
import uuid
from collections.abc import Iterator
from pathlib import Path

import pytest

from devtools import invoke as local_invoke
from devtools.app_config import load_app_config
from devtools.function_config import function_config, function_of_event
from devtools.invoke import invoke
from devtools.local_lambda import LocalLambda
from devtools.paths import ROOT
from devtools.sam_template import function_ids, load_template
from devtools.testing.database import DatabaseTarget
from devtools.testing.secrets import assert_no_secret

FUNCTIONS = function_ids(load_template())
APP = load_app_config()


def _an_event(*, http: bool) -> tuple[str, Path]:
    """A function and one of its sample events that app.toml expects an HTTP status of (http), or an error of."""
    for name, expected in APP.events.items():
        if (expected.status is not None) if http else (expected.raises is not None):
            config = function_of_event(name)
            return config.logical_id, config.event_files()[0].parent / f"{name}.json"
    pytest.fail(f"app.toml [events] expects {'an HTTP status' if http else 'an error'} of no sample event")


class _RedactedEnv(dict[str, str]):
    """Environment variables whose repr (printed by a failing assert) names the keys only: the URL holds a password."""

    def __repr__(self) -> str:
        return f"<environment {sorted(self)}>"


@pytest.fixture(scope="module")
def database_env(database: DatabaseTarget, schema: None) -> dict[str, str]:
    """What `make invoke` takes from .stack/env or the shell: the pooled URL and the pooler hosts."""
    return _RedactedEnv(DATABASE_URL=database.pooled_url, DB_POOLER_HOSTS=database.pooler_hosts)


@pytest.fixture
def runtime(database_env: dict[str, str], database: DatabaseTarget) -> Iterator[LocalLambda]:
    """One local Lambda for the test: each function's invocations share its execution environments."""
    lines: list[str] = []
    with LocalLambda(environ=database_env, log_sink=lambda _environment, line: lines.append(line)) as local:
        yield local
    assert lines
    assert_no_secret(database.password, *lines)


def _with_unique_idempotency_key(event_file: Path, key: str, tmp_path: Path) -> Path:
    """The event, with its Idempotency-Key replaced: earlier runs against the shared stack used the file's key."""
    event = json.loads(event_file.read_text(encoding="utf-8"))
    if "idempotency-key" not in event.get("headers", {}):
        return event_file
    event["headers"]["idempotency-key"] = key
    copy = tmp_path / event_file.name
    copy.write_text(json.dumps(event), encoding="utf-8")
    return copy


@pytest.mark.parametrize("function_id", FUNCTIONS)
def test_every_function_in_the_template_has_sample_events(function_id: str) -> None:
    assert function_config(function_id).event_files(), f"no events/{function_config(function_id).event_prefix}*.json"


@pytest.mark.parametrize("function_id", FUNCTIONS)
def test_each_function_answers_its_events_as_app_toml_expects_in_one_warm_environment(
    runtime: LocalLambda, tmp_path: Path, function_id: str
) -> None:
    config = function_config(function_id)
    key = f"invoke-{uuid.uuid4().hex}"
    # Sorted order, as `make demo` runs them: an idempotent replay and conflict follow the first request.
    results = []
    for event_file in config.event_files():
        expected = APP.expected(event_file.stem)
        assert expected is not None, f"app.toml [events] says nothing of {event_file.stem}: add what it answers"
        event = json.loads(_with_unique_idempotency_key(event_file, key, tmp_path).read_text(encoding="utf-8"))
        result = runtime.invoke(function_id, event)
        error_type = result.error["errorType"] if result.error else None
        assert expected.mismatch(status=result.status_code, error_type=error_type) is None, (
            event_file.name,
            result.response,
        )
        if error_type is not None:
            assert result.response == result.error
        results.append(result)
    assert [result.cold for result in results] == [True] + [False] * (len(results) - 1)
    assert {result.environment_id for result in results} == {f"{function_id}-1"}
    assert sum(result.logs.count('"message":"database engine created"') for result in results) <= 1


def test_function_log_lines_are_recorded_and_carry_the_request_id_and_trace_id(database_env: dict[str, str]) -> None:
    function_id, event = _an_event(http=True)
    result = invoke(function_id, event, environ=database_env, parameters={"LogLevel": "DEBUG"})
    records = [json.loads(line) for line in result.logs.splitlines() if line.startswith("{")]
    assert records, result.logs
    with_request = [record for record in records if "function_request_id" in record]
    assert with_request, records
    assert {record["function_request_id"] for record in with_request} == {result.request_id}
    # Powertools reads _X_AMZN_TRACE_ID, which the runtime client sets from the invocation's trace header.
    assert {record["xray_trace_id"] for record in with_request} == {result.trace_id.split(";")[0].removeprefix("Root=")}
    # The memory size as the runtime gives it: the variable's string.
    assert {record["function_memory_size"] for record in with_request} == {str(function_config(function_id).memory_mb)}


def test_second_invocation_in_the_same_environment_is_warm(runtime: LocalLambda) -> None:
    function_id, event_file = _an_event(http=True)
    event = json.loads(event_file.read_text(encoding="utf-8"))
    cold = runtime.invoke(function_id, event)
    warm = runtime.invoke(function_id, event)
    assert warm.ok
    assert (cold.cold, warm.cold) == (True, False)
    assert warm.environment_id == cold.environment_id
    assert warm.init_duration_ms is None
    assert "Init Duration" in cold.end_lines()[1]
    assert "Init Duration" not in warm.end_lines()[1]


def test_demo_shares_one_warm_environment_per_function_and_says_what_runs(
    database_env: dict[str, str], database: DatabaseTarget
) -> None:
    # As `make demo` runs it: .stack/env's read replica too, which only the API's template entry declares.
    replica = {"DATABASE_READ_URL": database.read_url} if database.read_url else {}
    environment = {**os.environ, **database_env, **replica}
    completed = subprocess.run(
        [sys.executable, "-m", "devtools.demo", "--log-level", "INFO"],
        cwd=ROOT,
        env=environment,
        capture_output=True,
        text=True,
        timeout=300,
        check=False,
    )
    assert completed.returncode == 0, completed.stdout[-3000:] + completed.stderr[-3000:]
    out = completed.stdout
    assert_no_secret(database.password, out, completed.stderr)
    for function_id in FUNCTIONS:
        count = len(function_config(function_id).event_files())
        assert f"{function_id}: {count} invocations in 1 execution environment(s), 1 database engine(s) created" in out
        responses = [line for line in out.splitlines() if line.startswith(f"◀ {function_id} ← ")]
        assert len(responses) == count
        assert responses[0].endswith(f"(cold start in {function_id}-1)")
        assert all(line.endswith(f"(warm in {function_id}-1)") for line in responses[1:])
    assert "local runtime API, awslambdaric " in out
    assert " on Python 3." in out
    # Which database served each invocation (the app's own routes decide which: tests/app checks the sample's).
    served = [line.split()[-1] for line in out.splitlines() if line.startswith("  ApiFunction ")]
    assert len(served) == len(function_config("ApiFunction").event_files())
    assert set(served) <= {"primary", "replica", "replica+primary", "-"}
    if replica:
        assert (
            "ApiFunction: database from DATABASE_URL; read-only units on the read replica from DATABASE_READ_URL" in out
        )
        assert "PurgeFunction: database from DATABASE_URL; no read replica" in out
        if "replica" in served:
            assert "1 database engine(s) created (+1 for the read replica)" in out


def test_cli_prints_the_lambda_lines_on_stderr_and_the_response_on_stdout(
    database_env: dict[str, str], monkeypatch: pytest.MonkeyPatch, capsys: pytest.CaptureFixture[str]
) -> None:
    for name, value in database_env.items():
        monkeypatch.setenv(name, value)
    function_id, event = _an_event(http=True)
    assert local_invoke.main([function_id, str(event)]) == 0
    out, err = capsys.readouterr()
    expected = APP.expected(event.stem)
    assert expected is not None
    assert json.loads(out.strip().splitlines()[-1])["statusCode"] == expected.status
    lines = err.splitlines()
    start = next(i for i, line in enumerate(lines) if line.startswith("START RequestId: "))
    request_id = lines[start].split()[2]
    assert lines[-2] == f"END RequestId: {request_id}"
    assert lines[-1].startswith(f"REPORT RequestId: {request_id}\t")
    assert f"\tMemory Size: {function_config(function_id).memory_mb} MB\t" in lines[-1]
    assert "\tInit Duration: " in lines[-1]  # every `make invoke` starts a new execution environment
    assert any("local runtime API, awslambdaric " in line for line in lines[:start])


def test_cli_reports_a_failing_function_with_exit_status_1(
    database_env: dict[str, str], monkeypatch: pytest.MonkeyPatch, capsys: pytest.CaptureFixture[str]
) -> None:
    for name, value in database_env.items():
        monkeypatch.setenv(name, value)
    function_id, event = _an_event(http=False)
    assert local_invoke.main([function_id, str(event)]) == local_invoke.EXIT_FUNCTION_ERROR
    response = json.loads(capsys.readouterr().out.strip().splitlines()[-1])
    expected = APP.expected(event.stem)
    assert expected is not None
    assert response["errorType"] == expected.raises
