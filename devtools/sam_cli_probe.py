"""Ask SAM CLI and SAM's translator about a template; runs on .venv-sam's Python (devtools.sam_cli starts it).

    .venv-sam/bin/python devtools/sam_cli_probe.py < request.json > answers.json

The request is {"template": path, "cases": [{"kind": "routes" | "stacks" | "translate", "parameters": {...},
"language_extensions": bool}, ...]}; the answer is one JSON value per case, in order:
- routes: what `sam local start-api` serves, from SAM CLI's own ApiProvider: [{"function", "methods", "path"}, ...];
  language_extensions as SAM CLI's --language-extensions flag (off by default, as in SAM CLI).
- stacks: the stacks SAM CLI's SamLocalStackProvider reads (the root, then nested applications it can build):
  [{"path", "location", "built_template", "resources": {logical id: type}}, ...]; remote_stacks: those it cannot.
- translate: the Resources CloudFormation gets from the template, as `sam validate --language-extensions` makes
  them: the AWS::LanguageExtensions transform first (parameters resolved), then SAM's transform.
Only the standard library and SAM CLI's own packages are imported; the network is blocked, as in unit tests.
"""

from __future__ import annotations

import json
import os
import socket
import sys
from typing import Any


def _no_network(*_args: Any, **_kwargs: Any) -> Any:
    raise OSError("devtools/sam_cli_probe.py runs offline: SAM CLI tried to use the network")


def _block_network() -> None:
    original_connect = socket.socket.connect

    def guarded_connect(self: socket.socket, address: Any) -> None:
        if self.family in (socket.AF_INET, socket.AF_INET6):
            _no_network()
        original_connect(self, address)

    socket.socket.connect = guarded_connect  # type: ignore[method-assign,assignment]
    socket.socket.connect_ex = _no_network  # type: ignore[method-assign]
    socket.create_connection = _no_network
    socket.getaddrinfo = _no_network


def api_provider_routes(template: str, parameters: dict[str, str], *, language_extensions: bool) -> list[Any]:
    """The routes SAM CLI's ApiProvider finds, each with its function."""
    from samcli.lib.providers.api_provider import ApiProvider
    from samcli.lib.providers.sam_stack_provider import SamLocalStackProvider

    stacks, _ = SamLocalStackProvider.get_stacks(
        template, parameter_overrides=parameters, language_extensions_enabled=language_extensions
    )
    return [
        {"function": route.function_name, "methods": sorted(route.methods), "path": route.path}
        for route in ApiProvider(stacks).api.routes
    ]


def local_stacks(template: str, parameters: dict[str, str]) -> dict[str, Any]:
    """The stacks SAM CLI reads from the template, as `sam build` and `sam local` see them."""
    from samcli.lib.providers.sam_stack_provider import SamLocalStackProvider

    stacks, remote = SamLocalStackProvider.get_stacks(template, parameter_overrides=parameters)
    return {
        "stacks": [
            {
                "path": stack.stack_path,
                "location": os.path.relpath(stack.location, os.path.dirname(template)),
                # Where `sam build` writes the stack's template, relative to the build directory.
                "built_template": stack.get_output_template_path(""),
                "resources": {rid: resource.get("Type") for rid, resource in stack.raw_resources.items()},
            }
            for stack in stacks
        ],
        "remote_stacks": list(remote),
    }


class _NoManagedPolicies:
    """The template names no managed policy; nothing may ask IAM for the list."""

    def load(self) -> dict[str, str]:
        return {}


def translated_resources(template: str, parameters: dict[str, str]) -> Any:
    """The Resources of the CloudFormation template SAM makes, language extensions applied first."""
    from samcli.lib.translate.sam_template_validator import SamTemplateValidator
    from samcli.yamlhelper import yaml_parse

    with open(template, encoding="utf-8") as stream:
        document = yaml_parse(stream.read())
    validator = SamTemplateValidator(
        document,
        _NoManagedPolicies(),
        region=os.environ.get("AWS_REGION", "us-east-1"),
        parameter_overrides=parameters,
        language_extensions_enabled=True,
    )
    return yaml_parse(validator.get_translated_template_if_valid())["Resources"]


def answer(template: str, case: dict[str, Any]) -> Any:
    """One case of the request."""
    parameters = {str(key): str(value) for key, value in case.get("parameters", {}).items()}
    if case["kind"] == "routes":
        return api_provider_routes(template, parameters, language_extensions=bool(case.get("language_extensions")))
    if case["kind"] == "stacks":
        return local_stacks(template, parameters)
    if case["kind"] == "translate":
        return translated_resources(template, parameters)
    raise ValueError(f"unknown case kind {case['kind']!r}")


def main() -> int:
    _block_network()
    request = json.load(sys.stdin)
    answers = [answer(str(request["template"]), case) for case in request["cases"]]
    json.dump(answers, sys.stdout)
    return 0


if __name__ == "__main__":
    sys.exit(main())
