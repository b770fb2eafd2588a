"""Every error a FastAPI app on the kit meets is answered in the one shape, with the right status and nothing leaked."""

from __future__ import annotations

import json
import re
import subprocess
import sys
from typing import Any

import pytest
import sqlalchemy.exc
from fastapi import FastAPI
from fastapi.routing import APIRoute

from devtools.paths import ROOT
from devtools.testing.error_shape import assert_error_shape
from devtools.testing.logs import captured_logs
from lib.dbkit.errors import (
    CommitOutcomeUnknownError,
    DatabaseProviderRefusedError,
    DatabaseTimeoutError,
    DatabaseUnavailableError,
    InvalidDatabaseUrlError,
    PoolExhaustedError,
)
from lib.dbkit.http import ErrorAnswer, create_api, storable_text
from tests.kit.tiny_api import Answer, TinyApi, event, invoke, json_event, tiny_api


@pytest.fixture
def api() -> TinyApi:
    return tiny_api()


def error_of(answer: Answer, status: int, code: str) -> dict[str, Any]:
    assert answer.status == status, answer.body[:300]
    body = answer.json()
    assert_error_shape(status, body)
    assert body["error"]["code"] == code
    error: dict[str, Any] = body["error"]
    return error


def reasons(error: dict[str, Any]) -> dict[str, str]:
    return {detail["field"]: detail["reason"] for detail in error["details"]}


def raising(error: BaseException) -> FastAPI:
    """The tiny app with one more route, GET /raise, that raises `error`."""
    app = tiny_api().app

    @app.get("/raise")
    def fail() -> None:
        raise error

    return app


@pytest.mark.parametrize(
    ("payload", "field"),
    [
        ({"name": ""}, "name"),
        ({"name": "x" * 51}, "name"),
        ({"name": 42}, "name"),
        ({}, "name"),
        ({"name": "ok", "count": "3"}, "count"),
        ({"name": "ok", "count": True}, "count"),
        ({"name": "ok", "count": -1}, "count"),
        ({"name": "ok", "colour": "red"}, "colour"),
        ({"name": "nul \x00 inside"}, "name"),
        ({"name": "lone surrogate \ud800"}, "name"),
    ],
)
def test_invalid_fields_are_422_naming_each_field(api: TinyApi, payload: dict[str, Any], field: str) -> None:
    error = error_of(invoke(api.app, json_event("POST", "/items", payload)), 422, "validation_error")
    assert field in reasons(error)
    assert field in error["message"]
    assert api.ran == []


def test_a_field_postgres_cannot_store_says_why(api: TinyApi) -> None:
    error = error_of(invoke(api.app, json_event("POST", "/items", {"name": "a\x00b"})), 422, "validation_error")
    assert reasons(error)["name"] == "must not contain NUL characters"


@pytest.mark.parametrize(
    ("text", "reason"),
    [("a\x00b", "must not contain NUL characters"), ("\ud800", "must be valid Unicode (no unpaired surrogates)")],
)
def test_storable_text_refuses_what_postgres_text_cannot_hold(text: str, reason: str) -> None:
    # A JSON body's lone surrogate is refused by the JSON parser already; a value from elsewhere reaches this check.
    with pytest.raises(ValueError, match=re.escape(reason)):
        storable_text(text)
    assert storable_text("🙂 ünïcödé") == "🙂 ünïcödé"


def test_a_json_array_body_is_422_about_the_request_body(api: TinyApi) -> None:
    error = error_of(invoke(api.app, json_event("POST", "/items", ["name"])), 422, "validation_error")
    assert "request body" in reasons(error)


def test_a_header_is_named_as_written(api: TinyApi) -> None:
    request = json_event("POST", "/items", {"name": "ok"}, headers=[("x-tag", "t" * 21)])
    assert "X-Tag" in reasons(error_of(invoke(api.app, request), 422, "validation_error"))


@pytest.mark.parametrize("limit", ["0", "101", "ten", "1_0", "+5", "5.0", " 5 ", "\u0665", "0x10", "-0", "5e0", ""])
def test_a_query_number_must_be_plain_decimal_digits_in_range(api: TinyApi, limit: str) -> None:
    error = error_of(invoke(api.app, event("GET", f"/items?limit={limit}")), 422, "validation_error")
    assert list(reasons(error)) == ["limit"]


@pytest.mark.parametrize("limit", ["5", "005", "100"])
def test_plain_decimal_numbers_pass(api: TinyApi, limit: str) -> None:
    assert invoke(api.app, event("GET", f"/items?limit={limit}")).status == 200


def test_a_number_of_many_digits_is_refused_without_parsing_it(api: TinyApi) -> None:
    error = error_of(invoke(api.app, event("GET", "/items?limit=" + "1" * 1000)), 422, "validation_error")
    assert reasons(error)["limit"] == "is far too large"


