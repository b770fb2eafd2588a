"""The notes HTTP API (FastAPI): routes, request/response models, and the notes errors' answers (lib.dbkit.http)."""

from __future__ import annotations

from datetime import datetime
from typing import Annotated
from uuid import UUID

from fastapi import Depends, FastAPI, Header, Query, Response
from pydantic import AfterValidator, BaseModel, BeforeValidator, ConfigDict, Field

from lib.dbkit.engine import ping
from lib.dbkit.http import ErrorAnswer, create_api, decimal_digits, require_json, storable_text
from lib.dbkit.replica import READ_AFTER_HEADER, read_after, read_after_headers
from lib.dbkit.session import run_in_session

from lib.sample_app import notes
from lib.sample_app.errors import (
    IdempotencyConflictError,
    IdempotencyKeyNotYetVisibleError,
    InvalidCursorError,
    NoteNotFoundError,
)

# The request models' size limits are the database's (CHECK constraints in models.py); importable from here too.
from lib.sample_app.models import MAX_BODY as MAX_BODY
from lib.sample_app.models import MAX_IDEMPOTENCY_KEY as MAX_IDEMPOTENCY_KEY
from lib.sample_app.models import MAX_TITLE as MAX_TITLE

MIN_TTL_SECONDS = 60
MAX_TTL_SECONDS = 31_536_000
MAX_PAGE = 100
DEFAULT_PAGE = 20
# A page also stops at this many bytes of notes (but holds at least one), so that `limit` large notes cannot make
# an answer of megabytes: with the largest note (~61 KB as JSON) an answer stays under 64 KiB.
MAX_PAGE_BYTES = 56 * 1024
# Printable ASCII only: headers arrive as Latin-1, so anything else would be stored garbled and never match again.
# At least one non-space character: a key of blanks is a client bug, not a key.
IDEMPOTENCY_KEY_PATTERN = r"^[\x20-\x7e]*[\x21-\x7e][\x20-\x7e]*$"
# The largest valid note is 10,200 characters; written with every character as a JSON surrogate-pair escape
# (12 bytes each) it is still under 128 KiB, so no valid request is refused.
MAX_REQUEST_BYTES = 128 * 1024

Title = Annotated[str, Field(min_length=1, max_length=MAX_TITLE), AfterValidator(storable_text)]
Body = Annotated[str, Field(max_length=MAX_BODY), AfterValidator(storable_text)]
TtlSeconds = Annotated[int, Field(strict=True, ge=MIN_TTL_SECONDS, le=MAX_TTL_SECONDS)]
PageSize = Annotated[int, BeforeValidator(decimal_digits), Query(ge=1, le=MAX_PAGE)]
# Checked by the kit (lib.dbkit.replica.read_after), which answers a malformed value with InvalidLsnError: a 400.
ReadAfter = Annotated[
    str | None,
    Header(
        alias=READ_AFTER_HEADER,
        description="The Read-After value of an earlier write's response: this read sees that write",
    ),
]
_READ_AFTER_DOC = {
    READ_AFTER_HEADER: {
        "description": "Send it back on a later read that must see this write (absent without a read replica)",
        "schema": {"type": "string"},
    }
}


class NoteCreate(BaseModel):
    """POST /notes body."""

    model_config = ConfigDict(extra="forbid")

    title: Title
    body: Body = ""
    ttl_seconds: TtlSeconds | None = None


class NoteOut(BaseModel):
    """A note as returned by the API."""

    id: UUID
    title: str
    body: str
    created_at: datetime
    expires_at: datetime | None

    @classmethod
    def of(cls, note: notes.Note) -> NoteOut:
        return cls(id=note.id, title=note.title, body=note.body, created_at=note.created_at, expires_at=note.expires_at)


class NotePageOut(BaseModel):
    """GET /notes: one page, newest first; pass next_cursor back as ?cursor= for the next page."""

    items: list[NoteOut]
    next_cursor: str | None


class HealthOut(BaseModel):
    """GET /health when the database answered."""

    status: str
    database: str


# The notes' domain errors → HTTP, in one place (the kit answers its own: 503 when the database is away, etc.).
ERRORS: dict[type[Exception], ErrorAnswer] = {
    NoteNotFoundError: ErrorAnswer(404, "note_not_found"),
    IdempotencyConflictError: ErrorAnswer(409, "idempotency_conflict"),
    InvalidCursorError: ErrorAnswer(400, "invalid_cursor", field="cursor"),
}


