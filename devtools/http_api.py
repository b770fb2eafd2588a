"""`make api`: the template's HTTP API on localhost, like `sam local start-api`, without Docker.

    python -m devtools.http_api [--port 3000] [--parameter LogLevel=DEBUG]      (make api [PORT=3000])

Each request becomes the HTTP API (payload 2.0) event API Gateway would send (devtools.http_api_events), goes to the
function whose route matches, and runs in an execution environment of the local Lambda (devtools.local_lambda: the
awslambdaric runtime client on the Python the function's Runtime names). Concurrent requests run in separate
environments, up to the function's reserved concurrency; idle environments are reused. API Gateway's own answers
are kept: 503 when the function outlives its timeout, 502 when its response exceeds 6 MB, 500 when it fails, 429
when every environment the reserved concurrency allows is busy. One access-log line per request goes to stdout,
the functions' output to stderr. Ctrl-C stops the server and every environment it started.
"""

from __future__ import annotations

import argparse
import signal
import sys
import threading
import time
from collections.abc import Callable
from dataclasses import dataclass
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer
from pathlib import Path
from types import FrameType
from typing import Any, TextIO

from devtools.http_api_events import (
    HttpRequest,
    HttpResponse,
    MalformedResponseError,
    gateway_error,
    gateway_response,
    http_api_event,
    match_route,
    request_id,
)
from devtools.http_routes import HttpRoute, template_routes
from devtools.local_lambda import (
    ErrorKind,
    ExecutionEnvironment,
    InvocationRefusedError,
    LocalLambda,
    RequestTooLargeError,
    TooManyRequestsError,
    trace_header,
)
from devtools.sam_template import TEMPLATE_PATH, TemplateError

DEFAULT_PORT = 3000
# API Gateway refuses request bodies over 10 MB itself.
MAX_REQUEST_BYTES = 10 * 1024 * 1024


@dataclass(frozen=True)
class Served:
    """A request's answer and, when a function ran, the environment that ran it and whether it was a cold start."""

    response: HttpResponse
    environment_id: str | None = None
    cold: bool = False


class _Handler(BaseHTTPRequestHandler):
    server: LocalHttpApi
    protocol_version = "HTTP/1.1"
    disable_nagle_algorithm = True
    server_version = "local-http-api"
    sys_version = ""

    def log_message(self, format: str, *args: Any) -> None:
        """The server writes its own access log (LocalHttpApi.access_log)."""

    def _handle(self) -> None:
        started = time.perf_counter()
        length = int(self.headers.get("Content-Length") or 0)
        if length > MAX_REQUEST_BYTES:
            self.close_connection = True
            served = Served(gateway_error(413, "Request Entity Too Large"))
            self._send(served.response)
            self.server.log_access(self.command, self.path, served, started)
            return
        if "chunked" in (self.headers.get("Transfer-Encoding") or "").lower():
            body = self._read_chunked()
        else:
            body = self.rfile.read(length)
        request = HttpRequest(
            method=self.command,
            target=self.path,
            headers=list(self.headers.items()),
            body=body,
            source_ip=self.client_address[0],
            server_port=self.server.server_address[1],
            protocol=self.request_version,
        )
        served = self.server.respond(request)
        self._send(served.response)
        self.server.log_access(self.command, self.path, served, started)

    def _read_chunked(self) -> bytes:
        chunks: list[bytes] = []
        while True:
            size = int(self.rfile.readline().split(b";", 1)[0].strip() or b"0", 16)
            if size == 0:
                while self.rfile.readline() not in (b"\r\n", b"\n", b""):
                    pass
                return b"".join(chunks)
            chunks.append(self.rfile.read(size))
            self.rfile.readline()

    def _send(self, response: HttpResponse) -> None:
        self.send_response(response.status)
        for name, value in response.headers:
            if name.lower() != "content-length":
                self.send_header(name, value)
        self.send_header("Content-Length", str(len(response.body)))
        self.end_headers()
        if self.command != "HEAD":
            self.wfile.write(response.body)

    def __getattr__(self, name: str) -> Any:
        # http.server looks up do_<METHOD>: every method goes to the routes, which decide (the $default route too).
        if name.startswith("do_"):
            return self._handle
        raise AttributeError(name)


