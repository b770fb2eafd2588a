"""TLS fails closed (wrong CA, wrong host name, server without TLS, plaintext) and bad credentials or hosts fail
clearly, through the engine and through `python -m lib.dbkit.doctor`, without the password showing anywhere."""

from __future__ import annotations

import contextlib
import socket
import ssl
import subprocess
import sys
import threading
import time
from collections.abc import Iterator
from dataclasses import dataclass, field
from pathlib import Path
from urllib.parse import quote

import pg8000.dbapi
import pytest
from sqlalchemy import text

from devtools.paths import ROOT
from devtools.testing.database import DatabaseTarget
from devtools.testing.lambda_runtime import FakeLambdaContext, configure_serverless, reset_database_state
from devtools.testing.logs import captured_logs
from devtools.testing.secrets import as_text, assert_no_secret
from devtools.testing.urls import connect_address, pooler_entry, with_params, with_port
from lib.dbkit import engine as db
from lib.dbkit import invocation
from lib.dbkit.errors import ConfigError, DatabaseUnavailableError, InsecureTransportError, TlsVerificationError
from lib.dbkit.settings import Settings
from tests.kit import tiny_api

WRONG_PASSWORD = "not-the-password-0123456789"
DEADLINE_MS = 4_000


@dataclass(frozen=True)
class Pki:
    """A CA of our own (not the stack's) and two server certificates it signed."""

    ca: Path
    cert_for_localhost: tuple[Path, Path]
    cert_for_other_host: tuple[Path, Path]


def _openssl(*args: str, cwd: Path) -> None:
    subprocess.run(["openssl", *args], cwd=cwd, check=True, capture_output=True)


def _server_cert(directory: Path, name: str, san: str) -> tuple[Path, Path]:
    _openssl("req", "-newkey", "ec", "-pkeyopt", "ec_paramgen_curve:prime256v1", "-nodes", "-keyout", f"{name}.key",
             "-out", f"{name}.csr", "-subj", f"/CN={name}", cwd=directory)  # fmt: skip
    (directory / f"{name}.ext").write_text(f"subjectAltName={san}\nextendedKeyUsage=serverAuth\n")
    _openssl("x509", "-req", "-in", f"{name}.csr", "-CA", "ca.crt", "-CAkey", "ca.key", "-CAcreateserial",
             "-out", f"{name}.crt", "-days", "2", "-extfile", f"{name}.ext", cwd=directory)  # fmt: skip
    return directory / f"{name}.crt", directory / f"{name}.key"


@pytest.fixture(scope="module")
def pki(tmp_path_factory: pytest.TempPathFactory) -> Pki:
    directory = tmp_path_factory.mktemp("other-ca")
    _openssl("req", "-x509", "-newkey", "ec", "-pkeyopt", "ec_paramgen_curve:prime256v1", "-nodes", "-keyout",
             "ca.key", "-out", "ca.crt", "-days", "2", "-subj", "/CN=some other CA",
             "-addext", "basicConstraints=critical,CA:TRUE", "-addext", "keyUsage=critical,keyCertSign",
             cwd=directory)  # fmt: skip
    return Pki(
        ca=directory / "ca.crt",
        cert_for_localhost=_server_cert(directory, "localhost", "DNS:localhost,IP:127.0.0.1"),
        cert_for_other_host=_server_cert(directory, "other", "DNS:db.not-this-host.example"),
    )


@dataclass
class FakeServer:
    """Answers PostgreSQL's SSLRequest with 'S' (then TLS with `cert`) or 'N', and records what the client sent."""

    cert: tuple[Path, Path] | None
    port: int = 0
    received_after_request: list[bytes] = field(default_factory=list)
    handshakes: list[str] = field(default_factory=list)

    def serve(self, listener: socket.socket) -> None:
        while True:
            try:
                connection, _ = listener.accept()
            except OSError:
                return
            with connection:
                connection.settimeout(5)
                self._one(connection)

    def _one(self, connection: socket.socket) -> None:
        connection.recv(8)
        if self.cert is None:
            connection.sendall(b"N")
            stream: socket.socket = connection
        else:
            connection.sendall(b"S")
            context = ssl.SSLContext(ssl.PROTOCOL_TLS_SERVER)
            context.load_cert_chain(*self.cert)
            try:
                stream = context.wrap_socket(connection, server_side=True)
            except (ssl.SSLError, OSError) as error:
                self.handshakes.append(f"failed: {type(error).__name__}")
                return
            self.handshakes.append("completed")
        try:
            data = stream.recv(4096)
        except (ssl.SSLError, OSError):
            data = b""
        if data:
            self.received_after_request.append(data)


