"""Every function in template.yaml invoked through the local invoke path (tools.invoke) with each of its events."""

from __future__ import annotations

import json
import uuid
from collections.abc import Iterator
from pathlib import Path

import pytest

from tests.events import event_names
from tests.integration.conftest import DatabaseTarget
from tests.integration.test_api import EXPECTED_STATUS
from tests.integration.test_scheduled import EXPECTED_OUTCOME
from tests.lambda_runtime import reset_database_state
from tools import invoke as local_invoke
from tools.invoke import InvokeResult, function_config, invoke
from tools.sam_template import function_ids, load_template

FUNCTIONS = function_ids(load_template())


class _RedactedEnv(dict[str, str]):
    """Environment variables whose repr (printed by a failing assert) names the keys only: the URL holds a password."""

    def __repr__(self) -> str:
        return f"<environment {sorted(self)}>"


@pytest.fixture(scope="module")
def database_env(database: DatabaseTarget, schema: None) -> dict[str, str]:
    """What `make invoke` takes from .stack/env or the shell: the pooled URL and the pooler hosts."""
    return _RedactedEnv(DATABASE_URL=database.pooled_url, DB_POOLER_HOSTS=database.pooler_hosts)


@pytest.fixture(autouse=True)
def _fresh_environment() -> Iterator[None]:
    # Other tests leave settings/engine built for their own environment; invoke must build them from the template's.
    reset_database_state()
    yield
    reset_database_state()


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


def test_api_function_answers_each_event_with_its_documented_status(
    database_env: dict[str, str], tmp_path: Path
) -> None:
    config = function_config("ApiFunction")
    assert {path.stem for path in config.event_files()} == set(EXPECTED_STATUS) == set(event_names("api-"))
    key = f"invoke-{uuid.uuid4().hex}"
    # Sorted order, as `make demo` runs them: the idempotent replay and conflict follow the first request.
    for event_file in config.event_files():
        result = invoke("ApiFunction", _with_unique_idempotency_key(event_file, key, tmp_path), environ=database_env)
        assert result.ok, (event_file.name, result.error)
        assert result.status_code == EXPECTED_STATUS[event_file.stem], (event_file.name, result.response)


def test_purge_function_runs_or_rejects_each_event_as_documented(database_env: dict[str, str]) -> None:
    config = function_config("PurgeFunction")
    assert {path.stem for path in config.event_files()} == set(EXPECTED_OUTCOME)
    for event_file in config.event_files():
        expected = EXPECTED_OUTCOME[event_file.stem]
        result = invoke("PurgeFunction", event_file, environ=database_env)
        if expected == "ran":
            assert result.ok, (event_file.name, result.error)
            assert isinstance(result.response, dict)
        else:
            assert isinstance(expected, type)
            assert result.error is not None, event_file.name
            assert result.error["errorType"] == expected.__name__
            assert result.response == result.error


def test_function_log_lines_are_recorded_and_carry_the_request_id(database_env: dict[str, str]) -> None:
    health = function_config("ApiFunction").event_files()[0]
    result = invoke("ApiFunction", health, environ=database_env, parameters={"LogLevel": "DEBUG"})
    records = [json.loads(line) for line in result.logs.splitlines() if line.startswith("{")]
    assert records, result.logs
    with_request = [record for record in records if "function_request_id" in record]
    assert with_request, records
    assert {record["function_request_id"] for record in with_request} == {result.request_id}


def test_second_invocation_in_the_same_process_is_warm(database_env: dict[str, str]) -> None:
    health = function_config("ApiFunction").event_files()[0]
    invoke("ApiFunction", health, environ=database_env)
    warm: InvokeResult = invoke("ApiFunction", health, environ=database_env)
    assert warm.ok
    assert warm.init_duration_ms is None
    assert "Init Duration" not in warm.end_lines()[1]


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
