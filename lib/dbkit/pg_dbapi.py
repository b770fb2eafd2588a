"""pg8000's DB-API connection with the exception classes SQLAlchemy's pg8000 dialect gives, for both kit drivers.

``pg8000.dbapi`` raises every server error as ``DatabaseError``; ``pg8000.connect`` (the legacy connection that
SQLAlchemy's own pg8000 dialect uses) raises ``IntegrityError`` for a unique violation and ``ProgrammingError`` for
the rest, and SQLAlchemy names its wrapper after that class. Here a server error gets the class its SQLSTATE says
(``error_class``), so ``except sqlalchemy.exc.IntegrityError`` catches a duplicate key on either driver. The
error's fields (``args[0]``, a dict with ``C`` = SQLSTATE) are kept, so the kit's own classification still works.

``DRIVERNAME`` is the kit's stock driver as a SQLAlchemy dialect: SQLAlchemy's pg8000 dialect, unchanged apart from
connecting through the kit's transport with this connection class (importing this module registers it).
"""

from __future__ import annotations

from collections.abc import Iterator
from contextlib import contextmanager
from typing import Any, Final

import pg8000.dbapi
from pg8000.dbapi import DatabaseError, DataError, IntegrityError, InterfaceError, ProgrammingError
from sqlalchemy.dialects import registry
from sqlalchemy.dialects.postgresql.pg8000 import PGDialect_pg8000

from lib.dbkit import transport

DRIVERNAME: Final = "postgresql+pg8000_dbapi"


def error_class(code: object) -> Any:
    """The DB-API class for a server error with this SQLSTATE.

    As pg8000's legacy connection (what SQLAlchemy's pg8000 dialect uses): 28000 is an InterfaceError, anything
    else a ProgrammingError; and, as PEP 249 and SQLAlchemy's other PostgreSQL drivers have it, every integrity
    violation (class 23: unique, foreign key, not null, check, exclusion) an IntegrityError and every data
    exception (class 22: division by zero, out of range, invalid text) a DataError.
    """
    text = code if isinstance(code, str) else ""
    if text.startswith("23"):
        return IntegrityError
    if text.startswith("22"):
        return DataError
    if text == "28000":
        return InterfaceError
    return ProgrammingError


def mapped(error: DatabaseError) -> Exception:
    """A copy of `error` (same fields) of the class its SQLSTATE says."""
    fields = error.args[0] if error.args else None
    code = fields.get("C") if isinstance(fields, dict) else None
    replacement: Exception = error_class(code)(*error.args)
    return replacement.with_traceback(error.__traceback__)


@contextmanager
def server_errors_mapped() -> Iterator[None]:
    """Re-raise a plain DatabaseError from the block as the class its SQLSTATE says."""
    try:
        yield
    except DatabaseError as error:
        if type(error) is not DatabaseError:
            raise
        raise mapped(error) from None


class Cursor(pg8000.dbapi.Cursor):  # type: ignore[misc]
    """pg8000's DB-API cursor whose server errors carry their DB-API class."""

    def execute(self, operation: str, args: Any = (), stream: Any = None) -> Any:
        with server_errors_mapped():
            return super().execute(operation, args, stream)

    def executemany(self, operation: str, param_sets: Any) -> Any:
        with server_errors_mapped():
            return super().executemany(operation, param_sets)

    def callproc(self, procname: str, parameters: Any = None) -> Any:
        with server_errors_mapped():
            return super().callproc(procname, parameters)


class Connection(pg8000.dbapi.Connection):  # type: ignore[misc]
    """pg8000's DB-API connection whose cursors and commit raise DB-API classes (a deferred constraint at COMMIT)."""

    def cursor(self) -> Cursor:
        return Cursor(self)

    def commit(self) -> None:
        with server_errors_mapped():
            super().commit()


def connect(**kwargs: Any) -> Connection:
    """``pg8000.dbapi.connect`` (same keyword arguments, plus ``hostaddr`` and ``sslnegotiation``) for this class."""
    return transport.connect(Connection, **kwargs)


class DbapiDialect(PGDialect_pg8000):
    """SQLAlchemy's pg8000 dialect over the kit's connection: its own queries, round trips and behaviour."""

    supports_statement_cache = True

    def connect(self, *cargs: Any, **cparams: Any) -> Connection:
        if cargs:
            raise TypeError("pg8000 connections take keyword arguments only")
        return self.open(**cparams)

    def open(self, **kwargs: Any) -> Connection:
        """A new DB-API connection for these keyword arguments (``connect`` above checks them first)."""
        return connect(**kwargs)

    @classmethod
    def load_provisioning(cls) -> None:
        """SQLAlchemy's test harness looks for ``<dialect package>.provision``: PostgreSQL's is the one that fits."""
        __import__("sqlalchemy.dialects.postgresql.provision")


registry.register(DRIVERNAME.replace("+", "."), __name__, DbapiDialect.__name__)
