"""tools.http_routes: the template's HTTP API routes, from ApiGatewayV2 resources or SAM HttpApi events."""

from __future__ import annotations

from pathlib import Path

import pytest

from tools.http_routes import HttpRoute, template_routes
from tools.sam_template import TemplateError

SAM_EVENTS = """\
Transform: AWS::Serverless-2016-10-31
Resources:
  Fn:
    Type: AWS::Serverless::Function
    Properties:
      Handler: app.handler
      Events:
        Get: { Type: HttpApi, Properties: { Method: get, Path: "/items/{id}" } }
        Any: { Type: HttpApi }
        Nightly: { Type: Schedule, Properties: { Schedule: rate(1 day) } }
"""

V1_INTEGRATION = """\
Resources:
  Fn:
    Type: AWS::Serverless::Function
    Properties: { Handler: app.handler }
  Integration:
    Type: AWS::ApiGatewayV2::Integration
    Properties: { IntegrationUri: !GetAtt Fn.Arn, PayloadFormatVersion: "1.0" }
  Route:
    Type: AWS::ApiGatewayV2::Route
    Properties: { RouteKey: GET /x, Target: !Sub "integrations/${Integration}" }
"""


def test_our_templates_routes_all_go_to_the_api_function_with_their_authorization() -> None:
    routes = template_routes()
    assert {function_id for function_id, _ in routes} == {"ApiFunction"}
    by_key = {route.route_key: route for _, route in routes}
    assert set(by_key) == {
        "GET /health",
        "POST /notes",
        "GET /notes",
        "GET /notes/{id}",
        "DELETE /notes/{id}",
        "$default",
    }
    assert by_key["GET /health"].authorization == "NONE"
    assert by_key["POST /notes"].authorization == "AWS_IAM"  # Auth=iam, the default
    assert by_key["$default"] == HttpRoute(None, None, "AWS_IAM")
    open_api = {route.route_key: route for _, route in template_routes(parameters={"Auth": "none"})}
    assert open_api["POST /notes"].authorization == "NONE"


def test_sam_httpapi_events_are_routes_too(tmp_path: Path) -> None:
    template = tmp_path / "template.yaml"
    template.write_text(SAM_EVENTS, encoding="utf-8")
    assert template_routes(template_path=template) == [
        ("Fn", HttpRoute("GET", "/items/{id}")),
        ("Fn", HttpRoute(None, None)),
    ]


def test_an_integration_of_another_payload_format_is_refused(tmp_path: Path) -> None:
    template = tmp_path / "template.yaml"
    template.write_text(V1_INTEGRATION, encoding="utf-8")
    with pytest.raises(TemplateError, match=r"only payload format 2\.0"):
        template_routes(template_path=template)


@pytest.mark.parametrize("key", ["GET", "/x", "GET x"])
def test_a_route_key_that_is_not_method_and_path_is_refused(key: str) -> None:
    with pytest.raises(TemplateError, match="route key"):
        HttpRoute.from_route_key(key)
