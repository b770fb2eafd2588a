"""lib.dbkit.settings: the environment matrix, URL sources (Secrets Manager / SSM via moto), validation at init."""

from __future__ import annotations

import json
import logging
import re
import subprocess
import sys
from collections.abc import Iterator
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import boto3  # type: ignore[import-untyped]
import pytest
from aws_lambda_powertools.utilities import parameters
from moto import mock_aws

from devtools.paths import ROOT
from lib.dbkit.dsn import parse_database_url
from lib.dbkit.errors import (
    ConfigError,
    DatabaseUrlSourceError,
    DirectConnectionRequiredError,
    InsecureTransportError,
    InvalidDatabaseUrlError,
    InvalidSettingError,
    MissingDatabaseUrlError,
    PoolerRequiredError,
    SslRootCertError,
)
from lib.dbkit.pooler import HostKind
from lib.dbkit.settings import (
    DATABASE_VARIABLES,
    DEFAULT_SECRET_MAX_AGE,
    PoolKind,
    Settings,
    UrlSource,
    clear_settings,
    get_settings,
    refresh_database_url,
)

PASSWORD = "Zq9-pw-LEAKCHECK"
NEON_POOLED = "ep-cool-darkness-123456-pooler.us-east-2.aws.neon.tech"
NEON_DIRECT = "ep-cool-darkness-123456.us-east-2.aws.neon.tech"
POOLED_URL = f"postgresql://neondb_owner:{PASSWORD}@{NEON_POOLED}/neondb?sslmode=require&channel_binding=require"
DIRECT_URL = POOLED_URL.replace("-pooler", "")
LAMBDA = {"AWS_LAMBDA_FUNCTION_NAME": "notes-api"}


def _settings(**environ: str) -> Settings:
    return Settings.from_env({"DATABASE_URL": POOLED_URL, **environ})


# --- mode ------------------------------------------------------------------------------------------------------


@pytest.mark.parametrize(
    ("environ", "mode"),
    [
        ({}, "server"),
        (LAMBDA, "serverless"),
        ({**LAMBDA, "DB_MODE": ""}, "serverless"),
        ({**LAMBDA, "DB_MODE": "server"}, "server"),
        ({"DB_MODE": "serverless"}, "serverless"),
        ({"DB_MODE": "Migration", "DATABASE_URL": DIRECT_URL}, "migration"),
    ],
)
def test_mode_selection(environ: dict[str, str], mode: str) -> None:
    assert _settings(**environ).mode == mode


# --- pool profiles -----------------------------------------------------------------------------------------------


def test_serverless_default_pool_is_tiny_without_pre_ping() -> None:
    pool = _settings(**LAMBDA).pool
    assert (pool.kind, pool.pool_size, pool.max_overflow) == (PoolKind.QUEUE, 1, 0)
    assert pool.pool_timeout == 5.0
    assert pool.pool_pre_ping is False
    assert pool.idle_ping_seconds == 60.0
    assert pool.pool_recycle == 1800


def test_serverless_nullpool() -> None:
    pool = _settings(**LAMBDA, DB_POOL="nullpool").pool
    assert pool.kind is PoolKind.NULLPOOL


@pytest.mark.parametrize(
    ("app_env", "size", "overflow"), [(None, 2, 5), ("development", 2, 5), ("staging", 5, 10), ("production", 10, 20)]
)
def test_server_pool_is_sized_by_app_env(app_env: str | None, size: int, overflow: int) -> None:
    environ = {"APP_ENV": app_env} if app_env else {}
    pool = _settings(**environ).pool
    assert (pool.kind, pool.pool_size, pool.max_overflow) == (PoolKind.QUEUE, size, overflow)
    assert pool.pool_timeout == 30.0
    assert pool.pool_pre_ping is True


def test_server_mode_honours_an_explicit_profile() -> None:
    pool = _settings(APP_ENV="production", DB_POOL="tiny").pool
    assert (pool.pool_size, pool.max_overflow) == (1, 0)


