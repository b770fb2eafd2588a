"""A Lambda context object for calling a handler in-process (tests and the bench): what Powertools and the kit read."""

from __future__ import annotations

import time
import uuid
from dataclasses import dataclass, field


@dataclass
class FakeLambdaContext:
    """The attributes of the Lambda context object that Powertools and lib.dbkit.invocation read."""

    function_name: str = "ApiFunction"
    timeout_ms: int = 25_000
    memory_limit_in_mb: int = 512
    aws_request_id: str = field(default_factory=lambda: str(uuid.uuid4()))
    _started: float = field(default_factory=time.monotonic)

    @property
    def invoked_function_arn(self) -> str:
        return f"arn:aws:lambda:us-east-1:123456789012:function:{self.function_name}"

    def get_remaining_time_in_millis(self) -> int:
        return max(0, self.timeout_ms - int((time.monotonic() - self._started) * 1000))
