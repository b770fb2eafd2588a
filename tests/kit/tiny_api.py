"""A tiny FastAPI app on the kit's HTTP parts (not the sample's), called the way API Gateway and Lambda call one.

Requests become the payload 2.0 events `make api` sends (devtools.http_api_events), checked by the kit's event check
and run through Mangum, as handlers/api.py does; `TinyApi.ran` lists the routes that ran, so a test can tell that a
refused request never reached one.
"""

from __future__ import annotations

import base64
import json
from collections.abc import Sequence
from dataclasses import dataclass, field
from typing import Annotated, Any

from fastapi import Depends, FastAPI, Header, Query, Response
from mangum import Mangum
from pydantic import AfterValidator, BaseModel, BeforeValidator, ConfigDict, Field

from devtools.http_api_events import HttpRequest, RouteMatch, http_api_event, request_id
from devtools.http_routes import HttpRoute
from devtools.testing.lambda_runtime import FakeLambdaContext
from lib.dbkit.engine import ping
from lib.dbkit.http import ErrorAnswer, create_api, decimal_digits, require_json, storable_text
from lib.dbkit.invocation import lambda_entry
from lib.dbkit.lambda_events import check_http_api_event

MAX_NAME = 50
MAX_PAGE = 100
# Small, so that tests reach the limits with small requests.
MAX_BODY_BYTES = 8 * 1024
MAX_URL_BYTES = 2 * 1024
MAX_HEADER_BYTES = 4 * 1024


class ItemNotFoundError(Exception):
    """No item has this id."""


class InvalidTokenError(Exception):
    """A page token this API did not issue."""


ERRORS: dict[type[Exception], ErrorAnswer] = {
    ItemNotFoundError: ErrorAnswer(404, "item_not_found"),
    InvalidTokenError: ErrorAnswer(400, "invalid_token", field="token"),
}


class ItemIn(BaseModel):
    """POST /items body."""

    model_config = ConfigDict(extra="forbid")

    name: Annotated[str, Field(min_length=1, max_length=MAX_NAME), AfterValidator(storable_text)]
    count: Annotated[int, Field(strict=True, ge=0)] = 0


class ItemOut(BaseModel):
    """An item as answered."""

    id: int
    name: str
    count: int


@dataclass
class TinyApi:
    """The app and the names of the routes that ran, in order."""

    app: FastAPI
    ran: list[str] = field(default_factory=list)


def tiny_api() -> TinyApi:
    """Items in memory, a health route that pings the database, and the kit's HTTP parts with small limits."""
    app = create_api(
        title="Tiny API",
        errors=ERRORS,
        max_body_bytes=MAX_BODY_BYTES,
        max_url_bytes=MAX_URL_BYTES,
        max_header_bytes=MAX_HEADER_BYTES,
    )
    api = TinyApi(app)

    @app.get("/health")
    def health() -> dict[str, str]:
        api.ran.append("health")
        ping()
        return {"status": "ok"}

    @app.get("/items")
    def list_items(
        limit: Annotated[int, BeforeValidator(decimal_digits), Query(ge=1, le=MAX_PAGE)] = 10,
        token: Annotated[str | None, Query(max_length=100)] = None,
    ) -> list[ItemOut]:
        api.ran.append("list")
        if token is not None and token != "issued":
            raise InvalidTokenError(f"{token!r} is not a page token this API issued")
        return [ItemOut(id=number, name=f"item {number}", count=0) for number in range(1, limit + 1)]

    @app.post("/items", status_code=201, dependencies=[Depends(require_json)])
    def create_item(item: ItemIn, x_tag: Annotated[str | None, Header(max_length=20)] = None) -> ItemOut:
        api.ran.append("create")
        return ItemOut(id=1, name=item.name, count=item.count)

    @app.get("/items/{item_id}")
    def get_item(item_id: int) -> ItemOut:
        api.ran.append("get")
        if item_id == 0:
            raise ItemNotFoundError(f"no item {item_id}")
        return ItemOut(id=item_id, name=f"item {item_id}", count=0)

    @app.delete("/items/{item_id}", status_code=204)
    def delete_item(item_id: int) -> Response:
        api.ran.append("delete")
        return Response(status_code=204)

    return api


@dataclass(frozen=True)
class Answer:
    """What the client gets back: status, headers (lower-case names) and body."""

    status: int
    headers: dict[str, str]
    body: bytes

    def json(self) -> Any:
        return json.loads(self.body)


def event(
    method: str, target: str, *, headers: Sequence[tuple[str, str]] = (), body: bytes | str = b""
) -> dict[str, Any]:
    """The payload 2.0 event API Gateway sends for this request (its $default route)."""
    raw = body.encode() if isinstance(body, str) else body
    request = HttpRequest(method, target, [("host", "tiny.example"), *headers], raw)
    match = RouteMatch("TinyFunction", HttpRoute(None, None), {})
    return http_api_event(request, match, request_id=request_id(), trace_root="1-00000000-000000000000000000000000")


def json_event(method: str, target: str, payload: Any, *, headers: Sequence[tuple[str, str]] = ()) -> dict[str, Any]:
    """A request with `payload` as its JSON body."""
    return event(method, target, headers=[("content-type", "application/json"), *headers], body=json.dumps(payload))


def handler(app: FastAPI) -> Any:
    """The Lambda handler handlers/api.py makes of an app: the kit's deadline, the event check, Mangum."""
    adapter = Mangum(app, lifespan="off")
    return lambda_entry(lambda event, context: adapter(check_http_api_event(event), context))


def invoke(app: FastAPI, request: dict[str, Any], *, timeout_ms: int = 10_000) -> Answer:
    """Run one event through the app's handler and read its response as the client would."""
    response = handler(app)(request, FakeLambdaContext(timeout_ms=timeout_ms))
    raw = response.get("body") or ""
    body = base64.b64decode(raw) if response.get("isBase64Encoded") else raw.encode()
    return Answer(response["statusCode"], dict(response.get("headers") or {}), body)