def test_migration_defaults_to_nullpool() -> None:
    assert _settings(DB_MODE="migration", DATABASE_URL=DIRECT_URL).pool.kind is PoolKind.NULLPOOL


def test_pool_overrides() -> None:
    pool = _settings(
        **LAMBDA,
        DB_POOL_TIMEOUT="2.5",
        DB_POOL_RECYCLE="0",
        DB_POOL_PRE_PING="TRUE",
        DB_IDLE_PING_SECONDS="0",
    ).pool
    assert (pool.pool_timeout, pool.pool_recycle, pool.pool_pre_ping, pool.idle_ping_seconds) == (2.5, 0, True, 0.0)
    assert _settings(DB_POOL_RECYCLE="-1", DB_POOL_PRE_PING="off").pool.pool_recycle == -1
    assert _settings(DB_POOL_PRE_PING="off").pool.pool_pre_ping is False


@pytest.mark.parametrize(
    ("name", "value", "accepted"),
    [
        ("DB_POOL", "huge", "expected one of tiny, nullpool"),
        ("APP_ENV", "prod", "expected one of development, staging, production"),
        ("DB_MODE", "lambda", "expected one of serverless, server, migration"),
        ("DB_POOL_TIMEOUT", "abc", "expected a number of seconds > 0"),
        ("DB_POOL_TIMEOUT", "0", "expected a number of seconds > 0"),
        ("DB_CONNECT_TIMEOUT", "ten", "expected a number of seconds > 0"),
        ("DB_POOL_RECYCLE", "1.5", "expected a whole number of seconds >= -1"),
        ("DB_POOL_RECYCLE", "-2", "expected a whole number of seconds >= -1"),
        ("DB_IDLE_PING_SECONDS", "-1", "expected a number of seconds >= 0"),
        ("DB_SECRET_MAX_AGE", "5m", "expected a whole number of seconds >= 0"),
        ("DB_POOL_PRE_PING", "maybe", "expected true or false"),
    ],
)
def test_bad_values_name_variable_value_and_accepted_values(name: str, value: str, accepted: str) -> None:
    with pytest.raises(InvalidSettingError) as caught:
        _settings(**{name: value})
    assert str(caught.value) == f"{name}={value!r} is not valid: {accepted}"


# --- connect timeout -----------------------------------------------------------------------------------------------


def test_connect_timeout_defaults_to_ten_seconds() -> None:
    settings = _settings()
    assert settings.database.effective_connect_timeout == 10.0
    assert settings.database.connect_args()["timeout"] == 10.0


def test_db_connect_timeout_applies_when_the_url_has_none() -> None:
    assert _settings(DB_CONNECT_TIMEOUT="15").database.connect_args()["timeout"] == 15.0


def test_url_connect_timeout_wins_over_db_connect_timeout() -> None:
    settings = _settings(DATABASE_URL=POOLED_URL + "&connect_timeout=4", DB_CONNECT_TIMEOUT="15")
    assert settings.database.connect_args()["timeout"] == 4.0


# --- validation at construction -------------------------------------------------------------------------------------


def test_serverless_upgrades_neon_tls_and_records_it() -> None:
    settings = _settings(**LAMBDA)
    assert settings.database.sslmode == "verify-full"
    assert settings.tls_upgraded_from == "require"
    assert "upgraded from require" in settings.describe()["tls"]
    assert settings.host_kind is HostKind.NEON_POOLER


def test_server_mode_keeps_libpq_semantics() -> None:
    settings = _settings()
    assert settings.database.sslmode == "require"
    assert settings.tls_upgraded_from is None


def test_serverless_refuses_the_neon_direct_host_at_init() -> None:
    with pytest.raises(PoolerRequiredError, match=f"use the pooled hostname {NEON_POOLED} "):
        _settings(**LAMBDA, DATABASE_URL=DIRECT_URL)


