"""The app the bench drives: its requests from app.toml [bench], their functions and handlers from template.yaml.

The bench never imports the app: a handler is imported by the name template.yaml gives it, as Lambda's runtime does.
"""

from __future__ import annotations

import json
from collections.abc import Callable
from dataclasses import dataclass
from functools import cache
from typing import Any

from devtools.app_config import AppConfig, json_pointer, load_app_config
from devtools.events import load_event, with_path_parameter
from devtools.function_config import FunctionConfig, function_of_event


class BenchError(RuntimeError):
    """A scenario did not do what it should (wrong status, skipped job): its figures would mean nothing."""


@dataclass(frozen=True)
class BenchRequest:
    """One of the app's requests the bench sends: a sample event and the function it belongs to."""

    role: str
    event_name: str
    function: FunctionConfig

    @property
    def label(self) -> str:
        """The route key of an HTTP API event ("GET /notes/{id}"), else the function's scheduled run."""
        route = load_event(self.event_name).get("routeKey")
        return str(route) if route else f"{self.function.logical_id} run"

    def event(self) -> dict[str, Any]:
        return load_event(self.event_name)


@dataclass(frozen=True)
class Probe:
    """The request a new execution environment starts with (scale, cold start): its event as it is in events/ and
    the status app.toml expects of it (None: any answer below 500)."""

    request: BenchRequest
    status: int | None


@dataclass(frozen=True)
class BenchApp:
    """app.toml's [bench], resolved against template.yaml and events/."""

    config: AppConfig
    health: BenchRequest | None
    write: BenchRequest | None
    read: BenchRequest | None
    listing: BenchRequest | None
    scheduled: BenchRequest | None

    @property
    def probe(self) -> Probe | None:
        """The read by id when there is one (an unknown id as in events/), else the health check."""
        request = self.read or self.health
        if request is None:
            return None
        expected = self.config.expected(request.event_name)
        return Probe(request, expected.status if expected is not None else None)

    def read_event(self, row_id: str) -> dict[str, Any]:
        """The read with `row_id` in its path (app.toml: id_into)."""
        assert self.read is not None
        assert self.config.bench.id_into is not None
        return with_path_parameter(self.read.event(), self.config.bench.id_into, row_id)

    def write_row(self, invoke: Callable[[FunctionConfig, dict[str, Any]], Any]) -> str:
        """Send the write once through `invoke`; the new row's id from its answer (app.toml: id_from)."""
        assert self.write is not None
        return self.row_id(expect_success(invoke(self.write.function, self.write.event()), self.write.label))

    def row_id(self, response: dict[str, Any]) -> str:
        """The new row's id in the write's answer (app.toml: id_from)."""
        assert self.write is not None
        assert self.config.bench.id_from is not None
        try:
            return str(json_pointer(json.loads(response["body"]), self.config.bench.id_from))
        except (ValueError, LookupError) as error:
            raise BenchError(
                f"{self.write.label}: app.toml [bench] id_from finds no id in the answer: {error}"
            ) from error

    def repeated_request(
        self, invoke: Callable[[FunctionConfig, dict[str, Any]], Any]
    ) -> tuple[FunctionConfig, dict[str, Any]]:
        """What the scale runs send over and over: the read of a row written now through `invoke`, else the health
        check; its function and event."""
        if self.read is not None:
            return self.read.function, self.read_event(self.write_row(invoke))
        if self.health is not None:
            return self.health.function, self.health.event()
        raise BenchError("app.toml [bench] names no read and no health request for the scale runs to send")

    def skipped(self, summary: Any) -> bool:
        """Whether a scheduled run did no work (app.toml: skipped_when); never without skipped_when."""
        pointer = self.config.bench.skipped_when
        if pointer is None:
            return False
        try:
            return json_pointer(summary, pointer) is True
        except LookupError:
            return False


def succeeded(response: Any) -> bool:
    """An HTTP answer of 2xx."""
    status = response.get("statusCode") if isinstance(response, dict) else None
    return isinstance(status, int) and 200 <= status < 300


def expect_success(response: Any, what: str) -> dict[str, Any]:
    """An HTTP answer of 2xx; BenchError otherwise (the figures of a failed request would mean nothing)."""
    status = response.get("statusCode") if isinstance(response, dict) else None
    if not succeeded(response):
        body = response.get("body") if isinstance(response, dict) else response
        raise BenchError(f"{what}: expected a 2xx answer, got {status}: {str(body)[:300]}")
    assert isinstance(response, dict)
    return response


@cache
def bench_app() -> BenchApp:
    """The app the bench drives (read once per process)."""
    app = load_app_config()
    bench = app.bench

    def request(role: str, name: str | None) -> BenchRequest | None:
        return BenchRequest(role, name, function_of_event(name)) if name is not None else None

    return BenchApp(
        config=app,
        health=request("health", bench.health),
        write=request("write", bench.write),
        read=request("read", bench.read),
        listing=request("list", bench.listing),
        scheduled=request("scheduled", bench.scheduled),
    )