@pytest.fixture
def fake_server(request: pytest.FixtureRequest, pki: Pki) -> Iterator[FakeServer]:
    certs = {None: None, "localhost": pki.cert_for_localhost, "other": pki.cert_for_other_host}
    server = FakeServer(cert=certs[request.param])
    with socket.create_server(("127.0.0.1", 0)) as listener:
        server.port = listener.getsockname()[1]
        thread = threading.Thread(target=server.serve, args=(listener,), daemon=True)
        thread.start()
        yield server
        with contextlib.suppress(OSError):
            listener.shutdown(socket.SHUT_RDWR)
    thread.join(5)


def _serverless(url: str, pooler_hosts: str) -> Settings:
    return Settings.from_env({"DATABASE_URL": url, "DB_MODE": "serverless", "DB_POOLER_HOSTS": pooler_hosts})


def _with_ca(url: str, ca: Path) -> str:
    return with_params(url, sslmode="verify-full", sslrootcert=str(ca))


def _select_one(settings: Settings) -> tuple[BaseException, float]:
    """Run one transaction on a fresh engine within a Lambda-like deadline; the error it fails with and the time."""
    engine = db.build_engine(settings)
    invocation.start(FakeLambdaContext(timeout_ms=DEADLINE_MS))
    started = time.monotonic()
    try:
        with engine.connect() as connection:
            connection.execute(text("select 1"))
    except Exception as error:  # noqa: BLE001 - returned for the caller's assertions
        return error, time.monotonic() - started
    finally:
        invocation.finish()
        engine.dispose()
    pytest.fail("the connection succeeded")


def _chain(error: BaseException) -> list[BaseException]:
    found: list[BaseException] = []
    current: BaseException | None = error
    while current is not None and len(found) < 20:
        found.append(current)
        current = current.__cause__ or current.__context__
    return found


@dataclass(frozen=True)
class DoctorRun:
    """What the doctor printed; unlike CompletedProcess it does not keep the URL (a failing assert would show it)."""

    returncode: int
    stdout: str
    stderr: str


def _doctor(url: str, pooler_hosts: str) -> DoctorRun:
    done = subprocess.run(
        [sys.executable, "-m", "lib.dbkit.doctor", url, "--pooler-hosts", pooler_hosts],
        cwd=ROOT,
        env={"PATH": "/usr/bin:/bin", "PYTHONPATH": str(ROOT)},
        capture_output=True,
        text=True,
        timeout=120,
        check=False,
    )
    return DoctorRun(done.returncode, done.stdout, done.stderr)


def test_a_certificate_from_another_ca_fails_closed(database: DatabaseTarget, pki: Pki) -> None:
    url = _with_ca(database.pooled_url, pki.ca)
    with captured_logs() as logs:
        error, elapsed = _select_one(_serverless(url, database.pooler_hosts))
    assert any(isinstance(link, ssl.SSLCertVerificationError) for link in _chain(error)), _chain(error)
    assert isinstance(error, TlsVerificationError), "a certificate that does not verify is a config error"
    assert "sslrootcert" in str(error)
    assert not [line for line in logs.records if line.get("message") == "database connect attempt failed"][1:]
    assert elapsed < DEADLINE_MS / 1000
    doctor = _doctor(url, database.pooler_hosts)
    assert doctor.returncode == 2  # refused by configuration: retrying cannot help
    assert "certificate verify failed" in doctor.stdout
    assert_no_secret(database.password, *logs.lines, error, doctor.stdout, doctor.stderr)


@pytest.mark.parametrize(
    ("fake_server", "verified"),
    [(None, False), ("localhost", True), ("other", False)],
    ids=["server-refuses-tls", "control-right-host-name", "host-name-not-in-certificate"],
    indirect=["fake_server"],
)
def test_tls_is_verified_before_anything_is_sent(fake_server: FakeServer, verified: bool, pki: Pki) -> None:
    port = fake_server.port
    url = f"postgresql://neondb_owner:{WRONG_PASSWORD}@localhost:{port}/neondb?sslmode=verify-full&sslrootcert={pki.ca}"
    error, elapsed = _select_one(_serverless(url, f"localhost:{port}"))
    assert elapsed < DEADLINE_MS / 1000
    assert_no_secret(WRONG_PASSWORD, error)
    if verified:
        # Control: with a certificate for the host name the handshake completes and the startup message follows.
        assert "completed" in fake_server.handshakes
        assert any(b"neondb_owner" in data for data in fake_server.received_after_request)
        return
    assert fake_server.received_after_request == [], "the client sent data over an unverified or plaintext link"
    assert "completed" not in fake_server.handshakes
    causes = _chain(error)
    assert any(isinstance(link, ssl.SSLCertVerificationError) for link in causes) or any(
        "refuses SSL" in str(link) for link in causes
    ), causes


