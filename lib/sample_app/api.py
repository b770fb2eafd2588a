"""The notes HTTP API (FastAPI): routes, request/response models, and the one JSON error shape for every 4xx/5xx."""

from __future__ import annotations

from collections.abc import Mapping, Sequence
from datetime import datetime
from http import HTTPStatus
from typing import Annotated, Any
from uuid import UUID

from fastapi import Depends, FastAPI, Header, Query, Request, Response
from fastapi.exceptions import RequestValidationError
from fastapi.responses import JSONResponse
from fastapi.routing import APIRoute
from pydantic import AfterValidator, BaseModel, BeforeValidator, ConfigDict, Field
from starlette.exceptions import HTTPException
from starlette.routing import Match

from lib.dbkit.engine import DRIVER_ERRORS, database_error, ping
from lib.dbkit.errors import (
    CommitOutcomeUnknownError,
    ConfigError,
    DatabaseProviderRefusedError,
    DatabaseUnavailableError,
    InvalidLsnError,
    PoolExhaustedError,
)
from lib.dbkit.observability import logger
from lib.dbkit.replica import READ_AFTER_HEADER, read_after, read_after_headers
from lib.dbkit.session import run_in_session

from lib.sample_app import notes
from lib.sample_app.errors import (
    IdempotencyConflictError,
    IdempotencyKeyNotYetVisibleError,
    InvalidCursorError,
    NoteNotFoundError,
    UnsupportedMediaTypeError,
)
from lib.sample_app.http_limits import HeadAsGet, RequestSizeLimit

# The request models' size limits are the database's (CHECK constraints in models.py); importable from here too.
from lib.sample_app.models import MAX_BODY as MAX_BODY
from lib.sample_app.models import MAX_IDEMPOTENCY_KEY as MAX_IDEMPOTENCY_KEY
from lib.sample_app.models import MAX_TITLE as MAX_TITLE

MIN_TTL_SECONDS = 60
MAX_TTL_SECONDS = 31_536_000
MAX_PAGE = 100
DEFAULT_PAGE = 20
# A page also stops at this many bytes of notes (but holds at least one), so that `limit` large notes cannot make
# an answer of megabytes: with the largest note (~61 KB as JSON) an answer stays under 64 KiB.
MAX_PAGE_BYTES = 56 * 1024
# Printable ASCII only: headers arrive as Latin-1, so anything else would be stored garbled and never match again.
# At least one non-space character: a key of blanks is a client bug, not a key.
IDEMPOTENCY_KEY_PATTERN = r"^[\x20-\x7e]*[\x21-\x7e][\x20-\x7e]*$"
# The largest valid note is 10,200 characters; written with every character as a JSON surrogate-pair escape
# (12 bytes each) it is still under 128 KiB, so no valid request is refused.
MAX_REQUEST_BYTES = 128 * 1024
# Far above what API Gateway forwards, far below what costs memory to parse: a 6 MB query string of 750,000
# parameters took ~160 MB to turn into Python objects.
MAX_URL_BYTES = 16 * 1024
MAX_HEADER_BYTES = 64 * 1024
# An error answer stays small whatever the request: at most this many details, each text clipped, and details
# dropped (the message says how many) until the whole body fits in MAX_ERROR_BYTES.
MAX_ERROR_DETAILS = 20
MAX_ERROR_TEXT = 200
MAX_ERROR_MESSAGE = 400
MAX_ERROR_BYTES = 4 * 1024


def _storable(value: str) -> str:
    # Postgres text cannot hold NUL, and a lone surrogate (valid in JSON "\ud800") cannot be encoded as UTF-8:
    # refuse both here, or they would surface as a 500 from the driver.
    if "\x00" in value:
        raise ValueError("must not contain NUL characters")
    try:
        value.encode("utf-8")
    except UnicodeEncodeError:
        raise ValueError("must be valid Unicode (no unpaired surrogates)") from None
    return value