@pytest.mark.parametrize(
    "raw", [b'{"name": ', b'{"name": "a" "b"}', b"{'name': 'a'}", b'{"name": "' + b"a" * 1000], ids=str
)
def test_malformed_json_is_400_saying_where(api: TinyApi, raw: bytes) -> None:
    answer = invoke(api.app, event("POST", "/items", headers=[("content-type", "application/json")], body=raw))
    assert "character" in error_of(answer, 400, "invalid_json")["message"]
    assert api.ran == []


@pytest.mark.parametrize(
    "raw",
    [b'{"name": "caf\xe9"}', b'{"name": "\xff\xfe"}', b'{"name": "\xc0\xaf overlong"}', b"\xef\xbb\xbf\xff"],
    ids=["latin-1", "ff-fe", "overlong", "bom-then-garbage"],
)
def test_invalid_utf8_is_400_saying_so(api: TinyApi, raw: bytes) -> None:
    answer = invoke(api.app, event("POST", "/items", headers=[("content-type", "application/json")], body=raw))
    assert "UTF-8" in error_of(answer, 400, "invalid_json")["message"]
    assert api.ran == []


@pytest.mark.parametrize(
    "content_type",
    [
        "text/plain",
        "application/x-www-form-urlencoded",
        "multipart/form-data; boundary=x",
        "application/xml",
        "application/json-patch+json",
        "",
        None,
    ],
)
def test_a_body_not_declared_as_json_is_415(api: TinyApi, content_type: str | None) -> None:
    headers = [] if content_type is None else [("content-type", content_type)]
    answer = invoke(api.app, event("POST", "/items", headers=headers, body=b'{"name": "x"}'))
    assert "Content-Type: application/json" in error_of(answer, 415, "unsupported_media_type")["message"]
    assert api.ran == []


def test_json_with_a_charset_parameter_is_json(api: TinyApi) -> None:
    headers = [("content-type", "Application/JSON; charset=utf-8")]
    assert invoke(api.app, event("POST", "/items", headers=headers, body=b'{"name": "x"}')).status == 201


def test_an_unknown_route_is_404_naming_it(api: TinyApi) -> None:
    assert error_of(invoke(api.app, event("GET", "/nothing")), 404, "not_found")["message"] == (
        "no route for GET /nothing"
    )


def test_a_wrong_method_is_405_with_allow_listing_every_route_of_the_path(api: TinyApi) -> None:
    answer = invoke(api.app, event("PUT", "/items/7"))
    error_of(answer, 405, "method_not_allowed")
    # Starlette's own Allow names only the first matching route's methods; GET and DELETE /items/{id} are two.
    assert answer.headers["allow"] == "DELETE, GET, HEAD"


def test_an_apps_domain_error_gets_its_status_code_and_own_message(api: TinyApi) -> None:
    assert error_of(invoke(api.app, event("GET", "/items/0")), 404, "item_not_found")["message"] == "no item 0"


def test_an_apps_domain_error_with_a_field_names_it_in_the_details(api: TinyApi) -> None:
    error = error_of(invoke(api.app, event("GET", "/items?token=forged")), 400, "invalid_token")
    assert reasons(error) == {"token": "'forged' is not a page token this API issued"}


def test_a_subclass_of_a_mapped_error_gets_its_answer() -> None:
    class PoolStillBusyError(PoolExhaustedError):
        pass

    answer = invoke(raising(PoolStillBusyError("QueuePool limit reached", retry_after=2)), event("GET", "/raise"))
    error_of(answer, 503, "database_busy")
    assert answer.headers["retry-after"] == "2"


@pytest.mark.parametrize(
    ("error", "code"),
    [
        (DatabaseUnavailableError("ep-x-pooler.neon.tech: sqlstate 57P01", retry_after=3), "database_unavailable"),
        (PoolExhaustedError("QueuePool limit of size 1 overflow 0 reached", retry_after=3), "database_busy"),
        (
            DatabaseTimeoutError("database did not answer in time (sqlstate 55P03)", retry_after=3),
            "database_unavailable",
        ),
        (CommitOutcomeUnknownError("connection failed after COMMIT", retry_after=3), "commit_outcome_unknown"),
        (
            DatabaseProviderRefusedError(
                "ep-x: endpoint is disabled", reason="endpoint_disabled", action="enable it", retry_after=3
            ),
            "database_provider_refused",
        ),
    ],
)
def test_the_kits_unavailable_errors_are_503_with_retry_after_and_no_internals(
    error: DatabaseUnavailableError, code: str
) -> None:
    answer = invoke(raising(error), event("GET", "/raise"))
    body = error_of(answer, 503, code)
    assert answer.headers["retry-after"] == "3"
    assert str(error) not in json.dumps(body)
    if code == "commit_outcome_unknown":
        assert "Idempotency-Key" in body["message"]


