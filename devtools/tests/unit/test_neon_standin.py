"""devtools.neon_standin without the network: Neon's endpoint rules, its error frames, what it forwards."""

from __future__ import annotations

import struct
from pathlib import Path

import pytest

from devtools.neon_standin import (
    MISSING_ENDPOINT,
    REFUSALS,
    Config,
    FrameTracker,
    Route,
    Scenario,
    Standin,
    StandinError,
    _Refused,
    admin_shutdown_error,
    endpoint_from_sni,
    forwarded_options,
    forwarded_params,
    frame,
    neon_error,
    parse_fields,
    resolve_endpoint,
    routed,
    split_options,
)

DOMAIN = "stack.localhost"
POOLED_SNI = f"ep-local-stack-123456-pooler.{DOMAIN}"


def _refusal(options: str | None, sni: str | None) -> str:
    with pytest.raises(_Refused) as refused:
        resolve_endpoint(options, sni, DOMAIN)
    return refused.value.message


def test_the_endpoint_is_the_first_label_of_an_sni_name_in_the_proxy_domain() -> None:
    assert resolve_endpoint(None, POOLED_SNI, DOMAIN) == "ep-local-stack-123456-pooler"
    assert endpoint_from_sni(f"ep-x.other.{DOMAIN}", DOMAIN) is None  # the rest must be the domain itself
    assert endpoint_from_sni("localhost", DOMAIN) is None
    assert endpoint_from_sni(None, DOMAIN) is None


def test_without_sni_the_endpoint_option_names_the_endpoint() -> None:
    assert resolve_endpoint("endpoint=ep-local-stack-123456-pooler", None, DOMAIN) == "ep-local-stack-123456-pooler"
    assert resolve_endpoint("-c geqo=off project=ep-a-1", None, DOMAIN) == "ep-a-1"


def test_no_sni_and_no_option_is_neons_missing_endpoint_message() -> None:
    assert _refusal(None, None) == MISSING_ENDPOINT
    assert "options=endpoint%3D<endpoint-id>" in MISSING_ENDPOINT


def test_an_option_differing_from_the_sni_label_is_inconsistent_even_by_the_pooler_suffix() -> None:
    # Neon compares the raw strings: the pooled host's label keeps -pooler.
    message = _refusal("endpoint=ep-local-stack-123456", POOLED_SNI)
    assert message == (
        "Inconsistent project name inferred from SNI ('ep-local-stack-123456-pooler') and project option "
        "('ep-local-stack-123456')."
    )
    assert resolve_endpoint("endpoint=ep-local-stack-123456-pooler", POOLED_SNI, DOMAIN).endswith("-pooler")


def test_a_malformed_endpoint_is_refused_with_neons_message() -> None:
    assert _refusal("endpoint=ep_local", None) == (
        "Project name ('ep_local') must contain only alphanumeric characters and hyphen."
    )


def test_several_endpoint_options_count_as_none() -> None:
    assert resolve_endpoint("endpoint=a endpoint=b", POOLED_SNI, DOMAIN) == "ep-local-stack-123456-pooler"
    assert _refusal("endpoint=a project=b", None) == MISSING_ENDPOINT


def test_options_split_on_unescaped_whitespace_only() -> None:
    assert split_options(r"-c a=1  endpoint=x -c b=two\ words") == ["-c", "a=1", "endpoint=x", "-c", r"b=two\ words"]


def test_neons_own_options_are_not_forwarded() -> None:
    assert forwarded_options("endpoint=ep-x project=ep-y neon_lsn:0/2") is None
    assert forwarded_options("endpoint=ep-x -c geqo=off") == "-c geqo=off"


def test_only_neons_startup_parameters_reach_the_compute() -> None:
    params = {
        "user": "u",
        "database": "d",
        "application_name": "app",
        "options": "endpoint=ep-x",
        "client_encoding": "LATIN1",
        "DateStyle": "ISO",
    }
    assert forwarded_params(params) == [
        ("client_encoding", "UTF8"),
        ("user", "u"),
        ("database", "d"),
        ("application_name", "app"),
    ]


