import re
import ssl

import pg8000.dbapi
import pytest
import sqlalchemy.exc

from devtools.paths import ROOT
from lib.dbkit.errors import (
    DatabaseLoginError,
    DatabaseProviderRefusedError,
    DatabaseSettingsRefusedError,
    TlsVerificationError,
)
from lib.dbkit.pg_errors import (
    RULES,
    Meaning,
    classify,
    final_connect_error,
    is_network_failure,
    is_retryable_connect_failure,
    login_refused,
    provider_refused,
    settings_refused,
    sqlstate,
    tls_refused,
)


def _server_error(code: str, message: str = "server says no") -> pg8000.dbapi.DatabaseError:
    return pg8000.dbapi.DatabaseError({"S": "FATAL", "C": code, "M": message})


def test_sqlstate_is_read_from_pg8000_and_from_sqlalchemy_wrappers() -> None:
    error = _server_error("57P01")
    wrapped = sqlalchemy.exc.DBAPIError("select 1", {}, error)
    assert sqlstate(error) == sqlstate(wrapped) == "57P01"
    assert sqlstate(ValueError("no sqlstate here")) is None


@pytest.mark.parametrize("code", ["57P01", "08006", "08003"])
def test_server_disconnects_count_as_network_failures(code: str) -> None:
    assert is_network_failure(_server_error(code))


@pytest.mark.parametrize(
    "error", [ConnectionResetError(), TimeoutError(), pg8000.dbapi.InterfaceError("network error")]
)
def test_socket_and_driver_failures_count_as_network_failures(error: Exception) -> None:
    assert is_network_failure(error)
    assert is_retryable_connect_failure(error)


def test_a_syntax_error_is_neither_a_disconnect_nor_worth_retrying() -> None:
    assert not is_network_failure(_server_error("42601"))
    assert not is_retryable_connect_failure(_server_error("42601"))
    assert login_refused(_server_error("42601")) is None


def test_a_waking_compute_is_worth_retrying() -> None:
    assert is_retryable_connect_failure(_server_error("XX000", "Couldn't connect to compute node"))


@pytest.mark.parametrize(
    ("code", "message"), [("28P01", "password authentication failed"), ("08P01", "SASL authentication failed")]
)
def test_a_refused_login_names_the_fix(code: str, message: str) -> None:
    refused = login_refused(_server_error(code, message))
    assert isinstance(refused, DatabaseLoginError)
    assert code in str(refused)
    assert message in str(refused)
    assert "password in DATABASE_URL" in str(refused)


def test_pgbouncer_login_refusal_is_final_but_its_other_refusals_are_retried() -> None:
    assert isinstance(login_refused(_server_error("08P01", "SASL authentication failed")), DatabaseLoginError)
    assert not is_retryable_connect_failure(_server_error("08P01", "SASL authentication failed"))
    busy = _server_error("08P01", "no more connections allowed (max_client_conn)")
    assert login_refused(busy) is None
    assert is_retryable_connect_failure(busy)


def test_a_certificate_that_does_not_verify_is_a_config_error_not_a_network_failure() -> None:
    error = ssl.SSLCertVerificationError(1, "certificate verify failed")
    error.verify_message = "unable to get local issuer certificate"
    assert not is_network_failure(error)
    assert not is_retryable_connect_failure(error)
    refused = tls_refused(error)
    assert isinstance(refused, TlsVerificationError)
    assert "unable to get local issuer certificate" in str(refused)
    assert "sslrootcert" in str(refused)
    assert tls_refused(ConnectionResetError()) is None


NEON = "XX000"


