"""require_json reads the Content-Type's media type itself (no email package): same decisions as email.message."""

from __future__ import annotations

from email.message import Message

import pytest

from lib.dbkit.http.media import media_type

CONTENT_TYPES = [
    "application/json",
    "Application/JSON; charset=utf-8",
    "application/json ;x=1",
    'application/json; charset="utf-8"',
    " application/json ",
    "APPLICATION/json\t",
    "application/json;",
    "",
    "text",
    "application/json/x",
    "application /json",
    "application\t/json",
    "application/ json",
    "/json",
    "application/",
    "application/json,text/html",
    "application/vnd.api+json",
    "text/plain; charset=utf-8",
    "multipart/form-data; boundary=x",
]


def _email_media_type(value: str) -> str:
    message = Message()
    message["content-type"] = value
    return message.get_content_type()


@pytest.mark.parametrize("content_type", CONTENT_TYPES)
def test_json_is_accepted_exactly_when_email_message_would_accept_it(content_type: str) -> None:
    expected = _email_media_type(content_type) == "application/json"
    assert (media_type(content_type) == "application/json") is expected


@pytest.mark.parametrize("content_type", ["text/plain; charset=utf-8", "Multipart/Form-Data; boundary=x", "a/b"])
def test_a_well_formed_media_type_is_read_like_email_message(content_type: str) -> None:
    assert media_type(content_type) == _email_media_type(content_type)


def test_a_value_without_type_and_subtype_reads_as_text_plain() -> None:
    assert media_type("json") == "text/plain"
