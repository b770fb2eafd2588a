"""The ORM unit of work (lib.dbkit.session.run_in_session) on the real stack, as an adopter writes ORM code.

Models and tables of their own (created and dropped here), so the proof does not depend on the sample app. Runs on
both drivers (the Makefile runs it again with DB_DRIVER=stock); round-trip counts are the pipelined driver's.
"""

from __future__ import annotations

import json
import os
import threading
import time
import uuid
from collections.abc import Callable, Iterator
from datetime import datetime
from typing import Any

import pytest
import sqlalchemy.exc
from fastapi import FastAPI
from sqlalchemy import Connection, ForeignKey, String, delete, func, insert, select, text, update
from sqlalchemy.orm import DeclarativeBase, Mapped, Session, mapped_column, relationship, selectinload
from sqlalchemy.orm.exc import DetachedInstanceError, StaleDataError

from devtools.proxy import Proxy
from devtools.testing.database import DatabaseTarget
from devtools.testing.lambda_runtime import FakeLambdaContext, configure_serverless
from devtools.testing.logs import captured_logs
from devtools.testing.proxied import ReplyLost, flights, proxied_app
from lib.dbkit import engine as db
from lib.dbkit import invocation
from lib.dbkit.errors import CommitOutcomeUnknownError, SingleStatementError, UnitOfWorkError
from lib.dbkit.http import create_api
from lib.dbkit.pg_errors import sqlstate
from lib.dbkit.session import run_in_session
from lib.dbkit.settings import Settings
from tests.kit import tiny_api

STOCK = os.environ.get("DB_DRIVER") == "stock"


class Base(DeclarativeBase):
    pass


class Author(Base):
    __tablename__ = "uow_test_authors"

    id: Mapped[uuid.UUID] = mapped_column(primary_key=True, default=uuid.uuid4)
    name: Mapped[str] = mapped_column(String(200), unique=True)
    bio: Mapped[str] = mapped_column(default="")
    created_at: Mapped[datetime] = mapped_column(server_default=func.now())
    books: Mapped[list[Book]] = relationship(back_populates="author", order_by="Book.title")


class Book(Base):
    __tablename__ = "uow_test_books"

    id: Mapped[uuid.UUID] = mapped_column(primary_key=True, default=uuid.uuid4)
    author_id: Mapped[uuid.UUID] = mapped_column(ForeignKey("uow_test_authors.id", ondelete="CASCADE"))
    title: Mapped[str] = mapped_column(String(200))
    author: Mapped[Author] = relationship(back_populates="books")


class LogLine(Base):
    __tablename__ = "uow_test_log"

    id: Mapped[int] = mapped_column(primary_key=True)
    note: Mapped[str]


# A function that writes, called from a SELECT: the client cannot tell, the server can.
_CREATE_LOG_FUNCTION = text(
    "CREATE FUNCTION uow_test_log(line text) RETURNS int LANGUAGE sql "
    "AS $$ INSERT INTO uow_test_log (note) VALUES (line) RETURNING 1 $$"
)
_DROP_LOG_FUNCTION = text("DROP FUNCTION IF EXISTS uow_test_log(text)")


@pytest.fixture(scope="module")
def tables(database: DatabaseTarget) -> Iterator[Callable[[str], list[Any]]]:
    """The module's tables, created over the direct URL and dropped at the end; yields another client's `query`."""
    engine = db.build_engine(
        Settings.from_env(
            {"DATABASE_URL": database.direct_url, "DB_POOLER_HOSTS": database.pooler_hosts, "DB_MODE": "migration"}
        )
    )

    def drop() -> None:
        with engine.begin() as connection:
            connection.execute(_DROP_LOG_FUNCTION)
        Base.metadata.drop_all(engine)

    drop()
    Base.metadata.create_all(engine)
    with engine.begin() as connection:
        connection.execute(_CREATE_LOG_FUNCTION)

    def query(sql: str, **params: Any) -> list[Any]:
        """Another client's statement, committed: it sees what was committed, nothing else."""
        with engine.begin() as connection:
            result = connection.execute(text(sql), params)
            return list(result.all()) if result.returns_rows else []

    try:
        yield query
    finally:
        drop()
        engine.dispose()


@pytest.fixture
def app_db(database: DatabaseTarget, monkeypatch: pytest.MonkeyPatch, tables: Any) -> Iterator[None]:
    configure_serverless(monkeypatch, pooled_url=database.pooled_url, pooler_hosts=database.pooler_hosts)
    yield
    db.dispose_engine()