class LocalHttpApi(ThreadingHTTPServer):
    """The HTTP server: routes from the template, functions on `runtime`, one access-log line per request."""

    daemon_threads = True

    def __init__(
        self,
        runtime: LocalLambda,
        *,
        host: str = "127.0.0.1",
        port: int = DEFAULT_PORT,
        access_log: TextIO | None = None,
    ) -> None:
        self.runtime = runtime
        self.routes: list[tuple[str, HttpRoute]] = template_routes(
            template_path=runtime.template_path, parameters=runtime.parameters
        )
        if not self.routes:
            raise TemplateError(f"{runtime.template_path} has no HTTP API route (no function has an HttpApi event)")
        self.access_log = access_log or sys.stdout
        self._log_lock = threading.Lock()
        super().__init__((host, port), _Handler)

    @property
    def url(self) -> str:
        host, port = self.server_address[:2]
        return f"http://{host!s}:{port}"

    def respond(self, request: HttpRequest) -> Served:
        """Route, invoke, and answer as API Gateway does."""
        match = match_route(self.routes, request.method, request.raw_path)
        if match is None:
            return Served(gateway_error(404, "Not Found"))
        api_request_id = request_id()
        trace = trace_header(sampled=self.runtime.config(match.function_id).tracing == "Active")
        event = http_api_event(
            request, match, request_id=api_request_id, trace_root=trace.split(";")[0].removeprefix("Root=")
        )
        try:
            result = self.runtime.invoke(match.function_id, event, trace_id=trace)
        except TooManyRequestsError:
            return Served(gateway_error(429, "Too Many Requests"))
        except RequestTooLargeError:
            return Served(gateway_error(413, "Request Entity Too Large"))
        except InvocationRefusedError:
            return Served(gateway_error(500, "Internal Server Error"))
        if result.error_kind is ErrorKind.TIMEOUT:
            response = gateway_error(503, "Service Unavailable")
        elif result.error_kind is ErrorKind.RESPONSE_TOO_LARGE:
            response = gateway_error(502, "Internal Server Error")
        elif result.error_kind is not None:
            response = gateway_error(500, "Internal Server Error")
        else:
            try:
                response = gateway_response(result.payload, api_request_id=api_request_id)
            except MalformedResponseError:
                response = gateway_error(500, "Internal Server Error")
        return Served(response, result.environment_id, result.cold)

    def log_access(self, method: str, target: str, served: Served, started: float) -> None:
        """One line per request: method, path, status, milliseconds, cold or warm, the environment."""
        elapsed_ms = (time.perf_counter() - started) * 1000
        where = f"{'cold' if served.cold else 'warm'} {served.environment_id}" if served.environment_id else "- -"
        line = f"{time.strftime('%H:%M:%S')} {method} {target} {served.response.status} {elapsed_ms:.1f} ms {where}"
        with self._log_lock:
            print(line, file=self.access_log, flush=True)


def _prefixed_output(stream: TextIO) -> Callable[[ExecutionEnvironment, str], None]:
    lock = threading.Lock()

    def write(environment: ExecutionEnvironment, line: str) -> None:
        with lock:
            stream.write(f"[{environment.id}] {line}")
            stream.flush()

    return write


def _parameter(text: str) -> tuple[str, str]:
    name, separator, value = text.partition("=")
    if not separator or not name:
        raise argparse.ArgumentTypeError(f"expected Name=Value, got {text!r}")
    return name, value


def _stop_on_sigterm(_signum: int, _frame: FrameType | None) -> None:
    raise KeyboardInterrupt


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(prog="python -m devtools.http_api", description=__doc__.split("\n\n")[0])
    parser.add_argument("--port", type=int, default=DEFAULT_PORT, help="port on 127.0.0.1 (0: any free port)")
    parser.add_argument("--template", type=Path, default=TEMPLATE_PATH, help="the SAM template (default: ours)")
    parser.add_argument(
        "--parameter", action="append", type=_parameter, default=[], metavar="NAME=VALUE", help="template parameter"
    )
    args = parser.parse_args(argv)
    # Also when started in the background, where a shell leaves SIGINT ignored.
    signal.signal(signal.SIGINT, signal.default_int_handler)
    signal.signal(signal.SIGTERM, _stop_on_sigterm)

    def announce(environment: ExecutionEnvironment) -> None:
        print(
            f"[{environment.id}] new execution environment (pid {environment.pid}): {environment.describe()}",
            file=sys.stderr,
            flush=True,
        )

    runtime = LocalLambda(
        template_path=args.template,
        parameters=dict(args.parameter),
        log_sink=_prefixed_output(sys.stderr),
        on_new_environment=announce,
    )
    try:
        server = LocalHttpApi(runtime, port=args.port)
    except (TemplateError, OSError) as exc:
        runtime.close()
        print(f"api: {exc}", file=sys.stderr)
        return 2
    print(f"Local HTTP API (API Gateway payload 2.0) on {server.url}", flush=True)
    for function_id in dict.fromkeys(function_id for function_id, _ in server.routes):
        config = runtime.config(function_id)
        routes = ", ".join(route.route_key for fid, route in server.routes if fid == function_id)
        limit = config.reserved_concurrency if config.reserved_concurrency is not None else "unlimited"
        print(
            f"  {function_id} ({config.handler}): {routes}\n"
            f"    timeout {config.timeout_seconds} s, up to {limit} execution environments, each: "
            f"{runtime.describe(function_id)}\n    {runtime.database(function_id)}",
            flush=True,
        )
    guarded = sorted({route.authorization for _, route in server.routes} - {"NONE"})
    if guarded:
        # As `sam local start-api`: the function is the thing under test, not the authorizer.
        print(
            f"  Not checked locally: the routes' authorization ({', '.join(guarded)}); API Gateway checks it first.",
            flush=True,
        )
    print("Ctrl-C stops the server and every execution environment it started.", flush=True)
    try:
        server.serve_forever()
    except KeyboardInterrupt:
        pass
    finally:
        server.server_close()
        environments = runtime.environments()
        runtime.close()
        print(f"stopped; {len(environments)} execution environment(s) ended", flush=True)
    return 0


if __name__ == "__main__":
    sys.exit(main())
