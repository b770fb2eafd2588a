"""Run both handlers through a CRUD round and a purge in this process; print one JSON summary line last.

The sample's (it names the notes routes, so it lives with the app's tests, not in devtools). Used by
tests/app/integration/test_driver_fallback.py in a subprocess whose PYTHONPATH puts another pg8000 release
first, so the handlers import and run exactly as they would after a dependency bump.
"""

from __future__ import annotations

import json
import sys
from importlib.metadata import version
from typing import Any

from devtools.events import load_event, with_json_body, with_path_parameter
from devtools.testing.lambda_runtime import FakeLambdaContext
from handlers import api, scheduled
from lib.dbkit.engine import get_engine


def _status(response: dict[str, Any]) -> int:
    return int(response["statusCode"])


def main() -> None:
    created = api.handler(with_json_body(load_event("api-02-create-note"), {"title": "bump"}), FakeLambdaContext())
    note_id = json.loads(created["body"])["id"]
    statuses = {
        "health": _status(api.handler(load_event("api-01-health"), FakeLambdaContext())),
        "create": _status(created),
        "get": _status(
            api.handler(
                with_path_parameter(load_event("api-10-get-note-unknown-id"), "id", note_id), FakeLambdaContext()
            )
        ),
        "list": _status(api.handler(load_event("api-07-list-notes"), FakeLambdaContext())),
        "delete": _status(
            api.handler(
                with_path_parameter(load_event("api-12-delete-note-unknown-id"), "id", note_id), FakeLambdaContext()
            )
        ),
        "gone": _status(
            api.handler(
                with_path_parameter(load_event("api-10-get-note-unknown-id"), "id", note_id), FakeLambdaContext()
            )
        ),
    }
    purge = scheduled.handler(load_event("scheduled-01-purge"), FakeLambdaContext(function_name="PurgeFunction"))
    summary = {
        "pg8000": version("pg8000"),
        "dialect": type(get_engine().dialect).__name__,
        "statuses": statuses,
        "purge_skipped": purge["skipped"],
    }
    sys.stdout.write(json.dumps({"handler_run": summary}) + "\n")


if __name__ == "__main__":
    main()
