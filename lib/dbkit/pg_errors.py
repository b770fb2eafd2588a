"""What a pg8000 error means for the caller: gone connection, refused login, bad settings, provider refusal, transient.

Neon's proxy answers every refusal before the session starts with SQLSTATE XX000 (``proxy/src/stream.rs``
``throw_error``) and re-wraps the compute's own startup errors the same way, message only, so for those only the
message tells them apart. ``RULES`` is the one table that reads error text; everything else classifies by SQLSTATE
or by type.
"""

from __future__ import annotations

import enum
import re
import ssl
from dataclasses import dataclass

import pg8000.dbapi
import sqlalchemy.exc

from lib.dbkit.errors import (
    DatabaseLoginError,
    DatabaseProviderRefusedError,
    DatabaseSettingsRefusedError,
    TlsVerificationError,
)

# A provider refusal lasts until someone acts in the console: tell clients not to come back at once.
PROVIDER_RETRY_AFTER_SECONDS = 60
# The connection (or the compute behind it) is gone: Neon suspend/restart, admin kill, pooler restart. pg8000 reports
# several of them as ProgrammingError, which SQLAlchemy's pg8000 dialect does not see as disconnects.
DISCONNECT_SQLSTATES = frozenset({"57P01", "57P02", "57P03", "08000", "08001", "08003", "08004", "08006"})


class Meaning(enum.Enum):
    """What the caller should do about a server error."""

    REFUSED_LOGIN = "refused login"  # re-read the secret once, then a config error
    SETTINGS = "configuration error"  # never retried: the URL or the project must change
    PROVIDER_REFUSAL = "provider refusal"  # not retried within an invocation; the owner acts in the console
    TRANSIENT = "transient"  # retried with backoff within the remaining time


@dataclass(frozen=True)
class Rule:
    """One row: errors with this SQLSTATE (any if None) whose message starts with ``message`` (any if None)."""

    meaning: Meaning
    source: str
    sqlstate: str | None = None
    message: str | None = None
    fix: str = ""
    reason: str = ""

    def matches(self, code: str | None, text: str) -> bool:
        """True when the error's SQLSTATE and message fit this row."""
        if self.sqlstate is not None and code != self.sqlstate:
            return False
        return self.message is None or re.match(self.message, text) is not None


def _text(prefix: str) -> str:
    return re.escape(prefix)


_LOGIN_FIX = (
    "check the user and password in DATABASE_URL, or in the secret/parameter it comes from (a rotated secret is "
    "re-read once automatically); for Neon, copy the pooled connection string again from the console"
)
_ENDPOINT_FIX = (
    "use the host name exactly as the Neon console gives it (pg8000 sends it as SNI), or add "
    "options=endpoint%3D<endpoint-id> with the host's first label (keep -pooler for the pooled host)"
)
_DISABLED_ACTION = (
    "Neon console: open the project, Branches, the branch's compute, and enable the endpoint (or call the Neon API's "
    "update endpoint with disabled=false)"
)
_QUOTA_ACTION = (
    "Neon console: Billing / project settings: raise the compute time or data limits or upgrade the plan; the "
    "endpoint accepts connections again once the quota allows"
)
_NEON = "neondatabase/neon proxy/src/"

