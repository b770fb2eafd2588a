"""The local Lambda (devtools.local_lambda) driving AWS's real runtime client, awslambdaric, with handlers made here.

Loopback only, no database: each execution environment is a `python -m awslambdaric` process polling its own
runtime API on 127.0.0.1.
"""

from __future__ import annotations

import platform
import shutil
import threading
import time
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import pytest

from devtools.local_lambda import (
    PAYLOAD_LIMIT_BYTES,
    ErrorKind,
    InvokeResult,
    LocalLambda,
    RequestTooLargeError,
    TooManyRequestsError,
)
from devtools.paths import ROOT
from devtools.testing.processes import alive

TEMPLATE = """\
Transform: AWS::Serverless-2016-10-31
Parameters:
  EnableSnapStart: { Type: String, Default: "false" }
Conditions:
  SnapStartOn: !Equals [!Ref EnableSnapStart, "true"]
Globals:
  Function:
    Runtime: python3.13
    Timeout: 2
    MemorySize: 256
    Tracing: Active
    CodeUri: .
    SnapStart: !If [SnapStartOn, { ApplyOn: PublishedVersions }, !Ref AWS::NoValue]
    Environment:
      Variables:
        DB_MODE: serverless
        DATABASE_URL: postgresql://nobody@localhost:1/none
        HOLD_DIR: {hold_dir}
Resources:
  EchoFunction:
    Type: AWS::Serverless::Function
    Properties:
      Handler: echo.handler
      ReservedConcurrentExecutions: 2
  SyntaxErrorFunction:
    Type: AWS::Serverless::Function
    Properties: { Handler: broken_syntax.handler }
  MissingHandlerFunction:
    Type: AWS::Serverless::Function
    Properties: { Handler: echo.no_such_handler }
  MissingModuleFunction:
    Type: AWS::Serverless::Function
    Properties: { Handler: no_such_module.handler }
"""

HANDLER = """\
import os
import sys
import time
from pathlib import Path

from snapshot_restore_py import register_after_restore, register_before_snapshot

HOOKS = []
register_before_snapshot(lambda: HOOKS.append("before_snapshot"))
register_after_restore(lambda: HOOKS.append("after_restore"))
INVOCATIONS = [0]
NAMES = (
    "DB_MODE", "AWS_LAMBDA_FUNCTION_NAME", "AWS_LAMBDA_FUNCTION_MEMORY_SIZE", "AWS_LAMBDA_FUNCTION_VERSION", "_HANDLER",
    "LAMBDA_TASK_ROOT", "AWS_EXECUTION_ENV", "AWS_LAMBDA_INITIALIZATION_TYPE", "AWS_REGION",
    "AWS_LAMBDA_LOG_GROUP_NAME", "CALLERS_OWN_VARIABLE",
)


def handler(event, context):
    INVOCATIONS[0] += 1
    print("hello from the handler")
    action = event.get("action")
    if action == "fail":
        raise ValueError("asked to fail")
    if action == "sleep":
        time.sleep(event["seconds"])
    if action == "exit":
        os._exit(3)
    if action == "big":
        return "x" * event["bytes"]
    if action == "hold":
        hold = Path(os.environ["HOLD_DIR"])
        (hold / context.aws_request_id).touch()
        for _ in range(1000):
            if (hold / "release").exists():
                break
            time.sleep(0.01)
    return {
        "env": {name: os.environ.get(name) for name in NAMES},
        "runtime_api": os.environ.get("AWS_LAMBDA_RUNTIME_API"),
        "trace_id": os.environ.get("_X_AMZN_TRACE_ID"),
        "request_id": context.aws_request_id,
        "remaining_ms": context.get_remaining_time_in_millis(),
        "memory": context.memory_limit_in_mb,
        "identity": type(context.identity).__name__,
        "client_custom": context.client_context.custom if context.client_context else None,
        "invocations": INVOCATIONS[0],
        "pid": os.getpid(),
        "python": "%d.%d" % sys.version_info[:2],
        "hooks": HOOKS,
        "cwd": os.getcwd(),
    }
"""