def test_refusals_are_error_severity_with_sqlstate_xx000_and_the_message_only() -> None:
    message = REFUSALS["wrong_password"]("neondb_owner")
    raw = neon_error(message)
    assert raw[:1] == b"E"
    assert struct.unpack("!I", raw[1:5])[0] == len(raw) - 1
    assert parse_fields(raw[5:]) == {
        "S": "ERROR",
        "C": "XX000",
        "M": "password authentication failed for user 'neondb_owner'",
    }


def test_a_suspended_compute_sends_postgres_fatal_57p01() -> None:
    fields = parse_fields(admin_shutdown_error()[5:])
    assert (fields["S"], fields["C"], fields["M"]) == (
        "FATAL",
        "57P01",
        "terminating connection due to administrator command",
    )


def test_frame_tracker_knows_message_boundaries_across_chunks() -> None:
    stream = frame(b"Z", b"I") + frame(b"D", b"x" * 10)
    tracker = FrameTracker()
    for size in (3, 4, 5):
        tracker.feed(stream[:size])
        stream = stream[size:]
        assert not tracker.at_boundary
    tracker.feed(stream)
    assert tracker.at_boundary


def test_scripted_refusals_are_one_shot_counted_or_sticky() -> None:
    scenario = Scenario(refusals={"compute_unreachable": 2, "endpoint_disabled": None})
    taken = [scenario.take_refusal() for _ in range(4)]
    assert taken == ["compute_unreachable", "compute_unreachable", "endpoint_disabled", "endpoint_disabled"]
    assert Scenario(refusals={"quota_exceeded": 1}).take_refusal() == "quota_exceeded"
    assert Scenario().take_refusal() is None


def test_each_endpoint_is_a_compute_of_its_own_named_by_id_or_role(tmp_path: Path) -> None:
    config = Config(
        listen_port=1, control_port=2, upstream_port=3, cert=tmp_path / "c", key=tmp_path / "k", ca=tmp_path / "a",
        routes=(Route("ep-a-1"), Route("ep-b-2", role="replica", database_suffix="_replica")), domain="d",
    )  # fmt: skip
    standin = Standin(config)
    standin.handle({"op": "refuse", "kind": "endpoint_disabled", "times": None, "endpoint": "replica"})
    standin.handle({"op": "suspend", "endpoint": "ep-b-2-pooler"})
    status = standin.handle({"op": "status"})
    assert status["endpoints"]["ep-b-2"]["scenario"]["refusals"] == {"endpoint_disabled": None}
    assert status["endpoints"]["ep-b-2"]["suspended"] is True
    assert status["endpoints"]["ep-b-2"]["counters"]["suspends"] == 1
    assert status["endpoints"]["ep-a-1"]["scenario"]["refusals"] == {}
    # The top level is the primary's state, and the totals.
    assert (status["suspended"], status["counters"]["suspends"]) == (False, 1)
    standin.handle({"op": "reset"})  # no endpoint: all of them
    assert standin.handle({"op": "status"})["endpoints"]["ep-b-2"]["suspended"] is False
    with pytest.raises(StandinError, match="unknown endpoint 'ep-c-3'"):
        standin.handle({"op": "status", "endpoint": "ep-c-3"})


def test_a_replica_endpoints_sessions_reach_the_poolers_database_for_it() -> None:
    replica = Route("ep-b-2", role="replica", database_suffix="_replica")
    assert routed({"user": "u", "database": "neondb"}, replica)["database"] == "neondb_replica"
    assert routed({"user": "u"}, replica)["database"] == "u_replica"  # Postgres' default: the user's name
    assert routed({"user": "u", "database": "neondb"}, Route("ep-a-1"))["database"] == "neondb"