# First match wins: message rows before SQLSTATE rows (Neon sends one code for everything, and a disabled endpoint
# has been reported with 28000), specific PgBouncer text before its catch-all 08P01.
RULES: tuple[Rule, ...] = (
    # Neon proxy refusals (SQLSTATE XX000; matched on any code)
    Rule(Meaning.REFUSED_LOGIN, _NEON + "auth/mod.rs AuthError::PasswordFailed; also Postgres auth.c (28P01)",
         message=_text("password authentication failed for user "), fix=_LOGIN_FIX),
    Rule(Meaning.SETTINGS, _NEON + "auth/mod.rs AuthError::MissingEndpointName",
         message=_text("Endpoint ID is not specified."), fix=_ENDPOINT_FIX),
    Rule(Meaning.SETTINGS, _NEON + "auth/credentials.rs InconsistentProjectNames",
         message=_text("Inconsistent project name inferred from SNI"), fix=_ENDPOINT_FIX),
    Rule(Meaning.SETTINGS, _NEON + "auth/credentials.rs MalformedProjectName",
         message=_text("Project name ('") + r".*" + _text("') must contain only alphanumeric characters"),
         fix=_ENDPOINT_FIX),
    Rule(Meaning.SETTINGS, _NEON + "pglb/mod.rs ERR_INSECURE_CONNECTION",
         message=_text("connection is insecure (try using `sslmode=require`)"),
         fix="connect with TLS: sslmode=verify-full in the database URL"),
    Rule(Meaning.SETTINGS, _NEON + "auth/mod.rs AuthError::IpAddressNotAllowed",
         message=_text("This IP address ") + r".*" + _text(" is not allowed to connect to this endpoint"),
         fix="add the function's egress IP (NAT gateway) to the project's IP Allow list in the Neon console"),
    Rule(Meaning.SETTINGS, _NEON + "control_plane/messages.rs (HTTP 404 from the control plane)",
         message=_text("Control plane request failed: endpoint cannot be found"),
         fix="the endpoint in the host name does not exist (deleted branch or typo): copy the connection string "
         "again from the Neon console"),
    Rule(Meaning.SETTINGS, _NEON + "compute/mod.rs PostgresError (pooled connection)",
         message=_text("unsupported startup parameter"),
         fix="remove the startup parameter (options=...) from the pooled URL, or use the direct URL"),
    Rule(Meaning.PROVIDER_REFUSAL, _NEON + "control_plane/messages.rs (HTTP 406: endpoint disabled)",
         message=_text("Control plane request failed: endpoint is disabled"), fix=_DISABLED_ACTION,
         reason="endpoint disabled"),
    Rule(Meaning.PROVIDER_REFUSAL, "Neon control plane user-facing text (ENDPOINT_DISABLED), seen in public reports",
         message=_text("The endpoint has been disabled."), fix=_DISABLED_ACTION, reason="endpoint disabled"),
    Rule(Meaning.PROVIDER_REFUSAL, _NEON + "control_plane/messages.rs (HTTP 423/422: quota or maintenance)",
         message=_text("Control plane request failed: endpoint is temporarily unavailable. Check your quotas"),
         fix=_QUOTA_ACTION, reason="quota exceeded"),
    Rule(Meaning.PROVIDER_REFUSAL, "Neon control plane user-facing text (*_QUOTA_EXCEEDED), seen in public reports",
         message=_text("Your account or project has exceeded the "), fix=_QUOTA_ACTION, reason="quota exceeded"),
    Rule(Meaning.TRANSIENT, _NEON + "compute/mod.rs COULD_NOT_CONNECT (compute not up after the proxy's retries)",
         message=_text("Couldn't connect to compute node")),
    Rule(Meaning.TRANSIENT, _NEON + "auth/mod.rs AuthError::TooManyConnections",
         message=_text("Too many connections to this endpoint.")),
    Rule(Meaning.TRANSIENT, _NEON + "control_plane/errors.rs WakeComputeError::TooManyConnections",
         message=_text("Too many connections attempts")),
    Rule(Meaning.TRANSIENT, _NEON + "compute/mod.rs, control_plane/errors.rs (connect permit exhausted)",
         message=_text("Failed to acquire permit to connect to the database.")),
    Rule(Meaning.TRANSIENT, _NEON + "control_plane/errors.rs REQUEST_FAILED (control plane busy or unreachable)",
         message=_text("Control plane request failed")),
    # Postgres startup errors as Neon's proxy re-wraps them (message only); as sent by Postgres they keep their code.
    Rule(Meaning.TRANSIENT, "Postgres postinit.c (53300), re-wrapped by Neon's proxy",
         message=_text("remaining connection slots are reserved")),
    Rule(Meaning.TRANSIENT, "Postgres postmaster (53300), re-wrapped by Neon's proxy",
         message=_text("sorry, too many clients already")),
    Rule(Meaning.TRANSIENT, "Postgres postgres.c (57P01), re-wrapped by Neon's proxy",
         message=_text("terminating connection due to administrator command")),
    Rule(Meaning.TRANSIENT, "Postgres postmaster (57P03: starting up / shutting down), re-wrapped by Neon's proxy",
         message=_text("the database system is ")),
    Rule(Meaning.SETTINGS, "Postgres postinit.c (3D000), re-wrapped by Neon's proxy",
         message=_text('database "') + r".*" + _text('" does not exist'),
         fix="the database name in the URL's path does not exist: check it (Neon's default is neondb)"),
    # PgBouncer (all its protocol-level errors are 08P01, SQLSTATE forwarding came in 1.20)
    Rule(Meaning.REFUSED_LOGIN, "PgBouncer client.c (SCRAM proof or password refused)", sqlstate="08P01",
         message=r".*authentication failed", fix=_LOGIN_FIX),
    Rule(Meaning.SETTINGS, "PgBouncer client.c (unknown database alias)", sqlstate="08P01",
         message=_text("no such database: "),
         fix="the database name in the URL's path is not served by the pooler: check it"),
    Rule(Meaning.TRANSIENT, "PgBouncer: no more connections allowed, server login has been failing, "
         "query_wait_timeout, pgbouncer cannot connect to server", sqlstate="08P01"),
    # Plain Postgres SQLSTATEs
    Rule(Meaning.REFUSED_LOGIN, "Postgres auth.c (28P01 invalid_password)", sqlstate="28P01", fix=_LOGIN_FIX),
    Rule(Meaning.REFUSED_LOGIN, "Postgres auth.c (28000 invalid_authorization_specification)", sqlstate="28000",
         fix=_LOGIN_FIX),
    Rule(Meaning.SETTINGS, "Postgres postinit.c (3D000 invalid_catalog_name)", sqlstate="3D000",
         fix="the database name in the URL's path does not exist: check it"),
    Rule(Meaning.TRANSIENT, "Postgres (53300 too_many_connections)", sqlstate="53300"),
    *(Rule(Meaning.TRANSIENT, f"Postgres ({code}: connection gone or server shutting down)", sqlstate=code)
      for code in sorted(DISCONNECT_SQLSTATES)),
    # Any other refusal from Neon's proxy: we cannot tell, and the proxy re-wraps compute hiccups this way too.
    Rule(Meaning.TRANSIENT, _NEON + "pqproto.rs SQLSTATE_INTERNAL_ERROR (any other startup refusal)",
         sqlstate="XX000"),
)  # fmt: skip


