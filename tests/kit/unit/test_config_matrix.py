"""Bad settings fail at startup (Settings.from_env) with a typed error whose message names the fix, and no secret."""

from __future__ import annotations

from pathlib import Path
from typing import Any

import pytest

from devtools.testing.secrets import assert_no_secret
from lib.dbkit.errors import (
    ConfigError,
    DirectConnectionRequiredError,
    InsecureTransportError,
    InvalidDatabaseUrlError,
    InvalidSettingError,
    MissingDatabaseUrlError,
    PoolerRequiredError,
    SslRootCertError,
)
from lib.dbkit.settings import Settings

# Characters that must be percent-encoded in a URL, so the scan also covers the encoded form.
PASSWORD = "S3cret/pa@ss:w0rd"
ENCODED = "S3cret%2Fpa%40ss%3Aw0rd"
POOLER = "ep-cool-darkness-123456-pooler.us-east-2.aws.neon.tech"
DIRECT = "ep-cool-darkness-123456.us-east-2.aws.neon.tech"


def url(host: str = POOLER, query: str = "sslmode=require", *, password: str = ENCODED, port: str = "") -> str:
    return f"postgresql://neondb_owner:{password}@{host}{port}/neondb?{query}"


def serverless(database_url: str | None, **extra: str) -> dict[str, str]:
    env = {"DB_MODE": "serverless", **extra}
    if database_url is not None:
        env["DATABASE_URL"] = database_url
    return env


# name → (environment, error type, words the message must contain: the fix)
BAD_SETTINGS: dict[str, tuple[dict[str, str], type[ConfigError], list[str]]] = {
    "neon direct host in serverless mode": (
        serverless(url(DIRECT)),
        PoolerRequiredError,
        [POOLER],
    ),
    "local host not listed as a pooler": (
        serverless(url("localhost", "sslmode=verify-full&sslrootcert=system", port=":5432")),
        PoolerRequiredError,
        ["DB_POOLER_HOSTS", "pooled URL"],
    ),
    "plaintext sslmode": (serverless(url(query="sslmode=disable")), InsecureTransportError, ["sslmode=verify-full"]),
    "unverified TLS on a non-Neon host": (
        serverless(url("db.example.com", "sslmode=require"), DB_POOLER_HOSTS="db.example.com"),
        InsecureTransportError,
        ["sslmode=verify-full", "sslrootcert"],
    ),
    "no sslmode on a non-Neon host": (
        serverless(url("db.example.com", ""), DB_POOLER_HOSTS="db.example.com"),
        InsecureTransportError,
        ["sslmode=verify-full"],
    ),
    "unknown sslmode": (
        serverless(url(query="sslmode=verify")),
        InvalidDatabaseUrlError,
        ["sslmode", "verify-full"],
    ),
    "wrong scheme": (
        serverless(url().replace("postgresql://", "mysql://")),
        InvalidDatabaseUrlError,
        ["postgresql://"],
    ),
    "no scheme": (serverless(url().replace("postgresql://", "")), InvalidDatabaseUrlError, ["postgresql://"]),
    "unencoded password": (
        serverless(url(password=PASSWORD)),
        InvalidDatabaseUrlError,
        ["percent-encode"],
    ),
    "port not a number": (serverless(url(port=":54x2")), InvalidDatabaseUrlError, ["port"]),
    "no user": (
        serverless(f"postgresql://{POOLER}/neondb?sslmode=require"),
        InvalidDatabaseUrlError,
        ["user@"],
    ),
    "startup options behind the pooler": (
        serverless(url(query="sslmode=require&options=-c%20statement_timeout%3D5s")),
        InvalidDatabaseUrlError,
        ["SET LOCAL"],
    ),
    "missing URL": (serverless(None), MissingDatabaseUrlError, ["DATABASE_URL", "DATABASE_SECRET_ARN"]),
    "empty URL": (serverless("   "), MissingDatabaseUrlError, ["DATABASE_URL"]),
    "unknown pool profile": (serverless(url(), DB_POOL="huge"), InvalidSettingError, ["DB_POOL", "tiny", "nullpool"]),
    "unknown mode": (
        {"DATABASE_URL": url(), "DB_MODE": "lambda"},
        InvalidSettingError,
        ["DB_MODE", "serverless"],
    ),
    "zero connect timeout": (serverless(url(), DB_CONNECT_TIMEOUT="0"), InvalidSettingError, ["DB_CONNECT_TIMEOUT"]),
    "non-numeric pool timeout": (
        serverless(url(), DB_POOL_TIMEOUT="ten"),
        InvalidSettingError,
        ["DB_POOL_TIMEOUT", "seconds"],
    ),
    "no statement time limit": (
        serverless(url(), DB_STATEMENT_TIMEOUT="0"),
        InvalidSettingError,
        ["DB_STATEMENT_TIMEOUT", "seconds"],
    ),
    "lock time limit beyond a day": (
        serverless(url(), DB_LOCK_TIMEOUT="100000"),
        InvalidSettingError,
        ["DB_LOCK_TIMEOUT", "86400"],
    ),
    "non-numeric idle-in-transaction limit": (
        serverless(url(), DB_IDLE_IN_TRANSACTION_TIMEOUT="1m"),
        InvalidSettingError,
        ["DB_IDLE_IN_TRANSACTION_TIMEOUT", "seconds"],
    ),
    "lock limit longer than the statement limit": (
        serverless(url(), DB_STATEMENT_TIMEOUT="5", DB_LOCK_TIMEOUT="10"),
        InvalidSettingError,
        ["lower DB_LOCK_TIMEOUT", "raise DB_STATEMENT_TIMEOUT"],
    ),
    "pooler URL for migrations": (
        {"DATABASE_URL": url(), "DB_MODE": "migration"},
        DirectConnectionRequiredError,
        ["direct"],
    ),
}