@pytest.fixture
def counted(database: DatabaseTarget, monkeypatch: pytest.MonkeyPatch, tables: Any) -> Iterator[Proxy]:
    with proxied_app(database.pooled_url, monkeypatch) as proxy:
        yield proxy


@pytest.fixture
def reply_lost(counted: Proxy) -> ReplyLost:
    db.run_in_transaction(lambda c: c.execute(text("select 1")).all())  # connected: the fault hits a statement
    return ReplyLost(counted)


def _name(what: str) -> str:
    return f"{what} {uuid.uuid4()}"


def _authors_named(query: Callable[..., list[Any]], name: str) -> int:
    return len(query("SELECT id FROM uow_test_authors WHERE name = :name", name=name))


def _new_author(name: str) -> Author:
    def add(session: Session) -> Author:
        author = Author(name=name, bio="first")
        session.add(author)
        return author

    return run_in_session(add, single_statement=True)


# Pitfall: an add() without flush() used to be committed as nothing.


def test_an_add_without_flush_is_stored(app_db: None, tables: Callable[..., list[Any]]) -> None:
    name = _name("lost add")
    run_in_session(lambda session: session.add(Author(name=name)))
    assert _authors_named(tables, name) == 1


def test_a_single_statement_add_is_stored_with_its_server_defaults(
    app_db: None, tables: Callable[..., list[Any]]
) -> None:
    name = _name("one insert")
    author = _new_author(name)
    assert _authors_named(tables, name) == 1
    # Fetched by the INSERT's RETURNING: readable after the unit without a query.
    assert isinstance(author.created_at, datetime)


# Pitfall: objects returned after the unit were detached and expired (DetachedInstanceError).


def test_results_are_detached_but_loaded_after_the_unit(app_db: None) -> None:
    author_id = _new_author(_name("detached")).id

    def author_with_books(session: Session) -> Author:
        author = session.get(Author, author_id, options=[selectinload(Author.books)])
        assert author is not None
        author.books.append(Book(title="first book"))
        return author

    author = run_in_session(author_with_books)
    assert sqlalchemy.inspect(author).detached
    assert (author.name, author.bio) == (author.name, "first")
    assert [book.title for book in author.books] == ["first book"]
    assert author.books[0].id is not None

    plain = run_in_session(lambda session: session.get(Author, author_id), single_statement=True, read_only=True)
    assert plain is not None
    assert plain.name == author.name
    # Never loaded in the unit: a lazy load has no session to run in after it (documented: load it in the unit).
    with pytest.raises(DetachedInstanceError):
        _ = plain.books


def test_commit_and_rollback_inside_the_unit_are_refused(app_db: None, tables: Callable[..., list[Any]]) -> None:
    name = _name("commit inside")

    def commits(session: Session) -> None:
        session.add(Author(name=name))
        session.commit()

    with pytest.raises(UnitOfWorkError, match="commits once"):
        run_in_session(commits)
    with pytest.raises(UnitOfWorkError, match="raise an exception"):
        run_in_session(lambda session: session.rollback())
    assert _authors_named(tables, name) == 0


def test_an_exception_from_work_stores_nothing(app_db: None, tables: Callable[..., list[Any]]) -> None:
    name = _name("raised")

    def fails_after_flush(session: Session) -> None:
        session.add(Author(name=name))
        session.flush()
        raise LookupError("the work changed its mind")

    with pytest.raises(LookupError):
        run_in_session(fails_after_flush)
    assert _authors_named(tables, name) == 0


# Pitfall: single_statement around a flush of several statements committed part of the unit.


def test_a_flush_of_several_statements_is_refused_before_anything_is_sent(
    app_db: None, tables: Callable[..., list[Any]]
) -> None:
    name = _name("parent and child")

    def author_and_book(session: Session) -> None:
        session.add(Author(name=name, books=[Book(title="child")]))

    with pytest.raises(SingleStatementError, match="would write 2 objects; nothing was sent"):
        run_in_session(author_and_book, single_statement=True)
    assert _authors_named(tables, name) == 0
    # The same unit without the promise is one transaction: both rows.
    run_in_session(author_and_book)
    assert (
        len(
            tables(
                "SELECT b.id FROM uow_test_books b JOIN uow_test_authors a ON a.id = b.author_id WHERE a.name = :name",
                name=name,
            )
        )
        == 1
    )