def test_a_config_error_is_500_misconfigured_and_the_log_names_the_fix() -> None:
    fix = "DATABASE_URL: set sslmode=require (host secret.example)"
    with captured_logs() as logs:
        answer = invoke(raising(InvalidDatabaseUrlError(fix)), event("GET", "/raise"))
    body = error_of(answer, 500, "misconfigured")
    assert "secret.example" not in json.dumps(body)
    assert any(line.get("fix") == fix for line in logs.records)


def test_a_driver_error_meaning_the_database_is_away_is_503() -> None:
    lost = sqlalchemy.exc.OperationalError("SELECT 1", {}, ConnectionResetError("connection reset by peer"))
    answer = invoke(raising(lost), event("GET", "/raise"))
    error_of(answer, 503, "database_unavailable")
    assert "retry-after" in answer.headers


def test_any_other_driver_error_is_500_without_the_sql() -> None:
    duplicate = sqlalchemy.exc.IntegrityError("INSERT INTO secrets VALUES (1)", {}, Exception("duplicate key"))
    with captured_logs() as logs:
        answer = invoke(raising(duplicate), event("GET", "/raise"))
    assert "secrets" not in json.dumps(error_of(answer, 500, "internal_error"))
    assert [line["message"] for line in logs.records if line["level"] == "ERROR"] == ["unhandled error"]


def test_an_unexpected_error_is_500_without_stack_trace_or_sql() -> None:
    secret_sql = "SELECT password FROM users WHERE id = 1"
    answer = invoke(raising(RuntimeError(secret_sql)), event("GET", "/raise"))
    error = error_of(answer, 500, "internal_error")
    assert error["details"] == []
    text = answer.body.decode()
    for leak in ("SELECT", "Traceback", "RuntimeError"):
        assert leak not in text


def test_an_apps_answer_overrides_the_kits_for_the_same_error() -> None:
    app = create_api(errors={PoolExhaustedError: ErrorAnswer(503, "busy", "try again")})

    @app.get("/raise")
    def fail() -> None:
        raise PoolExhaustedError("pool", retry_after=1)

    assert error_of(invoke(app, event("GET", "/raise")), 503, "busy")["message"] == "try again"


def test_a_5xx_answer_without_a_fixed_message_is_refused_when_the_app_is_made() -> None:
    with pytest.raises(ValueError, match="RuntimeError is a 502: give it a fixed message"):
        create_api(errors={RuntimeError: ErrorAnswer(502, "upstream_failed")})


def test_the_openapi_document_lists_the_error_responses_that_no_route_builds_at_init(api: TinyApi) -> None:
    # FastAPI builds a model field per documented response as a route is added: none here, so none at INIT.
    assert all(route.response_fields == {} for route in api.app.routes if isinstance(route, APIRoute))
    document = api.app.openapi()
    for path, operations in document["paths"].items():
        for method, operation in operations.items():
            documented = {status for status, answer in operation["responses"].items() if "ErrorOut" in str(answer)}
            # The kit's statuses, and the app's own (404 item_not_found, 400 invalid_token) once each.
            assert documented == {"400", "404", "413", "414", "415", "422", "431", "500", "503"}, (method, path)
    assert set(document["components"]["schemas"]) >= {"ErrorOut", "ErrorInfo", "ErrorDetail", "ItemIn", "ItemOut"}
    assert api.app.openapi() is document


def test_the_documented_app_keeps_the_apps_own_responses_and_options() -> None:
    app = create_api(title="Documented", version="2.1", errors={KeyError: ErrorAnswer(409, "conflict")})

    @app.get("/thing", responses={202: {"description": "accepted later"}})
    def thing() -> dict[str, str]:
        return {}

    document = app.openapi()
    assert (document["info"]["title"], document["info"]["version"]) == ("Documented", "2.1")
    responses = document["paths"]["/thing"]["get"]["responses"]
    assert responses["202"]["description"] == "accepted later"
    assert "409" in responses


def test_making_an_app_builds_no_pydantic_model_of_the_error_shape() -> None:
    # A fresh interpreter: this one has built the document already. Answers are dicts; the models are the document's.
    probe = (
        "import sys; from lib.dbkit.http import create_api; app = create_api(); "
        "before = 'lib.dbkit.http.schema' in sys.modules; app.openapi(); "
        "print(before, 'lib.dbkit.http.schema' in sys.modules)"
    )
    completed = subprocess.run(
        [sys.executable, "-c", probe], cwd=ROOT, capture_output=True, text=True, check=True, timeout=60
    )
    assert completed.stdout.split() == ["False", "True"]