@pytest.mark.parametrize("name", BAD_SETTINGS)
def test_bad_settings_fail_at_startup_naming_the_fix(name: str) -> None:
    environ, error_type, fix_words = BAD_SETTINGS[name]
    with pytest.raises(error_type) as raised:
        Settings.from_env(environ)
    message = str(raised.value)
    missing = [word for word in fix_words if word not in message]
    assert missing == [], f"{name}: message {message!r} does not name {missing}"
    assert_no_secret(PASSWORD, raised.value, raised.getrepr(style="long"))


def test_missing_ca_file_fails_at_startup(tmp_path: Path) -> None:
    absent = tmp_path / "nowhere" / "ca.crt"
    environ = serverless(url(query=f"sslmode=verify-full&sslrootcert={absent}"))
    with pytest.raises(SslRootCertError, match="sslrootcert") as raised:
        Settings.from_env(environ)
    assert str(absent) in str(raised.value)
    assert_no_secret(PASSWORD, raised.value)


def test_a_file_that_is_not_a_ca_fails_at_startup(tmp_path: Path) -> None:
    bogus = tmp_path / "ca.crt"
    bogus.write_text("-----BEGIN CERTIFICATE-----\nnot a certificate\n-----END CERTIFICATE-----\n")
    with pytest.raises(SslRootCertError) as raised:
        Settings.from_env(serverless(url(query=f"sslmode=verify-full&sslrootcert={bogus}")))
    assert_no_secret(PASSWORD, raised.value)


@pytest.mark.parametrize("sslmode", ["", "sslmode=prefer", "sslmode=require", "sslmode=allow"])
def test_neon_hosts_verify_tls_by_default(sslmode: str) -> None:
    settings = Settings.from_env(serverless(url(query=sslmode)))
    context: Any = settings.database.ssl_context()
    assert settings.database.effective_sslmode == "verify-full"
    assert context.check_hostname is True
    assert context.verify_mode.name == "CERT_REQUIRED"


def test_accepted_settings_hide_the_password() -> None:
    settings = Settings.from_env(serverless(url(query="sslmode=require&channel_binding=require")))
    assert_no_secret(PASSWORD, repr(settings), str(settings), settings.describe(), repr(settings.database))
    assert settings.database.password == PASSWORD
