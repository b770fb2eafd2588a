"""The one JSON error shape of every 4xx/5xx answer, and the FastAPI handlers that give every error that shape.

Answers are plain dicts: the shape's pydantic models (lib.dbkit.http.schema) are built only for the OpenAPI document,
not at every cold start; NamedTuples, not dataclasses, for the same reason (a frozen dataclass costs ~1 ms to make).
"""

from __future__ import annotations

from collections.abc import Mapping, Sequence
from http import HTTPStatus
from typing import Any, NamedTuple

from fastapi import FastAPI, Request
from fastapi.exceptions import RequestValidationError
from fastapi.responses import JSONResponse
from fastapi.routing import APIRoute
from starlette.exceptions import HTTPException
from starlette.responses import Response
from starlette.routing import Match

from lib.dbkit.engine import DRIVER_ERRORS, database_error
from lib.dbkit.errors import (
    CommitOutcomeUnknownError,
    ConfigError,
    DatabaseProviderRefusedError,
    DatabaseUnavailableError,
    InvalidLsnError,
    PoolExhaustedError,
)
from lib.dbkit.observability import logger
from lib.dbkit.replica import READ_AFTER_HEADER

# An error answer stays small whatever the request: at most this many details, each text clipped, and details
# dropped (the message says how many) until the whole body fits in MAX_ERROR_BYTES.
MAX_ERROR_DETAILS = 20
MAX_ERROR_TEXT = 200
MAX_ERROR_MESSAGE = 400
MAX_ERROR_BYTES = 4 * 1024
# What the kit's handlers answer whatever the app (no route, invalid JSON, limits, validation, 500, 503): the OpenAPI
# document lists them, with the app's own error statuses, on every operation.
KIT_ERROR_STATUSES = (400, 404, 413, 414, 415, 422, 431, 500, 503)


class ErrorDetail(NamedTuple):
    """Which input was wrong and why."""

    field: str
    reason: str


class ErrorAnswer(NamedTuple):
    """How an error type is answered: status, code, a fixed message (else the error's own text), the field it names."""

    status: int
    code: str
    message: str | None = None
    field: str | None = None


# The kit's errors → HTTP. 5xx messages are fixed: the exception text may name hosts or SQLSTATEs, which clients
# never see.
KIT_ERRORS: Mapping[type[Exception], ErrorAnswer] = {
    PoolExhaustedError: ErrorAnswer(503, "database_busy", "the database is busy; retry after the Retry-After delay"),
    # Endpoint disabled or quota exceeded: retrying soon will not help; the owner acts (the engine's log says how).
    DatabaseProviderRefusedError: ErrorAnswer(
        503,
        "database_provider_refused",
        "the database provider refused the connection; the service owner must act, retry later",
    ),
    CommitOutcomeUnknownError: ErrorAnswer(
        503,
        "commit_outcome_unknown",
        "the connection failed while committing: the write may be stored; retry with the same Idempotency-Key",
    ),
    DatabaseUnavailableError: ErrorAnswer(
        503, "database_unavailable", "the database is unavailable; retry after the delay"
    ),
    # A wrong password or URL found at run time: the log line names the fix, the client only learns it is ours.
    ConfigError: ErrorAnswer(500, "misconfigured", "the service is misconfigured; its logs name the fix"),
    # A Read-After header (lib.dbkit.replica.read_after) that is not the value a write answered.
    InvalidLsnError: ErrorAnswer(400, "invalid_read_after", field=READ_AFTER_HEADER),
}
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
        {"field": _clip(detail.field, MAX_ERROR_TEXT), "reason": _clip(detail.reason, MAX_ERROR_TEXT)}
        for detail in details[:MAX_ERROR_DETAILS]
    ]
    message = _clip(message, MAX_ERROR_MESSAGE)
    while True:
        omitted = len(details) - len(shown)
        text = f"{message} ({omitted} more problems not listed)" if omitted else message
        body = {"error": {"code": code, "message": text, "details": shown}}
        response = JSONResponse(body, status_code=status, headers=headers)
        if len(response.body) <= MAX_ERROR_BYTES or not shown:
            return response
        shown.pop()


def limit_refusal(status: int, message: str) -> JSONResponse:
    """A 413/414/431 from lib.dbkit.http.limits.RequestSizeLimit, in the one shape."""
    return error_response(status, _HTTP_CODES[status], message)


def error_answers(app_errors: Mapping[type[Exception], ErrorAnswer]) -> dict[type[Exception], ErrorAnswer]:
    """The kit's answers with the app's added (an app's answer for the same type wins); a 5xx needs a fixed message."""
    for error_type, answer in app_errors.items():
        if answer.status >= 500 and answer.message is None:
            raise ValueError(
                f"the answer for {error_type.__name__} is a {answer.status}: give it a fixed message "
                "(a 5xx never shows the error's own text, which may name hosts or SQL)"
            )
    return {**KIT_ERRORS, **app_errors}


def install_error_handlers(app: FastAPI, answers: Mapping[type[Exception], ErrorAnswer]) -> None:
    """Answer every error in the one shape: `answers` (see error_answers), validation, HTTP, driver, unexpected."""
    known = dict(answers)

    async def answered(request: Request, error: Exception) -> Response:
        error_type = next(t for t in type(error).__mro__ if t in known)
        answer = known[error_type]
        headers = None
        if isinstance(error, DatabaseUnavailableError):
            headers = {"Retry-After": str(error.retry_after)}
            logger.warning("database unavailable", extra={"error": type(error).__name__, "reason": str(error)})
        if isinstance(error, ConfigError):
            logger.error("configuration error", extra={"error": type(error).__name__, "fix": str(error)})
        details = [ErrorDetail(field=answer.field, reason=str(error))] if answer.field else []
        return error_response(answer.status, answer.code, answer.message or str(error), details, headers)

    async def driver_error(request: Request, error: Exception) -> Response:
        unavailable = database_error(error)
        if unavailable is None:
            return await _unexpected_error(request, error)
        return await answered(request, unavailable)

    for error_type in known:
        app.add_exception_handler(error_type, answered)
    # Raised where the engine is used outside the unit of work (a Session on get_engine()): a database that is away
    # answers 503 like the kit's own errors; anything else stays a 500.
    for error_type in DRIVER_ERRORS:
        app.add_exception_handler(error_type, driver_error)
    app.add_exception_handler(RequestValidationError, _validation_error)
    app.add_exception_handler(HTTPException, _http_error)
    # Starlette sends this response, then re-raises for the server (Mangum logs it again as mangum.http).
    app.add_exception_handler(Exception, _unexpected_error)


async def _validation_error(request: Request, error: Exception) -> Response:
    assert isinstance(error, RequestValidationError)
    problems = error.errors()
    invalid_json = next((p for p in problems if p.get("type") == "json_invalid"), None)
    if invalid_json is not None:
        reason = invalid_json.get("ctx", {}).get("error", "malformed JSON")
        position = invalid_json["loc"][-1]
        return error_response(400, "invalid_json", f"request body is not valid JSON: {reason} (character {position})")
    details = [ErrorDetail(field=_field_name(p["loc"]), reason=_reason(p)) for p in problems]
    fields = list(dict.fromkeys(_clip(detail.field, MAX_ERROR_TEXT) for detail in details))
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


async def _unexpected_error(request: Request, error: Exception) -> Response:
    logger.exception("unhandled error", extra={"method": request.method, "path": request.url.path})
    return error_response(500, "internal_error", "internal error")


def _allowed_methods(request: Request) -> list[str]:
    # Starlette's Allow header names only the first route matching the path; GET and DELETE on one path are two.
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
