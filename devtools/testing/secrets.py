"""Scan what the app showed the outside world (logs, responses, reprs, exception text) for the database password."""

from __future__ import annotations

import json
import logging
from collections.abc import Iterable, Iterator
from contextlib import contextmanager
from typing import Any
from urllib.parse import quote, quote_plus

# A password shorter than this would match by chance (and the stack's are 24 characters).
MIN_SCANNABLE = 6


def secret_forms(password: str) -> set[str]:
    """The password as it may appear in text: verbatim, percent-encoded (URL userinfo), form-encoded."""
    if len(password) < MIN_SCANNABLE:
        raise ValueError(f"a password shorter than {MIN_SCANNABLE} characters cannot be scanned for reliably")
    return {password, quote(password, safe=""), quote_plus(password)}


def as_text(item: Any) -> str:
    """Text a reader could see: bytes decoded leniently, mappings and lists as JSON, anything else as repr and str."""
    if isinstance(item, str):
        return item
    if isinstance(item, bytes | bytearray):
        return bytes(item).decode("utf-8", errors="replace")
    if isinstance(item, BaseException):
        chain: list[str] = []
        error: BaseException | None = item
        while error is not None and len(chain) < 20:
            chain.append(f"{type(error).__name__}: {error!s} {error!r}")
            error = error.__cause__ or error.__context__
        return "\n".join(chain)
    if isinstance(item, dict | list | tuple):
        return json.dumps(item, default=repr)
    return f"{item!s}\n{item!r}"


def find_secret(password: str, items: Iterable[Any]) -> list[str]:
    """Excerpts (password masked) of every item that contains the password in any of its forms."""
    forms = secret_forms(password)
    hits = []
    for item in items:
        text = as_text(item)
        for form in forms:
            at = text.find(form)
            if at >= 0:
                excerpt = text[max(0, at - 60) : at + len(form) + 20].replace(form, "<PASSWORD>")
                hits.append(f"...{excerpt}...")
    return hits


def assert_no_secret(password: str, *items: Any) -> None:
    """Fail listing where the password (or its percent-encoded form) appears in any item."""
    hits = find_secret(password, items)
    assert not hits, f"database password found in {len(hits)} place(s): {hits[:5]}"


class _Everything(logging.Handler):
    """Keeps every record that reaches it, formatted with its traceback."""

    def __init__(self) -> None:
        super().__init__(level=logging.DEBUG)
        self.setFormatter(logging.Formatter("%(name)s %(levelname)s %(message)s %(args)s"))
        self.lines: list[str] = []

    def emit(self, record: logging.LogRecord) -> None:
        self.lines.append(self.format(record))


@contextmanager
def library_logs(level: int = logging.WARNING) -> Iterator[list[str]]:
    """Lines that libraries (SQLAlchemy, pg8000, Mangum, asyncio) log through the root logger inside the block."""
    handler = _Everything()
    handler.setLevel(level)
    root = logging.getLogger()
    root.addHandler(handler)
    try:
        yield handler.lines
    finally:
        root.removeHandler(handler)


@contextmanager
def secrets_manager(region: str = "us-east-1") -> Iterator[Any]:
    """moto's Secrets Manager for the block (a boto3 client), with Powertools' parameter caches cleared around it."""
    import os

    import boto3  # type: ignore[import-untyped]
    from aws_lambda_powertools.utilities import parameters
    from moto import mock_aws

    previous = os.environ.get("AWS_DEFAULT_REGION")
    os.environ["AWS_DEFAULT_REGION"] = region
    try:
        with mock_aws():
            parameters.clear_caches()  # type: ignore[no-untyped-call]
            yield boto3.client("secretsmanager")
    finally:
        parameters.clear_caches()  # type: ignore[no-untyped-call]
        if previous is None:
            os.environ.pop("AWS_DEFAULT_REGION", None)
        else:
            os.environ["AWS_DEFAULT_REGION"] = previous
