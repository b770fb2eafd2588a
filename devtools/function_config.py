"""What Lambda knows about a template function, read from template.yaml: handler, runtime, limits, environment.

Globals are merged and intrinsics resolved against parameter defaults or overrides; what only a deployed stack
knows (a queue's URL, a role's ARN) is left out and named in `unresolved`.
"""

from __future__ import annotations

import importlib
import os
import sys
from collections.abc import Callable, Mapping
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

from devtools.paths import ROOT
from devtools.sam_template import (
    NO_VALUE,
    TEMPLATE_PATH,
    Resolver,
    TemplateError,
    UnresolvableError,
    function_ids,
    function_properties,
    load_template,
)
from devtools.stack import ENV_FILE as STACK_ENV_FILE
from devtools.stack import read_env as read_stack_env
from lib.dbkit.settings import READ_URL_VARIABLES, URL_VARIABLES

EVENTS_DIR = ROOT / "events"
# Lambda's defaults for properties a template may leave out.
DEFAULT_TIMEOUT_SECONDS = 3
DEFAULT_MEMORY_MB = 128


class InvokeUsageError(TemplateError):
    """The invocation cannot start: unknown function, missing event file, no database configured."""


@dataclass(frozen=True)
class FunctionConfig:
    """What Lambda would know about a function: handler, runtime, limits and environment."""

    logical_id: str
    handler: str
    runtime: str
    timeout_seconds: int
    memory_mb: int
    environment: dict[str, str] = field(repr=False)
    code_root: Path = ROOT
    reserved_concurrency: int | None = None
    snap_start: bool = False
    tracing: str = "PassThrough"
    unresolved: tuple[str, ...] = ()
    # Every variable the template declares for the function, those that resolve to no value included: what
    # `sam local invoke --env-vars` may set, and whether the function takes the read replica at all.
    declared: tuple[str, ...] = ()

    @property
    def event_prefix(self) -> str:
        """Events for this function are events/<handler module>-*.json (handlers.api -> api-*.json)."""
        return self.handler.rsplit(".", 1)[0].rsplit(".", 1)[-1] + "-"

    def event_files(self, events_dir: Path = EVENTS_DIR) -> list[Path]:
        """The sample events of this function, sorted by name."""
        return sorted(events_dir.glob(f"{self.event_prefix}*.json"))

    @property
    def handler_module(self) -> str:
        """The module Lambda imports for the handler ("handlers.api" for "handlers.api.handler")."""
        return self.handler.rpartition(".")[0]

    def import_handler(self) -> Callable[[Any, Any], Any]:
        """The handler, imported in this process by its name, as Lambda's runtime client imports it."""
        module_name, _, attribute = self.handler.rpartition(".")
        if str(self.code_root) not in sys.path:
            sys.path.insert(0, str(self.code_root))
        handler = getattr(importlib.import_module(module_name), attribute, None)
        if not callable(handler):
            raise InvokeUsageError(
                f"{self.logical_id}: Handler {self.handler!r} in the template names no function of {module_name}"
            )
        return handler  # type: ignore[no-any-return]


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
    resolver.pseudo = {**resolver.pseudo, "AWS::Region": region()}
    properties = function_properties(template, function_id)

    def resolved(name: str, default: Any = None) -> Any:
        value = resolver.resolve(properties[name]) if name in properties else default
        return default if value is NO_VALUE else value

    environment: dict[str, str] = {}
    unresolved: list[str] = []
    variables_declared = properties.get("Environment", {}).get("Variables", {})
    for name, value in variables_declared.items():
        try:
            variables = resolver.resolve({name: value})
        except UnresolvableError:
            unresolved.append(name)
            continue
        if name in variables:
            environment[name] = str(variables[name])
    reserved = resolved("ReservedConcurrentExecutions")
    return FunctionConfig(
        logical_id=function_id,
        handler=str(resolved("Handler")),
        runtime=str(resolved("Runtime", "")),
        timeout_seconds=int(resolved("Timeout", DEFAULT_TIMEOUT_SECONDS)),
        memory_mb=int(resolved("MemorySize", DEFAULT_MEMORY_MB)),
        environment=environment,
        code_root=(template_path.parent / str(resolved("CodeUri", "."))).resolve(),
        reserved_concurrency=int(reserved) if reserved is not None else None,
        snap_start=resolved("SnapStart") is not None,
        tracing=str(resolved("Tracing", "PassThrough")),
        unresolved=tuple(unresolved),
        declared=tuple(variables_declared),
    )


def function_of_event(
    event_name: str, *, parameters: Mapping[str, str] | None = None, template_path: Path = TEMPLATE_PATH
) -> FunctionConfig:
    """The function whose sample event `event_name` is (events/<handler module>-*.json, as `make demo` pairs them)."""
    template = load_template(template_path)
    configs = [
        function_config(fid, parameters=parameters, template_path=template_path) for fid in function_ids(template)
    ]
    for config in configs:
        if event_name.startswith(config.event_prefix):
            return config
    prefixes = ", ".join(f"{config.event_prefix}* ({config.logical_id})" for config in configs)
    raise InvokeUsageError(f"event {event_name!r} belongs to no function of the template; their events: {prefixes}")


def region() -> str:
    """The region local runs pretend to be in: AWS_REGION, AWS_DEFAULT_REGION, else us-east-1."""
    return os.environ.get("AWS_REGION") or os.environ.get("AWS_DEFAULT_REGION") or "us-east-1"


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


def replica_environment(
    environ: Mapping[str, str] | None = None, stack_env_file: Path = STACK_ENV_FILE
) -> dict[str, str]:
    """DATABASE_READ_URL for a local run, taken with the primary's: the caller's, else .stack/env's when the caller
    names no DATABASE_URL either (a replica of the stack never pairs with another primary); empty without one."""
    environ = os.environ if environ is None else environ
    value = environ.get("DATABASE_READ_URL")
    if not value and not environ.get("DATABASE_URL"):
        value = read_stack_env(stack_env_file).get("DATABASE_READ_URL")
    return {"DATABASE_READ_URL": value} if value else {}


def database_line(environment: Mapping[str, str]) -> str:
    """Where a function's database settings come from, by variable name (the values hold passwords)."""
    primary = next((name for name in URL_VARIABLES if environment.get(name)), "nothing (the function will refuse)")
    replica = next((name for name in READ_URL_VARIABLES if environment.get(name)), None)
    read = f"read-only units on the read replica from {replica}" if replica else "no read replica"
    return f"database from {primary}; {read}"


def function_environment(
    config: FunctionConfig, environ: Mapping[str, str] | None = None, stack_env_file: Path = STACK_ENV_FILE
) -> dict[str, str]:
    """The template's variables for the function, plus the local database when the template names none.

    The local read replica goes only to a function whose template declares the replica's variables (as deployed:
    the API reads from it, the purge writes and never gets it), and only when the template resolves none of them.
    """
    environment = dict(config.environment)
    if not any(name in environment for name in URL_VARIABLES):
        environment.update(database_environment(environ, stack_env_file))
    elif "DB_POOLER_HOSTS" not in environment:
        pooler_hosts = (os.environ if environ is None else environ).get("DB_POOLER_HOSTS")
        environment.update({"DB_POOLER_HOSTS": pooler_hosts} if pooler_hosts else {})
    takes_replica = any(name in config.declared for name in READ_URL_VARIABLES)
    if takes_replica and not any(name in environment for name in READ_URL_VARIABLES):
        environment.update(replica_environment(environ, stack_env_file))
    return environment
