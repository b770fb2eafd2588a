"""Capture what the Powertools logger writes, as the JSON dicts CloudWatch would receive."""

from __future__ import annotations

import json
import logging
from collections.abc import Iterator
from contextlib import contextmanager
from typing import Any

from lib.dbkit.observability import logger


class JsonLines(logging.Handler):
    """Formats records with the Powertools formatter and keeps them as text and as parsed dicts."""

    def __init__(self) -> None:
        super().__init__(level=logging.DEBUG)
        self.setFormatter(logger.registered_formatter)
        self.lines: list[str] = []

    def emit(self, record: logging.LogRecord) -> None:
        self.lines.append(self.format(record))

    @property
    def records(self) -> list[dict[str, Any]]:
        return [json.loads(line) for line in self.lines]

    def with_key(self, key: str) -> list[dict[str, Any]]:
        return [record for record in self.records if key in record]


@contextmanager
def captured_logs(level: int = logging.DEBUG) -> Iterator[JsonLines]:
    """Every line the app logs inside the block (at `level` and above)."""
    handler = JsonLines()
    previous = logger.log_level
    logger.setLevel(level)
    logger.addHandler(handler)
    try:
        yield handler
    finally:
        logger._logger.removeHandler(handler)
        logger.setLevel(previous)
