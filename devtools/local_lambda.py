"""A local Lambda: template functions run by AWS's runtime client (awslambdaric) in execution environments of ours.

Each execution environment is one `python -m awslambdaric <handler>` process with the function's environment (from
template.yaml), polling its own runtime API (devtools.runtime_api). The first invocation of an environment is its cold
start (the runtime client imports the handler module: the Init Duration); later ones are warm and reuse the module
state (the engine, the settings). An environment takes one invocation at a time: concurrent invocations get more
environments, up to the function's reserved concurrency; idle ones are reused. An invocation that outlives the
function's timeout kills its environment, so the next one is cold, as in Lambda. The code comes from the function's
`sam build` artifact when that is current and built for the interpreter, else from the source tree
(devtools.function_code); the tools print which.
"""

from __future__ import annotations

import contextlib
import json
import os
import select
import signal
import subprocess
import threading
import time
import uuid
from collections.abc import Callable, Iterator, Mapping
from dataclasses import dataclass, field, replace
from enum import Enum
from pathlib import Path
from typing import Any

from devtools.function_code import FunctionCode, function_code
from devtools.function_config import FunctionConfig, database_line, function_config, function_environment, region
from devtools.lambda_context import ACCOUNT_ID, log_stream_name
from devtools.runtime_api import ACCEPTED, Answer, NextInvocation, RuntimeApiServer
from devtools.runtime_python import RuntimePython, runtime_python
from devtools.sam_template import TEMPLATE_PATH

# Synchronous invocations: request and response payloads up to 6 MB each.
PAYLOAD_LIMIT_BYTES = 6 * 1024 * 1024
# Lambda gives an on-demand init 10 s, then retries it inside the first invocation, under the function's timeout.
INIT_LIMIT_SECONDS = 10.0
# The caller's AWS credentials reach the function as the role's would; nothing else of the caller's environment does.
PASSED_THROUGH = ("AWS_ACCESS_KEY_ID", "AWS_SECRET_ACCESS_KEY", "AWS_SESSION_TOKEN")
_DRAIN_SECONDS = 5.0

LogSink = Callable[["ExecutionEnvironment", str], None]


class InvocationRefusedError(RuntimeError):
    """Lambda refused the invocation before any environment ran it (throttled, payload too large)."""

    status = 500
    error_type = "ServiceException"


class TooManyRequestsError(InvocationRefusedError):
    """Every environment the function's reserved concurrency allows is busy (Lambda's TooManyRequestsException)."""

    status = 429
    error_type = "TooManyRequestsException"


class RequestTooLargeError(InvocationRefusedError):
    """The event exceeds the 6 MB synchronous payload limit (Lambda's RequestEntityTooLargeException)."""

    status = 413
    error_type = "RequestEntityTooLargeException"


class ErrorKind(Enum):
    """Why an invocation did not return the handler's response."""

    FUNCTION = "function"  # the handler raised: the runtime client posted /error
    INIT = "init"  # the handler module could not be loaded: /init/error, then the runtime client exits
    TIMEOUT = "timeout"  # the function's timeout passed: the environment is killed
    EXIT = "exit"  # the runtime process ended during the invocation
    RESPONSE_TOO_LARGE = "response_too_large"  # the response exceeded the payload limit


@dataclass(frozen=True)
class InvokeResult:
    """One invocation: the response (or Lambda's error payload), the function's output, and where it ran."""

    function_id: str
    request_id: str
    environment_id: str
    cold: bool
    python: RuntimePython
    response: Any
    payload: bytes = field(repr=False)
    error: dict[str, Any] | None
    error_kind: ErrorKind | None
    logs: str
    duration_ms: float
    init_duration_ms: float | None
    memory_mb: int
    max_memory_used_mb: int
    trace_id: str
    snap_start_restored: bool = False

    @property
    def ok(self) -> bool:
        """The handler returned in time without raising."""
        return self.error is None

    @property
    def status_code(self) -> int | None:
        """statusCode of an API Gateway response, None for other responses."""
        if isinstance(self.response, dict) and isinstance(self.response.get("statusCode"), int):
            return int(self.response["statusCode"])
        return None

    def end_lines(self) -> list[str]:
        """END and REPORT as Lambda writes them after an invocation."""
        report = (
            f"REPORT RequestId: {self.request_id}\tDuration: {self.duration_ms:.2f} ms\t"
            f"Billed Duration: {int(-(-self.duration_ms // 1))} ms\tMemory Size: {self.memory_mb} MB\t"
            f"Max Memory Used: {self.max_memory_used_mb} MB\t"
        )
        if self.init_duration_ms is not None:
            report += f"Init Duration: {self.init_duration_ms:.2f} ms\t"
        if self.error_kind is ErrorKind.TIMEOUT:
            report += "Status: timeout"
        return [f"END RequestId: {self.request_id}", report]


