"""The template's HTTP API routes and the function each one invokes, as `make api` serves them.

Two ways a template declares them: SAM `HttpApi` events on a function, and plain CloudFormation
(`AWS::ApiGatewayV2::Route` → `integrations/<Integration>` → the integration's function), which ours uses so that
the Auth parameter can choose each route's authorization.
"""

from __future__ import annotations

import re
from collections.abc import Mapping
from dataclasses import dataclass
from pathlib import Path
from typing import Any

from tools.sam_template import (
    TEMPLATE_PATH,
    Resolver,
    TemplateError,
    function_ids,
    function_properties,
    load_template,
)

ROUTE_TYPE = "AWS::ApiGatewayV2::Route"
INTEGRATION_TYPE = "AWS::ApiGatewayV2::Integration"
_INTEGRATION_TARGET = re.compile(r"^integrations/\$\{(?P<integration>[^}.]+)\}$")
_REFERENCE = re.compile(r"\$\{(?P<name>[A-Za-z0-9]+)[.}]")


@dataclass(frozen=True)
class HttpRoute:
    """One route: `method` and `path` as the template writes them (None, None for $default)."""

    method: str | None
    path: str | None
    authorization: str = "NONE"

    @classmethod
    def from_route_key(cls, route_key: str, authorization: str = "NONE") -> HttpRoute:
        """A route from an ApiGatewayV2 RouteKey: "GET /notes/{id}", "ANY /{proxy+}" or "$default"."""
        if route_key == "$default":
            return cls(None, None, authorization)
        method, _, path = route_key.partition(" ")
        if not path.startswith("/"):
            raise TemplateError(f"route key {route_key!r} is neither $default nor 'METHOD /path'")
        return cls(method.upper(), path, authorization)

    @property
    def route_key(self) -> str:
        """The routeKey API Gateway puts in the event: "GET /notes/{id}", or "$default"."""
        if self.path is None:
            return "$default"
        return f"{(self.method or 'ANY').upper()} {self.path}"


def template_routes(
    *, template_path: Path = TEMPLATE_PATH, parameters: Mapping[str, str] | None = None
) -> list[tuple[str, HttpRoute]]:
    """(function id, route) for every HTTP API route of the template, in template order."""
    template = load_template(template_path)
    resolver = Resolver(template, overrides=dict(parameters or {}))
    symbolic = Resolver(template, overrides=dict(parameters or {}), symbolic=True)
    functions = function_ids(template)
    routes: list[tuple[str, HttpRoute]] = []
    for function_id in functions:
        for event in function_properties(template, function_id).get("Events", {}).values():
            if event.get("Type") != "HttpApi":
                continue
            properties = event.get("Properties", {})
            method, path = (properties.get(name) for name in ("Method", "Path"))
            route = HttpRoute(
                method=str(resolver.resolve(method)).upper() if method is not None else None,
                path=str(resolver.resolve(path)) if path is not None else None,
            )
            routes.append((function_id, route))
    for logical_id, resource in template["Resources"].items():
        if resource.get("Type") != ROUTE_TYPE or not _condition_holds(resolver, resource):
            continue
        properties = resource.get("Properties", {})
        function_id = _target_function(template, symbolic, functions, logical_id, properties.get("Target"))
        authorization = str(resolver.resolve(properties.get("AuthorizationType", "NONE")))
        routes.append(
            (function_id, HttpRoute.from_route_key(str(resolver.resolve(properties["RouteKey"])), authorization))
        )
    return routes


def _condition_holds(resolver: Resolver, resource: Mapping[str, Any]) -> bool:
    condition = resource.get("Condition")
    return condition is None or resolver.condition(str(condition))


def _target_function(
    template: Mapping[str, Any], symbolic: Resolver, functions: list[str], route_id: str, target: Any
) -> str:
    match = _INTEGRATION_TARGET.match(str(symbolic.resolve(target)))
    integration = template["Resources"].get(match["integration"]) if match else None
    if integration is None or integration.get("Type") != INTEGRATION_TYPE:
        raise TemplateError(f"route {route_id}: Target {target!r} is not integrations/${{<an Integration>}}")
    properties = integration.get("Properties", {})
    if str(properties.get("PayloadFormatVersion", "")) != "2.0":
        raise TemplateError(f"route {route_id}: only payload format 2.0 integrations are served locally")
    referenced = _references(symbolic.resolve(properties.get("IntegrationUri")))
    found = [name for name in referenced if name in functions]
    if not found:
        raise TemplateError(f"route {route_id}: its integration does not name a function of the template")
    return found[0]


def _references(value: Any) -> list[str]:
    """Logical ids a symbolically resolved value refers to: Ref X / X.Alias, GetAtt [X, ...], ${X.Arn} in Sub."""
    if isinstance(value, dict):
        if "Ref" in value:
            return [str(value["Ref"]).split(".", 1)[0]]
        if "Fn::GetAtt" in value:
            return [str(value["Fn::GetAtt"][0])]
        return [name for item in value.values() for name in _references(item)]
    if isinstance(value, list):
        return [name for item in value for name in _references(item)]
    if isinstance(value, str):
        return [match["name"] for match in _REFERENCE.finditer(value)]
    return []
