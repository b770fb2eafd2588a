from typing import Any

import pytest

from lib.dbkit.errors import InvalidEventError
from lib.dbkit.lambda_events import check_http_api_event
from tests.events import event_names, load_event


@pytest.mark.parametrize("name", event_names("api-"))
def test_every_sample_http_event_passes(name: str) -> None:
    event = load_event(name)
    assert check_http_api_event(event) is event


@pytest.mark.parametrize(
    ("event", "complaint"),
    [
        ([], "got a list"),
        ({**load_event("api-01-health"), "version": "1.0"}, "got version '1.0'"),
        ({key: value for key, value in load_event("api-01-health").items() if key != "rawPath"}, "rawPath"),
        ({**load_event("api-01-health"), "headers": None}, "headers an object"),
        ({**load_event("api-02-create-note"), "body": {"title": "x"}}, "body a string"),
        ({**load_event("api-02-create-note"), "isBase64Encoded": True, "body": "!!"}, "not base64"),
        (load_event("scheduled-01-purge"), "got version None"),
    ],
)
def test_other_shapes_are_refused_with_what_was_expected(event: Any, complaint: str) -> None:
    with pytest.raises(InvalidEventError, match="API Gateway HTTP API event") as raised:
        check_http_api_event(event)
    assert complaint in str(raised.value)
