import ssl

import pg8000.dbapi
import pytest
import sqlalchemy.exc

from lib.dbkit.errors import DatabaseLoginError, TlsVerificationError
from lib.dbkit.pg_errors import is_network_failure, is_retryable_connect_failure, login_refused, sqlstate, tls_refused


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
