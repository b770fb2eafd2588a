"""Read template.yaml as data: CloudFormation short-form tags, Globals merged into functions, intrinsics resolved."""

from __future__ import annotations

import re
from collections.abc import Mapping
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import yaml

from devtools.paths import ROOT

TEMPLATE_PATH = ROOT / "template.yaml"
FUNCTION_TYPE = "AWS::Serverless::Function"

# What the pseudo parameters resolve to outside AWS; the region follows AWS_REGION when the caller passes it.
LOCAL_PSEUDO_PARAMETERS = {
    "AWS::AccountId": "123456789012",
    "AWS::Partition": "aws",
    "AWS::Region": "us-east-1",
    "AWS::StackName": "local",
    "AWS::URLSuffix": "amazonaws.com",
}


class TemplateError(ValueError):
    """template.yaml lacks something a caller asked for (a function, a parameter, a condition)."""


class UnresolvableError(TemplateError):
    """A value depends on something that exists only in a deployed stack (a resource's name or attribute)."""


class _NoValue:
    """AWS::NoValue: the property is left out."""

    def __repr__(self) -> str:
        return "AWS::NoValue"


NO_VALUE = _NoValue()


class CfnLoader(yaml.SafeLoader):
    """SafeLoader that turns `!Ref x` / `!GetAtt a.b` / `!Sub ...` into their long JSON forms."""


def _construct_intrinsic(loader: yaml.SafeLoader, tag_suffix: str, node: yaml.Node) -> dict[str, Any]:
    value: Any
    if isinstance(node, yaml.ScalarNode):
        value = loader.construct_scalar(node)
        if tag_suffix == "GetAtt":
            value = str(value).split(".", 1)
    elif isinstance(node, yaml.SequenceNode):
        value = loader.construct_sequence(node, deep=True)
    else:
        value = loader.construct_mapping(node, deep=True)  # type: ignore[arg-type]
    if tag_suffix in ("Ref", "Condition"):
        return {tag_suffix: value}
    return {f"Fn::{tag_suffix}": value}


CfnLoader.add_multi_constructor("!", _construct_intrinsic)


def load_template(path: Path = TEMPLATE_PATH) -> dict[str, Any]:
    """Parse a CloudFormation/SAM template, short-form tags included."""
    with path.open(encoding="utf-8") as stream:
        document = yaml.load(stream, Loader=CfnLoader)  # noqa: S506 - CfnLoader is a SafeLoader
    if not isinstance(document, dict) or "Resources" not in document:
        raise TemplateError(f"{path} is not a CloudFormation template")
    return document


def function_ids(template: Mapping[str, Any]) -> list[str]:
    """Logical ids of the template's AWS::Serverless::Function resources, in template order."""
    return [rid for rid, res in template["Resources"].items() if res.get("Type") == FUNCTION_TYPE]


def merge_globals(global_value: Any, local_value: Any) -> Any:
    """SAM's Globals rule: maps merge (the function wins per key), lists concatenate, anything else is replaced."""
    if isinstance(global_value, dict) and isinstance(local_value, dict) and not _is_intrinsic(local_value):
        merged = dict(global_value)
        for key, value in local_value.items():
            merged[key] = merge_globals(global_value[key], value) if key in global_value else value
        return merged
    if isinstance(global_value, list) and isinstance(local_value, list):
        return [*global_value, *local_value]
    return local_value


def function_properties(template: Mapping[str, Any], logical_id: str) -> dict[str, Any]:
    """A function's Properties with the template's Globals.Function merged in."""
    resource = template["Resources"].get(logical_id)
    if resource is None or resource.get("Type") != FUNCTION_TYPE:
        raise TemplateError(
            f"no function {logical_id!r}; the template's functions: {', '.join(function_ids(template))}"
        )
    global_properties = template.get("Globals", {}).get("Function", {})
    return dict(merge_globals(global_properties, resource.get("Properties", {})))


def _is_intrinsic(value: Any) -> bool:
    return isinstance(value, dict) and len(value) == 1 and next(iter(value)) in _INTRINSICS


