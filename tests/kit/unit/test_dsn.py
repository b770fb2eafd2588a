"""lib.dbkit.dsn: Neon console strings parse as they are, TLS maps to exact SSLContexts, the password never leaks."""

from __future__ import annotations

import ssl
from pathlib import Path

import pytest

from lib.dbkit.dsn import (
    DatabaseUrl,
    SslMode,
    database_url_from_parts,
    is_neon_host,
    parse_database_url,
    require_verified_tls,
)
from lib.dbkit.errors import InsecureTransportError, InvalidDatabaseUrlError, SslRootCertError

PASSWORD = "Zq9-pw-LEAKCHECK"
NEON_POOLED = "ep-cool-darkness-123456-pooler.us-east-2.aws.neon.tech"
CONSOLE_URL = f"postgresql://neondb_owner:{PASSWORD}@{NEON_POOLED}/neondb?sslmode=require&channel_binding=require"
# A throwaway self-signed CA (100-year validity): loading it needs no network and no openssl binary.
TEST_CA_PEM = """-----BEGIN CERTIFICATE-----
MIIBijCCAS+gAwIBAgIUaY7CeBC/kxkv7H6jNDHtkqMyNccwCgYIKoZIzj0EAwIw
GTEXMBUGA1UEAwwOZG9jdG9yIHRlc3QgQ0EwIBcNMjYxMTI1MTUyNDI4WhgPMjEy
NjExMDExNTI0MjhaMBkxFzAVBgNVBAMMDmRvY3RvciB0ZXN0IENBMFkwEwYHKoZI
zj0CAQYIKoZIzj0DAQcDQgAEH476mxqDXO2jITmajB+9pgNgHv7Ft3mt+xDhRTBW
hLdjHSn+Useurl41SGXVahHSoJdqZm+iCvtjhsKmcyngs6NTMFEwHQYDVR0OBBYE
FOkJ13igGkONIQEqa9R89qQg+7v+MB8GA1UdIwQYMBaAFOkJ13igGkONIQEqa9R8
9qQg+7v+MA8GA1UdEwEB/wQFMAMBAf8wCgYIKoZIzj0EAwIDSQAwRgIhANaR+SCW
f1oRBRMEgqqcCO6JNFgCzGKdTCP+jcV/ZIv7AiEAtImtcoIrYDC26xGjgK74HOto
RxnMY35pUdiQ6e5Vv3M=
-----END CERTIFICATE-----
"""


@pytest.fixture
def ca_file(tmp_path: Path) -> Path:
    path = tmp_path / "ca.crt"
    path.write_text(TEST_CA_PEM)
    return path


def _url(query: str = "", *, host: str = "db.example.com") -> DatabaseUrl:
    return parse_database_url(f"postgresql://app:{PASSWORD}@{host}/appdb{'?' + query if query else ''}")


def _all_text(error: BaseException) -> str:
    parts = []
    current: BaseException | None = error
    while current is not None:
        parts.append(f"{current!r} {current}")
        current = current.__cause__ or current.__context__
    return " ".join(parts)


# --- URL forms ---------------------------------------------------------------------------------------------


def test_neon_console_string_parses_to_fields() -> None:
    url = parse_database_url(CONSOLE_URL)
    assert url.host == NEON_POOLED
    assert url.port == 5432
    assert url.user == "neondb_owner"
    assert url.password == PASSWORD
    assert url.database == "neondb"
    assert url.sslmode == "require"
    assert url.channel_binding == "require"
    assert url.sslrootcert is None
    assert url.connect_timeout is None
    assert url.endpoint_id is None


@pytest.mark.parametrize("scheme", ["postgresql", "postgres", "postgresql+pg8000", "PostgreSQL"])
def test_accepted_schemes(scheme: str) -> None:
    assert parse_database_url(f"{scheme}://u:p@h/db").host == "h"


@pytest.mark.parametrize("url", ["mysql://u:p@h/db", "postgresql+psycopg://u:p@h/db", "u:p@h/db", "h:5432"])
def test_other_schemes_are_refused(url: str) -> None:
    with pytest.raises(InvalidDatabaseUrlError, match="must start with postgresql:// or postgres://"):
        parse_database_url(url)


def test_explicit_port_and_missing_database() -> None:
    url = parse_database_url("postgres://u:p@Db.Example.COM:6543")
    assert (url.host, url.port, url.database) == ("db.example.com", 6543, None)


def test_ipv6_host_in_brackets() -> None:
    url = parse_database_url("postgresql://u:p@[::1]:6432/db")
    assert (url.host, url.port) == ("::1", 6432)
    assert "@[::1]:6432/" in url.redacted()


