"""devtools.http_routes: the template's HTTP API routes, from the functions' SAM HttpApi events, with authorization."""

from __future__ import annotations

from pathlib import Path

import pytest

from devtools.http_routes import HttpRoute, template_routes
from devtools.sam_template import TemplateError

IMPLICIT_API = """\
Transform: AWS::Serverless-2016-10-31
Resources:
  Fn:
    Type: AWS::Serverless::Function
    Properties:
      Handler: app.handler
      Events:
        Get: { Type: HttpApi, Properties: { Method: get, Path: "/items/{id}" } }
        AnyMethod: { Type: HttpApi, Properties: { Path: "/any/{proxy+}" } }
        Default: { Type: HttpApi }
        Nightly: { Type: Schedule, Properties: { Schedule: rate(1 day) } }
"""

AUTHORIZERS = """\
Transform: AWS::Serverless-2016-10-31
Resources:
  Api:
    Type: AWS::Serverless::HttpApi
    Properties:
      Auth:
        DefaultAuthorizer: Jwt
        EnableIamAuthorizer: true
        Authorizers:
          Jwt: { IdentitySource: $request.header.Authorization, JwtConfiguration: { issuer: https://i.example } }
          Custom: { FunctionArn: !GetAtt Authorizer.Arn }
  Fn:
    Type: AWS::Serverless::Function
    Properties:
      Handler: app.handler
      Events:
        ByDefault: { Type: HttpApi, Properties: { ApiId: !Ref Api, Method: GET, Path: /default } }
        Open: { Type: HttpApi, Properties: { ApiId: !Ref Api, Path: /open, Auth: { Authorizer: NONE } } }
        Signed: { Type: HttpApi, Properties: { ApiId: !Ref Api, Path: /iam, Auth: { Authorizer: AWS_IAM } } }
        Lambda: { Type: HttpApi, Properties: { ApiId: !Ref Api, Path: /custom, Auth: { Authorizer: Custom } } }
  Authorizer:
    Type: AWS::Serverless::Function
    Properties: { Handler: auth.handler }
"""

RAW_ROUTE = """\
Resources:
  Fn:
    Type: AWS::Serverless::Function
    Properties: { Handler: app.handler }
  Integration:
    Type: AWS::ApiGatewayV2::Integration
    Properties: { IntegrationUri: !GetAtt Fn.Arn, PayloadFormatVersion: "2.0" }
  Route:
    Type: AWS::ApiGatewayV2::Route
    Properties: { RouteKey: GET /x, Target: !Sub "integrations/${Integration}" }
"""


def _template(tmp_path: Path, text: str) -> Path:
    path = tmp_path / "template.yaml"
    path.write_text(text, encoding="utf-8")
    return path


@pytest.mark.parametrize(
    ("parameters", "guarded"),
    [({}, "AWS_IAM"), ({"Auth": "jwt"}, "JWT"), ({"Auth": "none"}, "NONE")],
    ids=["iam-by-default", "jwt", "none"],
)
def test_our_templates_routes_all_go_to_the_api_function_behind_the_auth_parameter(
    parameters: dict[str, str], guarded: str
) -> None:
    routes = template_routes(parameters=parameters)
    assert {function_id for function_id, _ in routes} == {"ApiFunction"}
    authorization = {route.route_key: route.authorization for _, route in routes}
    assert authorization == {
        "GET /health": "NONE",
        "POST /notes": guarded,
        "GET /notes": guarded,
        "GET /notes/{id}": guarded,
        "DELETE /notes/{id}": guarded,
        "$default": guarded,
    }


def test_events_on_the_implicit_api_are_routes_without_authorization(tmp_path: Path) -> None:
    assert template_routes(template_path=_template(tmp_path, IMPLICIT_API)) == [
        ("Fn", HttpRoute("GET", "/items/{id}")),
        ("Fn", HttpRoute(None, "/any/{proxy+}")),
        ("Fn", HttpRoute(None, None)),
    ]


def test_an_event_has_its_apis_default_authorizer_unless_it_names_another(tmp_path: Path) -> None:
    routes = template_routes(template_path=_template(tmp_path, AUTHORIZERS))
    assert {route.path: route.authorization for _, route in routes} == {
        "/default": "JWT",
        "/open": "NONE",
        "/iam": "AWS_IAM",
        "/custom": "CUSTOM",
    }


def test_raw_api_gateway_routes_are_not_read_as_sam_cli_does_not_read_them(tmp_path: Path) -> None:
    assert template_routes(template_path=_template(tmp_path, RAW_ROUTE)) == []


def test_an_event_of_another_payload_format_is_refused(tmp_path: Path) -> None:
    text = IMPLICIT_API.replace('Path: "/items/{id}" }', 'Path: "/items/{id}", PayloadFormatVersion: "1.0" }')
    with pytest.raises(TemplateError, match=r"Fn event Get: only payload format 2\.0"):
        template_routes(template_path=_template(tmp_path, text))


def test_an_unknown_authorizer_is_refused(tmp_path: Path) -> None:
    text = AUTHORIZERS.replace("Authorizer: Custom }", "Authorizer: Missing }")
    with pytest.raises(TemplateError, match="'Missing' is not one of its API's Authorizers"):
        template_routes(template_path=_template(tmp_path, text))


def test_an_api_id_that_is_not_an_http_api_of_the_template_is_refused(tmp_path: Path) -> None:
    text = AUTHORIZERS.replace("ApiId: !Ref Api, Method: GET, Path: /default", "ApiId: !Ref Fn, Method: GET, Path: /x")
    with pytest.raises(TemplateError, match="Fn event ByDefault: ApiId"):
        template_routes(template_path=_template(tmp_path, text))


@pytest.mark.parametrize("key", ["GET", "/x", "GET x"])
def test_a_route_key_that_is_not_method_and_path_is_refused(key: str) -> None:
    with pytest.raises(TemplateError, match="route key"):
        HttpRoute.from_route_key(key)
