"""What the sample's scheduled function imports at INIT (the bench's import baseline reads the same list)."""

from __future__ import annotations

from devtools.bench.coldstart import dependencies_of


def test_the_purge_function_imports_neither_the_orm_nor_the_web_stack() -> None:
    found = dependencies_of("handlers.scheduled")
    assert "sqlalchemy" in found
    # The purge stays on Core connections: the ORM is not part of its import cost (lib/sample_app/purge.py).
    assert "sqlalchemy.orm" not in found
    assert "fastapi" not in found
