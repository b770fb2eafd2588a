"""The one error shape as pydantic models, for the OpenAPI document only: answers are built without them (errors.py)."""

from __future__ import annotations

from pydantic import BaseModel


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