def test_serverless_refuses_unverified_tls_on_other_hosts() -> None:
    url = f"postgresql://u:{PASSWORD}@pgbouncer.internal:6432/db?sslmode=require"
    with pytest.raises(InsecureTransportError, match="sslmode=verify-full&sslrootcert="):
        _settings(**LAMBDA, DATABASE_URL=url, DB_POOLER_HOSTS="pgbouncer.internal:6432")


def test_serverless_refuses_sslmode_disable() -> None:
    with pytest.raises(InsecureTransportError, match="sslmode=disable is refused in serverless mode"):
        _settings(**LAMBDA, DATABASE_URL=POOLED_URL.replace("sslmode=require", "sslmode=disable"))


def test_serverless_refuses_startup_options_the_pooler_cannot_pass() -> None:
    with pytest.raises(InvalidDatabaseUrlError, match="use SET LOCAL inside the transaction"):
        _settings(**LAMBDA, DATABASE_URL=POOLED_URL + "&options=-c%20search_path%3Dapp")


def test_serverless_accepts_a_listed_pooler_with_verified_tls() -> None:
    url = f"postgresql://u:{PASSWORD}@LocalHost:6432/db?sslmode=verify-full"
    settings = _settings(**LAMBDA, DATABASE_URL=url, DB_POOLER_HOSTS="localhost:6432")
    assert settings.host_kind is HostKind.LISTED_POOLER


def test_migration_refuses_the_pooler() -> None:
    with pytest.raises(DirectConnectionRequiredError, match=f"use the direct hostname {NEON_DIRECT}"):
        _settings(DB_MODE="migration")


def test_server_mode_accepts_pooler_and_direct() -> None:
    assert _settings().host_kind is HostKind.NEON_POOLER
    assert _settings(DATABASE_URL=DIRECT_URL).host_kind is HostKind.NEON_DIRECT


def test_missing_root_cert_fails_at_init(tmp_path: Path) -> None:
    missing = tmp_path / "ca.crt"
    with pytest.raises(SslRootCertError, match=str(missing)):
        _settings(DATABASE_URL=f"postgresql://u:p@h/db?sslmode=verify-full&sslrootcert={missing}")


def test_constructing_settings_directly_runs_the_same_validation() -> None:
    database = parse_database_url(DIRECT_URL)
    with pytest.raises(PoolerRequiredError):
        Settings(database=database, mode="serverless")
    assert Settings(database=database).mode == "server"


def test_missing_url_names_all_three_variables() -> None:
    with pytest.raises(
        MissingDatabaseUrlError, match=r"DATABASE_URL, or DATABASE_SECRET_ARN .* or DATABASE_URL_PARAMETER"
    ):
        Settings.from_env({"DATABASE_URL": " "})


def test_database_url_errors_name_the_variable() -> None:
    with pytest.raises(InvalidDatabaseUrlError, match=r"^DATABASE_URL: .*unknown parameters: 'pgbouncer'"):
        _settings(DATABASE_URL=POOLED_URL + "&pgbouncer=true")


def test_database_url_wins_and_secret_store_is_not_touched() -> None:
    settings = _settings(DATABASE_SECRET_ARN="arn:aws:secretsmanager:us-east-1:1:secret:x")
    assert settings.source == UrlSource("DATABASE_URL")
    assert settings.url_from_secret_store is False
    assert refresh_database_url(settings) is settings


# --- the password never shows -------------------------------------------------------------------------------------


def test_repr_and_describe_never_show_the_password(caplog: pytest.LogCaptureFixture) -> None:
    caplog.set_level(logging.DEBUG)
    settings = _settings(**LAMBDA)
    texts = [repr(settings), str(settings), json.dumps(settings.describe()), caplog.text]
    assert all(PASSWORD not in text for text in texts)
    assert "****" in settings.describe()["url"]


