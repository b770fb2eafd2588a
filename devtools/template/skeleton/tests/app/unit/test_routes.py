"""template.yaml declares every route of the app: SAM CLI's own ApiProvider (what `sam local start-api` serves, in
.venv-sam: `make sam-venv`) lists each operation of the app's OpenAPI document, with the API function."""

from __future__ import annotations

import re
from typing import Any

import pytest

from devtools.sam_cli import RoutesCase, ask, routes_from

from lib.sample_app.api import create_app


def _normalise(path: str) -> str:
    return re.sub(r"\{[^}]+\}", "{}", path)


def app_routes() -> set[tuple[str, str]]:
    """(METHOD, path with parameters unnamed) of every operation in the app's OpenAPI document."""
    paths = create_app().openapi()["paths"]
    return {(method.upper(), _normalise(path)) for path, operations in paths.items() for method in operations}


LANGUAGE_EXTENSIONS = (True, False)


@pytest.fixture(scope="module")
def sam_routes() -> dict[bool, Any]:
    """SAM CLI's routes with and without --language-extensions, from one run of SAM CLI's Python."""
    answers = ask([RoutesCase({}, language_extensions) for language_extensions in LANGUAGE_EXTENSIONS])
    return dict(zip(LANGUAGE_EXTENSIONS, answers, strict=True))


@pytest.mark.parametrize("language_extensions", LANGUAGE_EXTENSIONS)
def test_sam_cli_serves_every_route_of_the_app_with_the_api_function(
    sam_routes: dict[bool, Any], language_extensions: bool
) -> None:
    answer = sam_routes[language_extensions]
    # Without --language-extensions SAM CLI adds an OPTIONS method to every route (CORS read from an Fn::If).
    routes = [route for route in routes_from(answer) if language_extensions or route.method != "OPTIONS"]
    assert {route.function_id for route in routes} == {"ApiFunction"}
    assert {(route.method, _normalise(route.path)) for route in routes if route.path != "$default"} == app_routes()
    # The catch-all that gives unknown routes the app's error shape; `sam local start-api` serves it as one too.
    assert [route.method for route in routes if route.path == "$default"] == ["ANY"]