def test_percent_encoded_user_and_password_are_decoded() -> None:
    url = parse_database_url("postgresql://us%40er:p%40ss%2Fw%3Ard%23%3F%25+x@h/d%20b")
    assert url.user == "us@er"
    # '+' stays literal, as libpq reads URIs.
    assert url.password == "p@ss/w:rd#?% x".replace(" ", "+")
    assert url.database == "d b"


def test_password_is_optional() -> None:
    assert parse_database_url("postgresql://u@h/db").password is None


def test_connect_timeout_application_name_and_endpoint_option() -> None:
    url = _url("connect_timeout=15&application_name=notes%20api&options=endpoint%3Dep-cool-darkness-123456")
    assert url.connect_timeout == 15.0
    assert url.application_name == "notes api"
    assert url.endpoint_id == "ep-cool-darkness-123456"
    assert url.server_options is None


def test_legacy_project_option_is_the_endpoint() -> None:
    assert _url("options=project%3Dep-old-1").endpoint_id == "ep-old-1"


def test_other_options_are_kept_after_the_endpoint() -> None:
    url = _url("options=endpoint%3Dep-a-1%20-c%20statement_timeout%3D5s")
    assert url.endpoint_id == "ep-a-1"
    assert url.server_options == "-c statement_timeout=5s"
    assert url.startup_options == "endpoint=ep-a-1 -c statement_timeout=5s"


def test_dashed_endpoint_option_is_refused_with_the_documented_form() -> None:
    with pytest.raises(InvalidDatabaseUrlError, match=r"write options=endpoint%3D<endpoint-id>"):
        _url("options=--endpoint%3Dep-a-1")


def test_two_different_endpoints_are_refused() -> None:
    with pytest.raises(InvalidDatabaseUrlError, match="more than one Neon endpoint"):
        _url("options=endpoint%3Dep-a%20project%3Dep-b")


def test_malformed_endpoint_id_is_refused() -> None:
    with pytest.raises(InvalidDatabaseUrlError, match="not a valid Neon endpoint id"):
        _url("options=endpoint%3Dep_a;drop")


def test_fallback_application_name_is_used_when_no_application_name() -> None:
    assert _url("fallback_application_name=tool").application_name == "tool"
    assert _url("fallback_application_name=tool&application_name=app").application_name == "app"


@pytest.mark.parametrize(("given", "expected"), [("10", 10.0), ("1", 2.0), (" 30 ", 30.0)])
def test_connect_timeout_follows_libpq(given: str, expected: float) -> None:
    assert _url(f"connect_timeout={given}").connect_timeout == expected


@pytest.mark.parametrize("given", ["0", "-3", "abc", "2.5", ""])
def test_bad_connect_timeout_is_refused(given: str) -> None:
    with pytest.raises(InvalidDatabaseUrlError, match="connect_timeout"):
        _url(f"connect_timeout={given}")


def test_unknown_sslmode_lists_the_accepted_values() -> None:
    with pytest.raises(InvalidDatabaseUrlError, match="disable, allow, prefer, require, verify-ca, verify-full"):
        _url("sslmode=strict")


def test_unknown_channel_binding_is_refused() -> None:
    with pytest.raises(InvalidDatabaseUrlError, match="channel_binding='always'"):
        _url("channel_binding=always")


def test_sslmode_defaults_to_prefer_like_libpq() -> None:
    assert _url().sslmode == "prefer"


def test_sslrootcert_system_defaults_to_verify_full() -> None:
    url = _url("sslrootcert=system")
    assert url.sslmode == "verify-full"


def test_sslrootcert_system_with_a_weaker_sslmode_is_refused() -> None:
    with pytest.raises(InvalidDatabaseUrlError, match="use sslmode=verify-full"):
        _url("sslrootcert=system&sslmode=require")


def test_harmless_libpq_parameters_are_dropped_and_listed() -> None:
    url = _url("keepalives=1&keepalives_idle=30&sslsni=1&gssencmode=prefer&target_session_attrs=any")
    assert url.ignored_params == ("gssencmode", "keepalives", "keepalives_idle", "sslsni", "target_session_attrs")


def test_libpq_parameters_pg8000_cannot_honour_are_refused_by_name() -> None:
    with pytest.raises(InvalidDatabaseUrlError, match=r"cannot honour: sslcert, sslkey \(remove them\)"):
        _url("sslcert=/c.pem&sslkey=/k.pem")


