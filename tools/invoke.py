"""Invoke a template function in-process with an event file and print what `sam local invoke` prints.

    python -m tools.invoke ApiFunction events/api-health.json [--parameter DbPool=nullpool]
    make invoke FUNCTION=ApiFunction EVENT=events/api-health.json

The handler, timeout, memory and environment come from template.yaml (Globals merged, intrinsics resolved against
parameter defaults or overrides). The database URL comes from DATABASE_URL when it is set, else from the local stack's
.stack/env. START/END/REPORT lines and the function's own output go to stderr, the response JSON to stdout, as with
`sam local invoke`. Exit status: 0 success, 1 the function failed or timed out, 2 bad usage.

One Python process stands for the execution environment: the first invocation of a handler module is the cold start
(its import time is the Init Duration), later ones in the same process are warm and reuse its module-level state.
"""

from __future__ import annotations

import argparse
import importlib
import io
import json
import logging
import os
import resource
import shlex
import sys
import time
import traceback
import uuid
from collections.abc import Callable, Iterator, Mapping
from contextlib import contextmanager
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any, TextIO, cast
from urllib.parse import parse_qsl, urlencode, urlsplit, urlunsplit

from lib.dbkit.settings import URL_VARIABLES
from tools.sam_template import (
    ROOT,
    TEMPLATE_PATH,
    Resolver,
    TemplateError,
    UnresolvableError,
    function_ids,
    function_properties,
    load_template,
)

EVENTS_DIR = ROOT / "events"
STACK_ENV_FILE = ROOT / ".stack" / "env"
# Lambda's defaults for properties a template may leave out.
DEFAULT_TIMEOUT_SECONDS = 3
DEFAULT_MEMORY_MB = 128
EXIT_FUNCTION_ERROR = 1
EXIT_USAGE = 2


class InvokeUsageError(TemplateError):
    """The invocation cannot start: unknown function, missing event file, no database configured."""


@dataclass(frozen=True)
class FunctionConfig:
    """What Lambda would know about a function: handler, limits and environment."""

    logical_id: str
    handler: str
    runtime: str
    timeout_seconds: int
    memory_mb: int
    environment: dict[str, str] = field(repr=False)
    unresolved: tuple[str, ...] = ()

    @property
    def event_prefix(self) -> str:
        """Events for this function are events/<handler module>-*.json (handlers.api -> api-*.json)."""
        return self.handler.rsplit(".", 1)[0].rsplit(".", 1)[-1] + "-"

    def event_files(self, events_dir: Path = EVENTS_DIR) -> list[Path]:
        """The sample events of this function, sorted by name."""
        return sorted(events_dir.glob(f"{self.event_prefix}*.json"))


def function_config(
    function_id: str, *, parameters: Mapping[str, str] | None = None, template_path: Path = TEMPLATE_PATH
) -> FunctionConfig:
    """Read one function's configuration from the template, resolving what can be resolved outside AWS."""
    template = load_template(template_path)
    if function_id not in function_ids(template):
        raise InvokeUsageError(
            f"unknown function {function_id!r}; the template's functions: {', '.join(function_ids(template))}"
        )
    resolver = Resolver(template, overrides=dict(parameters or {}))
    resolver.pseudo = {**resolver.pseudo, "AWS::Region": _region()}
    properties = function_properties(template, function_id)
    environment: dict[str, str] = {}
    unresolved: list[str] = []
    for name, value in properties.get("Environment", {}).get("Variables", {}).items():
        try:
            resolved = resolver.resolve({name: value})
        except UnresolvableError:
            unresolved.append(name)
            continue
        if name in resolved:
            environment[name] = str(resolved[name])
    return FunctionConfig(
        logical_id=function_id,
        handler=str(resolver.resolve(properties["Handler"])),
        runtime=str(resolver.resolve(properties.get("Runtime", ""))),
        timeout_seconds=int(resolver.resolve(properties.get("Timeout", DEFAULT_TIMEOUT_SECONDS))),
        memory_mb=int(resolver.resolve(properties.get("MemorySize", DEFAULT_MEMORY_MB))),
        environment=environment,
        unresolved=tuple(unresolved),
    )


def _region() -> str:
    return os.environ.get("AWS_REGION") or os.environ.get("AWS_DEFAULT_REGION") or "us-east-1"


def read_stack_env(path: Path = STACK_ENV_FILE) -> dict[str, str]:
    """The `export NAME='value'` lines of the local stack's env file ({} when the stack was never started)."""
    if not path.exists():
        return {}
    values: dict[str, str] = {}
    for line in path.read_text(encoding="utf-8").splitlines():
        words = shlex.split(line, comments=True)
        if len(words) == 2 and words[0] == "export" and "=" in words[1]:
            name, _, value = words[1].partition("=")
            values[name] = value
    return values


