"""Every kind of unit the kit offers, run in this process on the kit's own table; one JSON summary line last.

Run by test_driver_fallback.py in a subprocess whose PYTHONPATH puts another pg8000 release first, so the kit
imports and works exactly as it would after a dependency bump: the tiny app's health route (the ping) through its
Lambda handler, Core and ORM units (a write, a single-statement read, a read-only unit), a job lease.
"""

from __future__ import annotations

import json
import sys
import uuid
from importlib.metadata import version

from sqlalchemy import text

from devtools.testing.lambda_runtime import FakeLambdaContext
from lib.dbkit.engine import get_engine, run_in_transaction
from lib.dbkit.leases import job_lease
from lib.dbkit.session import run_in_session
from tests.kit import tiny_api
from tests.kit.integration.conftest import KIT_TEST_TABLE


def main() -> None:
    title = f"after a bump {uuid.uuid4()}"
    health = tiny_api.handler(tiny_api.tiny_api().app)(tiny_api.event("GET", "/health"), FakeLambdaContext())
    row_id = run_in_transaction(
        lambda c: c.execute(
            text(f"INSERT INTO {KIT_TEST_TABLE} (title) VALUES (:t) RETURNING id"), {"t": title}
        ).scalar_one()
    )
    read = run_in_transaction(
        lambda c: c.execute(text(f"SELECT title FROM {KIT_TEST_TABLE} WHERE id = :i"), {"i": row_id}).scalar_one(),
        single_statement=True,
        read_only=True,
    )
    in_session = run_in_session(
        lambda s: s.execute(text(f"SELECT count(*) FROM {KIT_TEST_TABLE} WHERE title = :t"), {"t": title}).scalar_one(),
        read_only=True,
    )
    with job_lease("dbkit-test-bump", seconds=30) as holder:
        leased = holder is not None
    summary = {
        "pg8000": version("pg8000"),
        "dialect": type(get_engine().dialect).__name__,
        "health": health["statusCode"],
        "read_back": read == title,
        "session_count": in_session,
        "leased": leased,
    }
    sys.stdout.write(json.dumps({"bump_run": summary}) + "\n")


if __name__ == "__main__":
    main()
