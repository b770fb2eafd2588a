"""The unit of work for ORM code: `run_in_session(work)`, a Session on run_in_transaction's connection and retries.

Imported only by code that uses the ORM, so handlers on Core connections do not pay for ``sqlalchemy.orm``.
"""

from __future__ import annotations

from collections.abc import Callable, Sequence
from typing import Any, TypeVar

import sqlalchemy.exc
from sqlalchemy import Connection, inspect
from sqlalchemy.orm import RelationshipDirection, Session

from lib.dbkit import pg_pipeline
from lib.dbkit.engine import run_in_transaction, unit_of
from lib.dbkit.errors import SingleStatementError, UnitOfWorkError
from lib.dbkit.observability import logger
from lib.dbkit.pg_errors import sqlstate

T = TypeVar("T")

_TO_MANY = (RelationshipDirection.ONETOMANY, RelationshipDirection.MANYTOMANY)
_MAPPER_FLUSH_HOOKS = (
    "before_insert",
    "after_insert",
    "before_update",
    "after_update",
    "before_delete",
    "after_delete",
)


def run_in_session(
    work: Callable[[Session], T],
    *,
    single_statement: bool = False,
    read_only: bool = False,
    idempotent: bool = False,
    after_lsn: str | None = None,
) -> T:
    """Run `work` with a Session in one unit of work: flushed and committed when it returns, or not at all.

    The same unit as run_in_transaction (one retry loop: limits, re-run once on a dead connection, unknown commit
    outcome, 503s, pool events), with an ORM Session on its connection. When `work` returns, the session is flushed
    (an `add()` without `flush()` is stored) and the transaction committed; `work` never commits: `commit()` and
    `rollback()` on the session raise UnitOfWorkError (raise from `work` to roll the unit back). `work` may run
    twice (a re-run gets a new session), so it must only touch the database through `session`.

    What `work` returns is usable after the unit: objects are detached but keep every attribute loaded in the unit
    (no expiry at commit; server defaults of an INSERT come back with RETURNING). Anything not loaded in the unit
    (a lazy relationship, a deferred column) raises DetachedInstanceError when read: load it in the unit
    (``selectinload``) or return plain values.

    `single_statement`: the whole unit is one statement, one round trip on the pipelined driver (no BEGIN/COMMIT).
    Nothing is flushed before `work` returns (no autoflush; `flush()` in `work` raises SingleStatementError); then
    one object's INSERT, UPDATE or DELETE, or one statement `work` ran itself, is the unit. A flush that would
    need more than one statement (several objects, related rows, a read before the write) raises
    SingleStatementError before anything of it is sent, so no part of the unit is committed alone.

    Without `single_statement`, when the final flush is one object's INSERT, UPDATE or DELETE and the unit only
    read before it, the pipelined driver sends COMMIT in the same flight as that statement (get-modify-flush in two
    round trips); a guard in that flight makes the server refuse if anything before it wrote, and then the unit
    is run again with COMMIT on its own.

    `read_only` units run on the read replica when one is configured, `after_lsn` as for run_in_transaction.
    """

    def unit(commit_with_flush: bool) -> Callable[[Connection], T]:
        def in_session(connection: Connection) -> T:
            with UnitSession(
                connection, single_statement=single_statement, commit_with_flush=commit_with_flush
            ) as session:
                result = work(session)
                session.finish()
                return result

        return in_session

    flags: dict[str, Any] = {
        "single_statement": single_statement,
        "read_only": read_only,
        "idempotent": idempotent,
        "after_lsn": after_lsn,
    }
    try:
        return run_in_transaction(unit(commit_with_flush=True), **flags)
    except sqlalchemy.exc.DBAPIError as error:
        if sqlstate(error) != pg_pipeline.COMMIT_GUARD_SQLSTATE:
            raise
    # A statement before the last one wrote although it looked like a plain SELECT (a function with side effects):
    # the server refused to let COMMIT ride, so nothing was committed. Run the unit with COMMIT on its own.
    logger.info("unit of work run again without COMMIT riding with its last statement")
    return run_in_transaction(unit(commit_with_flush=False), **flags)