@pytest.fixture
def template(tmp_path: Path) -> Path:
    """The template above with its handler modules in tmp_path (the functions' CodeUri)."""
    (tmp_path / "hold").mkdir()
    (tmp_path / "echo.py").write_text(HANDLER, encoding="utf-8")
    (tmp_path / "broken_syntax.py").write_text("def handler(event, context)\n    return 1\n", encoding="utf-8")
    path = tmp_path / "template.yaml"
    path.write_text(TEMPLATE.replace("{hold_dir}", str(tmp_path / "hold")), encoding="utf-8")
    return path


@pytest.fixture
def runtime(template: Path, monkeypatch: pytest.MonkeyPatch) -> Iterator[LocalLambda]:
    monkeypatch.setenv("CALLERS_OWN_VARIABLE", "must not reach the function")
    with LocalLambda(template_path=template) as local:
        yield local


def _echo(runtime: LocalLambda, event: dict[str, Any] | None = None) -> InvokeResult:
    return runtime.invoke("EchoFunction", event or {})


def test_the_handler_runs_under_awslambdaric_with_the_templates_environment(
    runtime: LocalLambda, template: Path
) -> None:
    result = _echo(runtime)
    assert result.ok, result.error
    response = result.response
    assert response["env"] == {
        "DB_MODE": "serverless",
        "AWS_LAMBDA_FUNCTION_NAME": "EchoFunction",
        "AWS_LAMBDA_FUNCTION_MEMORY_SIZE": "256",
        "AWS_LAMBDA_FUNCTION_VERSION": "$LATEST",
        "_HANDLER": "echo.handler",
        "LAMBDA_TASK_ROOT": str(template.parent),
        "AWS_EXECUTION_ENV": "AWS_Lambda_python3.13",
        "AWS_LAMBDA_INITIALIZATION_TYPE": "on-demand",
        "AWS_REGION": response["env"]["AWS_REGION"],
        "AWS_LAMBDA_LOG_GROUP_NAME": "/aws/lambda/EchoFunction",
        "CALLERS_OWN_VARIABLE": None,
    }
    assert response["runtime_api"].startswith("127.0.0.1:")
    assert response["cwd"] == str(template.parent)
    # The runtime client's context: the memory size is the variable's string, identity always an object.
    assert response["memory"] == "256"
    assert response["identity"] == "CognitoIdentity"
    assert response["client_custom"] is None
    assert 0 < response["remaining_ms"] <= 2000
    assert response["request_id"] == result.request_id
    assert "hello from the handler" in result.logs
    assert result.cold
    assert result.init_duration_ms is not None
    assert "; code: the source tree (no artifact in .aws-sam/build/EchoFunction" in runtime.describe("EchoFunction")


def test_functions_run_on_the_python_their_runtime_names_when_it_is_installed(runtime: LocalLambda) -> None:
    result = _echo(runtime)
    assert result.response["python"] == result.python.version.rsplit(".", 1)[0]
    if (ROOT / ".venv-3.13" / "bin" / "python").exists():
        assert result.python.matches
        assert result.response["python"] == "3.13"
        assert "as python3.13 in Lambda" in result.python.describe()
    else:
        assert not result.python.matches
        assert "NOT python3.13: no .venv-3.13" in result.python.describe()


def test_a_current_sam_build_artifact_is_what_the_environments_run_and_they_say_so(template: Path) -> None:
    project = template.parent
    for name in ("handlers", "lib"):
        (project / name).mkdir()
    artifact = project / ".aws-sam" / "build" / "EchoFunction"
    for name in ("handlers", "lib", "pydantic_core"):
        (artifact / name).mkdir(parents=True)
    shutil.copy(project / "echo.py", artifact / "echo.py")
    with LocalLambda(template_path=template) as runtime:
        assert "; code: the source tree (.aws-sam/build/EchoFunction is not built for Python" in runtime.describe(
            "EchoFunction"
        )
        major, minor = runtime.python("EchoFunction").version.split(".")[:2]
        # The wheel that says which Python and machine an artifact was built for.
        (artifact / "pydantic_core" / f"_core.cpython-{major}{minor}-{platform.machine()}-linux-gnu.so").touch()
    with LocalLambda(template_path=template) as runtime:
        result = _echo(runtime)
        assert (result.response["cwd"], result.response["env"]["LAMBDA_TASK_ROOT"]) == (str(artifact),) * 2
        assert "; code: the sam build artifact (.aws-sam/build/EchoFunction: no bytecode" in runtime.describe(
            "EchoFunction"
        )
    (project / "lib" / "edited.py").write_text("", encoding="utf-8")
    with LocalLambda(template_path=template) as runtime:
        assert _echo(runtime).response["cwd"] == str(project)
        assert (
            "; code: the source tree (.aws-sam/build/EchoFunction is out of date: lib/edited.py is not in it"
            in runtime.describe("EchoFunction")
        )


