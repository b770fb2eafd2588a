"""lib.dbkit.pooler: which hosts are transaction poolers, and the exact fixes the refusals name."""

from __future__ import annotations

import pytest

from lib.dbkit.dsn import DatabaseUrl, parse_database_url
from lib.dbkit.errors import DirectConnectionRequiredError, InvalidSettingError, PoolerRequiredError
from lib.dbkit.pooler import (
    HostKind,
    PoolerHost,
    classify_host,
    connection_warnings,
    endpoint_label,
    neon_direct_host,
    neon_pooled_host,
    parse_pooler_hosts,
    require_direct,
    require_pooler,
)
from lib.dbkit.settings import Settings

PASSWORD = "Zq9-pw-LEAKCHECK"
NEON_DIRECT = "ep-cool-darkness-123456.us-east-2.aws.neon.tech"
NEON_POOLED = "ep-cool-darkness-123456-pooler.us-east-2.aws.neon.tech"


def _url(host: str, port: int = 5432) -> DatabaseUrl:
    return parse_database_url(f"postgresql://app:{PASSWORD}@{host}:{port}/db?sslmode=verify-full")


def test_neon_pooled_hostname_is_derived_exactly() -> None:
    assert neon_pooled_host(NEON_DIRECT) == NEON_POOLED
    assert neon_pooled_host(NEON_POOLED) == NEON_POOLED
    assert neon_pooled_host("ep-x-1.c-2.us-east-1.aws.neon.tech") == "ep-x-1-pooler.c-2.us-east-1.aws.neon.tech"


def test_neon_direct_hostname_is_derived_exactly() -> None:
    assert neon_direct_host(NEON_POOLED) == NEON_DIRECT
    assert neon_direct_host(NEON_DIRECT) == NEON_DIRECT


@pytest.mark.parametrize(
    ("host", "port", "kind"),
    [
        (NEON_POOLED, 5432, HostKind.NEON_POOLER),
        (NEON_DIRECT, 5432, HostKind.NEON_DIRECT),
        (NEON_POOLED.upper(), 5432, HostKind.NEON_POOLER),
        ("ep-x.eastus2.azure.neon.tech", 5432, HostKind.NEON_DIRECT),
        ("pgbouncer.internal", 6432, HostKind.LISTED_POOLER),
        ("PgBouncer.Internal.", 6432, HostKind.LISTED_POOLER),
        ("pgbouncer.internal", 5432, HostKind.OTHER),
        ("any-port.internal", 1234, HostKind.LISTED_POOLER),
        ("::1", 6432, HostKind.LISTED_POOLER),
        ("db.internal", 5432, HostKind.OTHER),
        ("pooler.example.com", 5432, HostKind.OTHER),
    ],
)
def test_classify_host(host: str, port: int, kind: HostKind) -> None:
    allowlist = parse_pooler_hosts("pgbouncer.internal:6432, ANY-PORT.internal,[::1]:6432")
    assert classify_host(host, port, allowlist) is kind


def test_neon_hosts_are_judged_by_name_even_when_listed() -> None:
    assert classify_host(NEON_DIRECT, 5432, (PoolerHost(NEON_DIRECT),)) is HostKind.NEON_DIRECT


@pytest.mark.parametrize(
    ("value", "expected"),
    [
        ("", ()),
        ("h", (PoolerHost("h"),)),
        ("H:6432,", (PoolerHost("h", 6432),)),
        (" a:1 , b ", (PoolerHost("a", 1), PoolerHost("b"))),
        ("[::1]:6432,[fe80::1]", (PoolerHost("::1", 6432), PoolerHost("fe80::1"))),
        ("::1", (PoolerHost("::1"),)),
    ],
)
def test_parse_pooler_hosts(value: str, expected: tuple[PoolerHost, ...]) -> None:
    assert parse_pooler_hosts(value) == expected


@pytest.mark.parametrize("value", ["h:port", "h:0", "h:70000", ":6432", "[::1]x", "[::1]:"])
def test_bad_pooler_hosts_entries_name_the_variable(value: str) -> None:
    with pytest.raises(InvalidSettingError, match=r"DB_POOLER_HOSTS entry .* expected host or host:port"):
        parse_pooler_hosts(value)


def test_pooler_host_renders_like_its_input() -> None:
    assert [str(entry) for entry in parse_pooler_hosts("a:1,b,[::1]:2")] == ["a:1", "b", "[::1]:2"]


def test_serverless_refuses_neon_direct_host_naming_the_pooled_host() -> None:
    with pytest.raises(PoolerRequiredError) as caught:
        require_pooler(_url(NEON_DIRECT), ())
    message = str(caught.value)
    assert f"use the pooled hostname {NEON_POOLED} " in message
    assert PASSWORD not in message


