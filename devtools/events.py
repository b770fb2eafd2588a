"""Sample Lambda events: the files in events/ (used by `sam local invoke -e`, the demo, the tests and the bench)."""

from __future__ import annotations

import copy
import json
from typing import Any
from urllib.parse import urlencode

from devtools.paths import ROOT

EVENTS_DIR = ROOT / "events"


def event_names(prefix: str = "") -> list[str]:
    """Names (file stems) of the sample events starting with `prefix`, in sorted (demo) order."""
    return sorted(path.stem for path in EVENTS_DIR.glob(f"{prefix}*.json"))


def load_event(name: str) -> dict[str, Any]:
    """A fresh copy of events/<name>.json, safe to modify."""
    event: dict[str, Any] = json.loads((EVENTS_DIR / f"{name}.json").read_text(encoding="utf-8"))
    return copy.deepcopy(event)


def with_path_parameter(event: dict[str, Any], name: str, value: str) -> dict[str, Any]:
    """The HTTP API event with path parameter `name` set to `value`, in its path too (sample files hold made-up ids)."""
    old_value = event["pathParameters"][name]
    event["rawPath"] = event["rawPath"].replace(old_value, value)
    event["requestContext"]["http"]["path"] = event["rawPath"]
    event["pathParameters"][name] = value
    return event


def with_header(event: dict[str, Any], name: str, value: str) -> dict[str, Any]:
    """The HTTP API event with one header set (API Gateway lower-cases header names in payload 2.0)."""
    event["headers"][name.lower()] = value
    return event


def with_query(event: dict[str, Any], **params: str) -> dict[str, Any]:
    """The HTTP API event with its query string replaced by `params`."""
    event["queryStringParameters"] = dict(params)
    event["rawQueryString"] = urlencode(params)
    return event


def with_json_body(event: dict[str, Any], body: Any) -> dict[str, Any]:
    """The HTTP API event with a JSON body."""
    text = json.dumps(body)
    event["body"] = text
    event["isBase64Encoded"] = False
    event["headers"]["content-length"] = str(len(text.encode()))
    return event
