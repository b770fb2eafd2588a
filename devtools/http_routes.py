"""The template's HTTP API routes and the function each one invokes, as `make api` serves them.

Routes are the functions' SAM `HttpApi` events, the one declaration API Gateway (through SAM's transform) and SAM
CLI (`sam local start-api`, `sam list endpoints`) read as well. An event without Path is the $default route; one
without Method answers any method. A route's authorization is the event's Auth.Authorizer, else its API's
DefaultAuthorizer, with every intrinsic (the Auth parameter's Fn::If included) evaluated for the parameters given.
"""

from __future__ import annotations

from collections.abc import Mapping
from dataclasses import dataclass
from pathlib import Path
from typing import Any

from devtools.sam_template import (
    TEMPLATE_PATH,
    Resolver,
    TemplateError,
    function_ids,
    function_properties,
    load_template,
    merge_globals,
)

HTTP_API_TYPE = "AWS::Serverless::HttpApi"
# API Gateway's names for a route's authorization (a route's AuthorizationType).
BUILT_IN_AUTHORIZERS = {"NONE": "NONE", "AWS_IAM": "AWS_IAM"}


@dataclass(frozen=True)
class HttpRoute:
    """One route: `method` and `path` as the template writes them (None, None for $default)."""

    method: str | None
    path: str | None
    authorization: str = "NONE"

    @classmethod
    def from_route_key(cls, route_key: str, authorization: str = "NONE") -> HttpRoute:
        """A route from an API Gateway route key: "GET /notes/{id}", "ANY /{proxy+}" or "$default"."""
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
    """(function id, route) for every HttpApi event of the template's functions, in template order."""
    template = load_template(template_path)
    resolver = Resolver(template, overrides=dict(parameters or {}), symbolic=True)
    routes: list[tuple[str, HttpRoute]] = []
    for function_id in function_ids(template):
        for event_id, event in function_properties(template, function_id).get("Events", {}).items():
            if event.get("Type") != "HttpApi":
                continue
            where = f"{function_id} event {event_id}"
            properties = resolver.resolve(event.get("Properties") or {})
            if str(properties.get("PayloadFormatVersion", "2.0")) != "2.0":
                raise TemplateError(f"{where}: only payload format 2.0 routes are served locally")
            method, path = properties.get("Method"), properties.get("Path")
            if not isinstance(method, str | None) or not isinstance(path, str | None):
                raise TemplateError(f"{where}: Method and Path must resolve to strings, not {method!r} {path!r}")
            route = HttpRoute(
                method=method.upper() if method is not None and path is not None else None,
                path=path,
                authorization=_authorization(template, resolver, where, properties),
            )
            routes.append((function_id, route))
    return routes


def _api_auth(template: Mapping[str, Any], resolver: Resolver, where: str, api_id: Any) -> dict[str, Any]:
    """The Auth of the event's HttpApi (Globals.HttpApi merged in), or of the implicit API when ApiId is absent."""
    global_properties = template.get("Globals", {}).get("HttpApi", {})
    if api_id is None:
        properties = global_properties
    else:
        logical_id = api_id.get("Ref") if isinstance(api_id, dict) else None
        resource = template["Resources"].get(logical_id) if isinstance(logical_id, str) else None
        if resource is None or resource.get("Type") != HTTP_API_TYPE:
            raise TemplateError(f"{where}: ApiId {api_id!r} is not a !Ref to an {HTTP_API_TYPE} of the template")
        properties = merge_globals(global_properties, resource.get("Properties") or {})
    auth = resolver.resolve({"Auth": properties.get("Auth", {})}).get("Auth", {})
    if not isinstance(auth, dict):
        raise TemplateError(f"{where}: its API's Auth does not resolve to a map: {auth!r}")
    return auth


def _authorization(template: Mapping[str, Any], resolver: Resolver, where: str, properties: Mapping[str, Any]) -> str:
    auth = _api_auth(template, resolver, where, properties.get("ApiId"))
    event_auth = properties.get("Auth") or {}
    authorizer = event_auth.get("Authorizer") or auth.get("DefaultAuthorizer")
    if authorizer is None:
        return "NONE"
    if authorizer == "AWS_IAM" and auth.get("EnableIamAuthorizer") is not True:
        raise TemplateError(f"{where}: AWS_IAM needs EnableIamAuthorizer: true on its API")
    if authorizer in BUILT_IN_AUTHORIZERS:
        return BUILT_IN_AUTHORIZERS[authorizer]
    definition = (auth.get("Authorizers") or {}).get(authorizer)
    if not isinstance(definition, dict):
        raise TemplateError(f"{where}: authorizer {authorizer!r} is not one of its API's Authorizers")
    return "JWT" if "JwtConfiguration" in definition else "CUSTOM"