def test_a_new_child_of_a_known_parent_is_one_statement(app_db: None, tables: Callable[..., list[Any]]) -> None:
    author = _new_author(_name("known parent"))

    def add_book(session: Session) -> None:
        parent = session.merge(author, load=False)  # the caller's detached object, back in a session (no query)
        session.add(Book(title="one insert", author=parent))

    run_in_session(add_book, single_statement=True)
    rows = tables("SELECT title FROM uow_test_books WHERE author_id = :id", id=author.id)
    assert [row.title for row in rows] == ["one insert"]


def test_a_flush_inside_a_single_statement_unit_is_refused(app_db: None, tables: Callable[..., list[Any]]) -> None:
    name = _name("flush then child")

    def parent_flushed_then_child(session: Session) -> None:
        author = Author(name=name)
        session.add(author)
        session.flush()  # would send the parent's INSERT as a statement (and, here, a transaction) of its own
        session.add(Book(title="child", author=author))

    with pytest.raises(SingleStatementError, match="flushes once"):
        run_in_session(parent_flushed_then_child, single_statement=True)
    assert _authors_named(tables, name) == 0


def test_a_read_then_a_write_in_a_single_statement_unit_is_refused(
    app_db: None, tables: Callable[..., list[Any]]
) -> None:
    name = _name("get modify")
    author_id = _new_author(name).id

    def rename(session: Session) -> None:
        author = session.get(Author, author_id)
        assert author is not None
        author.bio = "changed"

    with pytest.raises(SingleStatementError, match="second statement"):
        run_in_session(rename, single_statement=True)
    assert [row.bio for row in tables("SELECT bio FROM uow_test_authors WHERE id = :id", id=author_id)] == ["first"]


def test_deleting_an_object_with_related_rows_is_refused_in_a_single_statement_unit(
    app_db: None, tables: Callable[..., list[Any]]
) -> None:
    name = _name("delete parent")
    run_in_session(lambda session: session.add(Author(name=name, books=[Book(title="kept")])))

    def delete_author(session: Session) -> None:
        author = session.scalars(select(Author).where(Author.name == name)).one()
        session.delete(author)

    with pytest.raises(SingleStatementError):
        run_in_session(delete_author, single_statement=True)
    assert _authors_named(tables, name) == 1


def test_a_second_core_statement_is_refused_before_it_is_sent(app_db: None, tables: Callable[..., list[Any]]) -> None:
    name = _name("core second")

    def read_then_insert(connection: Connection) -> None:
        connection.execute(text("SELECT 1")).all()
        connection.execute(insert(Author).values(id=uuid.uuid4(), name=name, bio=""))

    with pytest.raises(SingleStatementError, match="second statement"):
        db.run_in_transaction(read_then_insert, single_statement=True)
    rows = [{"id": uuid.uuid4(), "name": f"{name} {n}", "bio": ""} for n in range(2)]
    # executemany without RETURNING is one statement per row on pg8000: refused before the first row is sent.
    with pytest.raises(SingleStatementError, match="several times"):
        db.run_in_transaction(lambda c: c.execute(insert(Author), rows), single_statement=True)
    assert tables("SELECT id FROM uow_test_authors WHERE name LIKE :prefix", prefix=f"{name}%") == []


def test_one_statement_units_by_statement(app_db: None, tables: Callable[..., list[Any]]) -> None:
    name = _name("by statement")
    rows = [{"name": f"{name} {n}", "bio": ""} for n in range(3)]
    # Several rows in one statement (insertmanyvalues with RETURNING) fit a single-statement unit.
    ids = run_in_session(
        lambda session: list(session.scalars(insert(Author).returning(Author.id), rows)), single_statement=True
    )
    assert len(ids) == 3
    run_in_session(
        lambda session: session.execute(update(Author).where(Author.id == ids[0]).values(bio="updated")),
        single_statement=True,
    )
    run_in_session(lambda session: session.execute(delete(Author).where(Author.id == ids[1])), single_statement=True)
    stored = tables("SELECT id, bio FROM uow_test_authors WHERE name LIKE :prefix", prefix=f"{name}%")
    assert {(row.id, row.bio) for row in stored} == {(ids[0], "updated"), (ids[2], "")}


def test_read_only_units_refuse_orm_writes(app_db: None, tables: Callable[..., list[Any]]) -> None:
    name = _name("read only")
    for single_statement in (False, True):
        with pytest.raises(sqlalchemy.exc.DBAPIError) as raised:
            run_in_session(
                lambda session: session.add(Author(name=name)), read_only=True, single_statement=single_statement
            )
        assert sqlstate(raised.value) == "25006"
    assert _authors_named(tables, name) == 0


