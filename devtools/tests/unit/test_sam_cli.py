"""template.yaml as SAM reads it: SAM CLI's ApiProvider (what `sam local start-api` serves) and SAM's translation
(what CloudFormation deploys), per Auth mode. Both run in .venv-sam (`make sam-venv`), offline, in one subprocess.

cfn-lint validates against SAM's schema only, so these are the checks that SAM accepts the template and makes of it
the API the parameters ask for. That SAM CLI lists every route of the app is the app's own test
(tests/app/unit/test_routes.py): the tooling never imports the app.
"""

from __future__ import annotations

from typing import Any

import pytest

from devtools.http_routes import template_routes
from devtools.sam_cli import RoutesCase, SamCliRoute, StacksCase, TranslateCase, ask, routes_from
from devtools.sam_template import load_template, nested_applications

SECRET = {"DatabaseSecretArn": "arn:aws:secretsmanager:us-east-1:123456789012:secret:neon-pooled-url-AbCdEf"}
JWT = {"Auth": "jwt", "JwtIssuer": "https://issuer.example", "JwtAudience": "notes,admin"}
AUTH_MODES: dict[str, dict[str, str]] = {"iam": {}, "jwt": JWT, "none": {"Auth": "none"}}
CORS_ORIGINS = "https://app.example.com,https://admin.example.com"
THROTTLE = {"ThrottleRateLimit": "10", "ThrottleBurstLimit": "20"}
ALIAS = "ApiFunctionAliaslive"
OPEN_ROUTE = ("get", "/health")

ROUTE_CASES = [(mode, extensions) for mode in AUTH_MODES for extensions in (True, False)]
TRANSLATE_CASES: dict[str, dict[str, str]] = {
    **{mode: {**SECRET, **overrides} for mode, overrides in AUTH_MODES.items()},
    "cors": {**SECRET, "CorsAllowOrigins": CORS_ORIGINS, **THROTTLE},
    # SAM CLI's local stand-in for the stack's name is "local"; this case names the stack as a preview would be.
    "named": {**SECRET, "AWS::StackName": "neon-notes-pr-7"},
}


@pytest.fixture(scope="module")
def sam() -> dict[Any, Any]:
    """Every answer this module needs, from one run of SAM CLI's Python."""
    routes = [RoutesCase(AUTH_MODES[mode], extensions) for mode, extensions in ROUTE_CASES]
    translations = [TranslateCase(parameters) for parameters in TRANSLATE_CASES.values()]
    answers = ask([*routes, *translations, StacksCase(SECRET)])
    keys = [*ROUTE_CASES, *TRANSLATE_CASES, "stacks"]
    return dict(zip(keys, answers, strict=True))


def _served(routes: list[SamCliRoute], *, language_extensions: bool) -> list[SamCliRoute]:
    # Without --language-extensions SAM CLI reads CorsConfiguration's Fn::If as a CORS configuration and adds an
    # OPTIONS method to every route; with it, CORS is off by default as deployed.
    return [route for route in routes if language_extensions or route.method != "OPTIONS"]


@pytest.mark.parametrize(("mode", "language_extensions"), ROUTE_CASES, ids=[f"{m}-le={e}" for m, e in ROUTE_CASES])
def test_make_api_serves_the_routes_sam_cli_serves(sam: dict[Any, Any], mode: str, language_extensions: bool) -> None:
    ours = {
        (function_id, route.method or "ANY", route.path or "$default")
        for function_id, route in template_routes(parameters=AUTH_MODES[mode])
    }
    served = _served(routes_from(sam[mode, language_extensions]), language_extensions=language_extensions)
    assert ours, "template.yaml declares no HttpApi route"
    assert ours == {(route.function_id, route.method, route.path) for route in served}


def operations(resources: dict[str, Any]) -> dict[tuple[str, str], dict[str, Any]]:
    """(method, path) -> OpenAPI operation of the HTTP API SAM made."""
    body = resources["HttpApi"]["Properties"]["Body"]
    return {
        (method, path): operation for path, methods in body["paths"].items() for method, operation in methods.items()
    }


def test_sam_makes_one_http_api_named_as_the_template_refers_to_it(sam: dict[Any, Any]) -> None:
    resources = sam["iam"]
    # The alarms and the dashboard read the API's metrics by `!Ref HttpApi`, its ApiId.
    assert resources["HttpApi"]["Type"] == "AWS::ApiGatewayV2::Api"
    types = [resource["Type"] for resource in resources.values()]
    assert types.count("AWS::ApiGatewayV2::Api") == 1
    # Routes, integrations and authorizers live in the OpenAPI body: none as resources of their own.
    assert not {"AWS::ApiGatewayV2::Route", "AWS::ApiGatewayV2::Integration", "AWS::ApiGatewayV2::Authorizer"} & set(
        types
    )


def test_iam_signs_every_operation_but_health(sam: dict[Any, Any]) -> None:
    resources = sam["iam"]
    security = {key: operation.get("security") for key, operation in operations(resources).items()}
    assert security.pop(OPEN_ROUTE) == [{"NONE": []}]
    assert security, "no protected operations"
    assert all(value == [{"AWS_IAM": []}] for value in security.values()), security
    schemes = resources["HttpApi"]["Properties"]["Body"]["components"]["securitySchemes"]
    assert schemes == {
        "AWS_IAM": {
            "type": "apiKey",
            "name": "Authorization",
            "in": "header",
            "x-amazon-apigateway-authtype": "awsSigv4",
        }
    }


