"""Hostile HTTP API events of a chosen shape and size (up to Lambda's 6 MB request limit), and a memory probe.

`python -m tests.app.integration.hostile EVENT_FILE` (with the database environment set) invokes the API handler once
with that event and prints, as JSON, the answer's size and the peak memory (RSS) of the process.
"""

from __future__ import annotations

import base64
import json
import sys
from typing import Any
from urllib.parse import quote

from devtools.events import load_event

# Lambda refuses invocation payloads over 6 MB; stay under it with the rest of the event.
MAX_EVENT_BYTES = 6 * 1024 * 1024
SIZE_BUDGET = MAX_EVENT_BYTES - 16 * 1024
SHAPES = (
    "unknown fields",
    "long title",
    "long body",
    "huge number",
    "deep nesting",
    "long array",
    "many keys nested",
    "base64 body",
    "long path",
    "long query value",
    "many query parameters",
    "long idempotency key",
    "long content type",
    "many headers",
)
METHODS = ("GET", "POST", "DELETE", "HEAD", "PUT")


def _json_body(event: dict[str, Any], raw: str) -> None:
    event["body"] = raw
    event["isBase64Encoded"] = False
    event["headers"]["content-length"] = str(len(raw.encode()))


def _request(event: dict[str, Any], method: str, path: str, query: str = "") -> None:
    http = event["requestContext"]["http"]
    http["method"] = method
    http["path"] = event["rawPath"] = path
    event["rawQueryString"] = query
    event["queryStringParameters"] = {}


def hostile_event(shape: str, size: int, method: str | None = None) -> dict[str, Any]:
    """An HTTP API event whose `shape` part is about `size` bytes, shrunk until the event is under 6 MB as JSON."""
    while True:
        event = _shaped(shape, size, method or ("GET" if "path" in shape or "query" in shape else "POST"))
        encoded = len(json.dumps(event))
        if encoded < MAX_EVENT_BYTES:
            return event
        size = int(size * MAX_EVENT_BYTES / encoded * 0.98)


def _shaped(shape: str, size: int, method: str) -> dict[str, Any]:
    event = load_event("api-02-create-note")
    path = "/notes"
    if shape == "unknown fields":
        count = size // 14
        _json_body(event, json.dumps({"title": "t", **{f"f{i}": i for i in range(count)}}))
    elif shape in ("long title", "long body"):
        field = shape.split()[1]
        _json_body(event, json.dumps({"title": "t", field: "\U0001f642" * (size // 12)}))
    elif shape == "huge number":
        _json_body(event, '{"title": "t", "ttl_seconds": ' + "9" * size + "}")
    elif shape == "deep nesting":
        depth = size // 2
        _json_body(event, '{"title": ' + "[" * depth + "]" * depth + "}")
    elif shape == "long array":
        _json_body(event, json.dumps({"title": [0] * (size // 3)}))
    elif shape == "many keys nested":
        _json_body(event, json.dumps({"title": {f"k{i}": {"a": i} for i in range(size // 20)}}))
    elif shape == "base64 body":
        raw = json.dumps({"title": "t", **{f"f{i}": i for i in range(size // 19)}}).encode()
        event["body"] = base64.b64encode(raw).decode()
        event["isBase64Encoded"] = True
        event["headers"]["content-length"] = str(len(raw))
    elif shape == "long path":
        path = "/notes/" + "a" * (size // 2)  # the path is in the event twice
    elif shape == "long query value":
        _request(event, method, "/notes", "limit=5&cursor=" + quote("A" * size))
        return event
    elif shape == "many query parameters":
        _request(event, method, "/notes", "&".join(["limit=1"] * (size // 8)))
        return event
    elif shape == "long idempotency key":
        event["headers"]["idempotency-key"] = "k" * size
    elif shape == "long content type":
        event["headers"]["content-type"] = "application/json; x=" + "y" * size
    elif shape == "many headers":
        event["headers"].update({f"x-h{i}": "v" for i in range(size // 12)})
    else:
        raise ValueError(f"unknown shape {shape!r}")
    _request(event, method, path)
    return event


def measure(event_file: str) -> dict[str, Any]:
    """Invoke the handler once with the event in `event_file`, as a fresh execution environment would."""
    from devtools.testing.lambda_runtime import FakeLambdaContext
    from handlers.api import handler

    handler(load_event("api-01-health"), FakeLambdaContext())  # imports, engine and connection out of the way
    # As the runtime does: the event arrives as JSON text and is decoded into a dict before the handler runs.
    with open(event_file, encoding="utf-8") as file:
        event = json.load(file)
    before_rss = _rss_mib()
    response = handler(event, FakeLambdaContext())
    return {
        "status": response["statusCode"],
        "answer_bytes": len((response.get("body") or "").encode())
        + sum(len(name) + len(value) + 4 for name, value in (response.get("headers") or {}).items()),
        "rss_before_mib": before_rss,
        "peak_rss_mib": _rss_mib(),
    }


def _rss_mib() -> float:
    # VmHWM, not getrusage's ru_maxrss: Linux keeps ru_maxrss across exec, so a child would report its parent's peak.
    with open("/proc/self/status", encoding="ascii") as status:
        line = next(line for line in status if line.startswith("VmHWM:"))
    return round(int(line.split()[1]) / 1024, 1)


if __name__ == "__main__":
    json.dump(measure(sys.argv[1]), sys.stdout)