def test_each_invocation_gets_its_own_trace_id_in_the_handlers_environment(runtime: LocalLambda) -> None:
    first, second = _echo(runtime), _echo(runtime)
    for result in (first, second):
        assert result.response["trace_id"] == result.trace_id
        assert result.trace_id.startswith("Root=1-")
        assert result.trace_id.endswith(";Sampled=1")  # Tracing: Active
    assert first.trace_id != second.trace_id


def test_the_next_invocation_is_warm_in_the_same_environment(runtime: LocalLambda) -> None:
    cold, warm = _echo(runtime), _echo(runtime)
    assert (cold.cold, warm.cold) == (True, False)
    assert warm.init_duration_ms is None
    assert "Init Duration" in cold.end_lines()[1]
    assert "Init Duration" not in warm.end_lines()[1]
    assert warm.environment_id == cold.environment_id
    assert warm.response["pid"] == cold.response["pid"]
    assert warm.response["invocations"] == 2  # module state survives between invocations


def test_a_raising_handler_is_reported_as_the_runtime_client_reports_it_and_the_environment_stays(
    runtime: LocalLambda, template: Path
) -> None:
    failed = _echo(runtime, {"action": "fail"})
    assert failed.error_kind is ErrorKind.FUNCTION
    assert failed.response == failed.error
    assert failed.error is not None
    assert (failed.error["errorType"], failed.error["errorMessage"]) == ("ValueError", "asked to fail")
    # The stack starts in the handler, as in Lambda: no frame of the local runtime's own code.
    assert failed.error["stackTrace"][0].startswith(f'  File "{template.parent / "echo.py"}"')
    assert not any("devtools/" in frame for frame in failed.error["stackTrace"])
    assert "[ERROR] ValueError: asked to fail" in failed.logs
    after = _echo(runtime)
    assert (after.cold, after.environment_id) == (False, failed.environment_id)


def test_an_invocation_past_the_timeout_kills_the_environment_and_the_next_one_is_cold(runtime: LocalLambda) -> None:
    warm = _echo(runtime)
    timed_out = _echo(runtime, {"action": "sleep", "seconds": 30})
    assert timed_out.error_kind is ErrorKind.TIMEOUT
    assert timed_out.error is not None
    assert timed_out.error["errorType"] == "Sandbox.Timedout"
    assert "Task timed out after 2." in timed_out.error["errorMessage"]
    assert timed_out.end_lines()[1].endswith("Status: timeout")
    assert not alive(warm.response["pid"])
    after = _echo(runtime)
    assert after.cold
    assert after.environment_id != warm.environment_id
    assert after.response["pid"] != warm.response["pid"]


def test_a_response_over_6_mb_is_refused_and_the_environment_reset(runtime: LocalLambda) -> None:
    too_large = _echo(runtime, {"action": "big", "bytes": PAYLOAD_LIMIT_BYTES})
    assert too_large.error_kind is ErrorKind.RESPONSE_TOO_LARGE
    assert too_large.error is not None
    assert too_large.error["errorType"] == "Function.ResponseSizeTooLarge"
    just_fits = _echo(runtime, {"action": "big", "bytes": PAYLOAD_LIMIT_BYTES - 2})
    assert just_fits.ok
    assert just_fits.cold
    assert len(just_fits.payload) == PAYLOAD_LIMIT_BYTES


def test_an_event_over_6_mb_is_refused_before_any_environment_runs(runtime: LocalLambda) -> None:
    with pytest.raises(RequestTooLargeError):
        _echo(runtime, {"blob": "x" * PAYLOAD_LIMIT_BYTES})
    assert runtime.environments() == []