def _decimal_digits(value: Any) -> Any:
    # Query values are strings; int() would also take "1_0", "+5", " 5 " and non-ASCII digits.
    if isinstance(value, str):
        if not (value.isascii() and value.isdigit()):
            raise ValueError("must be a whole number written with the digits 0-9 only")
        digits = value.lstrip("0") or "0"
        if len(digits) > 18:
            raise ValueError("is far too large")
        return int(digits)
    return value


Title = Annotated[str, Field(min_length=1, max_length=MAX_TITLE), AfterValidator(_storable)]
Body = Annotated[str, Field(max_length=MAX_BODY), AfterValidator(_storable)]
TtlSeconds = Annotated[int, Field(strict=True, ge=MIN_TTL_SECONDS, le=MAX_TTL_SECONDS)]
PageSize = Annotated[int, BeforeValidator(_decimal_digits), Query(ge=1, le=MAX_PAGE)]
# Checked by the kit (lib.dbkit.replica.read_after), which answers a malformed value with InvalidLsnError: a 400.
ReadAfter = Annotated[
    str | None,
    Header(
        alias=READ_AFTER_HEADER,
        description="The Read-After value of an earlier write's response: this read sees that write",
    ),
]
_READ_AFTER_DOC = {
    READ_AFTER_HEADER: {
        "description": "Send it back on a later read that must see this write (absent without a read replica)",
        "schema": {"type": "string"},
    }
}


class NoteCreate(BaseModel):
    """POST /notes body."""

    model_config = ConfigDict(extra="forbid")

    title: Title
    body: Body = ""
    ttl_seconds: TtlSeconds | None = None


class NoteOut(BaseModel):
    """A note as returned by the API."""

    id: UUID
    title: str
    body: str
    created_at: datetime
    expires_at: datetime | None

    @classmethod
    def of(cls, note: notes.Note) -> NoteOut:
        return cls(id=note.id, title=note.title, body=note.body, created_at=note.created_at, expires_at=note.expires_at)


class NotePageOut(BaseModel):
    """GET /notes: one page, newest first; pass next_cursor back as ?cursor= for the next page."""

    items: list[NoteOut]
    next_cursor: str | None


class HealthOut(BaseModel):
    """GET /health when the database answered."""

    status: str
    database: str


class ErrorDetail(BaseModel):
    """Which input was wrong and why."""

    field: str
    reason: str


class ErrorInfo(BaseModel):
    """A stable machine-readable code, a human message, and per-field details for validation errors."""

    code: str
    message: str
    details: list[ErrorDetail] = []


class ErrorOut(BaseModel):
    """The one error shape of every 4xx/5xx response."""

    error: ErrorInfo


def require_json(request: Request) -> None:
    """Refuse bodies not declared as JSON with 415 (FastAPI would otherwise report a confusing type error)."""
    if media_type(request.headers.get("content-type", "")) != "application/json":
        raise UnsupportedMediaTypeError("send the request body as JSON with Content-Type: application/json")


def media_type(content_type: str) -> str:
    """The lower-cased type/subtype of a Content-Type value, as email.message.Message.get_content_type reads it.

    Parameters are dropped; a value that is not exactly one type/subtype pair reads as text/plain (RFC 2045's default).
    """
    value = content_type.partition(";")[0].strip().lower()
    kind, slash, subtype = value.partition("/")
    if not slash or not kind or not subtype or "/" in subtype or any(c.isspace() for c in value):
        return "text/plain"
    return value


_ERRORS: dict[int | str, dict[str, Any]] = {
    status: {"model": ErrorOut} for status in (400, 404, 409, 413, 414, 415, 422, 431, 500, 503)
}


class _ErrorsDocumentedOnDemand(FastAPI):
    """The app as it serves requests: its OpenAPI document, when asked for, comes from one that documents the errors.

    FastAPI builds a pydantic field for each documented response of each route as the route is added, and only the
    OpenAPI document ever uses them; building fifty at every cold start for a document the deployed API never serves
    (API Gateway routes only the API's own paths) is INIT time spent for nothing (bench/results.md).
    """

    def openapi(self) -> dict[str, Any]:
        if not self.openapi_schema:
            self.openapi_schema = _build(documented=True).openapi()
        return self.openapi_schema


def create_app() -> FastAPI:
    """The API app; no lifespan work: the engine is built lazily once per execution environment (lib.dbkit.engine)."""
    return _build(documented=False)