@dataclass
class _Pending:
    invocation: NextInvocation
    timeout_seconds: float
    handed_out_at: float | None = None
    outcome: tuple[ErrorKind | None, bytes] | None = None
    logs: list[str] = field(default_factory=list)


def trace_header(*, sampled: bool) -> str:
    """An X-Ray trace header as Lambda passes it to the runtime (Root=...;Parent=...;Sampled=...)."""
    root = f"1-{int(time.time()):08x}-{uuid.uuid4().hex[:24]}"
    return f"Root={root};Parent={uuid.uuid4().hex[:16]};Sampled={int(sampled)}"


class ExecutionEnvironment:
    """One sandbox: a runtime API server and the awslambdaric process polling it, one invocation at a time."""

    def __init__(
        self,
        config: FunctionConfig,
        python: RuntimePython,
        environment_id: str,
        variables: Mapping[str, str],
        log_sink: LogSink,
        *,
        code: FunctionCode | None = None,
    ) -> None:
        self.config = config
        self.python = python
        self.code = code
        self.id = environment_id
        self._log_sink = log_sink
        self._changed = threading.Condition()
        self._pending: _Pending | None = None
        self._init_error: bytes | None = None
        self._init_logs: list[str] = []
        self._closing = False
        self._released = False
        self.invocations = 0
        self.ready_at: float | None = None
        self.restored = False
        self.exit_code: int | None = None
        self.api = RuntimeApiServer(self)
        self.started_at = time.perf_counter()
        self.process = subprocess.Popen(
            [str(python.executable), "-m", "awslambdaric", config.handler],
            cwd=config.code_root,
            env={
                **variables,
                "AWS_LAMBDA_RUNTIME_API": self.api.address,
                "PATH": f"{python.executable.parent}:/usr/local/bin:/usr/bin:/bin",
            },
            stdin=subprocess.DEVNULL,
            stdout=subprocess.PIPE,
            stderr=subprocess.STDOUT,
            # Its own process group, so a timeout kills the runtime and anything the handler started.
            start_new_session=True,
        )
        assert self.process.stdout is not None
        self._output = self.process.stdout.fileno()
        os.set_blocking(self._output, False)
        self._wake_read, self._wake_write = os.pipe()
        self._drain_requests: list[threading.Event] = []
        self._partial = b""
        self._output_closed = threading.Event()
        threading.Thread(target=self._read_output, name=f"{self.id}-output", daemon=True).start()
        threading.Thread(target=self._watch_exit, name=f"{self.id}-exit", daemon=True).start()

    def describe(self) -> str:
        """What runs here: the runtime client, its Python, and where the code comes from."""
        line = f"local runtime API, {self.python.describe()}"
        return f"{line}; {self.code.describe()}" if self.code is not None else line

    @property
    def alive(self) -> bool:
        """The runtime process is running (it may still be initialising)."""
        return not self._closing and self.exit_code is None and self.process.poll() is None

    @property
    def pid(self) -> int:
        """The runtime process's id."""
        return self.process.pid

    # RuntimeBackend: called from the runtime API's request threads.

    def next_invocation(self) -> NextInvocation | None:
        with self._changed:
            if self.ready_at is None:
                self.ready_at = time.perf_counter()
                self._changed.notify_all()
            while not self._closing and (self._pending is None or self._pending.handed_out_at is not None):
                self._changed.wait()
            if self._closing or self._pending is None:
                return None
            pending = self._pending
            pending.handed_out_at = time.perf_counter()
            deadline = int(time.time() * 1000 + pending.timeout_seconds * 1000)
            self._changed.notify_all()
        invocation = pending.invocation
        self._platform_log(f"START RequestId: {invocation.request_id} Version: $LATEST")
        return NextInvocation(
            request_id=invocation.request_id,
            payload=invocation.payload,
            deadline_epoch_ms=deadline,
            function_arn=invocation.function_arn,
            trace_id=invocation.trace_id,
            client_context=invocation.client_context,
            cognito_identity=invocation.cognito_identity,
        )

    def restore_next(self) -> None:
        # Nothing to snapshot here: the process lives on. The runtime's hooks around the snapshot do run.
        with self._changed:
            self.restored = True

    def invocation_response(self, request_id: str, payload: bytes) -> Answer:
        if len(payload) > PAYLOAD_LIMIT_BYTES:
            message = f"Response payload size exceeded maximum allowed payload size ({PAYLOAD_LIMIT_BYTES} bytes)."
            error = {"errorMessage": message, "errorType": "Function.ResponseSizeTooLarge"}
            if not self._finish(request_id, ErrorKind.RESPONSE_TOO_LARGE, json.dumps(error).encode()):
                return _unknown_request(request_id)
            return Answer(413, {"errorMessage": message, "errorType": "RequestEntityTooLarge"})
        return ACCEPTED if self._finish(request_id, None, payload) else _unknown_request(request_id)

    def invocation_error(self, request_id: str, payload: bytes, error_type: str | None) -> Answer:
        return ACCEPTED if self._finish(request_id, ErrorKind.FUNCTION, payload) else _unknown_request(request_id)

    def init_error(self, payload: bytes, error_type: str | None, *, phase: str) -> Answer:
        with self._changed:
            self._init_error = payload
            self._changed.notify_all()
        return ACCEPTED

    def _finish(self, request_id: str, kind: ErrorKind | None, payload: bytes) -> bool:
        with self._changed:
            pending = self._pending
            if pending is None or pending.invocation.request_id != request_id or pending.outcome is not None:
                return False
            pending.outcome = (kind, payload)
            self._changed.notify_all()
            return True

    # The invoking side.

    def invoke(self, invocation: NextInvocation, timeout_seconds: float) -> InvokeResult:
        """Hand one event to the runtime client and wait for its outcome, killing the environment at the timeout."""
        cold = self.invocations == 0
        self.invocations += 1
        pending = _Pending(invocation, timeout_seconds)
        request_id = invocation.request_id
        began = time.perf_counter()
        with self._changed:
            self._pending = pending
            self._changed.notify_all()
            init_deadline = began + INIT_LIMIT_SECONDS + timeout_seconds
            while pending.handed_out_at is None and self._init_error is None and self.exit_code is None:
                if not self._changed.wait(max(0.0, init_deadline - time.perf_counter())):
                    break
            handed_out_at = pending.handed_out_at
            if handed_out_at is not None:
                deadline = handed_out_at + timeout_seconds
                while pending.outcome is None and self.exit_code is None:
                    if not self._changed.wait(max(0.0, deadline - time.perf_counter())):
                        break
        finished_at = time.perf_counter()
        if handed_out_at is None:
            self._platform_log(f"START RequestId: {request_id} Version: $LATEST")
        started_at = handed_out_at if handed_out_at is not None else began
        kind, payload = self._outcome(pending, request_id, finished_at - started_at)
        max_memory_used_mb = self._max_memory_used_mb()
        if kind is ErrorKind.TIMEOUT:
            self.kill()
        elif kind in (ErrorKind.INIT, ErrorKind.EXIT, ErrorKind.RESPONSE_TOO_LARGE):
            # The runtime client exits after a failed init or an unpostable response; Lambda resets the environment.
            self._await_exit()
        self._drain_output()
        with self._changed:
            self._pending = None
            logs = "".join(self._init_logs + pending.logs if cold else pending.logs)
        init_ms = (self.ready_at - self.started_at) * 1000 if cold and self.ready_at is not None else None
        if cold and init_ms is None:
            init_ms = (finished_at - self.started_at) * 1000
        result = InvokeResult(
            function_id=self.config.logical_id,
            request_id=request_id,
            environment_id=self.id,
            cold=cold,
            python=self.python,
            response=_json_or_text(payload),
            payload=payload,
            error=_error_payload(payload) if kind is not None else None,
            error_kind=kind,
            logs=logs,
            duration_ms=(finished_at - started_at) * 1000,
            init_duration_ms=init_ms,
            memory_mb=self.config.memory_mb,
            max_memory_used_mb=max_memory_used_mb,
            trace_id=invocation.trace_id,
            snap_start_restored=self.restored,
        )
        for line in result.end_lines():
            self._platform_log(line)
        return result

    def _outcome(self, pending: _Pending, request_id: str, elapsed: float) -> tuple[ErrorKind | None, bytes]:
        if pending.outcome is not None:
            return pending.outcome
        if self._init_error is not None:
            return ErrorKind.INIT, self._init_error
        if self.exit_code is not None:
            message = f"RequestId: {request_id} Error: Runtime exited with error: exit status {self.exit_code}"
            return ErrorKind.EXIT, json.dumps({"errorType": "Runtime.ExitError", "errorMessage": message}).encode()
        message = f"RequestId: {request_id} Error: Task timed out after {elapsed:.2f} seconds"
        self._platform_log(f"{_timestamp()} {request_id} Task timed out after {elapsed:.2f} seconds")
        return ErrorKind.TIMEOUT, json.dumps({"errorType": "Sandbox.Timedout", "errorMessage": message}).encode()

    def kill(self) -> None:
        """Stop the runtime process and everything it started (its process group)."""
        with self._changed:
            self._closing = True
            self._changed.notify_all()
        if self.process.poll() is None:
            with contextlib.suppress(ProcessLookupError):
                os.killpg(self.process.pid, signal.SIGKILL)
        self.process.wait(timeout=10)

    def _await_exit(self, seconds: float = 5.0) -> None:
        try:
            self.process.wait(timeout=seconds)
        except subprocess.TimeoutExpired:
            self.kill()

    def close(self) -> None:
        """Kill the process and release the runtime API's port and pipes (once; later calls do nothing)."""
        with self._changed:
            if self._released:
                return
            self._released = True
        self.kill()
        self._output_closed.wait(timeout=5)
        self.api.close()
        for descriptor in (self._wake_read, self._wake_write):
            with contextlib.suppress(OSError):
                os.close(descriptor)

    def _watch_exit(self) -> None:
        code = self.process.wait()
        with self._changed:
            self.exit_code = code
            self._changed.notify_all()

    def _max_memory_used_mb(self) -> int:
        # The process's peak resident set, as REPORT's Max Memory Used; 0 once the process is gone.
        try:
            status = Path(f"/proc/{self.process.pid}/status").read_text(encoding="ascii")
        except OSError:
            return 0
        for line in status.splitlines():
            if line.startswith("VmHWM:"):
                return int(line.split()[1]) // 1024
        return 0

    # The function's output: read by one thread, attributed to the invocation that was running.

    def _read_output(self) -> None:
        try:
            while True:
                ready, _, _ = select.select([self._output, self._wake_read], [], [])
                if self._wake_read in ready:
                    os.read(self._wake_read, 4096)
                if not self._read_available():
                    break
                self._answer_drains(flush_partial=True)
        finally:
            self._emit(self._partial, final=True)
            self._partial = b""
            self._output_closed.set()
            self._answer_drains(flush_partial=False)

    def _read_available(self) -> bool:
        """Read what the pipe holds now; False at end of output."""
        while True:
            try:
                chunk = os.read(self._output, 65536)
            except BlockingIOError:
                return True
            if not chunk:
                return False
            self._emit(self._partial + chunk, final=False)

    def _answer_drains(self, *, flush_partial: bool) -> None:
        with self._changed:
            waiting, self._drain_requests = self._drain_requests, []
        if waiting and flush_partial and self._partial:
            self._emit(self._partial, final=True)
        for event in waiting:
            event.set()

    def _drain_output(self) -> None:
        # The runtime client writes its output before it posts the result, so once the pipe has been read empty,
        # everything the invocation printed has been attributed to it.
        if self._output_closed.is_set():
            return
        done = threading.Event()
        with self._changed:
            self._drain_requests.append(done)
        with contextlib.suppress(OSError):
            os.write(self._wake_write, b"x")
        done.wait(timeout=_DRAIN_SECONDS)

    def _emit(self, data: bytes, *, final: bool) -> None:
        # awslambdaric ends the lines of one error record with "\r" (one CloudWatch event); show them as lines.
        text_lines = data.replace(b"\r", b"\n").split(b"\n")
        self._partial = b"" if final else text_lines.pop()
        for raw in text_lines:
            if final and not raw:
                continue
            self._function_log(raw.decode("utf-8", errors="replace") + "\n")

    def _function_log(self, line: str) -> None:
        with self._changed:
            pending = self._pending
            if pending is not None and pending.handed_out_at is not None:
                pending.logs.append(line)
            else:
                self._init_logs.append(line)
        self._log_sink(self, line)

    def _platform_log(self, line: str) -> None:
        self._log_sink(self, line + "\n")


