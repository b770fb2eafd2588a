"""The seed configuration: what a typical FastAPI + SQLAlchemy guide builds, kept as the bench's fixed baseline.

The psycopg 3 peers run the same app on a ``postgresql+psycopg`` engine (create_psycopg_engine).

QueuePool 5/10 with ``pool_pre_ping``, the stock ``postgresql+pg8000`` dialect, one Session per request through a
FastAPI dependency, reads closed without commit, writes committed. It is built here with ``create_engine`` directly
(not through the kit's settings/engine) so it stays the baseline whatever the template's engine becomes. The routes
call the same lib.sample_app notes/purge data functions and return the same models as lib.sample_app.api, and the
handler wears the same Powertools decorators as handlers.api, so the only difference measured is the connection layer.
"""

from __future__ import annotations

import ssl
import uuid
from collections.abc import Callable, Iterator
from typing import Annotated, Any
from uuid import UUID

from aws_lambda_powertools.logging import correlation_paths
from fastapi import Depends, FastAPI, HTTPException, Request
from mangum import Mangum
from sqlalchemy import URL, Engine, NullPool, create_engine, text
from sqlalchemy.orm import Session, sessionmaker

from lib.dbkit import leases
from lib.dbkit.dsn import DatabaseUrl
from lib.dbkit.observability import logger, metrics

from lib.sample_app import notes, purge
from lib.sample_app.api import NoteCreate, NoteOut, NotePageOut
from lib.sample_app.errors import NoteNotFoundError

Handler = Callable[[dict[str, Any], Any], dict[str, Any]]


def get_session(request: Request) -> Iterator[Session]:
    """The guide's per-request Session dependency (closed, not committed, when the request ends)."""
    with request.app.state.sessions() as session:
        yield session


db = Annotated[Session, Depends(get_session)]


def create_seed_engine(url: DatabaseUrl) -> Engine:
    """QueuePool 5/10 + pre-ping on the plain pg8000 dialect; TLS verified against the URL's CA file."""
    return create_engine(
        url.sqlalchemy_url(),
        pool_size=5,
        max_overflow=10,
        pool_pre_ping=True,
        connect_args={"ssl_context": ssl.create_default_context(cafile=url.sslrootcert)},
    )


def create_psycopg_engine(url: DatabaseUrl, *, pool: str, autocommit: bool = False) -> Engine:
    """psycopg 3 through ``postgresql+psycopg`` as SQLAlchemy's docs set it up behind PgBouncer: no prepared statements.

    pool="null": NullPool, a new connection per request; pool="tiny": one pooled connection (pool_size=1, no
    overflow, no pre-ping). autocommit=True: ``isolation_level="AUTOCOMMIT"``, no BEGIN/COMMIT at all; safe behind a
    transaction pooler with libpq, which ends every statement with its own Sync, though a unit of several statements
    is then no longer atomic.
    """
    target = URL.create(
        "postgresql+psycopg",
        username=url.user,
        password=url.password,
        host=url.host,
        port=url.port,
        database=url.database,
        query={"sslmode": "verify-full", "sslrootcert": url.sslrootcert or ""},
    )
    # prepare_threshold=None: psycopg would otherwise prepare a statement on its 5th use, which a transaction
    # pooler without protocol-level prepared statement support (PgBouncer < 1.21) routes to the wrong server.
    options: dict[str, Any] = {"connect_args": {"prepare_threshold": None}}
    if pool == "null":
        options["poolclass"] = NullPool
    elif pool == "tiny":
        options.update(pool_size=1, max_overflow=0)
    else:
        raise ValueError(f"unknown pool {pool!r}: null or tiny")
    if autocommit:
        options["isolation_level"] = "AUTOCOMMIT"
    return create_engine(target, **options)


def create_seed_app(engine: Engine) -> FastAPI:
    """The guide's app: a Session per request from a dependency; the same data functions as the sample app."""
    app = FastAPI(docs_url=None, redoc_url=None)
    app.state.sessions = sessionmaker(engine, expire_on_commit=False)

    @app.get("/health")
    def health(session: db) -> dict[str, str]:
        session.execute(text("SELECT 1"))
        return {"status": "ok", "database": "reachable"}

    @app.post("/notes", status_code=201)
    def create_note(payload: NoteCreate, session: db) -> NoteOut:
        created = notes.create_note(
            session,
            title=payload.title,
            body=payload.body,
            ttl_seconds=payload.ttl_seconds,
            idempotency_key=None,
        )
        session.commit()
        return NoteOut.of(created.note)

    @app.get("/notes")
    def list_notes(session: db, limit: int = 20) -> NotePageOut:
        page = notes.list_notes(session, limit=limit)
        return NotePageOut(items=[NoteOut.of(note) for note in page.notes], next_cursor=None)

    @app.get("/notes/{note_id}")
    def get_note(note_id: UUID, session: db) -> NoteOut:
        try:
            return NoteOut.of(notes.get_note(session, note_id))
        except NoteNotFoundError as error:
            raise HTTPException(404, str(error)) from error

    return app


def create_seed_handler(engine: Engine) -> Handler:
    """Mangum around the seed app, with the same Powertools decorators as handlers.api."""
    # lifespan="off" as in handlers.api: the comparison is about the connection layer, not Mangum's lifespan.
    adapter = Mangum(create_seed_app(engine), lifespan="off")

    @logger.inject_lambda_context(correlation_id_path=correlation_paths.API_GATEWAY_HTTP)
    @metrics.log_metrics
    def handler(event: dict[str, Any], context: Any) -> dict[str, Any]:
        return adapter(event, context)

    return handler


def seed_purge(engine: Engine, *, batch_size: int = purge.BATCH_SIZE) -> dict[str, Any]:
    """The scheduled purge as the guide would write it: the sample purge's statements, one Session transaction each."""
    holder = str(uuid.uuid4())
    lease = {"name": purge.JOB_NAME, "holder": holder}
    with Session(engine) as session:
        taken = leases.take_lease(session.connection(), **lease, seconds=purge.LEASE_MARGIN_SECONDS)
        session.commit()
    if not taken:
        return {"purged": 0, "batches": 0, "skipped": True}
    purged = batches = 0
    try:
        while True:
            with Session(engine) as session:
                deleted = purge.delete_expired_batch(session.connection(), batch_size=batch_size)
                session.commit()
            purged += deleted
            batches += 1
            if deleted < batch_size:
                break
    finally:
        with Session(engine) as session:
            leases.release_lease(session.connection(), **lease)
            session.commit()
    return {"purged": purged, "batches": batches, "skipped": False}
