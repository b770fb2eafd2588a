"""What a pg8000 error means for the caller: gone connection, refused login, worth retrying — by SQLSTATE and type."""

from __future__ import annotations

import ssl

import pg8000.dbapi
import sqlalchemy.exc

from lib.dbkit.errors import DatabaseLoginError, TlsVerificationError

# The connection (or the compute behind it) is gone: Neon suspend/restart, admin kill, pooler restart. pg8000 reports
# several of them as ProgrammingError, which SQLAlchemy's pg8000 dialect does not see as disconnects.
DISCONNECT_SQLSTATES = frozenset({"57P01", "57P02", "57P03", "08000", "08001", "08003", "08004", "08006"})
# Connect attempts failing with these are worth retrying while a compute wakes up (XX000: Neon's proxy while the
# compute starts; 53300: too many connections for a moment; 08P01: PgBouncer's "server login has been failing",
# "no more connections allowed", query_wait_timeout).
RETRYABLE_CONNECT_SQLSTATES = DISCONNECT_SQLSTATES | {"53300", "XX000", "08P01"}
# Postgres (and Neon's proxy) refuse a login with 28P01/28000.
LOGIN_REFUSED_SQLSTATES = frozenset({"28P01", "28000"})
# PgBouncer refuses a bad SCRAM proof with 08P01, the code of all its protocol-level errors: only its message
# tells a refused login from a transient refusal, so for this one code the text decides.
_PGBOUNCER_LOGIN_REFUSED = ("08P01", "authentication failed")


def _field(error: BaseException | None, key: str) -> str | None:
    if isinstance(error, sqlalchemy.exc.DBAPIError):
        error = error.orig
    if isinstance(error, pg8000.dbapi.DatabaseError) and error.args and isinstance(error.args[0], dict):
        value = error.args[0].get(key)
        return value if isinstance(value, str) else None
    return None


def sqlstate(error: BaseException | None) -> str | None:
    """The SQLSTATE of a pg8000 server error (also when wrapped by SQLAlchemy), if it is one."""
    return _field(error, "C")


def server_message(error: BaseException | None) -> str | None:
    """The server's own message text (never holds the password: servers do not echo it)."""
    return _field(error, "M")


def is_network_failure(error: BaseException | None) -> bool:
    """The connection is unusable: socket error, timeout, pg8000 network error, or a disconnect SQLSTATE."""
    if isinstance(error, ssl.SSLCertVerificationError):
        return False  # an OSError too, but a configuration problem: retrying cannot fix it
    return isinstance(error, (OSError, pg8000.dbapi.InterfaceError)) or sqlstate(error) in DISCONNECT_SQLSTATES


def is_retryable_connect_failure(error: BaseException | None) -> bool:
    if _is_pgbouncer_login_refusal(error):
        return False
    return is_network_failure(error) or sqlstate(error) in RETRYABLE_CONNECT_SQLSTATES


def _is_pgbouncer_login_refusal(error: BaseException | None) -> bool:
    code, text = _PGBOUNCER_LOGIN_REFUSED
    return sqlstate(error) == code and text in (server_message(error) or "")


def login_refused(error: BaseException) -> DatabaseLoginError | None:
    """A typed error naming the fix when the server refused to log us in, else None."""
    code = sqlstate(error)
    if code not in LOGIN_REFUSED_SQLSTATES and not _is_pgbouncer_login_refusal(error):
        return None
    return DatabaseLoginError(
        f"the database refused the login (SQLSTATE {code}: {server_message(error) or 'no message'}): check the user "
        "and password in DATABASE_URL, or in the secret/parameter it comes from (a rotated secret is re-read once "
        "automatically); for Neon, copy the pooled connection string again from the console"
    )


def tls_refused(error: BaseException) -> TlsVerificationError | None:
    """A typed error naming the fix when the server's certificate did not verify, else None."""
    if not isinstance(error, ssl.SSLCertVerificationError):
        return None
    return TlsVerificationError(
        f"the server's TLS certificate did not verify (certificate verify failed: {error.verify_message}): check "
        "that sslrootcert names the CA that signed it (Neon: leave it out, the system CAs verify *.neon.tech) and "
        "that the URL's host name is one the certificate was issued for"
    )