@pytest.mark.parametrize(
    ("message", "meaning"),
    [
        ("password authentication failed for user 'neondb_owner'", Meaning.REFUSED_LOGIN),
        (
            "Endpoint ID is not specified. Either please upgrade the postgres client library (libpq) for SNI support "
            "or pass the endpoint ID (first part of the domain name) as a parameter: "
            "'?options=endpoint%3D<endpoint-id>'. See more at https://neon.tech/sni",
            Meaning.SETTINGS,
        ),
        (
            "Inconsistent project name inferred from SNI ('ep-cool-darkness-123456-pooler') and project option "
            "('ep-cool-darkness-123456').",
            Meaning.SETTINGS,
        ),
        ("Project name ('ep_bad') must contain only alphanumeric characters and hyphen.", Meaning.SETTINGS),
        ("connection is insecure (try using `sslmode=require`)", Meaning.SETTINGS),
        ("Control plane request failed: endpoint cannot be found", Meaning.SETTINGS),
        ('database "nope" does not exist', Meaning.SETTINGS),
        ("Control plane request failed: endpoint is disabled", Meaning.PROVIDER_REFUSAL),
        ("The endpoint has been disabled. Enable it using Neon API and retry.", Meaning.PROVIDER_REFUSAL),
        (
            "Control plane request failed: endpoint is temporarily unavailable. Check your quotas and/or contact "
            "our support.",
            Meaning.PROVIDER_REFUSAL,
        ),
        (
            "Your account or project has exceeded the compute time quota. Upgrade your plan to increase limits.",
            Meaning.PROVIDER_REFUSAL,
        ),
        ("Couldn't connect to compute node", Meaning.TRANSIENT),
        ("Too many connections to this endpoint. Please try again later.", Meaning.TRANSIENT),
        ("Too many connections attempts", Meaning.TRANSIENT),
        (
            "Failed to acquire permit to connect to the database. Too many database connection attempts are "
            "currently ongoing.",
            Meaning.TRANSIENT,
        ),
        ("remaining connection slots are reserved for roles with the SUPERUSER attribute", Meaning.TRANSIENT),
        ("terminating connection due to administrator command", Meaning.TRANSIENT),
        ("something the proxy never said before", Meaning.TRANSIENT),
    ],
)
def test_neon_startup_refusals_are_told_apart_by_their_message(message: str, meaning: Meaning) -> None:
    rule = classify(_server_error(NEON, message))
    assert rule is not None
    assert rule.meaning is meaning
    assert is_retryable_connect_failure(_server_error(NEON, message)) is (meaning is Meaning.TRANSIENT)


def test_a_wrong_password_on_neon_is_a_refused_login_not_a_retry() -> None:
    error = _server_error(NEON, "password authentication failed for user 'neondb_owner'")
    refused = login_refused(error)
    assert isinstance(refused, DatabaseLoginError)
    assert "password in DATABASE_URL" in str(refused)
    assert isinstance(final_connect_error(error), DatabaseLoginError)


def test_bad_endpoint_settings_are_config_errors_naming_the_fix() -> None:
    error = _server_error(NEON, "Endpoint ID is not specified. Either please upgrade the postgres client library")
    refused = settings_refused(error)
    assert isinstance(refused, DatabaseSettingsRefusedError)
    assert "options=endpoint%3D" in str(refused)
    assert final_connect_error(error) is not None
    assert login_refused(error) is None


@pytest.mark.parametrize(
    ("message", "reason", "action"),
    [
        ("The endpoint has been disabled. Enable it using Neon API and retry.", "endpoint disabled", "enable"),
        ("Your account or project has exceeded the compute time quota.", "quota exceeded", "upgrade the plan"),
    ],
)
def test_provider_refusals_carry_the_console_action(message: str, reason: str, action: str) -> None:
    refused = provider_refused(_server_error(NEON, message))
    assert isinstance(refused, DatabaseProviderRefusedError)
    assert refused.reason == reason
    assert "Neon console" in refused.action
    assert action in refused.action
    assert refused.retry_after >= 60


def test_a_disabled_endpoint_reported_with_28000_is_still_a_provider_refusal() -> None:
    error = _server_error("28000", "The endpoint has been disabled. Enable it using the API and retry.")
    assert isinstance(final_connect_error(error), DatabaseProviderRefusedError)


def test_every_rule_names_its_source_and_config_rules_name_a_fix() -> None:
    for rule in RULES:
        assert rule.source
        if rule.meaning is not Meaning.TRANSIENT:
            assert rule.fix, rule
        if rule.meaning is Meaning.PROVIDER_REFUSAL:
            assert rule.reason, rule


def test_only_the_table_reads_error_text() -> None:
    lib = ROOT / "lib"
    readers = [
        path.relative_to(lib).as_posix()
        for path in lib.rglob("*.py")
        if re.search(r"server_message\(|\.get\([\"']M[\"']|\[[\"']M[\"']\]", path.read_text())
    ]
    assert readers == ["dbkit/pg_errors.py"]


def test_a_server_error_classed_as_interface_error_keeps_its_sqlstate_and_is_no_network_failure() -> None:
    # pg_dbapi classes 28000 as InterfaceError (as pg8000's legacy connection does): still a server answer.
    error = pg8000.dbapi.InterfaceError({"S": "FATAL", "C": "28000", "M": "no pg_hba.conf entry"})
    assert sqlstate(error) == "28000"
    assert not is_network_failure(error)
    assert is_network_failure(pg8000.dbapi.InterfaceError("network error"))
