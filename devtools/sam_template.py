"""Read template.yaml as data: short-form tags, Globals merged, nested applications loaded, intrinsics resolved."""

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
APPLICATION_TYPE = "AWS::Serverless::Application"
# CloudFormation names a nested stack <parent>-<logical id>-<random suffix>; the suffix the local reading uses.
NESTED_STACK_SUFFIX = "LOCAL1NESTED"

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


@dataclass(frozen=True)
class NestedApplication:
    """An AWS::Serverless::Application whose Location is a local template, which `sam build` builds and ships."""

    logical_id: str
    path: Path
    template: dict[str, Any]
    # As the parent writes them: intrinsics in the parent's terms.
    parameters: dict[str, Any]


def nested_applications(
    template: Mapping[str, Any], template_path: Path = TEMPLATE_PATH
) -> dict[str, NestedApplication]:
    """The template's nested applications with a local Location (relative to the template's folder), loaded."""
    found: dict[str, NestedApplication] = {}
    for logical_id, resource in template["Resources"].items():
        if resource.get("Type") != APPLICATION_TYPE:
            continue
        properties = resource.get("Properties", {})
        location = properties.get("Location")
        if not isinstance(location, str) or "://" in location:
            continue
        path = template_path.parent / location
        if not path.is_file():
            raise TemplateError(f"{logical_id}: Location {location!r} is not a file next to {template_path.name}")
        found[logical_id] = NestedApplication(
            logical_id=logical_id,
            path=path,
            template=load_template(path),
            parameters=dict(properties.get("Parameters", {})),
        )
    return found


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

    `bound` gives parameters values already resolved elsewhere, possibly symbolic ({"Ref": "ApiFunction"}): a nested
    template's parameters as its parent passes them (nested_resolver), so a reference reads in the parent's terms.
    """

    template: Mapping[str, Any]
    overrides: Mapping[str, str] = field(default_factory=dict)
    pseudo: Mapping[str, str] = field(default_factory=lambda: dict(LOCAL_PSEUDO_PARAMETERS))
    symbolic: bool = False
    bound: Mapping[str, Any] = field(default_factory=dict)

    def __post_init__(self) -> None:
        declared = self.template.get("Parameters", {})
        unknown = sorted((set(self.overrides) | set(self.bound)) - set(declared))
        if unknown:
            raise TemplateError(f"unknown parameter(s) {', '.join(unknown)}; declared: {', '.join(declared)}")
        self.parameters = {
            name: str(self.overrides.get(name, spec.get("Default", ""))) for name, spec in declared.items()
        }
        self.parameters.update({name: str(value) for name, value in self.bound.items() if not isinstance(value, dict)})

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
        if name in self.bound:
            value = self.bound[name]
            if isinstance(value, dict) and not self.symbolic:
                raise UnresolvableError(f"parameter {name} is {value}, which exists only in a deployed stack")
            return value
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
            if name in self.bound:
                return _sub_text(self._ref(name))
            if "." in name or (self.symbolic and name not in self.parameters and name not in self.pseudo):
                if self.symbolic:
                    return match.group(0)
                raise UnresolvableError(f"${{{name}}} is a resource attribute")
            return str(self._ref(name))

        return _SUB_VARIABLE.sub(substitute, text).replace("${!", "${")


def _sub_text(value: Any) -> str:
    """A value as Fn::Sub text: a symbolic Ref/GetAtt written back as ${Resource} / ${Resource.Attribute}."""
    if isinstance(value, dict):
        if set(value) == {"Ref"}:
            return f"${{{value['Ref']}}}"
        if set(value) == {"Fn::GetAtt"}:
            return "${" + ".".join(value["Fn::GetAtt"]) + "}"
        raise UnresolvableError(f"{value} cannot be written into a Fn::Sub string")
    return str(value)


def nested_resolver(parent: Resolver, application: NestedApplication) -> Resolver:
    """A Resolver for a nested template, its parameters bound to what the parent passes, read in the parent's terms.

    The nested stack's own AWS::StackName is what CloudFormation makes of it (<parent>-<logical id>-<suffix>), so a
    nested template that used it where it means the parent's name would read differently from the parent's.
    """
    declared = application.template.get("Parameters", {})
    required = {name for name, spec in declared.items() if "Default" not in spec}
    missing = sorted(required - set(application.parameters))
    if missing:
        raise TemplateError(f"{application.logical_id}: the parent passes no value for {', '.join(missing)}")
    bound = {name: parent.resolve(value) for name, value in application.parameters.items()}
    nested_name = f"{parent.pseudo['AWS::StackName']}-{application.logical_id}-{NESTED_STACK_SUFFIX}"
    return Resolver(
        application.template,
        pseudo={**parent.pseudo, "AWS::StackName": nested_name},
        symbolic=parent.symbolic,
        bound=bound,
    )