@pytest.mark.parametrize(
    "environ",
    [
        {**LAMBDA, "DATABASE_URL": DIRECT_URL},
        {"DB_MODE": "migration"},
        {**LAMBDA, "DATABASE_URL": POOLED_URL.replace("sslmode=require", "sslmode=disable")},
        {"DATABASE_URL": POOLED_URL + f"&{PASSWORD.lower()}=1"},
        {"DATABASE_URL": POOLED_URL.replace("@", "/@")},
        {"DATABASE_URL": POOLED_URL + "&sslrootcert=/nope"},
    ],
)
def test_config_errors_never_show_the_password(environ: dict[str, str], caplog: pytest.LogCaptureFixture) -> None:
    caplog.set_level(logging.DEBUG)
    with pytest.raises(ConfigError) as caught:
        _settings(**environ)
    error: BaseException | None = caught.value
    while error is not None:
        assert PASSWORD not in f"{error!r} {error}"
        error = error.__cause__ or error.__context__
    assert PASSWORD not in caplog.text


# --- Secrets Manager and SSM ----------------------------------------------------------------------------------------


@dataclass
class Aws:
    secrets: Any
    ssm: Any

    def secret(self, value: str) -> str:
        arn: str = self.secrets.create_secret(Name=f"db-{abs(hash(value))}", SecretString=value)["ARN"]
        return arn


@pytest.fixture
def aws(monkeypatch: pytest.MonkeyPatch) -> Iterator[Aws]:
    # boto3 needs a region; moto supplies fake credentials. Powertools caches providers across tests: reset them.
    monkeypatch.setenv("AWS_DEFAULT_REGION", "us-east-1")
    with mock_aws():
        parameters.clear_caches()  # type: ignore[no-untyped-call]
        yield Aws(boto3.client("secretsmanager"), boto3.client("ssm"))
    parameters.clear_caches()  # type: ignore[no-untyped-call]


def _from_secret(aws: Aws, value: str, **environ: str) -> Settings:
    return Settings.from_env({"DATABASE_SECRET_ARN": aws.secret(value), **environ})


def test_secret_holding_a_plain_url(aws: Aws) -> None:
    settings = _from_secret(aws, POOLED_URL, **LAMBDA)
    assert settings.database.password == PASSWORD
    assert settings.url_from_secret_store is True
    assert settings.source.kind == "DATABASE_SECRET_ARN"


@pytest.mark.parametrize("key", ["url", "DATABASE_URL"])
def test_secret_holding_json_with_a_url(aws: Aws, key: str) -> None:
    settings = _from_secret(aws, json.dumps({key: POOLED_URL, "note": "ignored"}))
    assert settings.database.host == NEON_POOLED


@pytest.mark.parametrize("port", [5432, "5432", None])
def test_secret_in_rds_rotation_form(aws: Aws, port: int | str | None) -> None:
    secret: dict[str, Any] = {
        "engine": "postgres",
        "host": NEON_POOLED,
        "username": "neondb_owner",
        "password": PASSWORD,
        "dbname": "neondb",
        "sslmode": "require",
        "endpoint": "ep-cool-darkness-123456",
        "dbInstanceIdentifier": "ignored",
    }
    if port is not None:
        secret["port"] = port
    settings = _from_secret(aws, json.dumps(secret), **LAMBDA)
    database = settings.database
    assert (database.host, database.port, database.user, database.password, database.database) == (
        NEON_POOLED,
        5432,
        "neondb_owner",
        PASSWORD,
        "neondb",
    )
    assert database.endpoint_id == "ep-cool-darkness-123456"
    assert database.sslmode == "verify-full"


def test_secret_fields_user_and_database_aliases(aws: Aws) -> None:
    secret = {"host": "db.internal", "user": "app", "password": PASSWORD, "database": "appdb", "port": 6543}
    database = _from_secret(aws, json.dumps(secret)).database
    assert (database.user, database.database, database.port) == ("app", "appdb", 6543)


