"""create_api: a FastAPI app with the kit's HTTP parts installed; the app adds its routes and its error answers."""

from __future__ import annotations

from collections.abc import Mapping
from typing import Any

from fastapi import FastAPI

from lib.dbkit.http.errors import KIT_ERROR_STATUSES, ErrorAnswer, error_answers, install_error_handlers, limit_refusal
from lib.dbkit.http.limits import MAX_BODY_BYTES, MAX_HEADER_BYTES, MAX_URL_BYTES, HeadAsGet, RequestSizeLimit


def create_api(
    *,
    errors: Mapping[type[Exception], ErrorAnswer] | None = None,
    max_body_bytes: int = MAX_BODY_BYTES,
    max_url_bytes: int = MAX_URL_BYTES,
    max_header_bytes: int = MAX_HEADER_BYTES,
    **options: Any,
) -> FastAPI:
    """A FastAPI app (`options` are FastAPI's own: title, version, ...) that answers every error in the one shape.

    `errors` maps the app's domain errors to their answers (the kit's own errors are mapped already). Requests over
    the size limits are refused before anything is routed or parsed; HEAD is answered as GET without a body; there
    are no trailing-slash redirects. Add routes to the app it returns as to any FastAPI app.
    """
    answers = error_answers(errors or {})
    statuses = sorted({*KIT_ERROR_STATUSES, *(answer.status for answer in answers.values())})
    # No docs pages and no redirect for "/items/": Starlette builds that redirect's Location from the Host header.
    options = {"docs_url": None, "redoc_url": None, "redirect_slashes": False, **options}
    app = _ErrorsDocumentedOnDemand(error_statuses=statuses, options=options)
    install_error_handlers(app, answers)
    app.add_middleware(
        RequestSizeLimit,
        max_url_bytes=max_url_bytes,
        max_header_bytes=max_header_bytes,
        max_body_bytes=max_body_bytes,
        refusal=limit_refusal,
    )
    # Added last, so outermost: HEAD is routed as GET everywhere, including the size check.
    app.add_middleware(HeadAsGet)
    return app


class _ErrorsDocumentedOnDemand(FastAPI):
    """The app as it serves requests: its OpenAPI document, when asked for, comes from one that documents the errors.

    FastAPI builds a pydantic field for each documented response of each route as the route is added, and only the
    OpenAPI document ever uses them; building them at every cold start for a document the deployed API never serves
    (API Gateway routes only the API's own paths) is INIT time spent for nothing (bench/results.md). The documented
    copy is FastAPI's own: a FastAPI with the error responses, the routes included from this one.
    """

    def __init__(self, *, error_statuses: list[int], options: dict[str, Any]) -> None:
        super().__init__(**options)
        self._options = options
        self._error_statuses = error_statuses

    def openapi(self) -> dict[str, Any]:
        if not self.openapi_schema:
            from lib.dbkit.http.schema import ErrorOut

            responses: dict[int | str, dict[str, Any]] = {
                status: {"model": ErrorOut} for status in self._error_statuses
            }
            documented = FastAPI(**self._options, responses=responses)
            documented.include_router(self.router)
            self.openapi_schema = documented.openapi()
        return self.openapi_schema
