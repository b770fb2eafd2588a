"""Content-Type checks: a route that takes a JSON body refuses any other media type with 415."""

from __future__ import annotations

from fastapi import Request
from starlette.exceptions import HTTPException


def require_json(request: Request) -> None:
    """A route dependency: 415 unless the body is declared as JSON (FastAPI would report a confusing type error)."""
    if media_type(request.headers.get("content-type", "")) != "application/json":
        raise HTTPException(415, "send the request body as JSON with Content-Type: application/json")


def media_type(content_type: str) -> str:
    """The lower-cased type/subtype of a Content-Type value, as email.message.Message.get_content_type reads it.

    Parameters are dropped; a value that is not exactly one type/subtype pair reads as text/plain (RFC 2045's default).
    """
    value = content_type.partition(";")[0].strip().lower()
    kind, slash, subtype = value.partition("/")
    if not slash or not kind or not subtype or "/" in subtype or any(c.isspace() for c in value):
        return "text/plain"
    return value