# COMMIT riding with the last statement of the flush (pipelined driver): never with anything written before it.


def test_commit_rides_only_when_nothing_before_the_last_statement_wrote(
    app_db: None, tables: Callable[..., list[Any]]
) -> None:
    author_id = _new_author(_name("guarded")).id
    line = _name("written by a select")
    runs: list[int] = []

    def log_then_modify(session: Session) -> None:
        runs.append(1)
        session.execute(select(func.uow_test_log(line)))  # looks like a read, writes a row
        session.get_one(Author, author_id).bio = "after the log line"

    with captured_logs() as logs:
        run_in_session(log_then_modify)
    # The server refused to let COMMIT ride (its guard saw the write): nothing committed, the unit ran once more
    # with COMMIT on its own. The stock driver never lets it ride.
    assert len(runs) == (1 if STOCK else 2)
    assert any(r["message"].startswith("unit of work run again without COMMIT") for r in logs.records) is not STOCK
    assert len(tables("SELECT id FROM uow_test_log WHERE note = :line", line=line)) == 1
    assert [r.bio for r in tables("SELECT bio FROM uow_test_authors WHERE id = :id", id=author_id)] == [
        "after the log line"
    ]


def test_an_update_that_matches_no_row_stores_nothing(app_db: None, tables: Callable[..., list[Any]]) -> None:
    name = _name("deleted meanwhile")
    author_id = _new_author(name).id

    def modify_a_row_deleted_meanwhile(session: Session) -> None:
        author = session.get_one(Author, author_id)
        tables("DELETE FROM uow_test_authors WHERE id = :id", id=author_id)  # another client, committed
        author.bio = "lost"

    with pytest.raises(StaleDataError):
        run_in_session(modify_a_row_deleted_meanwhile)
    assert _authors_named(tables, name) == 0


def test_a_failing_last_statement_takes_its_commit_with_it(app_db: None, tables: Callable[..., list[Any]]) -> None:
    taken, mine = _name("taken"), _name("mine")
    _new_author(taken)
    author_id = _new_author(mine).id

    def rename_to_a_taken_name(session: Session) -> None:
        session.get_one(Author, author_id).name = taken

    with pytest.raises(sqlalchemy.exc.DBAPIError) as raised:
        run_in_session(rename_to_a_taken_name)
    assert sqlstate(raised.value) == "23505"
    assert _authors_named(tables, mine) == 1
    assert _authors_named(tables, taken) == 1


@pytest.mark.pipelined_driver
def test_a_lost_reply_to_the_flight_carrying_commit_is_an_unknown_outcome(
    reply_lost: ReplyLost, tables: Callable[..., list[Any]]
) -> None:
    author_id = _new_author(_name("commit rode")).id

    def modify(session: Session) -> None:
        session.get_one(Author, author_id).bio = "landed"
        reply_lost.arm()  # the next flight is the UPDATE with COMMIT

    with pytest.raises(CommitOutcomeUnknownError):
        run_in_session(modify)
    assert reply_lost.armed == 1, "not re-run"
    assert [r.bio for r in tables("SELECT bio FROM uow_test_authors WHERE id = :id", id=author_id)] == ["landed"]


# Pitfall: a Session on get_engine() had no server-side limits on the stock driver.

_SHOW_LIMITS = text(
    "SELECT current_setting('statement_timeout'), current_setting('lock_timeout'), "
    "current_setting('idle_in_transaction_session_timeout')"
)


def test_limits_follow_the_deadline_in_both_forms_and_in_a_session_on_the_engine(app_db: None) -> None:
    def direct_session() -> tuple[str, ...]:
        with Session(db.get_engine()) as session, session.begin():
            return tuple(session.execute(_SHOW_LIMITS).one())

    invocation.start(FakeLambdaContext(timeout_ms=3000))
    try:
        seen = {
            "run_in_session": run_in_session(lambda session: tuple(session.execute(_SHOW_LIMITS).one())),
            "run_in_session single_statement": run_in_session(
                lambda session: tuple(session.execute(_SHOW_LIMITS).one()), single_statement=True, read_only=True
            ),
            "run_in_transaction": db.run_in_transaction(lambda c: tuple(c.execute(_SHOW_LIMITS).one())),
            "Session(get_engine())": direct_session(),
        }
    finally:
        invocation.finish()
    for form, (statement_ms, lock_ms, idle_ms) in seen.items():
        assert 1500 <= int(statement_ms.removesuffix("ms")) <= 2250, form
        assert lock_ms == statement_ms, form
        assert 1500 <= int(idle_ms.removesuffix("ms")) <= 2500, form