def _build(*, documented: bool) -> FastAPI:
    # redirect_slashes=False: Starlette's redirect for "/notes/" builds its Location from the Host header.
    app = (FastAPI if documented else _ErrorsDocumentedOnDemand)(
        title="Notes API",
        docs_url=None,
        redoc_url=None,
        responses=_ERRORS if documented else None,
        redirect_slashes=False,
    )
    _add_routes(app)
    _add_error_handlers(app)
    app.add_middleware(
        RequestSizeLimit,
        max_url_bytes=MAX_URL_BYTES,
        max_header_bytes=MAX_HEADER_BYTES,
        max_body_bytes=MAX_REQUEST_BYTES,
        refusal=_too_large,
    )
    # Added last, so outermost: HEAD is routed as GET everywhere, including the size check.
    app.add_middleware(HeadAsGet)
    return app


def _too_large(status: int, message: str) -> JSONResponse:
    return error_response(status, _HTTP_CODES[status], message)


def _add_routes(app: FastAPI) -> None:
    @app.get("/health")
    def health() -> HealthOut:
        ping()
        return HealthOut(status="ok", database="reachable")

    @app.post(
        "/notes",
        status_code=201,
        dependencies=[Depends(require_json)],
        responses={201: {"headers": _READ_AFTER_DOC}},
    )
    def create_note(
        payload: NoteCreate,
        response: Response,
        idempotency_key: Annotated[
            str | None, Header(min_length=1, max_length=MAX_IDEMPOTENCY_KEY, pattern=IDEMPOTENCY_KEY_PATTERN)
        ] = None,
    ) -> NoteOut:
        created = _create_note(payload, idempotency_key)
        # A replay answers exactly like the original (201, same note); the header tells a retrying client.
        response.headers["Location"] = f"/notes/{created.note.id}"
        if created.replayed:
            response.headers["Idempotent-Replayed"] = "true"
        response.headers.update(read_after_headers())
        return NoteOut.of(created.note)

    # Reads are read-only units: on the read replica when one is configured (within DB_REPLICA_MAX_LAG, and past
    # the write a Read-After header names), else on the primary.
    @app.get("/notes")
    def list_notes(
        limit: PageSize = DEFAULT_PAGE,
        cursor: Annotated[str | None, Query(min_length=1, max_length=200)] = None,
        read_after_header: ReadAfter = None,
    ) -> NotePageOut:
        after = notes.Cursor.decode(cursor) if cursor is not None else None
        after_lsn = read_after(read_after_header)
        page = run_in_session(
            lambda session: notes.list_notes(session, limit=limit, after=after),
            single_statement=True,
            read_only=True,
            after_lsn=after_lsn,
        )
        return _bounded_page(page)

    @app.get("/notes/{note_id}")
    def get_note(note_id: UUID, read_after_header: ReadAfter = None) -> NoteOut:
        after_lsn = read_after(read_after_header)
        note = run_in_session(
            lambda session: notes.get_note(session, note_id), single_statement=True, read_only=True, after_lsn=after_lsn
        )
        return NoteOut.of(note)

    @app.delete("/notes/{note_id}", status_code=204, responses={204: {"headers": _READ_AFTER_DOC}})
    def delete_note(note_id: UUID) -> Response:
        run_in_session(lambda session: notes.delete_note(session, note_id), single_statement=True)
        return Response(status_code=204, headers=read_after_headers())


def _create_note(payload: NoteCreate, idempotency_key: str | None) -> notes.CreatedNote:
    attempt = 1
    while True:
        try:
            return run_in_session(
                lambda session: notes.create_note(
                    session,
                    title=payload.title,
                    body=payload.body,
                    ttl_seconds=payload.ttl_seconds,
                    idempotency_key=idempotency_key,
                ),
                single_statement=True,
                # The key makes a re-run replay the stored note: safe after an unknown commit outcome.
                idempotent=idempotency_key is not None,
            )
        except IdempotencyKeyNotYetVisibleError:
            # A request with the same key committed while ours ran: a new statement sees its row and replays it.
            if attempt >= notes.CREATE_ATTEMPTS:
                raise
            attempt += 1