def create_app() -> FastAPI:
    """The API app; no lifespan work: the engine is built lazily once per execution environment (lib.dbkit.engine)."""
    app = create_api(title="Notes API", errors=ERRORS, max_body_bytes=MAX_REQUEST_BYTES)
    _add_routes(app)
    return app


def _add_routes(app: FastAPI) -> None:
    @app.get("/health")
    def health() -> HealthOut:
        ping()
        return HealthOut(status="ok", database="reachable")

    @app.post(
        "/notes",
        status_code=201,
        dependencies=[Depends(require_json)],
        responses={201: {"headers": _READ_AFTER_DOC}},
    )
    def create_note(
        payload: NoteCreate,
        response: Response,
        idempotency_key: Annotated[
            str | None, Header(min_length=1, max_length=MAX_IDEMPOTENCY_KEY, pattern=IDEMPOTENCY_KEY_PATTERN)
        ] = None,
    ) -> NoteOut:
        created = _create_note(payload, idempotency_key)
        # A replay answers exactly like the original (201, same note); the header tells a retrying client.
        response.headers["Location"] = f"/notes/{created.note.id}"
        if created.replayed:
            response.headers["Idempotent-Replayed"] = "true"
        response.headers.update(read_after_headers())
        return NoteOut.of(created.note)

    # Reads are read-only units: on the read replica when one is configured (within DB_REPLICA_MAX_LAG, and past
    # the write a Read-After header names), else on the primary.
    @app.get("/notes")
    def list_notes(
        limit: PageSize = DEFAULT_PAGE,
        cursor: Annotated[str | None, Query(min_length=1, max_length=200)] = None,
        read_after_header: ReadAfter = None,
    ) -> NotePageOut:
        after = notes.Cursor.decode(cursor) if cursor is not None else None
        after_lsn = read_after(read_after_header)
        page = run_in_session(
            lambda session: notes.list_notes(session, limit=limit, after=after),
            single_statement=True,
            read_only=True,
            after_lsn=after_lsn,
        )
        return _bounded_page(page)

    @app.get("/notes/{note_id}")
    def get_note(note_id: UUID, read_after_header: ReadAfter = None) -> NoteOut:
        after_lsn = read_after(read_after_header)
        note = run_in_session(
            lambda session: notes.get_note(session, note_id), single_statement=True, read_only=True, after_lsn=after_lsn
        )
        return NoteOut.of(note)

    @app.delete("/notes/{note_id}", status_code=204, responses={204: {"headers": _READ_AFTER_DOC}})
    def delete_note(note_id: UUID) -> Response:
        run_in_session(lambda session: notes.delete_note(session, note_id), single_statement=True)
        return Response(status_code=204, headers=read_after_headers())


def _create_note(payload: NoteCreate, idempotency_key: str | None) -> notes.CreatedNote:
    attempt = 1
    while True:
        try:
            return run_in_session(
                lambda session: notes.create_note(
                    session,
                    title=payload.title,
                    body=payload.body,
                    ttl_seconds=payload.ttl_seconds,
                    idempotency_key=idempotency_key,
                ),
                single_statement=True,
                # The key makes a re-run replay the stored note: safe after an unknown commit outcome.
                idempotent=idempotency_key is not None,
            )
        except IdempotencyKeyNotYetVisibleError:
            # A request with the same key committed while ours ran: a new statement sees its row and replays it.
            if attempt >= notes.CREATE_ATTEMPTS:
                raise
            attempt += 1


def _bounded_page(page: notes.NotePage) -> NotePageOut:
    items: list[NoteOut] = []
    size = 0
    for note in page.notes:
        item = NoteOut.of(note)
        cost = len(item.model_dump_json().encode())
        if items and size + cost > MAX_PAGE_BYTES:
            break
        items.append(item)
        size += cost
    next_cursor = page.next_cursor
    if len(items) < len(page.notes):
        last = page.notes[len(items) - 1]
        next_cursor = notes.Cursor(last.created_at, last.id)
    return NotePageOut(items=items, next_cursor=next_cursor.encode() if next_cursor else None)