def test_value_gated_parameter_with_other_value_is_refused() -> None:
    with pytest.raises(InvalidDatabaseUrlError, match="gssencmode='require' cannot be honoured"):
        _url("gssencmode=require")


def test_unknown_parameters_are_refused_by_name() -> None:
    with pytest.raises(InvalidDatabaseUrlError, match=r"unknown parameters: 'pool_size', 'sslmod'"):
        _url("sslmod=require&pool_size=5")


def test_duplicate_parameter_is_refused() -> None:
    with pytest.raises(InvalidDatabaseUrlError, match="repeats the parameter 'sslmode'"):
        _url("sslmode=require&sslmode=disable")


@pytest.mark.parametrize(
    ("url", "message"),
    [
        ("postgresql://h/db", "no user@ part"),
        ("postgresql://:p@h/db", "no user name"),
        ("postgresql://u:p@/db", "no host"),
        ("postgresql://u:p@h1,h2/db", "several hosts"),
        ("postgresql://u:p@%2Ftmp/db", "unix-socket"),
        ("postgresql://u:p@h:0/db", "between 1 and 65535"),
        ("postgresql://u:p@[::1/db", "unclosed"),
        ("postgresql://u:p@h/db?sslmode", "has no '=value'"),
    ],
)
def test_malformed_urls_are_refused(url: str, message: str) -> None:
    with pytest.raises(InvalidDatabaseUrlError, match=message):
        parse_database_url(url)


@pytest.mark.parametrize(
    "url",
    [
        f"postgresql://u:{PASSWORD}/x@h/db",  # '/' not encoded
        f"postgresql://u:{PASSWORD}?x@h/db",  # '?' not encoded
        f"postgresql://u:{PASSWORD}#x@h/db",  # '#' not encoded
        f"postgresql://u:12/{PASSWORD}@h/db",  # digits then '/': the rest lands in the path
        f"postgresql://u:p@h/db?{PASSWORD}=1",
        f"postgresql://u:p@h/db?x{PASSWORD}%3F=1",
        f"postgresql://u:p@h:{PASSWORD}/db",
        f"mysql://u:{PASSWORD}@h/db",
        PASSWORD,
    ],
)
def test_errors_never_echo_the_password(url: str) -> None:
    with pytest.raises(InvalidDatabaseUrlError) as caught:
        parse_database_url(url)
    assert PASSWORD not in _all_text(caught.value)
    assert "LEAKCHECK" not in _all_text(caught.value)


def test_repr_str_and_redacted_hide_the_password() -> None:
    url = parse_database_url(CONSOLE_URL + "&options=endpoint%3Dep-cool-darkness-123456&connect_timeout=12")
    for text in (repr(url), str(url), url.redacted(), repr(url.sqlalchemy_url()), str(url.sqlalchemy_url())):
        assert PASSWORD not in text
    assert url.redacted() == (
        f"postgresql://neondb_owner:****@{NEON_POOLED}:5432/neondb?sslmode=require&channel_binding=require"
        "&connect_timeout=12&options=endpoint%3Dep-cool-darkness-123456"
    )


def test_redacted_without_password_shows_no_placeholder() -> None:
    assert parse_database_url("postgresql://u@h/db").redacted() == "postgresql://u@h:5432/db?sslmode=prefer"


# --- SQLAlchemy URL and pg8000 arguments -----------------------------------------------------------------


def test_sqlalchemy_url_is_pg8000_without_query() -> None:
    url = parse_database_url(CONSOLE_URL + "&connect_timeout=5&application_name=x")
    sa_url = url.sqlalchemy_url()
    assert sa_url.drivername == "postgresql+pg8000"
    assert dict(sa_url.query) == {}
    assert (sa_url.username, sa_url.password, sa_url.host, sa_url.port, sa_url.database) == (
        "neondb_owner",
        PASSWORD,
        NEON_POOLED,
        5432,
        "neondb",
    )


def test_connect_args_for_pg8000() -> None:
    url = parse_database_url(CONSOLE_URL + "&options=endpoint%3Dep-cool-darkness-123456&application_name=notes")
    args = url.connect_args()
    assert set(args) == {
        "user",
        "password",
        "host",
        "port",
        "database",
        "ssl_context",
        "timeout",
        "application_name",
        "startup_params",
    }
    assert args["timeout"] == 10.0
    assert args["startup_params"] == {"options": "endpoint=ep-cool-darkness-123456"}
    assert args["application_name"] == "notes"
    assert isinstance(args["ssl_context"], ssl.SSLContext)