def test_a_runtime_that_exits_mid_invocation_is_an_exit_error_and_the_next_invocation_is_cold(
    runtime: LocalLambda,
) -> None:
    exited = _echo(runtime, {"action": "exit"})
    assert exited.error_kind is ErrorKind.EXIT
    assert exited.error is not None
    assert exited.error["errorType"] == "Runtime.ExitError"
    assert "exit status 3" in exited.error["errorMessage"]
    assert _echo(runtime).cold


@pytest.mark.parametrize(
    ("function_id", "error_type", "message"),
    [
        ("SyntaxErrorFunction", "Runtime.UserCodeSyntaxError", "Syntax error in module 'broken_syntax'"),
        ("MissingHandlerFunction", "Runtime.HandlerNotFound", "Handler 'no_such_handler' missing on module 'echo'"),
        ("MissingModuleFunction", "Runtime.ImportModuleError", "Unable to import module 'no_such_module'"),
    ],
)
def test_a_failed_init_answers_the_runtime_clients_own_error_type(
    runtime: LocalLambda, function_id: str, error_type: str, message: str
) -> None:
    result = runtime.invoke(function_id, {})
    assert result.error_kind is ErrorKind.INIT
    assert result.error is not None
    assert result.error["errorType"] == error_type
    assert result.error["errorMessage"].startswith(message)
    assert f"[ERROR] {error_type}" in result.logs
    assert runtime.invoke(function_id, {}).cold


def test_snapstart_runs_the_hooks_around_restore_next(template: Path) -> None:
    with LocalLambda(template_path=template, parameters={"EnableSnapStart": "true"}) as runtime:
        result = _echo(runtime)
    assert result.ok, result.error
    assert result.snap_start_restored
    assert result.response["env"]["AWS_LAMBDA_INITIALIZATION_TYPE"] == "snap-start"
    assert result.response["hooks"] == ["before_snapshot", "after_restore"]


def test_client_context_reaches_the_handler_as_the_runtime_client_builds_it(runtime: LocalLambda) -> None:
    result = runtime.invoke("EchoFunction", {}, client_context={"custom": {"tenant": "t1"}})
    assert result.response["client_custom"] == {"tenant": "t1"}


def _hold(runtime: LocalLambda, results: list[InvokeResult]) -> threading.Thread:
    thread = threading.Thread(target=lambda: results.append(_echo(runtime, {"action": "hold"})))
    thread.start()
    return thread


def _wait_for_holders(hold_dir: Path, count: int) -> None:
    deadline = time.monotonic() + 60
    while len([p for p in hold_dir.iterdir() if p.name != "release"]) < count:
        assert time.monotonic() < deadline, "the held invocations never started"
        time.sleep(0.05)


def test_concurrent_invocations_get_their_own_environments_up_to_the_reserved_concurrency(
    runtime: LocalLambda, template: Path
) -> None:
    hold_dir = template.parent / "hold"
    results: list[InvokeResult] = []
    threads = [_hold(runtime, results) for _ in range(2)]
    _wait_for_holders(hold_dir, 2)
    # Both environments the reserved concurrency (2) allows are busy: Lambda throttles the third.
    with pytest.raises(TooManyRequestsError):
        _echo(runtime)
    (hold_dir / "release").touch()
    for thread in threads:
        thread.join(timeout=30)
    assert len({result.environment_id for result in results}) == 2
    assert len({result.response["pid"] for result in results}) == 2
    assert all(result.cold for result in results)
    # Idle environments are reused: two more concurrent invocations run warm in the same two.
    for path in hold_dir.iterdir():
        path.unlink()
    again: list[InvokeResult] = []
    threads = [_hold(runtime, again) for _ in range(2)]
    _wait_for_holders(hold_dir, 2)
    (hold_dir / "release").touch()
    for thread in threads:
        thread.join(timeout=30)
    assert {result.environment_id for result in again} == {result.environment_id for result in results}
    assert not any(result.cold for result in again)


def test_closing_the_local_lambda_stops_every_environment(template: Path) -> None:
    with LocalLambda(template_path=template) as runtime:
        pid = _echo(runtime).response["pid"]
        assert alive(pid)
    assert not alive(pid)
    assert all(not environment.alive for environment in runtime.environments())