def test_serverless_refuses_unknown_host_naming_the_allowlist() -> None:
    with pytest.raises(PoolerRequiredError) as caught:
        require_pooler(_url("db.internal", 5433), parse_pooler_hosts("db.internal:6432"))
    message = str(caught.value)
    assert "db.internal:5433 is not known to be one" in message
    assert "add it to DB_POOLER_HOSTS if it is a PgBouncer in transaction mode, or use the pooled URL" in message
    assert PASSWORD not in message


def test_serverless_accepts_poolers() -> None:
    assert require_pooler(_url(NEON_POOLED), ()) is HostKind.NEON_POOLER
    assert require_pooler(_url("db.internal", 6432), parse_pooler_hosts("db.internal:6432")) is HostKind.LISTED_POOLER


def test_migration_refuses_neon_pooler_naming_the_direct_host() -> None:
    with pytest.raises(DirectConnectionRequiredError) as caught:
        require_direct(_url(NEON_POOLED), ())
    message = str(caught.value)
    assert f"use the direct hostname {NEON_DIRECT}" in message
    assert PASSWORD not in message


def test_migration_refuses_listed_pooler_pointing_at_the_direct_url() -> None:
    with pytest.raises(DirectConnectionRequiredError, match=r"use the direct URL, e\.g\. DIRECT_DATABASE_URL"):
        require_direct(_url("localhost", 6432), parse_pooler_hosts("localhost:6432"))


def test_migration_accepts_direct_hosts() -> None:
    assert require_direct(_url(NEON_DIRECT), ()) is HostKind.NEON_DIRECT
    assert require_direct(_url("localhost", 5432), parse_pooler_hosts("localhost:6432")) is HostKind.OTHER


def _settings(url: str, mode: str = "serverless", pooler_hosts: str = "") -> Settings:
    return Settings.from_env({"DATABASE_URL": url, "DB_MODE": mode, "DB_POOLER_HOSTS": pooler_hosts})


NEON_URL = "postgresql://u:secret-pw@{host}/neondb?sslmode=verify-full{query}"
POOLED_HOST = "ep-cool-darkness-123456-pooler.us-east-2.aws.neon.tech"


@pytest.mark.parametrize(
    ("host", "mode", "pooler_hosts", "warned"),
    [
        (POOLED_HOST, "serverless", "", True),
        ("pgbouncer.internal", "serverless", "pgbouncer.internal", True),
        (POOLED_HOST.replace("-pooler", ""), "server", "", False),
    ],
)
def test_channel_binding_require_on_a_pooled_host_is_warned_citing_the_neon_issue(
    host: str, mode: str, pooler_hosts: str, warned: bool
) -> None:
    url = NEON_URL.format(host=host, query="&channel_binding=require")
    warnings = _settings(url, mode, pooler_hosts).warnings
    if not warned:
        assert warnings == ()
        return
    assert len(warnings) == 1
    assert "neondatabase/neon/issues/12897" in warnings[0]
    assert "remove channel_binding=require" in warnings[0]


def test_channel_binding_prefer_is_not_warned() -> None:
    assert _settings(NEON_URL.format(host=POOLED_HOST, query="&channel_binding=prefer")).warnings == ()


@pytest.mark.parametrize(
    ("host", "option", "warned"),
    [
        (POOLED_HOST, "ep-cool-darkness-123456", True),  # Neon compares raw names: the pooled label keeps -pooler
        (POOLED_HOST, "ep-other-endpoint-654321-pooler", True),
        (POOLED_HOST, "ep-cool-darkness-123456-pooler", False),
        ("ep-local-stack-123456-pooler.stack.localhost", "ep-local-stack-123456", True),
        ("pgbouncer.internal", "ep-cool-darkness-123456", False),  # not routed by SNI: nothing to contradict
    ],
)
def test_an_endpoint_option_that_contradicts_the_host_is_warned(host: str, option: str, warned: bool) -> None:
    url = DatabaseUrl(host=host, user="u", endpoint_id=option)
    warnings = connection_warnings(url, HostKind.LISTED_POOLER)
    assert bool(warnings) is warned
    if warned:
        label = endpoint_label(host)
        assert f"options=endpoint%3D{label}" in warnings[0]
        assert "Inconsistent project name inferred from SNI" in warnings[0]


@pytest.mark.parametrize(
    ("host", "label"),
    [
        (POOLED_HOST, "ep-cool-darkness-123456-pooler"),
        ("ep-local-stack-123456-pooler.stack.localhost", "ep-local-stack-123456-pooler"),
        ("localhost", None),
        ("127.0.0.1", None),
        ("db.example.com", None),
    ],
)
def test_endpoint_label_is_read_from_neon_style_host_names(host: str, label: str | None) -> None:
    assert endpoint_label(host) == label