@pytest.mark.parametrize(
    ("value", "message"),
    [
        (json.dumps({"password": PASSWORD, "dbname": "x"}), "without 'url', 'DATABASE_URL', or 'host' and 'username'"),
        (json.dumps([PASSWORD]), "JSON that is not an object"),
        ("{" + PASSWORD, "malformed JSON"),
        (json.dumps({"host": "h", "username": "u", "password": PASSWORD, "port": "x5"}), "'port' that is not a number"),
    ],
)
def test_bad_secrets_are_refused_without_echo(aws: Aws, value: str, message: str) -> None:
    with pytest.raises(DatabaseUrlSourceError, match=message) as caught:
        _from_secret(aws, value)
    assert str(caught.value).startswith("DATABASE_SECRET_ARN=arn:aws:secretsmanager:")
    assert PASSWORD not in str(caught.value)


def test_secret_url_errors_name_the_source(aws: Aws) -> None:
    with pytest.raises(InvalidDatabaseUrlError, match=r"^DATABASE_SECRET_ARN=arn:.*: .*unknown parameters: 'x'"):
        _from_secret(aws, POOLED_URL + "&x=1")


def test_missing_secret_names_the_arn(aws: Aws) -> None:
    arn = "arn:aws:secretsmanager:us-east-1:123456789012:secret:nope-AbCdEf"
    with pytest.raises(DatabaseUrlSourceError, match=f"DATABASE_SECRET_ARN={arn}: could not fetch"):
        Settings.from_env({"DATABASE_SECRET_ARN": arn})


def test_ssm_securestring_parameter(aws: Aws) -> None:
    aws.ssm.put_parameter(Name="/notes/database-url", Value=POOLED_URL, Type="SecureString")
    settings = Settings.from_env({"DATABASE_URL_PARAMETER": "/notes/database-url", **LAMBDA})
    assert settings.database.password == PASSWORD
    assert str(settings.source) == "DATABASE_URL_PARAMETER=/notes/database-url"


def test_secret_precedes_parameter(aws: Aws) -> None:
    arn = aws.secret(POOLED_URL)
    settings = Settings.from_env({"DATABASE_URL_PARAMETER": "/not/read", "DATABASE_SECRET_ARN": arn})
    assert settings.source.kind == "DATABASE_SECRET_ARN"


def test_secret_is_cached_and_refresh_bypasses_the_cache(aws: Aws) -> None:
    arn = aws.secret(POOLED_URL)
    environ = {"DATABASE_SECRET_ARN": arn, **LAMBDA}
    first = Settings.from_env(environ)
    rotated = POOLED_URL.replace(PASSWORD, "rotated-pw")
    aws.secrets.put_secret_value(SecretId=arn, SecretString=rotated)
    assert Settings.from_env(environ).database.password == PASSWORD  # still within DB_SECRET_MAX_AGE
    refreshed = refresh_database_url(first)
    assert refreshed.database.password == "rotated-pw"
    assert refreshed.database.sslmode == "verify-full"  # validation ran again
    assert refreshed.tls_upgraded_from == "require"
    assert Settings.from_env(environ).database.password == "rotated-pw"  # the cache holds the fresh value now