def _bounded_page(page: notes.NotePage) -> NotePageOut:
    items: list[NoteOut] = []
    size = 0
    for note in page.notes:
        item = NoteOut.of(note)
        cost = len(item.model_dump_json().encode())
        if items and size + cost > MAX_PAGE_BYTES:
            break
        items.append(item)
        size += cost
    next_cursor = page.next_cursor
    if len(items) < len(page.notes):
        last = page.notes[len(items) - 1]
        next_cursor = notes.Cursor(last.created_at, last.id)
    return NotePageOut(items=items, next_cursor=next_cursor.encode() if next_cursor else None)


# Domain errors → HTTP, in one place: (status, code, fixed message or None to use the error's own message).
# 5xx messages are fixed: the exception text may name hosts or SQLSTATEs, which clients never see.
_DOMAIN_ERRORS: dict[type[Exception], tuple[int, str, str | None]] = {
    NoteNotFoundError: (404, "note_not_found", None),
    IdempotencyConflictError: (409, "idempotency_conflict", None),
    InvalidCursorError: (400, "invalid_cursor", None),
    InvalidLsnError: (400, "invalid_read_after", None),
    UnsupportedMediaTypeError: (415, "unsupported_media_type", None),
    PoolExhaustedError: (503, "database_busy", "the database is busy; retry after the Retry-After delay"),
    # Endpoint disabled or quota exceeded: retrying soon will not help; the owner acts (the engine's log says how).
    DatabaseProviderRefusedError: (
        503,
        "database_provider_refused",
        "the database provider refused the connection; the service owner must act, retry later",
    ),
    CommitOutcomeUnknownError: (
        503,
        "commit_outcome_unknown",
        "the connection failed while committing: the write may be stored; retry with the same Idempotency-Key",
    ),
    DatabaseUnavailableError: (503, "database_unavailable", "the database is unavailable; retry after the delay"),
    # A wrong password or URL found at run time: the log line names the fix, the client only learns it is ours.
    ConfigError: (500, "misconfigured", "the service is misconfigured; its logs name the fix"),
}
_FIELD_OF_ERROR: dict[type[Exception], str] = {InvalidCursorError: "cursor", InvalidLsnError: READ_AFTER_HEADER}
_HTTP_CODES = {
    400: "bad_request",
    404: "not_found",
    405: "method_not_allowed",
    413: "payload_too_large",
    414: "uri_too_long",
    431: "request_header_fields_too_large",
}


def error_response(
    status: int,
    code: str,
    message: str,
    details: Sequence[ErrorDetail] = (),
    headers: Mapping[str, str] | None = None,
) -> JSONResponse:
    """Build the one error shape, at most MAX_ERROR_BYTES: a hostile request must not be able to grow the answer."""
    shown = [
        ErrorDetail(field=_clip(detail.field, MAX_ERROR_TEXT), reason=_clip(detail.reason, MAX_ERROR_TEXT))
        for detail in details[:MAX_ERROR_DETAILS]
    ]
    message = _clip(message, MAX_ERROR_MESSAGE)
    while True:
        omitted = len(details) - len(shown)
        text = f"{message} ({omitted} more problems not listed)" if omitted else message
        body = ErrorOut(error=ErrorInfo(code=code, message=text, details=shown))
        response = JSONResponse(body.model_dump(), status_code=status, headers=headers)
        if len(response.body) <= MAX_ERROR_BYTES or not shown:
            return response
        shown.pop()


def _add_error_handlers(app: FastAPI) -> None:
    for error_type in _DOMAIN_ERRORS:
        app.add_exception_handler(error_type, _domain_error)
    # Raised where the engine is used outside the unit of work (a Session on get_engine()): a database that is away
    # answers 503 like the kit's own errors; anything else stays a 500.
    for error_type in DRIVER_ERRORS:
        app.add_exception_handler(error_type, _driver_error)
    app.add_exception_handler(RequestValidationError, _validation_error)
    app.add_exception_handler(HTTPException, _http_error)
    # Starlette sends this response, then re-raises for the server (Mangum logs it again as mangum.http).
    app.add_exception_handler(Exception, _unexpected_error)


