"""The HTTP API (FastAPI): GET /health, and one JSON error shape for every 4xx/5xx. Add your routes here."""

from __future__ import annotations

from http import HTTPStatus
from typing import Any

from fastapi import FastAPI, Request
from fastapi.exceptions import RequestValidationError
from fastapi.responses import JSONResponse
from pydantic import BaseModel
from starlette.exceptions import HTTPException

from lib.dbkit.engine import DRIVER_ERRORS, database_error, ping
from lib.dbkit.errors import ConfigError, DatabaseUnavailableError
from lib.dbkit.observability import logger


class HealthOut(BaseModel):
    """GET /health when the database answered."""

    status: str
    database: str


def create_app() -> FastAPI:
    """The API app; no lifespan work: the engine is built lazily once per execution environment (lib.dbkit.engine)."""
    # redirect_slashes=False: Starlette's redirect for "/x/" builds its Location from the Host header.
    app = FastAPI(title="API", docs_url=None, redoc_url=None, redirect_slashes=False)

    @app.get("/health")
    def health() -> HealthOut:
        ping()
        return HealthOut(status="ok", database="reachable")

    app.add_exception_handler(DatabaseUnavailableError, _unavailable)
    app.add_exception_handler(ConfigError, _misconfigured)
    for error_type in DRIVER_ERRORS:
        app.add_exception_handler(error_type, _driver_error)
    app.add_exception_handler(RequestValidationError, _validation_error)
    app.add_exception_handler(HTTPException, _http_error)
    app.add_exception_handler(Exception, _unexpected_error)
    return app


def error_response(status: int, code: str, message: str, headers: dict[str, str] | None = None) -> JSONResponse:
    """The one error shape: {"error": {"code", "message", "details"}}."""
    body: dict[str, Any] = {"error": {"code": code, "message": message, "details": []}}
    return JSONResponse(body, status_code=status, headers=headers)


async def _unavailable(request: Request, error: Exception) -> JSONResponse:
    assert isinstance(error, DatabaseUnavailableError)
    logger.warning("database unavailable", extra={"error": type(error).__name__, "reason": str(error)})
    headers = {"Retry-After": str(error.retry_after)}
    return error_response(503, "database_unavailable", "the database is unavailable; retry later", headers)


async def _misconfigured(request: Request, error: Exception) -> JSONResponse:
    logger.error("configuration error", extra={"error": type(error).__name__, "fix": str(error)})
    return error_response(500, "misconfigured", "the service is misconfigured")


async def _driver_error(request: Request, error: Exception) -> JSONResponse:
    unavailable = database_error(error)
    if unavailable is None:
        return await _unexpected_error(request, error)
    return await _unavailable(request, unavailable)


async def _validation_error(request: Request, error: Exception) -> JSONResponse:
    assert isinstance(error, RequestValidationError)
    fields = ", ".join(".".join(str(part) for part in problem["loc"]) for problem in error.errors())
    return error_response(422, "validation_error", f"invalid request: {fields}")


async def _http_error(request: Request, error: Exception) -> JSONResponse:
    assert isinstance(error, HTTPException)
    if error.status_code == 404:
        return error_response(404, "not_found", f"no route for {request.method} {request.url.path}")
    code = HTTPStatus(error.status_code).phrase.lower().replace(" ", "_")
    return error_response(error.status_code, code, str(error.detail), dict(error.headers or {}))


async def _unexpected_error(request: Request, error: Exception) -> JSONResponse:
    logger.exception("unexpected error", extra={"error": type(error).__name__})
    return error_response(500, "internal_error", "internal error")
