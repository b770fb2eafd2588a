"""Invoke a template function once through the local Lambda runtime, printing what `sam local invoke` prints.

    python -m devtools.invoke ApiFunction events/api-01-health.json [--parameter DbPool=nullpool]
    make invoke FUNCTION=ApiFunction EVENT=events/api-01-health.json

The function runs where Lambda's Python runtime runs it: in `python -m awslambdaric <handler>` (AWS's runtime interface
client) polling a local runtime API (devtools.local_lambda), on the Python its Runtime names when that is installed
(devtools.runtime_python), from its `sam build` artifact when that is current, else from the source tree, saying which
(devtools.function_code). Handler, timeout, memory and environment come from template.yaml; the database URL from
DATABASE_URL when set, else from the local stack's .stack/env. Each run starts a new execution environment, so it is
a cold start (`make demo` and `make api` keep environments warm). START/END/REPORT and the function's output go to
stderr, the response JSON to stdout. Exit status: 0 success, 1 the function failed or timed out, 2 bad usage.
"""

from __future__ import annotations

import argparse
import json
import sys
from collections.abc import Mapping
from pathlib import Path
from typing import Any, TextIO
from urllib.parse import parse_qsl, urlencode, urlsplit, urlunsplit

from devtools.function_config import EVENTS_DIR, FunctionConfig, InvokeUsageError, function_config
from devtools.local_lambda import ExecutionEnvironment, InvokeResult, LocalLambda
from devtools.paths import ROOT
from devtools.sam_template import TEMPLATE_PATH, TemplateError, function_ids, load_template
from devtools.stack import read_env as read_stack_env

__all__ = ["EVENTS_DIR", "EXIT_FUNCTION_ERROR", "EXIT_USAGE", "InvokeResult", "invoke", "main", "sam_local_env_vars"]

EXIT_FUNCTION_ERROR = 1
EXIT_USAGE = 2
# Where `sam local invoke` mounts the built function folder; the stack's CA is copied there (docs/deploy.md, "Docker").
CONTAINER_CA_PATH = "/var/task/stack-ca.crt"


def sam_local_env_vars(
    stack_env: Mapping[str, str], ca_path: str = CONTAINER_CA_PATH, template_path: Path = TEMPLATE_PATH
) -> dict[str, Any]:
    """An env.json for `sam local invoke --env-vars`: the stack's pooled URLs with the CA path the container sees.

    The read replica's URL goes to each function that declares DATABASE_READ_URL (SAM sets only declared variables,
    so under "Parameters" it would be dropped silently for the others anyway): as deployed, only those read there.
    """
    if "DATABASE_URL" not in stack_env:
        raise InvokeUsageError("no .stack/env: start the local stack first (`make stack-up`)")
    env_vars: dict[str, Any] = {
        "Parameters": {
            "DATABASE_URL": _in_container(stack_env["DATABASE_URL"], ca_path),
            "DB_POOLER_HOSTS": stack_env.get("DB_POOLER_HOSTS", ""),
            "APP_ENV": "development",
        }
    }
    read_url = stack_env.get("DATABASE_READ_URL")
    if read_url:
        for function_id in function_ids(load_template(template_path)):
            if "DATABASE_READ_URL" in function_config(function_id, template_path=template_path).declared:
                env_vars[function_id] = {"DATABASE_READ_URL": _in_container(read_url, ca_path)}
    return env_vars


def _in_container(url: str, ca_path: str) -> str:
    """The URL with its sslrootcert where the container sees the stack's CA."""
    parts = urlsplit(url)
    query = [(k, ca_path if k == "sslrootcert" else v) for k, v in parse_qsl(parts.query, keep_blank_values=True)]
    return urlunsplit(parts._replace(query=urlencode(query, safe="/")))


def environment_line(environment: ExecutionEnvironment) -> str:
    """What an execution environment really is: its id, process, runtime client, Python and code."""
    return f"new execution environment {environment.id} (pid {environment.pid}): {environment.describe()}"


def read_event(config: FunctionConfig, path: Path) -> Any:
    """The JSON event in `path`; InvokeUsageError naming the function's events when there is no such file."""
    if not path.is_file():
        known = ", ".join(str(p.relative_to(ROOT)) for p in config.event_files()) or "none yet"
        raise InvokeUsageError(f"no event file {str(path)!r}; events for {config.logical_id}: {known}")
    try:
        return json.loads(path.read_text(encoding="utf-8"))
    except json.JSONDecodeError as exc:
        raise InvokeUsageError(f"{path} is not JSON: {exc}") from exc


def invoke(
    function_id: str,
    event_path: str | Path,
    *,
    parameters: Mapping[str, str] | None = None,
    environ: Mapping[str, str] | None = None,
    echo: TextIO | None = None,
    template_path: Path = TEMPLATE_PATH,
) -> InvokeResult:
    """Invoke a template function once, in a new execution environment, with the event in `event_path`.

    `parameters` override template parameter defaults; `environ` supplies DATABASE_URL/DB_POOLER_HOSTS (default:
    os.environ, then .stack/env); `echo` receives the function's output and START/END/REPORT as they happen.
    Raises InvokeUsageError when the function or event does not exist or no database is configured.
    """

    def show(_environment: ExecutionEnvironment, line: str) -> None:
        if echo is not None:
            echo.write(line)
            echo.flush()

    def announce(environment: ExecutionEnvironment) -> None:
        show(environment, environment_line(environment) + "\n")

    with LocalLambda(
        template_path=template_path,
        parameters=parameters,
        environ=environ,
        log_sink=show,
        on_new_environment=announce,
    ) as runtime:
        config = runtime.config(function_id)
        event = read_event(config, Path(event_path))
        if echo is not None:
            print(f"Invoking {config.handler} ({config.runtime})", file=echo, flush=True)
        return runtime.invoke(function_id, event)


def _parameter(text: str) -> tuple[str, str]:
    name, separator, value = text.partition("=")
    if not separator or not name:
        raise argparse.ArgumentTypeError(f"expected Name=Value, got {text!r}")
    return name, value


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(prog="python -m devtools.invoke", description=__doc__.split("\n\n")[0])
    parser.add_argument("function", nargs="?", help="logical id of a function in template.yaml")
    parser.add_argument("event", nargs="?", help="event JSON file, e.g. events/api-01-health.json")
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