def database_environment(
    environ: Mapping[str, str] | None = None, stack_env_file: Path = STACK_ENV_FILE
) -> dict[str, str]:
    """DATABASE_URL and DB_POOLER_HOSTS for a local run: the caller's environment first, then .stack/env."""
    environ = os.environ if environ is None else environ
    stack = read_stack_env(stack_env_file)
    database: dict[str, str] = {}
    for name in ("DATABASE_URL", "DB_POOLER_HOSTS"):
        value = environ.get(name) or stack.get(name)
        if value:
            database[name] = value
    if "DATABASE_URL" not in database:
        raise InvokeUsageError(
            "no database: start the local stack (`make stack-up`, which writes .stack/env) or set DATABASE_URL"
        )
    return database


# Where `sam local invoke` mounts the built function folder; the stack's CA is copied there (docs/deploy.md, "Docker").
CONTAINER_CA_PATH = "/var/task/stack-ca.crt"


def sam_local_env_vars(stack_env: Mapping[str, str], ca_path: str = CONTAINER_CA_PATH) -> dict[str, Any]:
    """An env.json for `sam local invoke --env-vars`: the stack's pooled URL with the CA path the container sees."""
    if "DATABASE_URL" not in stack_env:
        raise InvokeUsageError("no .stack/env: start the local stack first (`make stack-up`)")
    parts = urlsplit(stack_env["DATABASE_URL"])
    query = [(k, ca_path if k == "sslrootcert" else v) for k, v in parse_qsl(parts.query, keep_blank_values=True)]
    url = urlunsplit(parts._replace(query=urlencode(query, safe="/")))
    return {
        "Parameters": {
            "DATABASE_URL": url,
            "DB_POOLER_HOSTS": stack_env.get("DB_POOLER_HOSTS", ""),
            "APP_ENV": "development",
        }
    }


class LambdaContext:
    """The context object Lambda passes to a handler, with the remaining time counted from the timeout."""

    def __init__(self, config: FunctionConfig, request_id: str, region: str) -> None:
        self.aws_request_id = request_id
        self.function_name = config.logical_id
        self.function_version = "$LATEST"
        self.memory_limit_in_mb = config.memory_mb
        self.invoked_function_arn = f"arn:aws:lambda:{region}:123456789012:function:{config.logical_id}"
        self.log_group_name = f"/aws/lambda/{config.logical_id}"
        self.log_stream_name = time.strftime("%Y/%m/%d/[$LATEST]") + uuid.uuid4().hex
        self.identity: Any = None
        self.client_context: Any = None
        self._deadline = time.monotonic() + config.timeout_seconds

    def get_remaining_time_in_millis(self) -> int:
        """Milliseconds left before Lambda would stop this invocation (0 once the timeout has passed)."""
        return max(0, int((self._deadline - time.monotonic()) * 1000))


@dataclass(frozen=True)
class InvokeResult:
    """One invocation: the response (or Lambda's error payload) and what the function printed."""

    function_id: str
    request_id: str
    response: Any
    error: dict[str, Any] | None
    logs: str
    duration_ms: float
    init_duration_ms: float | None
    memory_mb: int
    max_memory_used_mb: int

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
        init = f"\tInit Duration: {self.init_duration_ms:.2f} ms" if self.init_duration_ms is not None else ""
        report = (
            f"REPORT RequestId: {self.request_id}{init}\tDuration: {self.duration_ms:.2f} ms\t"
            f"Billed Duration: {int(-(-self.duration_ms // 1))} ms\tMemory Size: {self.memory_mb} MB\t"
            f"Max Memory Used: {self.max_memory_used_mb} MB\t"
        )
        return [f"END RequestId: {self.request_id}", report]


class _Recorder(io.TextIOBase):
    """Stands in for sys.stdout/sys.stderr: records writes while an invocation runs, forwards them otherwise.

    Loggers created during an invocation (Powertools binds sys.stdout when its Logger is built) keep this object,
    so later invocations in the same process are recorded too; stream handlers built earlier are pointed at it for
    the duration of each invocation.
    """

    def __init__(self, target: TextIO) -> None:
        super().__init__()
        self.target = target
        self.recording: list[str] | None = None
        self.echo: TextIO | None = None

    def write(self, text: str) -> int:
        if self.recording is None:
            return self.target.write(text)
        self.recording.append(text)
        if self.echo is not None:
            self.echo.write(text)
        return len(text)

    def flush(self) -> None:
        stream = self.target if self.recording is None else self.echo
        if stream is not None:
            stream.flush()

    def writable(self) -> bool:
        return True