def test_connect_args_without_endpoint_or_name_send_no_startup_params() -> None:
    args = _url("connect_timeout=7").connect_args()
    assert "startup_params" not in args
    assert "application_name" not in args
    assert args["timeout"] == 7.0


def test_connect_args_timeout_override() -> None:
    assert _url("connect_timeout=7").connect_args(timeout=1.5)["timeout"] == 1.5


# --- sslmode → SSLContext ---------------------------------------------------------------------------------


def test_sslmode_disable_really_disables_tls() -> None:
    # pg8000 sends no SSLRequest only for ssl_context=False; None would try TLS and fall back to plaintext.
    assert _url("sslmode=disable").ssl_context() is False
    assert _url("sslmode=disable").connect_args()["ssl_context"] is False


@pytest.mark.parametrize("mode", ["allow", "prefer", "require"])
def test_unverified_modes_encrypt_without_verification(mode: SslMode) -> None:
    context = _url(f"sslmode={mode}").ssl_context()
    assert isinstance(context, ssl.SSLContext)
    assert context.verify_mode == ssl.CERT_NONE
    assert context.check_hostname is False
    assert context.minimum_version == ssl.TLSVersion.TLSv1_2


@pytest.mark.parametrize("mode", ["allow", "prefer", "require"])
def test_root_cert_file_makes_unverified_modes_verify_the_chain(mode: SslMode, ca_file: Path) -> None:
    url = _url(f"sslmode={mode}&sslrootcert={ca_file}")
    assert url.effective_sslmode == "verify-ca"
    context = url.ssl_context()
    assert isinstance(context, ssl.SSLContext)
    assert context.verify_mode == ssl.CERT_REQUIRED
    assert context.check_hostname is False
    assert [ca["subject"] for ca in context.get_ca_certs()] == [((("commonName", "doctor test CA"),),)]


@pytest.mark.parametrize(("mode", "hostname"), [("verify-ca", False), ("verify-full", True)])
def test_verify_modes_with_root_cert_file(mode: SslMode, hostname: bool, ca_file: Path) -> None:
    context = _url(f"sslmode={mode}&sslrootcert={ca_file}").ssl_context()
    assert isinstance(context, ssl.SSLContext)
    assert context.verify_mode == ssl.CERT_REQUIRED
    assert context.check_hostname is hostname
    assert len(context.get_ca_certs()) == 1


@pytest.mark.parametrize("query", ["sslmode=verify-full", "sslrootcert=system", "sslmode=verify-ca"])
def test_verify_modes_without_root_cert_use_the_system_store(query: str) -> None:
    context = _url(query).ssl_context()
    assert isinstance(context, ssl.SSLContext)
    assert context.verify_mode == ssl.CERT_REQUIRED
    assert context.check_hostname is (query != "sslmode=verify-ca")
    system = ssl.create_default_context()
    assert context.cert_store_stats()["x509_ca"] == system.cert_store_stats()["x509_ca"]


@pytest.mark.parametrize("mode", ["disable", "allow", "prefer", "require", "verify-ca", "verify-full"])
def test_ssl_context_is_never_none(mode: SslMode) -> None:
    assert _url(f"sslmode={mode}").connect_args()["ssl_context"] is not None


def test_ssl_min_protocol_version_is_honoured() -> None:
    context = _url("sslmode=require&ssl_min_protocol_version=TLSv1.3").ssl_context()
    assert isinstance(context, ssl.SSLContext)
    assert context.minimum_version == ssl.TLSVersion.TLSv1_3


def test_missing_root_cert_file_names_the_path(tmp_path: Path) -> None:
    missing = tmp_path / "nowhere" / "root.crt"
    url = _url(f"sslmode=verify-full&sslrootcert={missing}")
    with pytest.raises(SslRootCertError, match=f"sslrootcert file not found: {missing}"):
        url.ssl_context()


def test_root_cert_file_without_certificate_is_refused(tmp_path: Path) -> None:
    junk = tmp_path / "junk.crt"
    junk.write_text("not a certificate\n")
    with pytest.raises(SslRootCertError, match="holds no usable PEM CA certificate"):
        _url(f"sslmode=verify-full&sslrootcert={junk}").ssl_context()


# --- serverless TLS policy ------------------------------------------------------------------------------------


@pytest.mark.parametrize("query", ["sslmode=require", "sslmode=prefer", "sslmode=allow", "", "sslmode=verify-ca"])
def test_neon_hosts_are_upgraded_to_verify_full(query: str) -> None:
    url = require_verified_tls(_url(query, host=NEON_POOLED))
    assert url.sslmode == "verify-full"
    context = url.ssl_context()
    assert isinstance(context, ssl.SSLContext)
    assert context.check_hostname is True