_CONDITION_FUNCTIONS = ("Fn::If", "Fn::Equals", "Fn::Not", "Fn::And", "Fn::Or", "Condition")
_VALUE_FUNCTIONS = ("Fn::Sub", "Fn::Join", "Fn::GetAtt", "Fn::Select", "Fn::Split", "Fn::FindInMap")
_INTRINSICS = frozenset(
    ("Ref", *_CONDITION_FUNCTIONS, *_VALUE_FUNCTIONS, "Fn::ImportValue", "Fn::Base64", "Fn::GetAZs")
)
_SUB_VARIABLE = re.compile(r"\$\{([^}!]+)\}")


@dataclass
class Resolver:
    """Evaluates intrinsics against parameter values (defaults unless overridden) and local pseudo parameters.

    With `symbolic`, references to resources (Ref, GetAtt, ${Resource.Attribute}) are kept as written instead of
    raising UnresolvableError, so a policy can be read with its conditions and parameters evaluated.
    """

    template: Mapping[str, Any]
    overrides: Mapping[str, str] = field(default_factory=dict)
    pseudo: Mapping[str, str] = field(default_factory=lambda: dict(LOCAL_PSEUDO_PARAMETERS))
    symbolic: bool = False

    def __post_init__(self) -> None:
        declared = self.template.get("Parameters", {})
        unknown = sorted(set(self.overrides) - set(declared))
        if unknown:
            raise TemplateError(f"unknown parameter(s) {', '.join(unknown)}; declared: {', '.join(declared)}")
        self.parameters = {
            name: str(self.overrides.get(name, spec.get("Default", ""))) for name, spec in declared.items()
        }

    def resolve(self, value: Any) -> Any:
        """The value with every intrinsic evaluated; NO_VALUE inside maps and lists drops the entry."""
        if isinstance(value, list):
            return [item for item in (self.resolve(v) for v in value) if item is not NO_VALUE]
        if not isinstance(value, dict):
            return value
        if not _is_intrinsic(value):
            resolved = {key: self.resolve(item) for key, item in value.items()}
            return {key: item for key, item in resolved.items() if item is not NO_VALUE}
        ((name, argument),) = value.items()
        return self._intrinsic(name, argument)

    def condition(self, name: str) -> bool:
        """The truth of a named condition in the template's Conditions section."""
        conditions = self.template.get("Conditions", {})
        if name not in conditions:
            raise TemplateError(f"no condition {name!r} in the template")
        return bool(self.resolve(conditions[name]))

    def _intrinsic(self, name: str, argument: Any) -> Any:
        if name == "Ref":
            return self._ref(str(argument))
        if name == "Condition":
            return self.condition(str(argument))
        if name == "Fn::If":
            condition_name, when_true, when_false = argument
            return self.resolve(when_true if self.condition(condition_name) else when_false)
        if name == "Fn::Equals":
            left, right = (self.resolve(item) for item in argument)
            return str(left) == str(right)
        if name == "Fn::Not":
            return not self.resolve(argument[0])
        if name == "Fn::And":
            return all(self.resolve(item) for item in argument)
        if name == "Fn::Or":
            return any(self.resolve(item) for item in argument)
        if name == "Fn::Join":
            separator, items = argument
            return str(separator).join(str(item) for item in self.resolve(items))
        if name == "Fn::Sub":
            return self._sub(argument)
        if self.symbolic:
            return {name: argument}
        raise UnresolvableError(f"{name} cannot be evaluated outside a deployed stack")

    def _ref(self, name: str) -> Any:
        if name == "AWS::NoValue":
            return NO_VALUE
        if name in self.parameters:
            if self.template["Parameters"][name].get("Type") == "CommaDelimitedList":
                # As CloudFormation does: a list, and [""] for an empty value.
                return self.parameters[name].split(",")
            return self.parameters[name]
        if name in self.pseudo:
            return self.pseudo[name]
        if self.symbolic:
            return {"Ref": name}
        raise UnresolvableError(f"Ref {name} names a resource, which exists only in a deployed stack")

    def _sub(self, argument: Any) -> str:
        text, variables = (argument, {}) if isinstance(argument, str) else argument
        values = {key: str(self.resolve(item)) for key, item in variables.items()}

        def substitute(match: re.Match[str]) -> str:
            name = match.group(1)
            if name in values:
                return values[name]
            if "." in name or (self.symbolic and name not in self.parameters and name not in self.pseudo):
                if self.symbolic:
                    return match.group(0)
                raise UnresolvableError(f"${{{name}}} is a resource attribute")
            return str(self._ref(name))

        return _SUB_VARIABLE.sub(substitute, text).replace("${!", "${")