_recorders: dict[str, _Recorder] = {}


@contextmanager
def _recorded_output(echo: TextIO | None) -> Iterator[list[str]]:
    chunks: list[str] = []
    installed: list[tuple[str, TextIO]] = []
    for name in ("stdout", "stderr"):
        current = getattr(sys, name)
        recorder = _recorders.get(name)
        if recorder is None:
            recorder = _recorders[name] = _Recorder(current)
        elif current is not recorder:
            recorder.target = current
        recorder.recording, recorder.echo = chunks, echo
        installed.append((name, current))
        setattr(sys, name, recorder)
    # Loggers built before (by an earlier import in this process) write to the stream they were given then.
    redirected: list[tuple[logging.StreamHandler[TextIO], TextIO]] = []
    streams = {id(previous): cast(TextIO, _recorders[name]) for name, previous in installed}
    for handler in _stream_handlers():
        if id(handler.stream) in streams:
            redirected.append((handler, handler.stream))
            handler.setStream(streams[id(handler.stream)])
    try:
        yield chunks
    finally:
        for handler, stream in redirected:
            handler.setStream(stream)
        for name, previous in installed:
            _recorders[name].recording = None
            _recorders[name].echo = None
            setattr(sys, name, previous)


def _stream_handlers() -> list[logging.StreamHandler[TextIO]]:
    loggers = [logging.getLogger(), *logging.Logger.manager.loggerDict.values()]
    return [
        handler
        for logger in loggers
        if isinstance(logger, logging.Logger)
        for handler in logger.handlers
        if type(handler) is logging.StreamHandler
    ]


@contextmanager
def _environment(values: Mapping[str, str]) -> Iterator[None]:
    saved = dict(os.environ)
    os.environ.update(values)
    try:
        yield
    finally:
        os.environ.clear()
        os.environ.update(saved)


def lambda_environment(config: FunctionConfig, region: str) -> dict[str, str]:
    """The variables the Lambda service itself sets, as `sam local invoke` sets them."""
    return {
        "AWS_LAMBDA_FUNCTION_NAME": config.logical_id,
        "AWS_LAMBDA_FUNCTION_VERSION": "$LATEST",
        "AWS_LAMBDA_FUNCTION_MEMORY_SIZE": str(config.memory_mb),
        "AWS_LAMBDA_FUNCTION_TIMEOUT": str(config.timeout_seconds),
        "AWS_LAMBDA_LOG_GROUP_NAME": f"/aws/lambda/{config.logical_id}",
        "AWS_LAMBDA_INITIALIZATION_TYPE": "on-demand",
        "AWS_EXECUTION_ENV": f"AWS_Lambda_{config.runtime}",
        "AWS_REGION": region,
        "AWS_DEFAULT_REGION": region,
        "AWS_SAM_LOCAL": "true",
        "_HANDLER": config.handler,
    }


def _error_payload(exc: BaseException, request_id: str, error_type: str | None = None) -> dict[str, Any]:
    return {
        "errorMessage": str(exc),
        "errorType": error_type or type(exc).__name__,
        "requestId": request_id,
        "stackTrace": traceback.format_tb(exc.__traceback__),
    }


def _load_handler(handler: str) -> tuple[Callable[[Any, Any], Any], float | None]:
    module_name, _, function_name = handler.rpartition(".")
    cold = module_name not in sys.modules
    started = time.perf_counter()
    module = importlib.import_module(module_name)
    init_ms = (time.perf_counter() - started) * 1000 if cold else None
    function = getattr(module, function_name, None)
    if not callable(function):
        raise AttributeError(f"Handler '{function_name}' missing on module '{module_name}'")
    return function, init_ms


