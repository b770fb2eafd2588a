"""The fake Lambda context (devtools.lambda_context) against the real one: awslambdaric's LambdaContext."""

from __future__ import annotations

import dataclasses
import time
from typing import Any

import pytest
from awslambdaric import lambda_context as real_context

from devtools.lambda_context import Client, ClientContext, CognitoIdentity, FakeLambdaContext

ARN = "arn:aws:lambda:us-east-1:123456789012:function:ApiFunction"


def _public(context: object) -> dict[str, Any]:
    return {name: value for name, value in vars(context).items() if not name.startswith("_")}


def _field_names(cls: type) -> set[str]:
    return {f.name for f in dataclasses.fields(cls)}


@pytest.fixture
def real(monkeypatch: pytest.MonkeyPatch) -> Any:
    """The context awslambdaric builds for an invocation, from the variables Lambda sets for the function."""
    for name, value in {
        "AWS_LAMBDA_FUNCTION_NAME": "ApiFunction",
        "AWS_LAMBDA_FUNCTION_MEMORY_SIZE": "512",
        "AWS_LAMBDA_FUNCTION_VERSION": "$LATEST",
        "AWS_LAMBDA_LOG_GROUP_NAME": "/aws/lambda/ApiFunction",
        "AWS_LAMBDA_LOG_STREAM_NAME": "2026/01/01/[$LATEST]0123456789abcdef0123456789abcdef",
    }.items():
        monkeypatch.setenv(name, value)
    return real_context.LambdaContext("req-1", None, None, int(time.time() * 1000) + 25_000, ARN)


def test_the_fake_has_the_real_contexts_attributes_with_the_same_types(real: Any) -> None:
    fake = FakeLambdaContext(aws_request_id="req-1")
    assert _public(fake).keys() == _public(real).keys()
    for name, value in _public(real).items():
        if name != "identity":
            assert type(_public(fake)[name]) is type(value), name
    assert fake.memory_limit_in_mb == real.memory_limit_in_mb == "512"
    assert (fake.function_name, fake.function_version, fake.invoked_function_arn, fake.log_group_name) == (
        real.function_name,
        real.function_version,
        real.invoked_function_arn,
        real.log_group_name,
    )
    assert fake.log_stream_name.startswith(time.strftime("%Y/%m/%d/[$LATEST]", time.gmtime()))


def test_identity_and_client_context_have_the_real_objects_fields(real: Any) -> None:
    assert set(type(real.identity).__slots__) == _field_names(CognitoIdentity)
    assert (real.identity.cognito_identity_id, FakeLambdaContext().identity.cognito_identity_id) == (None, None)
    with_client = real_context.LambdaContext(
        "req-2", {"custom": {"k": "v"}, "client": {"app_title": "notes"}}, None, 0, ARN
    )
    assert set(type(with_client.client_context).__slots__) == _field_names(ClientContext)
    assert set(type(with_client.client_context.client).__slots__) == _field_names(Client)
    assert real.client_context is None
    assert FakeLambdaContext().client_context is None


def test_remaining_time_counts_down_from_an_epoch_deadline_like_the_real_one(real: Any) -> None:
    fake = FakeLambdaContext(timeout_ms=25_000)
    assert abs(fake.get_remaining_time_in_millis() - real.get_remaining_time_in_millis()) < 1_000
    assert 0 < fake.get_remaining_time_in_millis() <= 25_000
    assert FakeLambdaContext(timeout_ms=-5).get_remaining_time_in_millis() == 0
    assert abs(fake._epoch_deadline_time_in_ms - real._epoch_deadline_time_in_ms) < 1_000