def _unknown_request(request_id: str) -> Answer:
    return Answer(400, {"errorMessage": f"Invalid request ID: {request_id}", "errorType": "InvalidRequestID"})


def _json_or_text(payload: bytes) -> Any:
    try:
        return json.loads(payload)
    except ValueError:
        return payload.decode("utf-8", errors="replace")


def _error_payload(payload: bytes) -> dict[str, Any]:
    parsed = _json_or_text(payload)
    return parsed if isinstance(parsed, dict) else {"errorMessage": str(parsed), "errorType": "Unknown"}


def _timestamp() -> str:
    now = time.time()
    return time.strftime("%Y-%m-%dT%H:%M:%S", time.gmtime(now)) + f".{int(now * 1000) % 1000:03d}Z"


def _discard(_environment: ExecutionEnvironment, _line: str) -> None:
    """A log sink that keeps nothing (results carry their logs anyway)."""


class LocalLambda:
    """The template's functions, each with its pool of execution environments, created on demand and reused.

    `parameters` override template parameter defaults; `environ` supplies DATABASE_URL/DB_POOLER_HOSTS (default:
    os.environ, then .stack/env); `log_sink` receives every line an environment prints, as it is printed, and the
    START/END/REPORT lines; `build_dir` is where `sam build` left the artifacts (default: .aws-sam/build beside the
    code), `artifacts=False` always runs the source tree. close() (or leaving the `with` block) kills every
    environment it started.
    """

    def __init__(
        self,
        *,
        template_path: Path = TEMPLATE_PATH,
        parameters: Mapping[str, str] | None = None,
        environ: Mapping[str, str] | None = None,
        log_sink: LogSink = _discard,
        on_new_environment: Callable[[ExecutionEnvironment], None] | None = None,
        python_for: Callable[[str], RuntimePython] = runtime_python,
        build_dir: Path | None = None,
        artifacts: bool = True,
    ) -> None:
        self.template_path = template_path
        self.parameters = dict(parameters or {})
        self._environ = environ
        self._log_sink = log_sink
        self._on_new_environment = on_new_environment
        self._python_for = python_for
        self._build_dir = build_dir
        self._artifacts = artifacts
        self._lock = threading.Lock()
        self._configs: dict[str, FunctionConfig] = {}
        self._pythons: dict[str, RuntimePython] = {}
        self._codes: dict[str, FunctionCode] = {}
        self._idle: dict[str, list[ExecutionEnvironment]] = {}
        self._environments: dict[str, list[ExecutionEnvironment]] = {}
        self._counters: dict[str, int] = {}
        self._reserved: dict[str, int] = {}
        self._closed = False

    def __enter__(self) -> LocalLambda:
        return self

    def __exit__(self, *_exc: object) -> None:
        self.close()

    def config(self, function_id: str) -> FunctionConfig:
        """The function's configuration from the template (read once), its code root where the code is run from."""
        return replace(self._template_config(function_id), code_root=self.code(function_id).root)

    def _template_config(self, function_id: str) -> FunctionConfig:
        with self._lock:
            if function_id not in self._configs:
                self._configs[function_id] = function_config(
                    function_id, parameters=self.parameters, template_path=self.template_path
                )
            return self._configs[function_id]

    def python(self, function_id: str) -> RuntimePython:
        """The interpreter the function's environments run on."""
        runtime = self._template_config(function_id).runtime
        with self._lock:
            if function_id not in self._pythons:
                self._pythons[function_id] = self._python_for(runtime)
            return self._pythons[function_id]

    def code(self, function_id: str) -> FunctionCode:
        """Where the function's code is run from: its sam build artifact when usable, else the source tree."""
        config = self._template_config(function_id)
        python = self.python(function_id)
        with self._lock:
            if function_id not in self._codes:
                self._codes[function_id] = (
                    function_code(config, python, build_dir=self._build_dir)
                    if self._artifacts
                    else FunctionCode(config.code_root, False, "artifacts not used for this run")
                )
            return self._codes[function_id]

    def describe(self, function_id: str) -> str:
        """What the function's environments run: the runtime client, its Python, and where the code comes from."""
        return f"local runtime API, {self.python(function_id).describe()}; {self.code(function_id).describe()}"

    def database(self, function_id: str) -> str:
        """Which database variables the function's environments get, by name: the primary's, the replica's."""
        return database_line(function_environment(self.config(function_id), self._environ))

    def environments(self, function_id: str | None = None) -> list[ExecutionEnvironment]:
        """Every environment started so far (dead ones included), in start order."""
        with self._lock:
            if function_id is not None:
                return list(self._environments.get(function_id, []))
            return [env for envs in self._environments.values() for env in envs]

    def invoke(
        self,
        function_id: str,
        event: Any,
        *,
        client_context: Mapping[str, Any] | None = None,
        trace_id: str | None = None,
    ) -> InvokeResult:
        """Invoke a function synchronously with `event` (anything JSON), in an idle environment or a new one.

        Raises TooManyRequestsError when the reserved concurrency is exhausted, RequestTooLargeError for an event
        over 6 MB, InvokeUsageError (a TemplateError) for an unknown function or missing database configuration.
        """
        config = self.config(function_id)
        payload = json.dumps(event).encode()
        if len(payload) > PAYLOAD_LIMIT_BYTES:
            raise RequestTooLargeError(
                f"Request must be smaller than {PAYLOAD_LIMIT_BYTES} bytes for the InvokeFunction operation"
            )
        environment = self._acquire(config)
        invocation = NextInvocation(
            request_id=str(uuid.uuid4()),
            payload=payload,
            deadline_epoch_ms=0,
            function_arn=f"arn:aws:lambda:{region()}:{ACCOUNT_ID}:function:{function_id}",
            trace_id=trace_id or trace_header(sampled=config.tracing == "Active"),
            client_context=json.dumps(client_context) if client_context is not None else None,
        )
        try:
            return environment.invoke(invocation, config.timeout_seconds)
        finally:
            self._release(environment)

    def _acquire(self, config: FunctionConfig) -> ExecutionEnvironment:
        function_id = config.logical_id
        python = self.python(function_id)
        code = self.code(function_id)
        with self._lock:
            if self._closed:
                raise InvocationRefusedError("the local Lambda is shut down")
            idle = self._idle.setdefault(function_id, [])
            while idle:
                environment = idle.pop()
                if environment.alive:
                    return environment
            running = sum(env.alive for env in self._environments.get(function_id, []))
            if config.reserved_concurrency is not None and running >= config.reserved_concurrency:
                raise TooManyRequestsError(
                    f"Rate Exceeded: {function_id} has {running} of {config.reserved_concurrency} reserved "
                    "concurrent executions busy"
                )
            number = self._counters[function_id] = self._counters.get(function_id, 0) + 1
            variables = self._variables(config, python)
            environment = ExecutionEnvironment(
                config, python, f"{function_id}-{number}", variables, self._log_sink, code=code
            )
            self._environments.setdefault(function_id, []).append(environment)
        if self._on_new_environment is not None:
            self._on_new_environment(environment)
        return environment

    def _release(self, environment: ExecutionEnvironment) -> None:
        with self._lock:
            if environment.alive and not self._closed:
                self._idle.setdefault(environment.config.logical_id, []).append(environment)
                return
        environment.close()

    def _variables(self, config: FunctionConfig, python: RuntimePython) -> dict[str, str]:
        caller = os.environ if self._environ is None else self._environ
        return {
            **{name: caller[name] for name in PASSED_THROUGH if caller.get(name)},
            **lambda_environment(config, region()),
            **function_environment(config, self._environ),
        }

    def close(self) -> None:
        """Kill every environment and release their ports."""
        with self._lock:
            self._closed = True
            environments = [env for envs in self._environments.values() for env in envs]
            self._idle.clear()
        for environment in environments:
            environment.close()


