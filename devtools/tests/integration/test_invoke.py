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
from devtools.events import event_names
from devtools.function_config import function_config
from devtools.invoke import invoke
from devtools.local_lambda import LocalLambda
from devtools.paths import ROOT
from devtools.sam_template import function_ids, load_template
from devtools.testing.database import DatabaseTarget
from devtools.testing.secrets import assert_no_secret
from tests.app.integration.test_api import EXPECTED_STATUS
from tests.app.integration.test_scheduled import EXPECTED_OUTCOME

FUNCTIONS = function_ids(load_template())


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


def test_api_function_answers_each_event_with_its_documented_status_in_one_warm_environment(
    runtime: LocalLambda, tmp_path: Path
) -> None:
    config = function_config("ApiFunction")
    assert {path.stem for path in config.event_files()} == set(EXPECTED_STATUS) == set(event_names("api-"))
    key = f"invoke-{uuid.uuid4().hex}"
    # Sorted order, as `make demo` runs them: the idempotent replay and conflict follow the first request.
    results = []
    for event_file in config.event_files():
        event = json.loads(_with_unique_idempotency_key(event_file, key, tmp_path).read_text(encoding="utf-8"))
        result = runtime.invoke("ApiFunction", event)
        assert result.ok, (event_file.name, result.error)
        assert result.status_code == EXPECTED_STATUS[event_file.stem], (event_file.name, result.response)
        results.append(result)
    assert [result.cold for result in results] == [True] + [False] * (len(results) - 1)
    assert {result.environment_id for result in results} == {"ApiFunction-1"}
    assert sum(result.logs.count('"message":"database engine created"') for result in results) == 1


def test_purge_function_runs_or_rejects_each_event_as_documented(runtime: LocalLambda) -> None:
    config = function_config("PurgeFunction")
    assert {path.stem for path in config.event_files()} == set(EXPECTED_OUTCOME)
    for event_file in config.event_files():
        expected = EXPECTED_OUTCOME[event_file.stem]
        result = runtime.invoke("PurgeFunction", json.loads(event_file.read_text(encoding="utf-8")))
        if expected == "ran":
            assert result.ok, (event_file.name, result.error)
            assert isinstance(result.response, dict)
        else:
            assert isinstance(expected, type)
            assert result.error is not None, event_file.name
            assert result.error["errorType"] == expected.__name__
            assert result.response == result.error
    assert len(runtime.environments("PurgeFunction")) == 1


def test_function_log_lines_are_recorded_and_carry_the_request_id_and_trace_id(database_env: dict[str, str]) -> None:
    health = function_config("ApiFunction").event_files()[0]
    result = invoke("ApiFunction", health, environ=database_env, parameters={"LogLevel": "DEBUG"})
    records = [json.loads(line) for line in result.logs.splitlines() if line.startswith("{")]
    assert records, result.logs
    with_request = [record for record in records if "function_request_id" in record]
    assert with_request, records
    assert {record["function_request_id"] for record in with_request} == {result.request_id}
    # Powertools reads _X_AMZN_TRACE_ID, which the runtime client sets from the invocation's trace header.
    assert {record["xray_trace_id"] for record in with_request} == {result.trace_id.split(";")[0].removeprefix("Root=")}
    # The memory size as the runtime gives it: the variable's string.
    assert {record["function_memory_size"] for record in with_request} == {"512"}


def test_second_invocation_in_the_same_environment_is_warm(runtime: LocalLambda) -> None:
    health = json.loads(function_config("ApiFunction").event_files()[0].read_text(encoding="utf-8"))
    cold = runtime.invoke("ApiFunction", health)
    warm = runtime.invoke("ApiFunction", health)
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
    event = function_config("ApiFunction").event_files()[0]
    assert local_invoke.main(["ApiFunction", str(event)]) == 0
    out, err = capsys.readouterr()
    assert json.loads(out.strip().splitlines()[-1])["statusCode"] == EXPECTED_STATUS[event.stem]
    lines = err.splitlines()
    start = next(i for i, line in enumerate(lines) if line.startswith("START RequestId: "))
    request_id = lines[start].split()[2]
    assert lines[-2] == f"END RequestId: {request_id}"
    assert lines[-1].startswith(f"REPORT RequestId: {request_id}\t")
    assert "\tMemory Size: 512 MB\t" in lines[-1]
    assert "\tInit Duration: " in lines[-1]  # every `make invoke` starts a new execution environment
    assert any("local runtime API, awslambdaric " in line for line in lines[:start])


def test_cli_reports_a_failing_function_with_exit_status_1(
    database_env: dict[str, str], monkeypatch: pytest.MonkeyPatch, capsys: pytest.CaptureFixture[str]
) -> None:
    for name, value in database_env.items():
        monkeypatch.setenv(name, value)
    rejected = [name for name, outcome in EXPECTED_OUTCOME.items() if outcome != "ran"]
    assert rejected, "needs a sample event the purge function rejects"
    expected = EXPECTED_OUTCOME[rejected[0]]
    assert isinstance(expected, type)
    event = local_invoke.EVENTS_DIR / f"{rejected[0]}.json"
    assert local_invoke.main(["PurgeFunction", str(event)]) == local_invoke.EXIT_FUNCTION_ERROR
    response = json.loads(capsys.readouterr().out.strip().splitlines()[-1])
    assert response["errorType"] == expected.__name__