def invoke(
    function_id: str,
    event_path: str | Path,
    *,
    parameters: Mapping[str, str] | None = None,
    environ: Mapping[str, str] | None = None,
    echo: TextIO | None = None,
    template_path: Path = TEMPLATE_PATH,
) -> InvokeResult:
    """Run a template function's handler in this process with the event in `event_path`.

    `parameters` override template parameter defaults; `environ` supplies DATABASE_URL/DB_POOLER_HOSTS (default:
    os.environ, then .stack/env); `echo` receives the function's output as it is written (default: recorded only).
    Raises InvokeUsageError when the function or event does not exist or no database is configured.
    """
    config = function_config(function_id, parameters=parameters, template_path=template_path)
    event = _read_event(config, Path(event_path))
    region = _region()
    environment = {**lambda_environment(config, region), **config.environment}
    if not any(name in environment for name in URL_VARIABLES):
        environment.update(database_environment(environ))
    elif "DB_POOLER_HOSTS" not in environment:
        pooler_hosts = (environ or os.environ).get("DB_POOLER_HOSTS")
        environment.update({"DB_POOLER_HOSTS": pooler_hosts} if pooler_hosts else {})
    request_id = str(uuid.uuid4())
    if str(ROOT) not in sys.path:
        sys.path.insert(0, str(ROOT))

    response: Any = None
    error: dict[str, Any] | None = None
    init_ms: float | None = None
    if echo is not None:
        print(f"Invoking {config.handler} ({config.runtime})", file=echo)
        print(f"START RequestId: {request_id} Version: $LATEST", file=echo, flush=True)
    with _environment(environment), _recorded_output(echo) as chunks:
        try:
            handler, init_ms = _load_handler(config.handler)
        except Exception as exc:  # noqa: BLE001 - reported the way Lambda reports a failed init
            error = _error_payload(exc, request_id, "Runtime.ImportModuleError")
            error["errorMessage"] = f"Unable to import module '{config.handler.rpartition('.')[0]}': {exc}"
        started = time.perf_counter()
        if error is None:
            context = LambdaContext(config, request_id, region)
            try:
                response = handler(event, context)
                json.dumps(response)
            except Exception as exc:  # noqa: BLE001 - the function's failure is the result, as in Lambda
                error = _error_payload(exc, request_id)
                print(f"[ERROR] {type(exc).__name__}: {exc}", file=sys.stderr)
                traceback.print_exc(file=sys.stderr)
        duration_ms = (time.perf_counter() - started) * 1000
        if error is None and duration_ms > config.timeout_seconds * 1000:
            message = f"RequestId: {request_id} Error: Task timed out after {duration_ms / 1000:.2f} seconds"
            error = {"errorType": "Sandbox.Timedout", "errorMessage": message}
            print(message, file=sys.stderr)
    result = InvokeResult(
        function_id=function_id,
        request_id=request_id,
        response=error if error is not None else response,
        error=error,
        logs="".join(chunks),
        duration_ms=duration_ms,
        init_duration_ms=init_ms,
        memory_mb=config.memory_mb,
        max_memory_used_mb=resource.getrusage(resource.RUSAGE_SELF).ru_maxrss // 1024,
    )
    if echo is not None:
        print(*result.end_lines(), sep="\n", file=echo, flush=True)
    return result


def _read_event(config: FunctionConfig, path: Path) -> Any:
    if not path.is_file():
        known = ", ".join(str(p.relative_to(ROOT)) for p in config.event_files()) or "none yet"
        raise InvokeUsageError(f"no event file {str(path)!r}; events for {config.logical_id}: {known}")
    try:
        return json.loads(path.read_text(encoding="utf-8"))
    except json.JSONDecodeError as exc:
        raise InvokeUsageError(f"{path} is not JSON: {exc}") from exc


def _parameter(text: str) -> tuple[str, str]:
    name, separator, value = text.partition("=")
    if not separator or not name:
        raise argparse.ArgumentTypeError(f"expected Name=Value, got {text!r}")
    return name, value


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(prog="python -m tools.invoke", description=__doc__.split("\n\n")[0])
    parser.add_argument("function", nargs="?", help="logical id of a function in template.yaml")
    parser.add_argument("event", nargs="?", help="event JSON file, e.g. events/api-health.json")
    parser.add_argument(
        "--parameter",
        action="append",
        type=_parameter,
        default=[],
        metavar="NAME=VALUE",
        help="override a template parameter (repeatable), e.g. DbPool=nullpool",
    )
    parser.add_argument(
        "--env-json",
        action="store_true",
        help="print an env.json for `sam local invoke --env-vars` pointing at the local stack, and exit",
    )
    args = parser.parse_args(argv)
    try:
        if args.env_json:
            print(json.dumps(sam_local_env_vars(read_stack_env()), indent=2))
            return 0
        if not args.function or not args.event:
            ids = function_ids(load_template())
            raise InvokeUsageError(f"usage: FUNCTION=<logical id> EVENT=<file>; functions: {', '.join(ids)}")
        result = invoke(args.function, args.event, parameters=dict(args.parameter), echo=sys.stderr)
    except TemplateError as exc:
        print(f"invoke: {exc}", file=sys.stderr)
        return EXIT_USAGE
    print(json.dumps(result.response, default=str))
    return 0 if result.ok else EXIT_FUNCTION_ERROR


if __name__ == "__main__":
    sys.exit(main())
