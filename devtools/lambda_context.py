"""The one stand-in for Lambda's context object, for code that calls a handler in-process (tests, the bench).

Field for field it is what awslambdaric's LambdaContext holds when the Python runtime calls a handler: strings where
the runtime reads environment variables (memory_limit_in_mb is "512", not 512), an epoch-millisecond deadline,
`identity` always an object and `client_context` None unless the invoker sent one.
devtools/tests/unit/test_lambda_context.py compares it with the real class.
"""

from __future__ import annotations

import time
import uuid
from dataclasses import InitVar, dataclass, field

ACCOUNT_ID = "123456789012"
DEFAULT_REGION = "us-east-1"


@dataclass
class CognitoIdentity:
    """context.identity: set on every invocation, its fields None unless a Cognito identity invoked."""

    cognito_identity_id: str | None = None
    cognito_identity_pool_id: str | None = None


@dataclass
class Client:
    """context.client_context.client: the mobile app that invoked, as the AWS Mobile SDK describes it."""

    installation_id: str | None = None
    app_title: str | None = None
    app_version_name: str | None = None
    app_version_code: str | None = None
    app_package_name: str | None = None


@dataclass
class ClientContext:
    """context.client_context, when the invoker passed one."""

    custom: dict[str, str] | None = None
    env: dict[str, str] | None = None
    client: Client | None = None


def log_stream_name() -> str:
    """A log stream name the way Lambda names one per execution environment."""
    return time.strftime("%Y/%m/%d/[$LATEST]", time.gmtime()) + uuid.uuid4().hex


@dataclass
class FakeLambdaContext:
    """A Lambda context whose remaining time counts down from `timeout_ms`, as the runtime's does from its deadline."""

    function_name: str = "ApiFunction"
    timeout_ms: InitVar[int] = 25_000
    memory_limit_in_mb: str = "512"
    region: InitVar[str] = DEFAULT_REGION
    aws_request_id: str = field(default_factory=lambda: str(uuid.uuid4()))
    function_version: str = "$LATEST"
    invoked_function_arn: str = field(init=False)
    log_group_name: str = field(init=False)
    log_stream_name: str = field(default_factory=log_stream_name)
    identity: CognitoIdentity = field(default_factory=CognitoIdentity)
    client_context: ClientContext | None = None
    tenant_id: str | None = None
    _epoch_deadline_time_in_ms: int = field(init=False, repr=False)

    def __post_init__(self, timeout_ms: int, region: str) -> None:
        self.invoked_function_arn = f"arn:aws:lambda:{region}:{ACCOUNT_ID}:function:{self.function_name}"
        self.log_group_name = f"/aws/lambda/{self.function_name}"
        self._epoch_deadline_time_in_ms = int(time.time() * 1000) + timeout_ms

    def get_remaining_time_in_millis(self) -> int:
        """Milliseconds left before the deadline (0 once it has passed), from the wall clock as the runtime counts."""
        return max(0, self._epoch_deadline_time_in_ms - int(time.time() * 1000))