def test_settings_are_built_once_per_environment(monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setenv("DATABASE_URL", POOLED_URL)
    clear_settings()
    try:
        assert get_settings() is get_settings()
        monkeypatch.setenv("DATABASE_URL", POOLED_URL.replace(PASSWORD, "other-pw"))
        assert get_settings().database.password == PASSWORD  # read once, not per call
        clear_settings()
        assert get_settings().database.password == "other-pw"
    finally:
        clear_settings()


def test_a_refresh_makes_the_environment_settings_read_the_rotated_secret(
    aws: Aws, monkeypatch: pytest.MonkeyPatch
) -> None:
    arn = aws.secret(POOLED_URL)
    monkeypatch.setenv("DATABASE_SECRET_ARN", arn)
    monkeypatch.delenv("DATABASE_URL", raising=False)
    clear_settings()
    try:
        current = get_settings()
        aws.secrets.put_secret_value(SecretId=arn, SecretString=POOLED_URL.replace(PASSWORD, "rotated-pw"))
        assert get_settings() is current
        assert refresh_database_url(current).database.password == "rotated-pw"
        assert get_settings().database.password == "rotated-pw"
    finally:
        clear_settings()


@pytest.mark.parametrize("value", ["NullPool", " nullpool ", "NULLPOOL"])
def test_choices_ignore_case_and_surrounding_space(value: str) -> None:
    assert Settings.from_env({"DATABASE_URL": POOLED_URL, "DB_POOL": value}).pool_profile == "nullpool"


def test_url_choices_follow_the_same_rule() -> None:
    assert parse_database_url(POOLED_URL.replace("sslmode=require", "sslmode=Verify-Full")).sslmode == "verify-full"


def test_importing_settings_does_not_import_boto3() -> None:
    code = "import sys, lib.dbkit.settings; sys.exit(1 if 'boto3' in sys.modules or 'sqlalchemy' in sys.modules else 0)"
    result = subprocess.run([sys.executable, "-c", code], cwd=ROOT, check=False)
    assert result.returncode == 0


def test_secret_max_age_zero_means_every_settings_build_fetches_the_secret(aws: Aws) -> None:
    arn = aws.secret(POOLED_URL)
    environ = {"DATABASE_SECRET_ARN": arn, "DB_SECRET_MAX_AGE": "0", **LAMBDA}
    first = Settings.from_env(environ)
    assert first.source.max_age == 0
    aws.secrets.put_secret_value(SecretId=arn, SecretString=POOLED_URL.replace(PASSWORD, "rotated-at-once"))
    assert Settings.from_env(environ).database.password == "rotated-at-once"


def test_secret_max_age_unset_is_the_default() -> None:
    assert Settings.from_env({"DATABASE_URL": POOLED_URL}).source.max_age == DEFAULT_SECRET_MAX_AGE


def test_database_variables_lists_every_variable_the_settings_read() -> None:
    source = (ROOT / "lib" / "dbkit" / "settings.py").read_text(encoding="utf-8")
    read = set(re.findall(r'"((?:DB|DATABASE|DIRECT_DATABASE)_[A-Z_]+|APP_ENV)"', source))
    assert read == set(DATABASE_VARIABLES)


# --- the read replica -------------------------------------------------------------------------------------------

NEON_READ_POOLED = "ep-quiet-lake-654321-pooler.us-east-2.aws.neon.tech"
READ_PASSWORD = "Rd7-pw-LEAKCHECK"
READ_URL = f"postgresql://neondb_owner:{READ_PASSWORD}@{NEON_READ_POOLED}/neondb?sslmode=require"


def test_no_replica_unless_a_read_url_is_set() -> None:
    settings = _settings(**LAMBDA, DB_REPLICA_MAX_LAG="5")
    assert settings.replica is None
    assert "read replica" not in settings.describe()


def test_the_replica_gets_the_primarys_mode_pool_limits_and_tls_policy() -> None:
    settings = _settings(**LAMBDA, DATABASE_READ_URL=READ_URL, DB_STATEMENT_TIMEOUT="20", DB_DRIVER="stock")
    assert settings.replica is not None
    replica = settings.replica.settings
    assert replica.database.host == NEON_READ_POOLED
    assert replica.database.password == READ_PASSWORD
    assert replica.source == UrlSource("DATABASE_READ_URL")
    assert (replica.mode, replica.pool, replica.statement_timeout, replica.driver) == (
        "serverless",
        settings.pool,
        20.0,
        "stock",
    )
    assert replica.database.sslmode == "verify-full"  # upgraded like the primary's
    assert replica.host_kind is HostKind.NEON_POOLER
    assert (settings.replica.max_lag, settings.replica.connect_budget) == (None, 1.0)


def test_replica_max_lag_and_connect_budget() -> None:
    settings = _settings(DATABASE_READ_URL=READ_URL, DB_REPLICA_MAX_LAG="2.5", DB_REPLICA_CONNECT_BUDGET="0.3")
    assert settings.replica is not None
    assert (settings.replica.max_lag, settings.replica.connect_budget) == (2.5, 0.3)
    assert _settings(DATABASE_READ_URL=READ_URL, DB_REPLICA_MAX_LAG="0").replica.max_lag == 0.0  # type: ignore[union-attr]


@pytest.mark.parametrize(
    ("name", "value", "accepted"),
    [
        ("DB_REPLICA_MAX_LAG", "-1", "expected a number of seconds >= 0"),
        ("DB_REPLICA_MAX_LAG", "5s", "expected a number of seconds >= 0"),
        ("DB_REPLICA_CONNECT_BUDGET", "0", "expected a number of seconds > 0"),
    ],
)
def test_bad_replica_numbers_name_the_variable(name: str, value: str, accepted: str) -> None:
    with pytest.raises(InvalidSettingError) as caught:
        _settings(DATABASE_READ_URL=READ_URL, **{name: value})
    assert str(caught.value) == f"{name}={value!r} is not valid: {accepted}"


def test_serverless_refuses_a_direct_replica_host_naming_the_variable_and_the_pooled_host() -> None:
    direct = READ_URL.replace("-pooler", "")
    with pytest.raises(PoolerRequiredError, match=f"^DATABASE_READ_URL: .*use the pooled hostname {NEON_READ_POOLED} "):
        _settings(**LAMBDA, DATABASE_READ_URL=direct)


def test_serverless_refuses_an_unlisted_replica_host() -> None:
    url = f"postgresql://u:{READ_PASSWORD}@replica.internal:6432/db?sslmode=verify-full"
    with pytest.raises(PoolerRequiredError, match=r"^DATABASE_READ_URL: .*add it to DB_POOLER_HOSTS"):
        _settings(**LAMBDA, DATABASE_READ_URL=url, DB_POOLER_HOSTS="pgbouncer.internal:6432")
    listed = _settings(**LAMBDA, DATABASE_READ_URL=url, DB_POOLER_HOSTS="replica.internal:6432")
    assert listed.replica is not None
    assert listed.replica.settings.host_kind is HostKind.LISTED_POOLER


@pytest.mark.parametrize(
    ("change", "error", "message"),
    [
        ({"sslmode=require": "sslmode=disable"}, InsecureTransportError, "sslmode=disable is refused in serverless"),
        ({"sslmode=require": "sslmode=bogus"}, InvalidDatabaseUrlError, "sslmode"),
        ({"sslmode=require": "sslmode=require&options=-c%20work_mem%3D1MB"}, InvalidDatabaseUrlError, "SET LOCAL"),
    ],
)
def test_the_replica_url_follows_the_primarys_tls_and_pooler_rules(
    change: dict[str, str], error: type[Exception], message: str, caplog: pytest.LogCaptureFixture
) -> None:
    url = READ_URL
    for old, new in change.items():
        url = url.replace(old, new)
    with pytest.raises(error, match=message) as caught:
        _settings(**LAMBDA, DATABASE_READ_URL=url)
    assert str(caught.value).startswith("DATABASE_READ_URL: ")
    assert READ_PASSWORD not in f"{caught.value!r} {caught.value}"
    assert READ_PASSWORD not in caplog.text


def test_the_replicas_endpoint_option_is_checked_against_its_host() -> None:
    settings = _settings(**LAMBDA, DATABASE_READ_URL=READ_URL + "&options=endpoint%3Dep-quiet-lake-654321")
    assert settings.replica is not None
    assert settings.replica.settings.database.endpoint_id == "ep-quiet-lake-654321"
    assert any("contradicts the host" in warning for warning in settings.replica.settings.warnings)
    consistent = _settings(**LAMBDA, DATABASE_READ_URL=READ_URL + "&options=endpoint%3Dep-quiet-lake-654321-pooler")
    assert consistent.replica is not None
    assert consistent.replica.settings.warnings == ()


def test_describe_names_the_replica_without_its_password() -> None:
    settings = _settings(**LAMBDA, DATABASE_READ_URL=READ_URL, DB_REPLICA_MAX_LAG="3")
    line = settings.describe()["read replica"]
    assert NEON_READ_POOLED in line
    assert "max lag 3s" in line
    assert "DATABASE_READ_URL" in line
    assert READ_PASSWORD not in json.dumps(settings.describe()) + repr(settings)


def test_migrations_never_read_the_replica_variables() -> None:
    arn = "arn:aws:secretsmanager:us-east-1:123456789012:secret:never-fetched-AbCdEf"
    settings = Settings.for_migration({"DIRECT_DATABASE_URL": DIRECT_URL, "DATABASE_READ_SECRET_ARN": arn})
    assert settings.replica is None


def test_replica_secret_and_parameter_sources(aws: Aws) -> None:
    arn = aws.secret(READ_URL)
    settings = Settings.from_env({"DATABASE_URL": POOLED_URL, "DATABASE_READ_SECRET_ARN": arn, **LAMBDA})
    assert settings.replica is not None
    assert settings.replica.settings.source == UrlSource("DATABASE_READ_SECRET_ARN", arn)
    assert settings.replica.settings.url_from_secret_store
    assert settings.replica.settings.database.password == READ_PASSWORD
    aws.ssm.put_parameter(Name="/notes/database-read-url", Value=READ_URL, Type="SecureString")
    from_parameter = Settings.from_env(
        {"DATABASE_URL": POOLED_URL, "DATABASE_READ_URL_PARAMETER": "/notes/database-read-url"}
    )
    assert from_parameter.replica is not None
    assert str(from_parameter.replica.settings.source) == "DATABASE_READ_URL_PARAMETER=/notes/database-read-url"
    assert from_parameter.replica.settings.database.host == NEON_READ_POOLED


def test_the_read_url_variable_wins_over_the_read_secret(aws: Aws) -> None:
    settings = _settings(DATABASE_READ_URL=READ_URL, DATABASE_READ_SECRET_ARN="arn:aws:secretsmanager:x:1:secret:y")
    assert settings.replica is not None
    assert settings.replica.settings.source.kind == "DATABASE_READ_URL"


def test_a_rotated_replica_secret_is_re_read_from_its_own_source(aws: Aws) -> None:
    arn = aws.secret(READ_URL)
    settings = Settings.from_env({"DATABASE_URL": POOLED_URL, "DATABASE_READ_SECRET_ARN": arn, **LAMBDA})
    assert settings.replica is not None
    aws.secrets.put_secret_value(SecretId=arn, SecretString=READ_URL.replace(READ_PASSWORD, "rotated-read-pw"))
    refreshed = refresh_database_url(settings.replica.settings)
    assert refreshed.database.password == "rotated-read-pw"
    assert refreshed.database.host == NEON_READ_POOLED
    assert refreshed.database.sslmode == "verify-full"


def test_a_bad_replica_secret_names_its_variable(aws: Aws) -> None:
    arn = aws.secret(json.dumps({"password": READ_PASSWORD}))
    with pytest.raises(DatabaseUrlSourceError, match=r"^DATABASE_READ_SECRET_ARN=arn:") as caught:
        Settings.from_env({"DATABASE_URL": POOLED_URL, "DATABASE_READ_SECRET_ARN": arn})
    assert READ_PASSWORD not in str(caught.value)