def test_a_session_unit_is_re_run_once_on_a_dead_connection(
    reply_lost: ReplyLost, tables: Callable[..., list[Any]]
) -> None:
    name = _name("re-run")
    runs: list[int] = []

    def read_then_add(session: Session) -> int:
        runs.append(1)
        if reply_lost.armed == 0:
            reply_lost.arm()
        count = session.scalar(select(func.count()).select_from(Author).where(Author.name == name))
        session.add(Author(name=name))
        return count or 0

    with captured_logs() as logs:
        assert run_in_session(read_then_add) == 0
    assert (len(runs), reply_lost.armed) == (2, 1)
    assert _authors_named(tables, name) == 1
    (line,) = [r for r in logs.records if r["message"] == "transaction failed on a dead connection"]
    assert (line["commit_sent"], line["retrying"]) == (False, True)


def test_an_unknown_commit_outcome_is_re_run_only_when_idempotent(
    reply_lost: ReplyLost, tables: Callable[..., list[Any]]
) -> None:
    name = _name("commit lost")
    author_id = uuid.uuid4()

    def upsert(session: Session) -> None:
        # Idempotent by key: merge() finds the row a landed first attempt stored.
        session.merge(Author(id=author_id, name=name, bio="merged"))
        session.flush()
        if reply_lost.armed < 2:
            reply_lost.arm()  # COMMIT is sent next

    with pytest.raises(CommitOutcomeUnknownError):
        run_in_session(upsert)
    assert reply_lost.armed == 1
    with captured_logs() as logs:
        run_in_session(upsert, idempotent=True)
    assert reply_lost.armed == 2
    assert _authors_named(tables, name) == 1
    lines = [r for r in logs.records if r["message"] == "transaction failed on a dead connection"]
    assert [(r["commit_sent"], r["retrying"]) for r in lines] == [(True, True)]


def test_checkout_wait_is_measured_for_both_forms_and_a_direct_session(app_db: None) -> None:
    def direct_session() -> int:
        with Session(db.get_engine()) as session, session.begin():
            return int(session.execute(text("select 1")).scalar_one())

    forms: dict[str, Callable[[], object]] = {
        "run_in_session": lambda: run_in_session(lambda session: session.execute(text("select 1")).all()),
        "run_in_transaction": lambda: db.run_in_transaction(lambda c: c.execute(text("select 1")).all()),
        "Session(get_engine())": direct_session,
    }
    db.run_in_transaction(lambda c: c.execute(text("select 1")).all())  # the pool's one connection exists
    for form, action in forms.items():
        held = db.get_engine().connect()  # the only pooled connection, released 0.3 s from now
        threading.Timer(0.3, held.close).start()
        context = FakeLambdaContext()
        with captured_logs() as logs:
            invocation.start(context)
            action()
            invocation.finish()
        (checkout,) = [line for line in logs.with_key("pool_event") if line["pool_event"] == "checkout"]
        assert checkout["checkout_wait_ms"] >= 250, form
        (summary,) = logs.with_key("pool_summary")
        assert summary["pool_summary"]["checkout_wait_ms"] >= 250, form
        assert summary["pool_summary"]["request_id"] == context.aws_request_id


# Pitfall: on a Session used directly, a dead connection was a raw InterfaceError and a refused one a 500.


def _orm_app() -> Callable[[dict[str, Any], FakeLambdaContext], dict[str, Any]]:
    """The kit's HTTP error handling (lib.dbkit.http) with two routes: a Session on get_engine(), and run_in_session."""
    app: FastAPI = create_api()

    @app.get("/authors/{author_id}/direct")
    def direct(author_id: uuid.UUID) -> dict[str, str]:
        with Session(db.get_engine()) as session, session.begin():
            author = session.get(Author, author_id)
            return {"name": author.name if author else ""}

    @app.get("/authors/{author_id}")
    def in_unit(author_id: uuid.UUID) -> dict[str, str]:
        author = run_in_session(lambda s: s.get(Author, author_id), single_statement=True, read_only=True)
        return {"name": author.name if author else ""}

    handler: Callable[[dict[str, Any], FakeLambdaContext], dict[str, Any]] = tiny_api.handler(app)
    return handler


def _get(path: str) -> dict[str, Any]:
    return tiny_api.event("GET", path)


