"""API Gateway HTTP API, payload format 2.0, as data: routes matched, a request turned into the event API Gateway
sends, and the function's response turned back into HTTP by the 2.0 response rules.

Request: headers lower-cased with repeated ones comma-joined, `cookies` split out of the Cookie headers, repeated
query parameters comma-joined in `queryStringParameters`, and the body as text only for text/*, application/json,
application/xml and application/javascript (anything else, a missing Content-Type included, is base64).
Response: a JSON object with `statusCode` is read as such (headers, multiValueHeaders, cookies as Set-Cookie,
body, isBase64Encoded); any other valid JSON is "inferred": 200, application/json, the JSON itself as the body
(a JSON string: its text).
"""

from __future__ import annotations

import base64
import binascii
import json
import os
import time
from collections.abc import Iterable, Mapping, Sequence
from dataclasses import dataclass, field
from email.message import Message
from typing import Any
from urllib.parse import parse_qsl, unquote, urlsplit

from devtools.http_routes import HttpRoute
from devtools.lambda_context import ACCOUNT_ID

API_ID = "localapi"
STAGE = "$default"
TEXT_MEDIA_TYPES = frozenset({"application/json", "application/xml", "application/javascript"})
# Connection-level headers stay between the client and API Gateway; the function never sees them.
HOP_BY_HOP = frozenset(
    {"connection", "keep-alive", "proxy-connection", "te", "trailer", "transfer-encoding", "upgrade"}
)


class MalformedResponseError(ValueError):
    """The function's response cannot be read as an HTTP API 2.0 response (API Gateway answers 500)."""


@dataclass(frozen=True)
class HttpRequest:
    """A request as it reached the server: the raw target (path?query) and the headers in arrival order."""

    method: str
    target: str
    headers: Sequence[tuple[str, str]]
    body: bytes = b""
    source_ip: str = "127.0.0.1"
    server_port: int = 3000
    protocol: str = "HTTP/1.1"

    @property
    def raw_path(self) -> str:
        return urlsplit(self.target).path or "/"

    @property
    def raw_query(self) -> str:
        return urlsplit(self.target).query

    def header(self, name: str) -> str | None:
        """The first value of a header (case-insensitive), None when absent."""
        return next((value for key, value in self.headers if key.lower() == name), None)


@dataclass(frozen=True)
class HttpResponse:
    """What goes back to the client."""

    status: int
    headers: list[tuple[str, str]] = field(default_factory=list)
    body: bytes = b""


@dataclass(frozen=True)
class RouteMatch:
    """The function a request goes to, by which route, with which path parameters."""

    function_id: str
    route: HttpRoute
    path_parameters: dict[str, str]


def gateway_error(status: int, message: str) -> HttpResponse:
    """One of API Gateway's own answers, e.g. 503 {"message":"Service Unavailable"}."""
    body = json.dumps({"message": message}, separators=(",", ":")).encode()
    return HttpResponse(status, [("content-type", "application/json")], body)


def _segments(path: str) -> list[str]:
    return path.split("/")[1:]


def _match_path(template: str, path: str) -> dict[str, str] | None:
    expected, actual = _segments(template), _segments(path)
    parameters: dict[str, str] = {}
    for index, segment in enumerate(expected):
        if segment.startswith("{") and segment.endswith("+}"):
            rest = actual[index:]
            if not rest or rest == [""]:
                return None
            parameters[segment[1:-2]] = unquote("/".join(rest))
            return parameters
        if index >= len(actual):
            return None
        if segment.startswith("{") and segment.endswith("}"):
            if not actual[index]:
                return None
            parameters[segment[1:-1]] = unquote(actual[index])
        elif segment != actual[index]:
            return None
    return parameters if len(actual) == len(expected) else None


def match_route(routes: Iterable[tuple[str, HttpRoute]], method: str, path: str) -> RouteMatch | None:
    """The most specific route for the request, as API Gateway picks it; the $default route when none matches."""
    best: tuple[tuple[int, int, int], RouteMatch] | None = None
    default: RouteMatch | None = None
    for function_id, route in routes:
        if route.path is None:
            default = default or RouteMatch(function_id, route, {})
            continue
        route_method = (route.method or "ANY").upper()
        if route_method not in ("ANY", method.upper()):
            continue
        parameters = _match_path(route.path, path)
        if parameters is None:
            continue
        segments = _segments(route.path)
        greedy = any(segment.endswith("+}") for segment in segments)
        literal = sum(not segment.startswith("{") for segment in segments)
        rank = (0 if greedy else 1, literal, 1 if route_method != "ANY" else 0)
        if best is None or rank > best[0]:
            best = (rank, RouteMatch(function_id, route, parameters))
    return best[1] if best is not None else default


def _is_text(content_type: str | None) -> bool:
    if not content_type:
        return False
    message = Message()
    message["content-type"] = content_type
    media_type = message.get_content_type()
    return media_type.startswith("text/") or media_type in TEXT_MEDIA_TYPES


def request_id() -> str:
    """A request id shaped like API Gateway's (16 characters of base64)."""
    return base64.b64encode(os.urandom(11)).decode()