class UnitSession(Session):
    """The Session of one unit of work: bound to the unit's connection; the unit, not the work, commits."""

    def __init__(
        self, connection: Connection, *, single_statement: bool = False, commit_with_flush: bool = False
    ) -> None:
        # rollback_only: the session joins the unit's transaction and never commits it; a failed flush rolls it back.
        # expire_on_commit=False: objects stay loaded after the unit. No autoflush in a single-statement unit: a
        # query must not flush pending objects as a statement of their own.
        super().__init__(
            bind=connection,
            join_transaction_mode="rollback_only",
            expire_on_commit=False,
            autoflush=not single_statement,
        )
        self._unit_connection = connection
        self._single_statement = single_statement
        self._commit_with_flush = commit_with_flush and not single_statement
        self._finishing = False

    def commit(self) -> None:
        raise UnitOfWorkError(
            "work must not commit: the unit of work commits once, when work returns (session.flush() sends pending "
            "changes now)"
        )

    def rollback(self) -> None:
        raise UnitOfWorkError("work must not roll back: raise an exception from work and nothing of the unit is stored")

    def flush(self, objects: Sequence[Any] | None = None) -> None:
        if self._single_statement:
            if not self._finishing:
                raise SingleStatementError(
                    "flush() inside a single_statement unit would send a statement of its own: the unit flushes "
                    "once, after work returns; drop single_statement to flush earlier"
                )
            problem = self._already_sent() or self._not_one_statement()
            if problem is not None:
                raise SingleStatementError(
                    f"a single_statement unit sends one statement, but its flush {problem}; nothing was sent for "
                    "it: run it in a unit without single_statement"
                )
        super().flush(objects)

    def finish(self) -> None:
        """Flush what `work` left pending (the unit commits right after)."""
        self._finishing = True
        driver = self._unit_connection.connection.dbapi_connection
        prefix = self._last_statement_prefix() if self._commit_with_flush else None
        if prefix is None or not isinstance(driver, pg_pipeline.PipelinedConnection):
            self.flush()
            return
        driver.commit_with_next_statement(prefix)
        try:
            self.flush()
        finally:
            driver.commit_with_next_statement(None)

    def _changed(self) -> list[Any]:
        """Objects the flush writes a row of (a parent that only gained new children writes none itself)."""
        dirty = [o for o in self.dirty if self.is_modified(o) and not self._only_gained_new_children(o)]
        return [*self.new, *self.deleted, *dirty]

    def _only_gained_new_children(self, parent: Any) -> bool:
        # Appending a new child to a one-to-many collection is the child's INSERT (it carries the key); a removal
        # or a moved child is an UPDATE of that child, which may not show as dirty itself.
        state = inspect(parent)
        changed = [attribute for attribute in state.attrs if attribute.history.has_changes()]
        for attribute in changed:
            relationship = state.mapper.relationships.get(attribute.key)
            if relationship is None or relationship.direction is not RelationshipDirection.ONETOMANY:
                return False
            history = attribute.history
            if relationship.post_update or history.deleted or any(child not in self.new for child in history.added):
                return False
        return bool(changed)

    def _already_sent(self) -> str | None:
        unit = unit_of(self._unit_connection)
        if unit is not None and unit.statements and self._changed():
            return "would be a second statement after the one work already sent"
        return None

    def _not_one_statement(self) -> str | None:
        """Why flushing now would not be exactly one statement (or none), or None when it would be."""
        changed = self._changed()
        if not changed:
            return None
        if len(changed) > 1:
            return f"would write {len(changed)} objects"
        target = changed[0]
        deleting = target in self.deleted
        state = inspect(target)
        mapper = state.mapper
        name = mapper.class_.__name__
        if len(mapper.tables) > 1:
            return f"would write {name} to {len(mapper.tables)} tables (inheritance)"
        for relationship in mapper.relationships:
            changed_here = state.attrs[relationship.key].history.has_changes()
            if changed_here and (relationship.direction in _TO_MANY or relationship.post_update):
                return f"would also write the rows of {name}.{relationship.key}"
            if deleting and relationship.direction in _TO_MANY and relationship.passive_deletes != "all":
                return f"would also load or change the rows of {name}.{relationship.key} when deleting"
        return None

    def _last_statement_prefix(self) -> str | None:
        """How the flush's one statement starts, when COMMIT may ride with it; None when it may not."""
        unit = unit_of(self._unit_connection)
        changed = self._changed()
        if unit is None or unit.may_have_written or len(changed) != 1 or self._not_one_statement() is not None:
            return None
        target = changed[0]
        state = inspect(target)
        mapper = state.mapper
        # Listeners may add work to the flush or run SQL of their own; a key change may touch dependent rows.
        session_hooks = self.dispatch.before_flush or self.dispatch.after_flush or self.dispatch.after_flush_postexec
        mapper_hooks = any(getattr(mapper.dispatch, hook) for hook in _MAPPER_FLUSH_HOOKS)
        keys = (mapper.get_property_by_column(column).key for column in mapper.primary_key)
        key_changed = any(state.attrs[key].history.has_changes() for key in keys)
        if session_hooks or mapper_hooks or (state.key is not None and key_changed):
            return None
        table = self._unit_connection.dialect.identifier_preparer.format_table(mapper.local_table)
        if target in self.new:
            return f"INSERT INTO {table} "
        return f"DELETE FROM {table} " if target in self.deleted else f"UPDATE {table} "