def _answer(response: dict[str, Any]) -> tuple[int, str | None, str | None]:
    body = json.loads(response["body"])
    code = body["error"]["code"] if "error" in body else None
    return response["statusCode"], code, response.get("headers", {}).get("retry-after")


def test_driver_errors_on_a_direct_session_answer_503(reply_lost: ReplyLost, counted: Proxy) -> None:
    author_id = _new_author(_name("http")).id
    handler = _orm_app()

    def call(path: str) -> tuple[int, str | None, str | None]:
        return _answer(handler(_get(path), FakeLambdaContext(timeout_ms=3000)))

    assert call(f"/authors/{author_id}/direct")[0] == 200
    reply_lost.arm()  # the direct session's statement loses its reply: the connection dies mid-request
    with captured_logs() as logs:
        assert call(f"/authors/{author_id}/direct") == (503, "database_unavailable", "1")
    assert not [line for line in logs.records if line["message"] == "unhandled error"]

    counted.refuse_for(10)  # the compute is away: every new connection is reset at once
    counted.drop_connections()
    started = time.monotonic()
    assert call(f"/authors/{author_id}/direct") == (503, "database_unavailable", "1")
    assert time.monotonic() - started < 3
    counted.refuse_for(0)

    # The kit's unit re-runs a read on a fresh connection instead.
    assert call(f"/authors/{author_id}")[0] == 200
    reply_lost.arm()
    assert call(f"/authors/{author_id}")[0] == 200
    assert reply_lost.armed == 2


# Round trips of the ORM unit of work (pipelined driver; the stock driver's are reported in bench/results.md).


@pytest.mark.pipelined_driver
def test_round_trips_of_orm_units(counted: Proxy) -> None:
    name = _name("round trips")
    author_id = _new_author(name).id
    run_in_session(lambda session: session.get(Author, author_id))  # warm

    def get_modify_flush(session: Session) -> None:
        author = session.get(Author, author_id)
        assert author is not None
        author.bio = "modified"

    def add_a_book(session: Session) -> None:
        author = session.get_one(Author, author_id)
        session.add(Book(title="added", author=author))  # the backref queues it in author.books without a load

    def locked_modify(session: Session) -> None:
        # The row lock must last until COMMIT: COMMIT does not ride (the guard would refuse it anyway).
        session.get_one(Author, author_id, with_for_update=True).bio = "modified under a lock"

    book_id = run_in_session(lambda s: _add_book(s, author_id))

    def get_and_delete(session: Session) -> None:
        book = session.get(Book, book_id)
        assert book is not None
        session.delete(book)

    extra = _new_author(_name("deleted by statement")).id
    measured = {
        "get by key": flights(
            counted,
            lambda: run_in_session(lambda s: s.get(Author, author_id), single_statement=True, read_only=True),
        ),
        "select page": flights(
            counted,
            lambda: run_in_session(
                lambda s: list(s.scalars(select(Author).order_by(Author.created_at.desc()).limit(20))),
                single_statement=True,
                read_only=True,
            ),
        ),
        "one-row insert": flights(counted, lambda: _new_author(_name("counted insert"))),
        "one-row insert, ordinary unit": flights(
            counted, lambda: run_in_session(lambda s: s.add(Author(name=_name("ordinary insert"))))
        ),
        "get-modify-flush update": flights(counted, lambda: run_in_session(get_modify_flush)),
        "get, add a child": flights(counted, lambda: run_in_session(add_a_book)),
        "get FOR UPDATE-modify-flush": flights(counted, lambda: run_in_session(locked_modify)),
        "get and delete": flights(counted, lambda: run_in_session(get_and_delete)),
        "delete by statement": flights(
            counted,
            lambda: run_in_session(
                lambda s: s.execute(delete(Author).where(Author.id == extra)), single_statement=True
            ),
        ),
        "direct Session get": flights(counted, lambda: _direct_get(author_id)),
    }
    assert measured == {
        "get by key": 1,
        "select page": 1,
        "one-row insert": 1,
        "one-row insert, ordinary unit": 1,
        "get-modify-flush update": 2,
        "get, add a child": 2,
        "get FOR UPDATE-modify-flush": 3,
        "get and delete": 2,
        "delete by statement": 1,
        "direct Session get": 2,
    }


def _add_book(session: Session, author_id: uuid.UUID) -> uuid.UUID:
    book = Book(title="counted", author_id=author_id)
    session.add(book)
    session.flush()
    return book.id


def _direct_get(author_id: uuid.UUID) -> None:
    with Session(db.get_engine()) as session, session.begin():
        session.get(Author, author_id)