def http_api_event(
    request: HttpRequest,
    match: RouteMatch,
    *,
    request_id: str,
    trace_root: str,
    now: float | None = None,
) -> dict[str, Any]:
    """The payload 2.0 event API Gateway would send the function for this request."""
    now = time.time() if now is None else now
    headers: dict[str, str] = {}
    cookies: list[str] = []
    for name, value in request.headers:
        key = name.lower()
        if key in HOP_BY_HOP:
            continue
        if key == "cookie":
            cookies.extend(part.strip() for part in value.split(";") if part.strip())
            continue
        headers[key] = f"{headers[key]},{value}" if key in headers else value
    if request.body and "content-length" not in headers:
        headers["content-length"] = str(len(request.body))
    forwarded_for = headers.get("x-forwarded-for")
    headers["x-forwarded-for"] = f"{forwarded_for}, {request.source_ip}" if forwarded_for else request.source_ip
    headers["x-forwarded-port"] = str(request.server_port)
    headers["x-forwarded-proto"] = "http"
    headers["x-amzn-trace-id"] = f"Root={trace_root}"
    query: dict[str, str] = {}
    for name, value in parse_qsl(request.raw_query, keep_blank_values=True):
        query[name] = f"{query[name]},{value}" if name in query else value
    host = (headers.get("host") or "localhost").rsplit(":", 1)[0]
    event: dict[str, Any] = {
        "version": "2.0",
        "routeKey": match.route.route_key,
        "rawPath": request.raw_path,
        "rawQueryString": request.raw_query,
    }
    if cookies:
        event["cookies"] = cookies
    event["headers"] = headers
    if query:
        event["queryStringParameters"] = query
    event["requestContext"] = {
        "accountId": ACCOUNT_ID,
        "apiId": API_ID,
        "domainName": host,
        "domainPrefix": host.split(".", 1)[0],
        "http": {
            "method": request.method.upper(),
            "path": request.raw_path,
            "protocol": request.protocol,
            "sourceIp": request.source_ip,
            "userAgent": headers.get("user-agent", ""),
        },
        "requestId": request_id,
        "routeKey": match.route.route_key,
        "stage": STAGE,
        "time": time.strftime("%d/%b/%Y:%H:%M:%S +0000", time.gmtime(now)),
        "timeEpoch": int(now * 1000),
    }
    if match.path_parameters:
        event["pathParameters"] = dict(match.path_parameters)
    if request.body:
        text = _is_text(request.header("content-type"))
        if text:
            try:
                event["body"] = request.body.decode("utf-8")
            except UnicodeDecodeError:
                # Not text after all: keep every byte, the way a binary body travels.
                text = False
        if not text:
            event["body"] = base64.b64encode(request.body).decode()
        event["isBase64Encoded"] = not text
    else:
        event["isBase64Encoded"] = False
    return event


def _header_value(name: str, value: Any) -> str:
    if isinstance(value, bool):
        return "true" if value else "false"
    if isinstance(value, str | int | float):
        return str(value)
    raise MalformedResponseError(f"header {name!r} has a {type(value).__name__} value")


def gateway_response(payload: bytes, *, api_request_id: str) -> HttpResponse:
    """The HTTP response API Gateway makes of the function's response payload (2.0 rules)."""
    try:
        response = json.loads(payload)
    except ValueError as exc:
        raise MalformedResponseError(f"the response is not JSON: {exc}") from None
    gateway_headers = [("apigw-requestid", api_request_id)]
    if not (isinstance(response, dict) and "statusCode" in response):
        inferred = response.encode() if isinstance(response, str) else payload
        return HttpResponse(200, [("content-type", "application/json"), *gateway_headers], inferred)
    status = response["statusCode"]
    if isinstance(status, bool) or not isinstance(status, int) or not 100 <= status <= 599:
        raise MalformedResponseError(f"statusCode {status!r} is not an HTTP status")
    headers: list[tuple[str, str]] = []
    single = response.get("headers") or {}
    multi = response.get("multiValueHeaders") or {}
    if not isinstance(single, Mapping) or not isinstance(multi, Mapping):
        raise MalformedResponseError("headers and multiValueHeaders must be objects")
    for name, value in single.items():
        if value is not None:
            headers.append((str(name), _header_value(name, value)))
    for name, values in multi.items():
        if not isinstance(values, list):
            raise MalformedResponseError(f"multiValueHeaders {name!r} is not a list")
        headers.extend((str(name), _header_value(name, v)) for v in values if (str(name), v) not in single.items())
    cookies = response.get("cookies") or []
    if not isinstance(cookies, list) or not all(isinstance(cookie, str) for cookie in cookies):
        raise MalformedResponseError("cookies must be a list of strings")
    headers.extend(("set-cookie", cookie) for cookie in cookies)
    body = response.get("body")
    if body is None:
        content = b""
    elif not isinstance(body, str):
        raise MalformedResponseError(f"body is a {type(body).__name__}, not a string")
    elif response.get("isBase64Encoded"):
        try:
            content = base64.b64decode(body, validate=True)
        except binascii.Error:
            raise MalformedResponseError("isBase64Encoded is true but body is not base64") from None
    else:
        content = body.encode()
    return HttpResponse(status, [*headers, *gateway_headers], content)
