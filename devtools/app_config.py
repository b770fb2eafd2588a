"""app.toml: what the tooling needs to know about the app beyond template.yaml and events/ (README, "app.toml").

The one file an app provides to the tooling: what each sample event should answer, the bench's requests and the
deployed smoke test's steps. No app.toml is an app with none of them: the tools still run (the demo reports answers
without checking them, the bench leaves its app rows out, the smoke test checks GET /health only).
"""

from __future__ import annotations

import json
import re
import tomllib
from collections.abc import Mapping
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

from devtools.events import EVENTS_DIR
from devtools.paths import ROOT

APP_TOML = ROOT / "app.toml"
HTTP_METHODS = ("GET", "HEAD", "POST", "PUT", "PATCH", "DELETE", "OPTIONS")
_PLACEHOLDER = re.compile(r"\{([A-Za-z_][A-Za-z0-9_]*)\}")


class AppConfigError(ValueError):
    """app.toml is malformed or names what does not exist; the message says where and how to fix it."""


@dataclass(frozen=True)
class Expected:
    """What one sample event should answer: an HTTP status, a normal return, or an error of a given type."""

    status: int | None = None
    raises: str | None = None

    def describe(self) -> str:
        if self.status is not None:
            return f"HTTP {self.status}"
        return f"raises {self.raises}" if self.raises is not None else "returns"

    def mismatch(self, *, status: int | None, error_type: str | None) -> str | None:
        """How an answer (its statusCode, or the errorType it failed with) differs from this; None when it does not."""
        answered = f"raised {error_type}" if error_type else f"HTTP {status}" if status is not None else "returned"
        if self.raises is not None:
            return None if error_type == self.raises else f"expected {self.describe()}, {answered}"
        if error_type is not None or status != self.status:
            return f"expected {self.describe()}, {answered}"
        return None


@dataclass(frozen=True)
class BenchConfig:
    """The requests of the bench's round-trip table (event names); None leaves that row out."""

    health: str | None = None
    write: str | None = None
    read: str | None = None
    listing: str | None = None
    scheduled: str | None = None
    id_from: str | None = None
    id_into: str | None = None
    skipped_when: str | None = None


@dataclass(frozen=True)
class SmokeStep:
    """One request of the deployed smoke test and what its answer must be."""

    method: str
    path: str
    status: int
    json_body: Any = None
    save: Mapping[str, str] = field(default_factory=dict)
    expect: Mapping[str, Any] = field(default_factory=dict)

    @property
    def name(self) -> str:
        return f"{self.method} {self.path}"


@dataclass(frozen=True)
class AppConfig:
    """Everything app.toml says."""

    events: Mapping[str, Expected] = field(default_factory=dict)
    bench: BenchConfig = field(default_factory=BenchConfig)
    smoke: tuple[SmokeStep, ...] = ()
    path: Path = APP_TOML

    def expected(self, event_name: str) -> Expected | None:
        """What `event_name` (an events/ file name without .json) should answer, or None when app.toml does not say."""
        return self.events.get(event_name)


def load_app_config(path: Path = APP_TOML, events_dir: Path = EVENTS_DIR) -> AppConfig:
    """Read and check app.toml; no file is an empty configuration."""
    if not path.is_file():
        return AppConfig(path=path)
    where = _relative(path)
    try:
        document = tomllib.loads(path.read_text(encoding="utf-8"))
    except tomllib.TOMLDecodeError as error:
        raise AppConfigError(f"{where} is not valid TOML: {error}") from error
    _only(document, ("events", "bench", "smoke"), where)
    events = _events(_table(document, "events", where), where, events_dir)
    bench = _bench(_table(document, "bench", where), where, events_dir)
    steps = document.get("smoke", [])
    if not isinstance(steps, list) or not all(isinstance(step, dict) for step in steps):
        raise AppConfigError(f"{where}: smoke must be an array of tables: one [[smoke]] per step")
    smoke = tuple(_smoke_step(step, f"{where} [[smoke]] step {number}") for number, step in enumerate(steps, 1))
    return AppConfig(events=events, bench=bench, smoke=smoke, path=path)


def json_pointer(document: Any, pointer: str) -> Any:
    """The value `pointer` (RFC 6901, e.g. "/items/0/id") names in `document`; LookupError saying what is missing."""
    value = document
    for token in pointer.split("/")[1:]:
        key = token.replace("~1", "/").replace("~0", "~")
        if isinstance(value, list) and key.isdigit() and int(key) < len(value):
            value = value[int(key)]
        elif isinstance(value, dict) and key in value:
            value = value[key]
        else:
            raise LookupError(f"{pointer}: no {key!r} in {json.dumps(value, default=str)[:200]}")
    return value


def fill(template: Any, values: Mapping[str, str], where: str) -> Any:
    """`template` with every {name} in its strings (nested too) replaced by values[name]."""
    if isinstance(template, str):

        def value(match: re.Match[str]) -> str:
            if match.group(1) not in values:
                known = ", ".join(f"{{{name}}}" for name in values) or "none"
                raise AppConfigError(f"{where}: {match.group(0)} is not known here (known: {known})")
            return values[match.group(1)]

        return _PLACEHOLDER.sub(value, template)
    if isinstance(template, list):
        return [fill(item, values, where) for item in template]
    if isinstance(template, dict):
        return {key: fill(item, values, where) for key, item in template.items()}
    return template


