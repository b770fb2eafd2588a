"""The API's one error shape, as tests check it (the kit's error handlers produce it)."""

from __future__ import annotations

from typing import Any


def assert_error_shape(status: int, body: Any) -> None:
    """The one error shape: {"error": {"code": str, "message": str, "details": [{"field": str, "reason": str}]}}."""
    assert isinstance(body, dict), f"{status} body is not a JSON object: {body!r}"
    assert set(body) == {"error"}, f"{status} body keys {sorted(body)}"
    error = body["error"]
    assert set(error) == {"code", "message", "details"}, f"{status} error keys {sorted(error)}"
    assert isinstance(error["code"], str)
    assert error["code"]
    assert isinstance(error["message"], str)
    assert error["message"]
    assert isinstance(error["details"], list)
    for detail in error["details"]:
        assert set(detail) == {"field", "reason"}, f"{status} detail keys {sorted(detail)}"
        assert all(isinstance(value, str) for value in detail.values())