def _field(error: BaseException | None, key: str) -> str | None:
    if isinstance(error, sqlalchemy.exc.DBAPIError):
        error = error.orig
    # Any pg8000 error carrying the server's fields: lib.dbkit.pg_dbapi gives them DB-API classes, 28000 included
    # (an InterfaceError, as pg8000's legacy connection has it).
    if isinstance(error, pg8000.dbapi.Error) and error.args and isinstance(error.args[0], dict):
        value = error.args[0].get(key)
        return value if isinstance(value, str) else None
    return None


def sqlstate(error: BaseException | None) -> str | None:
    """The SQLSTATE of a pg8000 server error (also when wrapped by SQLAlchemy), if it is one."""
    return _field(error, "C")


def server_message(error: BaseException | None) -> str | None:
    """The server's own message text (never holds the password: servers do not echo it)."""
    return _field(error, "M")


def classify(error: BaseException | None) -> Rule | None:
    """The first row of RULES that fits a server error; None for anything that is not a server error or not listed."""
    code = sqlstate(error)
    if code is None:
        return None
    text = server_message(error) or ""
    return next((rule for rule in RULES if rule.matches(code, text)), None)


def _means(error: BaseException | None, meaning: Meaning) -> Rule | None:
    rule = classify(error)
    return rule if rule is not None and rule.meaning is meaning else None


def is_network_failure(error: BaseException | None) -> bool:
    """The connection is unusable: socket error, timeout, pg8000 network error, or a disconnect SQLSTATE."""
    if isinstance(error, ssl.SSLCertVerificationError):
        return False  # an OSError too, but a configuration problem: retrying cannot fix it
    code = sqlstate(error)
    if code is not None:
        return code in DISCONNECT_SQLSTATES  # the server answered: the connection works, whatever the class
    return isinstance(error, (OSError, pg8000.dbapi.InterfaceError))


def is_retryable_connect_failure(error: BaseException | None) -> bool:
    """A connect attempt failed for a reason that may pass: network trouble or a transient server refusal."""
    if classify(error) is not None:
        return _means(error, Meaning.TRANSIENT) is not None
    return is_network_failure(error)


def login_refused(error: BaseException) -> DatabaseLoginError | None:
    """A typed error naming the fix when the server refused to log us in, else None."""
    rule = _means(error, Meaning.REFUSED_LOGIN)
    if rule is None:
        return None
    return DatabaseLoginError(f"the database refused the login ({_shown(error)}): {rule.fix}")


def settings_refused(error: BaseException) -> DatabaseSettingsRefusedError | None:
    """A typed error naming the fix when the server refused our connection settings, else None."""
    rule = _means(error, Meaning.SETTINGS)
    if rule is None:
        return None
    return DatabaseSettingsRefusedError(f"the database refused the connection ({_shown(error)}): {rule.fix}")


def provider_refused(error: BaseException) -> DatabaseProviderRefusedError | None:
    """A typed error carrying the console action when the provider refused to run the database, else None."""
    rule = _means(error, Meaning.PROVIDER_REFUSAL)
    if rule is None:
        return None
    return DatabaseProviderRefusedError(
        f"the database provider refused the connection ({rule.reason}; {_shown(error)})",
        reason=rule.reason,
        action=rule.fix,
        retry_after=PROVIDER_RETRY_AFTER_SECONDS,
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


def final_connect_error(error: BaseException) -> Exception | None:
    """The typed error to raise at once when a connect attempt failed for a reason retrying cannot fix, else None."""
    return login_refused(error) or settings_refused(error) or provider_refused(error) or tls_refused(error)


def describe(error: BaseException) -> str:
    """A server error as ``<SQLSTATE> <message>`` (severity and code only, never other fields), else its text."""
    code = sqlstate(error)
    if code is not None:
        return f"{code} {server_message(error) or ''}".strip()
    cause = error.__cause__
    return f"{error} ({cause})" if cause is not None else str(error)


def _shown(error: BaseException) -> str:
    return f"SQLSTATE {sqlstate(error)}: {server_message(error) or 'no message'}"