def lambda_environment(config: FunctionConfig, region_name: str) -> dict[str, str]:
    """The variables the Lambda service sets in an execution environment of the function."""
    return {
        "_HANDLER": config.handler,
        "LAMBDA_TASK_ROOT": str(config.code_root),
        "AWS_LAMBDA_FUNCTION_NAME": config.logical_id,
        "AWS_LAMBDA_FUNCTION_VERSION": "$LATEST",
        "AWS_LAMBDA_FUNCTION_MEMORY_SIZE": str(config.memory_mb),
        "AWS_LAMBDA_LOG_GROUP_NAME": f"/aws/lambda/{config.logical_id}",
        "AWS_LAMBDA_LOG_STREAM_NAME": log_stream_name(),
        "AWS_LAMBDA_INITIALIZATION_TYPE": "snap-start" if config.snap_start else "on-demand",
        "AWS_EXECUTION_ENV": f"AWS_Lambda_{config.runtime}",
        "AWS_REGION": region_name,
        "AWS_DEFAULT_REGION": region_name,
        "TZ": ":UTC",
        "LANG": "C.UTF-8",
    }


@contextlib.contextmanager
def local_lambda(**options: Any) -> Iterator[LocalLambda]:
    """A LocalLambda closed (every environment killed) on leaving the block."""
    runtime = LocalLambda(**options)
    try:
        yield runtime
    finally:
        runtime.close()