async def _domain_error(request: Request, error: Exception) -> JSONResponse:
    error_type = next(t for t in type(error).__mro__ if t in _DOMAIN_ERRORS)
    status, code, fixed_message = _DOMAIN_ERRORS[error_type]
    headers = None
    if isinstance(error, DatabaseUnavailableError):
        headers = {"Retry-After": str(error.retry_after)}
        logger.warning("database unavailable", extra={"error": type(error).__name__, "reason": str(error)})
    if isinstance(error, ConfigError):
        logger.error("configuration error", extra={"error": type(error).__name__, "fix": str(error)})
    field = _FIELD_OF_ERROR.get(error_type)
    details = [ErrorDetail(field=field, reason=str(error))] if field else []
    return error_response(status, code, fixed_message or str(error), details, headers)


async def _driver_error(request: Request, error: Exception) -> JSONResponse:
    unavailable = database_error(error)
    if unavailable is None:
        return await _unexpected_error(request, error)
    return await _domain_error(request, unavailable)


async def _validation_error(request: Request, error: Exception) -> JSONResponse:
    assert isinstance(error, RequestValidationError)
    problems = error.errors()
    invalid_json = next((p for p in problems if p.get("type") == "json_invalid"), None)
    if invalid_json is not None:
        reason = invalid_json.get("ctx", {}).get("error", "malformed JSON")
        position = invalid_json["loc"][-1]
        return error_response(400, "invalid_json", f"request body is not valid JSON: {reason} (character {position})")
    details = [ErrorDetail(field=_field_name(p["loc"]), reason=_reason(p)) for p in problems]
    fields = list(dict.fromkeys(_clip(d.field, MAX_ERROR_TEXT) for d in details))
    named = ", ".join(fields[:MAX_ERROR_DETAILS]) + (" …" if len(fields) > MAX_ERROR_DETAILS else "")
    return error_response(422, "validation_error", f"invalid request: {named}", details)


async def _http_error(request: Request, error: Exception) -> Response:
    assert isinstance(error, HTTPException)
    status = error.status_code
    headers = error.headers
    if status == 404:
        message = f"no route for {request.method} {request.url.path}"
    elif status == 405:
        allowed = _allowed_methods(request)
        message = f"{request.method} is not allowed on {request.url.path}; allowed: {', '.join(allowed)}"
        headers = {"Allow": ", ".join(allowed)}
    elif isinstance(error.__cause__, UnicodeDecodeError):
        return error_response(400, "invalid_json", "request body is not valid JSON: it is not UTF-8")
    else:
        message = error.detail if isinstance(error.detail, str) else HTTPStatus(status).phrase
    code = _HTTP_CODES.get(status, HTTPStatus(status).phrase.lower().replace(" ", "_"))
    return error_response(status, code, message, headers=headers)


async def _unexpected_error(request: Request, error: Exception) -> JSONResponse:
    logger.exception("unhandled error", extra={"method": request.method, "path": request.url.path})
    return error_response(500, "internal_error", "internal error")


def _allowed_methods(request: Request) -> list[str]:
    # Starlette's Allow header names only the first route matching the path; GET and DELETE /notes/{id} are two.
    methods: set[str] = set()
    for route in request.app.router.routes:
        if isinstance(route, APIRoute) and route.matches(request.scope)[0] is not Match.NONE:
            methods |= route.methods or set()
    if "GET" in methods:
        methods.add("HEAD")  # HeadAsGet answers it
    return sorted(methods)


def _clip(text: str, limit: int) -> str:
    return text if len(text) <= limit else text[: limit - 1] + "…"


def _field_name(loc: Sequence[str | int]) -> str:
    where, *path = loc
    if where == "header" and path:
        return "-".join(part.capitalize() for part in str(path[0]).split("-"))
    if not path:
        return "request body" if where == "body" else str(where)
    return ".".join(str(part) for part in path)


def _reason(problem: Any) -> str:
    message = str(problem.get("msg", "invalid"))
    return message.removeprefix("Value error, ")
