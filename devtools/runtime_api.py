"""The Lambda Runtime API (version 2018-06-01) of one execution environment, on 127.0.0.1, for awslambdaric to poll.

The runtime client asks for the next event (`GET /invocation/next`, held open until there is one), posts the
handler's result (`POST /invocation/{id}/response`) or error (`/error`), reports a failed init (`POST /init/error`)
and, with SnapStart, waits at `GET /restore/next` between its before-snapshot and after-restore hooks. Each
environment gets its own server, because the protocol has no environment in its paths: like Lambda, one runtime
API per sandbox. What happens with each call is decided by the backend (devtools.local_lambda.ExecutionEnvironment).
"""

from __future__ import annotations

import json
import re
import threading
from dataclasses import dataclass, field
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer
from typing import Any, Protocol

API_VERSION = "2018-06-01"
PREFIX = f"/{API_VERSION}/runtime"
ERROR_TYPE_HEADER = "Lambda-Runtime-Function-Error-Type"
_INVOCATION_PATH = re.compile(rf"^{PREFIX}/invocation/(?P<request_id>[^/]+)/(?P<outcome>response|error)$")


@dataclass(frozen=True)
class NextInvocation:
    """What `invocation/next` hands the runtime client: the event and the headers it turns into the context."""

    request_id: str
    payload: bytes
    deadline_epoch_ms: int
    function_arn: str
    trace_id: str
    client_context: str | None = None
    cognito_identity: str | None = None

    def headers(self) -> dict[str, str]:
        """The Lambda-Runtime-* headers awslambdaric reads (lambda_runtime_client.wait_next_invocation)."""
        headers = {
            "Lambda-Runtime-Aws-Request-Id": self.request_id,
            "Lambda-Runtime-Deadline-Ms": str(self.deadline_epoch_ms),
            "Lambda-Runtime-Invoked-Function-Arn": self.function_arn,
            "Lambda-Runtime-Trace-Id": self.trace_id,
            "Content-Type": "application/json",
        }
        if self.client_context is not None:
            headers["Lambda-Runtime-Client-Context"] = self.client_context
        if self.cognito_identity is not None:
            headers["Lambda-Runtime-Cognito-Identity"] = self.cognito_identity
        return headers


@dataclass(frozen=True)
class Answer:
    """The runtime API's reply to a POST: status and JSON body, as Lambda's API answers."""

    status: int
    body: dict[str, Any] = field(default_factory=lambda: {"status": "OK"})


ACCEPTED = Answer(202)


class RuntimeBackend(Protocol):
    """The execution environment behind the API: it decides what each call of the runtime client means."""

    def next_invocation(self) -> NextInvocation | None:
        """Block until an event is due; None when the environment is shutting down."""

    def restore_next(self) -> None:
        """SnapStart: the before-snapshot hooks have run; return when the environment is 'restored'."""

    def invocation_response(self, request_id: str, payload: bytes) -> Answer:
        """The handler returned `payload` for `request_id`."""

    def invocation_error(self, request_id: str, payload: bytes, error_type: str | None) -> Answer:
        """The handler raised; `payload` is the runtime client's {"errorMessage", "errorType", "stackTrace"}."""

    def init_error(self, payload: bytes, error_type: str | None, *, phase: str) -> Answer:
        """Init (phase "init") or an after-restore hook (phase "restore") failed; the runtime client exits next."""


class _Handler(BaseHTTPRequestHandler):
    server: RuntimeApiServer
    protocol_version = "HTTP/1.1"
    # Headers and body go out in two writes: with Nagle's algorithm the body waits for the client's delayed ACK.
    disable_nagle_algorithm = True

    def log_message(self, format: str, *args: Any) -> None:
        """The runtime API's own requests are not the function's logs: keep them out of the output."""

    def do_GET(self) -> None:
        backend = self.server.backend
        if self.path == f"{PREFIX}/invocation/next":
            invocation = backend.next_invocation()
            if invocation is None:
                self._reply(Answer(410, {"errorType": "EnvironmentShutdown", "errorMessage": "shutting down"}))
                return
            self.send_response(200)
            for name, value in invocation.headers().items():
                self.send_header(name, value)
            self.send_header("Content-Length", str(len(invocation.payload)))
            self.end_headers()
            self.wfile.write(invocation.payload)
        elif self.path == f"{PREFIX}/restore/next":
            backend.restore_next()
            self._reply(Answer(200, {}))
        else:
            self._not_found()

    def do_POST(self) -> None:
        payload = self.rfile.read(int(self.headers.get("Content-Length") or 0))
        error_type = self.headers.get(ERROR_TYPE_HEADER)
        backend = self.server.backend
        match = _INVOCATION_PATH.match(self.path)
        if match is not None and match["outcome"] == "response":
            self._reply(backend.invocation_response(match["request_id"], payload))
        elif match is not None:
            self._reply(backend.invocation_error(match["request_id"], payload, error_type))
        elif self.path == f"{PREFIX}/init/error":
            self._reply(backend.init_error(payload, error_type, phase="init"))
        elif self.path == f"{PREFIX}/restore/error":
            self._reply(backend.init_error(payload, error_type, phase="restore"))
        else:
            self._not_found()

    def _not_found(self) -> None:
        self._reply(Answer(404, {"errorType": "NotFound", "errorMessage": f"no runtime API route {self.path}"}))

    def _reply(self, answer: Answer) -> None:
        body = json.dumps(answer.body).encode()
        self.send_response(answer.status)
        self.send_header("Content-Type", "application/json")
        self.send_header("Content-Length", str(len(body)))
        self.end_headers()
        self.wfile.write(body)


class RuntimeApiServer(ThreadingHTTPServer):
    """One environment's runtime API on a free loopback port, served from a background thread until close()."""

    daemon_threads = True

    def __init__(self, backend: RuntimeBackend) -> None:
        super().__init__(("127.0.0.1", 0), _Handler)
        self.backend = backend
        self._thread = threading.Thread(target=self.serve_forever, name="runtime-api", daemon=True)
        self._thread.start()

    def handle_error(self, request: Any, client_address: Any) -> None:
        """A runtime killed mid-request (a timeout) leaves a broken connection behind: nothing to report."""

    @property
    def address(self) -> str:
        """host:port, the value of AWS_LAMBDA_RUNTIME_API."""
        host, port = self.server_address[:2]
        return f"{host!s}:{port}"

    def close(self) -> None:
        """Stop serving and release the port."""
        self.shutdown()
        self.server_close()
        self._thread.join(timeout=5)
