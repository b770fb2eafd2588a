"""handlers.scheduled.handler against the local stack: a run takes the job lease, a second run meanwhile skips."""

from __future__ import annotations

from collections.abc import Iterator

import pytest
from sqlalchemy import text

from devtools.app_config import load_app_config
from devtools.events import event_names, load_event
from devtools.testing.database import DatabaseTarget
from devtools.testing.lambda_runtime import FakeLambdaContext, configure_serverless, reset_database_state
from handlers.scheduled import handler
from lib.dbkit.engine import run_in_transaction
from lib.dbkit.leases import job_lease

from lib.sample_app.purge import JOB_NAME

# What each scheduled event in events/ does: app.toml's [events] (returns, or raises an error type).
EXPECTED_OUTCOME = {
    name: expected for name, expected in load_app_config().events.items() if name.startswith("scheduled-")
}


@pytest.fixture
def serverless(monkeypatch: pytest.MonkeyPatch, database: DatabaseTarget, schema: None) -> Iterator[None]:
    configure_serverless(monkeypatch, pooled_url=database.pooled_url, pooler_hosts=database.pooler_hosts)
    # A run killed mid-test elsewhere must not make these tests skip.
    run_in_transaction(
        lambda c: c.execute(text("UPDATE job_leases SET locked_until = now() WHERE name = :n"), {"n": JOB_NAME})
    )
    yield
    reset_database_state()


def context() -> FakeLambdaContext:
    return FakeLambdaContext(function_name="PurgeFunction", timeout_ms=120_000)


@pytest.mark.usefixtures("serverless")
def test_every_scheduled_event_has_the_documented_outcome() -> None:
    assert set(EXPECTED_OUTCOME) == set(event_names("scheduled-")), "add the new event's outcome to app.toml [events]"
    for name in event_names("scheduled-"):
        expected = EXPECTED_OUTCOME[name]
        if expected.raises is None:
            assert handler(load_event(name), context())["skipped"] is False, name
        else:
            with pytest.raises(Exception) as raised:  # noqa: PT011 - the type is app.toml's, checked by name
                handler(load_event(name), context())
            assert type(raised.value).__name__ == expected.raises, name


@pytest.mark.usefixtures("serverless")
def test_a_run_while_another_holds_the_lease_skips() -> None:
    with job_lease(JOB_NAME, seconds=60) as holder:
        assert holder is not None
        assert handler(load_event("scheduled-01-run"), context())["skipped"] is True
    assert handler(load_event("scheduled-01-run"), context())["skipped"] is False