def test_verified_urls_pass_unchanged(ca_file: Path) -> None:
    for query in ("sslmode=verify-full", f"sslmode=verify-ca&sslrootcert={ca_file}", f"sslrootcert={ca_file}"):
        url = _url(query)
        assert require_verified_tls(url) is url


@pytest.mark.parametrize("query", ["sslmode=require", "sslmode=prefer", "", "sslmode=verify-ca", "sslmode=allow"])
def test_other_hosts_without_verification_are_refused_with_the_fix(query: str) -> None:
    with pytest.raises(InsecureTransportError, match=r"use sslmode=verify-full&sslrootcert=") as caught:
        require_verified_tls(_url(query))
    assert "db.example.com" in str(caught.value)
    assert PASSWORD not in str(caught.value)


@pytest.mark.parametrize("host", [NEON_POOLED, "db.example.com"])
def test_sslmode_disable_is_refused_by_the_policy(host: str) -> None:
    with pytest.raises(InsecureTransportError, match="sslmode=disable is refused"):
        require_verified_tls(_url("sslmode=disable", host=host))


@pytest.mark.parametrize(
    ("host", "neon"),
    [(NEON_POOLED, True), ("EP-X.eu-central-1.aws.NEON.TECH.", True), ("neon.tech.example.com", False), ("h", False)],
)
def test_is_neon_host(host: str, neon: bool) -> None:
    assert is_neon_host(host) is neon


def test_from_parts_validates_like_the_url_parser() -> None:
    url = database_url_from_parts(
        host="H", port=None, user="u", password=PASSWORD, database="db", params={"sslmode": "verify-full"}
    )
    assert (url.host, url.port, url.sslmode) == ("h", 5432, "verify-full")
    with pytest.raises(InvalidDatabaseUrlError, match="unknown parameters: 'engine'"):
        database_url_from_parts(host="h", port=1, user="u", password=None, database=None, params={"engine": "pg"})


# --- hostaddr and direct TLS ---------------------------------------------------------------------------------


def test_hostaddr_connects_there_while_tls_keeps_the_host_name() -> None:
    url = _url("sslmode=verify-full&hostaddr=127.0.0.1", host="ep-local-stack-123456-pooler.stack.localhost")
    assert url.host == "ep-local-stack-123456-pooler.stack.localhost"
    assert url.hostaddr == "127.0.0.1"
    args = url.connect_args()
    assert args["host"] == "ep-local-stack-123456-pooler.stack.localhost"
    assert args["hostaddr"] == "127.0.0.1"
    assert "hostaddr=127.0.0.1" in url.redacted()


@pytest.mark.parametrize("value", ["localhost", "127.0.0.1.5", "db.example.com"])
def test_hostaddr_must_be_numeric_like_libpq(value: str) -> None:
    with pytest.raises(InvalidDatabaseUrlError, match="hostaddr"):
        _url(f"sslmode=verify-full&hostaddr={value}")


def test_without_hostaddr_or_direct_tls_pg8000_gets_only_its_own_arguments() -> None:
    args = _url("sslmode=verify-full").connect_args()
    assert "hostaddr" not in args
    assert "sslnegotiation" not in args


def test_direct_tls_offers_alpn_postgresql() -> None:
    url = _url("sslmode=verify-full&sslnegotiation=direct")
    assert url.sslnegotiation == "direct"
    assert url.connect_args()["sslnegotiation"] == "direct"
    assert "sslnegotiation=direct" in url.redacted()
    assert parse_database_url(url.redacted().replace(":****", "")).sslnegotiation == "direct"


def test_sslrequest_stays_the_default() -> None:
    assert _url("sslmode=verify-full").sslnegotiation == "postgres"
    assert _url("sslmode=verify-full&sslnegotiation=postgres").sslnegotiation == "postgres"


@pytest.mark.parametrize("mode", ["disable", "allow", "prefer"])
def test_direct_tls_with_an_sslmode_that_allows_plaintext_is_refused(mode: str) -> None:
    with pytest.raises(InvalidDatabaseUrlError, match="sslnegotiation=direct cannot be used with sslmode"):
        _url(f"sslmode={mode}&sslnegotiation=direct")


def test_unknown_sslnegotiation_is_refused() -> None:
    with pytest.raises(InvalidDatabaseUrlError, match="sslnegotiation='tls' is not valid"):
        _url("sslmode=require&sslnegotiation=tls")
