"""Errors of the database kit: each a type callers can catch; messages never carry secrets."""

from __future__ import annotations


class ConfigError(Exception):
    """The configuration cannot work; the message names the variable and the fix."""


class MissingDatabaseUrlError(ConfigError):
    """None of DATABASE_URL, DATABASE_SECRET_ARN, DATABASE_URL_PARAMETER is set."""


class DatabaseUrlSourceError(ConfigError):
    """The secret or parameter holding the database URL could not be fetched or decoded."""


class InvalidDatabaseUrlError(ConfigError):
    """The database URL is malformed or carries parameters pg8000 cannot honour."""


class SslRootCertError(ConfigError):
    """The sslrootcert file is missing or does not hold a usable CA certificate."""


class InsecureTransportError(ConfigError):
    """The TLS settings would allow an unverified or plaintext connection where that is refused."""


class PoolerRequiredError(ConfigError):
    """Serverless mode needs a transaction pooler (Neon `-pooler` host or an entry of DB_POOLER_HOSTS)."""


class DirectConnectionRequiredError(ConfigError):
    """Migration mode needs a direct connection, not the pooler."""


class InvalidSettingError(ConfigError):
    """An environment variable has a value outside its accepted set."""


class UnsafeEngineOptionError(ConfigError):
    """An engine option that is unsafe behind a transaction pooler (AUTOCOMMIT, session-level SET)."""


class DatabaseUnavailableError(Exception):
    """The database cannot be reached in time; the HTTP layer answers 503 with Retry-After."""

    def __init__(self, message: str, *, retry_after: int) -> None:
        super().__init__(message)
        self.retry_after = retry_after


class PoolExhaustedError(DatabaseUnavailableError):
    """No pooled connection became free within the bounded retries."""


class DatabaseProviderRefusedError(DatabaseUnavailableError):
    """The database provider refused to run the database (Neon: endpoint disabled, quota exceeded); not retried.

    ``reason`` says which refusal, ``action`` what the owner must do in the provider's console.
    """

    def __init__(self, message: str, *, reason: str, action: str, retry_after: int) -> None:
        super().__init__(message, retry_after=retry_after)
        self.reason = reason
        self.action = action


class DatabaseTimeoutError(DatabaseUnavailableError):
    """The server cancelled a statement at its time limit (statement_timeout or lock_timeout): nothing was committed."""


class CommitOutcomeUnknownError(DatabaseUnavailableError):
    """The connection failed after the commit was sent: the write may or may not be stored.

    Retrying is safe only for work that is idempotent (e.g. a request carrying an Idempotency-Key).
    """


class UnitOfWorkError(Exception):
    """The work broke the rules of its unit of work (e.g. committed inside it); nothing was sent for that step."""


class SingleStatementError(UnitOfWorkError):
    """A `single_statement` unit was about to send a second statement (or a flush of several): refused unsent."""


class InvalidEventError(Exception):
    """A Lambda event of the wrong shape for its handler; the message names what was expected."""


class MigrationError(Exception):
    """The schema cannot be applied as found (e.g. an already applied migration file was edited)."""


class DatabaseLoginError(ConfigError):
    """The server refused the login: wrong user or password (or a rotated secret); the message names the fix."""


class TlsVerificationError(ConfigError):
    """The server's certificate did not verify against the configured CA or host name; the message names the fix."""


class DatabaseSettingsRefusedError(ConfigError):
    """The server refused our connection settings (endpoint id, TLS, options, database); the message names the fix."""


class TlsNegotiationError(ConfigError):
    """The server does not speak the TLS negotiation the URL asks for (sslnegotiation=direct); names the fix."""


class InvalidLsnError(ValueError):
    """A WAL position (a read-your-writes token a client sent back) that is not one; the message says the form."""