def test_plaintext_is_refused_in_serverless_mode_and_by_the_stack(database: DatabaseTarget) -> None:
    base, _, _ = database.pooled_url.partition("?")
    with pytest.raises(InsecureTransportError, match="sslmode=verify-full") as raised:
        _serverless(f"{base}?sslmode=disable", database.pooler_hosts)
    assert_no_secret(database.password, raised.value)
    # The stack, like Neon, refuses plaintext clients too (server mode lets the URL ask for it).
    host, port = connect_address(database.pooled_url)
    with pytest.raises(pg8000.dbapi.DatabaseError) as refused:
        pg8000.dbapi.connect(
            user="neondb_owner", password=database.password, host=host, port=port, database="neondb", ssl_context=False
        ).close()
    assert_no_secret(database.password, refused.value)


def test_a_wrong_password_fails_fast_without_showing_it(database: DatabaseTarget) -> None:
    url = database.pooled_url.replace(f":{quote(database.password, safe='')}@", f":{WRONG_PASSWORD}@")
    assert WRONG_PASSWORD in url
    with captured_logs() as logs:
        error, elapsed = _select_one(_serverless(url, database.pooler_hosts))
    assert isinstance(error, Exception)
    assert elapsed < DEADLINE_MS / 1000
    doctor = _doctor(url, database.pooler_hosts)
    assert doctor.returncode == 2  # refused by configuration, not unreachable
    assert "authentication failed" in doctor.stdout
    for secret in (database.password, WRONG_PASSWORD):
        assert_no_secret(secret, *logs.lines, error, doctor.stdout, doctor.stderr)


def test_a_wrong_password_names_the_fix(database: DatabaseTarget) -> None:
    url = database.pooled_url.replace(f":{quote(database.password, safe='')}@", f":{WRONG_PASSWORD}@")
    error, _ = _select_one(_serverless(url, database.pooler_hosts))
    doctor = _doctor(url, database.pooler_hosts)
    verdict = next(line for line in doctor.stdout.splitlines() if line.startswith("verdict:"))
    assert "unreachable" not in verdict
    assert "password" in verdict
    assert isinstance(error, ConfigError)
    assert "password" in str(error)


def test_an_unreachable_host_is_a_503_within_the_deadline_and_a_doctor_verdict(database: DatabaseTarget) -> None:
    with socket.create_server(("127.0.0.1", 0)) as closed:
        port = closed.getsockname()[1]
    url = with_port(database.pooled_url, port)
    pooler_hosts = pooler_entry(url, port)
    with captured_logs() as logs:
        error, elapsed = _select_one(_serverless(url, pooler_hosts))
    assert isinstance(error, DatabaseUnavailableError) or any(
        isinstance(link, ConnectionRefusedError) for link in _chain(error)
    ), _chain(error)
    assert elapsed < DEADLINE_MS / 1000
    attempts = [line for line in logs.records if line.get("message") == "database connect attempt failed"]
    assert len(attempts) >= 2, "connection refused is retried with backoff while there is time"
    doctor = _doctor(url, pooler_hosts)
    assert doctor.returncode == 1
    assert f"port {port}" in doctor.stdout
    assert "unreachable" in doctor.stdout
    assert_no_secret(database.password, *logs.lines, error, doctor.stdout, as_text(doctor.stderr))


def test_a_wrong_password_answers_500_and_logs_the_fix(
    database: DatabaseTarget, monkeypatch: pytest.MonkeyPatch
) -> None:
    url = database.pooled_url.replace(f":{quote(database.password, safe='')}@", f":{WRONG_PASSWORD}@")
    configure_serverless(monkeypatch, pooled_url=url, pooler_hosts=database.pooler_hosts)
    try:
        with captured_logs() as logs:
            answer = tiny_api.invoke(tiny_api.tiny_api().app, tiny_api.event("GET", "/health"), timeout_ms=DEADLINE_MS)
    finally:
        reset_database_state()
    assert answer.status == 500
    assert answer.json()["error"]["code"] == "misconfigured"
    assert any("password" in line and "DATABASE_URL" in line for line in logs.lines)
    for secret in (database.password, WRONG_PASSWORD):
        assert_no_secret(secret, *logs.lines, answer.body.decode(), answer.headers)