def _relative(path: Path) -> str:
    return str(path.relative_to(ROOT)) if path.is_relative_to(ROOT) else str(path)


def _only(table: Mapping[str, Any], accepted: tuple[str, ...], where: str) -> None:
    unknown = sorted(set(table) - set(accepted))
    if unknown:
        raise AppConfigError(f"{where}: unknown key(s) {', '.join(unknown)}; the keys it takes: {', '.join(accepted)}")


def _table(document: Mapping[str, Any], name: str, where: str) -> dict[str, Any]:
    table = document.get(name, {})
    if not isinstance(table, dict):
        raise AppConfigError(f"{where}: {name} must be a table ([{name}])")
    return table


def _event_name(value: Any, where: str, events_dir: Path) -> str:
    if not isinstance(value, str) or not (events_dir / f"{value}.json").is_file():
        known = ", ".join(sorted(path.stem for path in events_dir.glob("*.json")))
        raise AppConfigError(
            f"{where}: {value!r} is not an event in {_relative(events_dir)}/ (name a file without .json: {known})"
        )
    return value


def _events(table: Mapping[str, Any], where: str, events_dir: Path) -> dict[str, Expected]:
    events: dict[str, Expected] = {}
    for name, entry in table.items():
        here = f"{where} [events] {name!r}"
        _event_name(name, here, events_dir)
        fix = 'give one of status = <HTTP status>, returns = true, raises = "<error type>"'
        if not isinstance(entry, dict) or len(entry) != 1:
            raise AppConfigError(f"{here}: {fix}")
        ((key, value),) = entry.items()
        if key == "status" and isinstance(value, int) and not isinstance(value, bool) and 100 <= value <= 599:
            events[name] = Expected(status=value)
        elif key == "returns" and value is True:
            events[name] = Expected()
        elif key == "raises" and isinstance(value, str) and value.isidentifier():
            events[name] = Expected(raises=value)
        else:
            raise AppConfigError(f"{here}: {key} = {value!r} is not understood; {fix}")
    return events


def _pointer(value: Any, where: str) -> str:
    if not isinstance(value, str) or not (value == "" or value.startswith("/")):
        raise AppConfigError(f'{where}: {value!r} is not a JSON pointer: write it like "/id" or "/items/0/id"')
    return value


def _bench(table: Mapping[str, Any], where: str, events_dir: Path) -> BenchConfig:
    here = f"{where} [bench]"
    requests = ("health", "write", "read", "list", "scheduled")
    _only(table, (*requests, "id_from", "id_into", "skipped_when"), here)
    names = {key: _event_name(table[key], f"{here} {key}", events_dir) for key in requests if key in table}
    id_from = _pointer(table["id_from"], f"{here} id_from") if "id_from" in table else None
    id_into = table.get("id_into")
    if "read" in names:
        if "write" not in names or id_from is None or id_into is None:
            raise AppConfigError(
                f"{here}: read needs a row to read: name the request that makes one (write), where its answer holds "
                "the row's id (id_from, a JSON pointer) and the path parameter of read it goes in (id_into)"
            )
        event = json.loads((events_dir / f"{names['read']}.json").read_text(encoding="utf-8"))
        if not isinstance(id_into, str) or id_into not in (event.get("pathParameters") or {}):
            raise AppConfigError(
                f"{here} id_into: {id_into!r} is not a path parameter of {names['read']} (its pathParameters: "
                f"{', '.join(event.get('pathParameters') or {}) or 'none'})"
            )
    skipped_when = table.get("skipped_when")
    return BenchConfig(
        health=names.get("health"),
        write=names.get("write"),
        read=names.get("read"),
        listing=names.get("list"),
        scheduled=names.get("scheduled"),
        id_from=id_from,
        id_into=id_into if isinstance(id_into, str) else None,
        skipped_when=_pointer(skipped_when, f"{here} skipped_when") if skipped_when is not None else None,
    )


def _smoke_step(step: Mapping[str, Any], where: str) -> SmokeStep:
    _only(step, ("method", "path", "json", "status", "save", "expect"), where)
    method, path, status = step.get("method"), step.get("path"), step.get("status")
    if not isinstance(method, str) or method.upper() not in HTTP_METHODS:
        raise AppConfigError(f"{where}: method = {method!r}; one of {', '.join(HTTP_METHODS)}")
    if not isinstance(path, str) or not path.startswith("/"):
        raise AppConfigError(f'{where}: path = {path!r}; a path from the API\'s root, like "/items/{{id}}"')
    if not isinstance(status, int) or isinstance(status, bool) or not 100 <= status <= 599:
        raise AppConfigError(f"{where}: status = {status!r}; the HTTP status the step must answer, like 200")
    save, expect = step.get("save", {}), step.get("expect", {})
    if not isinstance(save, dict) or not all(isinstance(name, str) and name.isidentifier() for name in save):
        raise AppConfigError(f'{where}: save must map names to JSON pointers, like save = {{ id = "/id" }}')
    if not isinstance(expect, dict):
        raise AppConfigError(f'{where}: expect must map JSON pointers to values, like expect = {{ "/title" = "x" }}')
    return SmokeStep(
        method=method.upper(),
        path=path,
        status=status,
        json_body=step.get("json"),
        save={name: _pointer(pointer, f"{where} save {name}") for name, pointer in save.items()},
        expect={_pointer(pointer, f"{where} expect"): value for pointer, value in expect.items()},
    )
