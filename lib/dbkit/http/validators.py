"""Pydantic validators for request fields: text Postgres can store, and query numbers written as plain digits."""

from __future__ import annotations

from typing import Any


def storable_text(value: str) -> str:
    """`value` when Postgres text can hold it; ValueError (a 422) for NUL or an unpaired surrogate.

    Use it as `Annotated[str, Field(...), AfterValidator(storable_text)]`: both are valid JSON ("\\u0000",
    "\\ud800") and would otherwise surface as a 500 from the driver.
    """
    if "\x00" in value:
        raise ValueError("must not contain NUL characters")
    try:
        value.encode("utf-8")
    except UnicodeEncodeError:
        raise ValueError("must be valid Unicode (no unpaired surrogates)") from None
    return value


def decimal_digits(value: Any) -> Any:
    """A query string's number as int when written with the digits 0-9 only; ValueError (a 422) otherwise.

    Use it as `Annotated[int, BeforeValidator(decimal_digits), Query(ge=..., le=...)]`: int() would also take
    "1_0", "+5", " 5 " and non-ASCII digits.
    """
    if isinstance(value, str):
        if not (value.isascii() and value.isdigit()):
            raise ValueError("must be a whole number written with the digits 0-9 only")
        digits = value.lstrip("0") or "0"
        if len(digits) > 18:
            raise ValueError("is far too large")
        return int(digits)
    return value
