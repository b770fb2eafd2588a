"""The app's routes and error shape, decided before the database is touched (the network is blocked here)."""

from __future__ import annotations

import json
from typing import Any

import pytest
from fastapi.routing import APIRoute

from devtools.events import load_event
from devtools.testing.lambda_runtime import FakeLambdaContext
from handlers.api import handler
from handlers.scheduled import handler as scheduled_handler
from lib.dbkit.errors import InvalidEventError

from lib.sample_app.api import create_app


def invoke(event: dict[str, Any]) -> tuple[int, Any]:
    response = handler(event, FakeLambdaContext())
    return response["statusCode"], json.loads(response["body"])


def test_the_app_serves_its_routes() -> None:
    routes = {
        (method, route.path)
        for route in create_app().routes
        if isinstance(route, APIRoute)
        for method in route.methods or ()
    }
    assert routes == {("GET", "/health")}


def test_an_unknown_route_answers_404_in_the_error_shape() -> None:
    status, body = invoke(load_event("api-02-unknown-route"))
    assert status == 404
    assert body == {"error": {"code": "not_found", "message": "no route for GET /nope", "details": []}}


def test_the_scheduled_handler_refuses_an_event_that_is_not_a_schedule() -> None:
    with pytest.raises(InvalidEventError):
        scheduled_handler(load_event("scheduled-02-wrong-event-type"), FakeLambdaContext(function_name="PurgeFunction"))