def test_jwt_checks_every_operation_but_health_with_the_authorizer_from_the_parameters(sam: dict[Any, Any]) -> None:
    resources = sam["jwt"]
    security = {key: operation.get("security") for key, operation in operations(resources).items()}
    assert security.pop(OPEN_ROUTE) == [{"NONE": []}]
    assert security, "no protected operations"
    assert all(value == [{"JwtAuthorizer": []}] for value in security.values()), security
    schemes = resources["HttpApi"]["Properties"]["Body"]["components"]["securitySchemes"]
    assert schemes == {
        "JwtAuthorizer": {
            "type": "oauth2",
            "x-amazon-apigateway-authorizer": {
                "type": "jwt",
                "identitySource": "$request.header.Authorization",
                "jwtConfiguration": {"issuer": "https://issuer.example", "audience": ["notes", "admin"]},
            },
        }
    }


def test_none_leaves_every_operation_open(sam: dict[Any, Any]) -> None:
    body = sam["none"]["HttpApi"]["Properties"]["Body"]
    assert all("security" not in operation for operation in operations(sam["none"]).values())
    assert "securitySchemes" not in body.get("components", {})


@pytest.mark.parametrize("mode", AUTH_MODES)
def test_every_operation_invokes_the_live_alias_with_payload_2(sam: dict[Any, Any], mode: str) -> None:
    resources = sam[mode]
    for key, operation in operations(resources).items():
        integration = operation["x-amazon-apigateway-integration"]
        assert (integration["type"], integration["payloadFormatVersion"]) == ("aws_proxy", "2.0"), key
        assert f"${{{ALIAS}}}/invocations" in integration["uri"]["Fn::Sub"], key
    permissions = [r["Properties"] for r in resources.values() if r["Type"] == "AWS::Lambda::Permission"]
    from_the_api = [p for p in permissions if p["Principal"] == "apigateway.amazonaws.com"]
    assert from_the_api
    for permission in from_the_api:
        assert permission["FunctionName"] == {"Ref": ALIAS}
        arn, variables = permission["SourceArn"]["Fn::Sub"]
        assert arn.startswith("arn:${AWS::Partition}:execute-api:${AWS::Region}:${AWS::AccountId}:${__ApiId__}/")
        assert variables["__ApiId__"] == {"Ref": "HttpApi"}


def test_the_default_stage_throttles_and_logs_as_the_parameters_say(sam: dict[Any, Any]) -> None:
    stages = {rid: r["Properties"] for rid, r in sam["cors"].items() if r["Type"] == "AWS::ApiGatewayV2::Stage"}
    assert list(stages) == ["HttpApiApiGatewayDefaultStage"]
    stage = stages["HttpApiApiGatewayDefaultStage"]
    assert (stage["ApiId"], stage["StageName"], stage["AutoDeploy"]) == ({"Ref": "HttpApi"}, "$default", True)
    throttling = {name: int(value) for name, value in stage["DefaultRouteSettings"].items()}
    assert throttling == {"ThrottlingRateLimit": 10, "ThrottlingBurstLimit": 20}
    assert stage["AccessLogSettings"]["DestinationArn"] == {"Fn::GetAtt": ["ApiAccessLogGroup", "Arn"]}
    assert '"requestId":"$context.requestId"' in stage["AccessLogSettings"]["Format"]


def test_cors_is_off_by_default_and_lists_exactly_the_given_origins(sam: dict[Any, Any]) -> None:
    assert "x-amazon-apigateway-cors" not in sam["iam"]["HttpApi"]["Properties"]["Body"]
    cors = sam["cors"]["HttpApi"]["Properties"]["Body"]["x-amazon-apigateway-cors"]
    assert cors["allowOrigins"] == CORS_ORIGINS.split(",")
    assert cors["allowMethods"] == ["GET", "POST", "DELETE"]
    assert "*" not in str(cors)


def test_sam_cli_reads_the_nested_observability_template_as_a_stack_it_builds(sam: dict[Any, Any]) -> None:
    # SamLocalStackProvider is what `sam build` and `sam local` read: the root, then each nested application with a
    # local Location, whose template `sam build` writes to <build dir>/<LogicalId>/template.yaml.
    answer = sam["stacks"]
    assert answer["remote_stacks"] == []
    root, *children = answer["stacks"]
    assert (root["path"], root["location"]) == ("", "template.yaml")
    ours = nested_applications(load_template())
    assert [child["path"] for child in children] == list(ours) == ["Observability"]
    (child,) = children
    assert child["location"] == "observability.yaml"
    assert child["built_template"] == "Observability/template.yaml"
    assert child["resources"] == {rid: r["Type"] for rid, r in ours["Observability"].template["Resources"].items()}
    # What the alarms watch stays in the root; the nested stack adds no function or route (routes: tests above).
    assert root["resources"]["Observability"] == "AWS::Serverless::Application"
    assert "AWS::Serverless::Function" not in child["resources"].values()


def test_sam_translates_the_nested_application_into_a_stack_of_the_local_template(sam: dict[Any, Any]) -> None:
    # `sam deploy` replaces the TemplateURL by the uploaded copy's S3 URL; the parameters go through as written.
    stack = sam["named"]["Observability"]
    assert stack["Type"] == "AWS::CloudFormation::Stack"
    assert stack["Properties"]["TemplateURL"] == "observability.yaml"
    parameters = stack["Properties"]["Parameters"]
    # The parent's name, the service the functions' metrics carry, whatever the nested stack is called.
    assert parameters["ServiceName"] == "neon-notes-pr-7"
    assert parameters["HttpApiId"] == {"Ref": "HttpApi"}
    assert parameters["ApiFunctionName"] == {"Ref": "ApiFunction"}
    assert set(parameters) == set(nested_applications(load_template())["Observability"].template["Parameters"])
