"""The HTTP API (FastAPI): GET /health; every 4xx/5xx in the kit's one error shape (lib.dbkit.http). Add routes here."""

from __future__ import annotations

from fastapi import FastAPI
from pydantic import BaseModel

from lib.dbkit.engine import ping
from lib.dbkit.http import ErrorAnswer, create_api

# Your domain errors → HTTP, in one place, e.g. {OrderNotFoundError: ErrorAnswer(404, "order_not_found")}; the kit
# answers its own (503 with Retry-After when the database is away, 500 misconfigured) and every other error.
ERRORS: dict[type[Exception], ErrorAnswer] = {}


class HealthOut(BaseModel):
    """GET /health when the database answered."""

    status: str
    database: str


def create_app() -> FastAPI:
    """The API app; no lifespan work: the engine is built lazily once per execution environment (lib.dbkit.engine)."""
    app = create_api(title="API", errors=ERRORS)

    @app.get("/health")
    def health() -> HealthOut:
        ping()
        return HealthOut(status="ok", database="reachable")

    return app
