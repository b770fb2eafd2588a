"""The alarms and the dashboard watch metrics the code really emits: name, namespace, dimensions.

They live in observability.yaml, a nested application to which template.yaml passes the names of what is watched.
Every value here is read through that wiring (devtools.sam_template.nested_resolver), so a reference reads as the
parent's resource it ends at ({"Ref": "ApiFunction"}) and a parameter the parent stops passing fails.

Nothing here lists the app's metrics a second time. Names come from the `add_metric(name=...)` calls found in the
source under lib/ and handlers/ (wherever the modules live); the namespace and service come from importing each
function's handler module with that function's environment from the template; the dimensions Powertools adds
come from Powertools itself, by emitting a metric and a cold start into a buffer.
"""

from __future__ import annotations

import ast
import contextlib
import io
import json
import os
import re
import subprocess
import sys
from collections.abc import Iterator, Mapping
from dataclasses import dataclass, field
from functools import cache
from pathlib import Path
from typing import Any

import pytest
from aws_lambda_powertools.metrics import MetricUnit
from aws_lambda_powertools.metrics.provider.cloudwatch_emf.cloudwatch import AmazonCloudWatchEMFProvider

from devtools.function_config import function_config
from devtools.paths import ROOT
from devtools.sam_template import (
    NestedApplication,
    Resolver,
    function_ids,
    function_properties,
    load_template,
    nested_applications,
    nested_resolver,
)

TEMPLATE = load_template()
OBSERVABILITY: NestedApplication = nested_applications(TEMPLATE)["Observability"]
SOURCE_ROOTS = (ROOT / "lib", ROOT / "handlers")
COLD_START_METRIC = "ColdStart"
# AWS's own metrics the template may use, per namespace, with the one dimension each is read by.
# Lambda: per function (all versions and aliases). HTTP APIs: per API (all stages).
AWS_METRICS = {
    "AWS/Lambda": {"Invocations", "Errors", "Throttles", "Duration", "ConcurrentExecutions"},
    "AWS/ApiGateway": {"Count", "4xx", "5xx", "Latency", "IntegrationLatency", "DataProcessed"},
    "AWS/SQS": {"ApproximateNumberOfMessagesVisible", "ApproximateAgeOfOldestMessage", "NumberOfMessagesSent"},
}
AWS_DIMENSION = {"AWS/Lambda": "FunctionName", "AWS/ApiGateway": "ApiId", "AWS/SQS": "QueueName"}
AWS_DIMENSION_TARGET = {
    "AWS/Lambda": "AWS::Serverless::Function",
    # SAM turns the AWS::Serverless::HttpApi into an AWS::ApiGatewayV2::Api of the same logical id (test_sam_cli.py).
    "AWS/ApiGateway": "AWS::Serverless::HttpApi",
    "AWS/SQS": "AWS::SQS::Queue",
}
METRIC_EMITTERS = frozenset({"add_metric", "single_metric"})
DIMENSION_SETTERS = frozenset({"add_dimension", "add_dimensions", "set_default_dimensions", "append_dimension"})


@dataclass(frozen=True)
class MetricRef:
    """One metric as an alarm or a dashboard widget selects it."""

    where: str
    namespace: str
    name: str
    dimensions: dict[str, Any] = field(hash=False)


@dataclass
class SourceScan:
    """What the source under lib/ and handlers/ emits."""

    metrics: dict[str, list[str]] = field(default_factory=dict)
    unreadable: list[str] = field(default_factory=list)
    # A single_metric carries only the dimensions its `with` block adds (by literal name); add_metric carries
    # Powertools' defaults.
    single_metric_dimensions: dict[str, frozenset[str]] = field(default_factory=dict)
    dimension_calls: list[str] = field(default_factory=list)


def _python_files() -> Iterator[Path]:
    for root in SOURCE_ROOTS:
        yield from sorted(root.rglob("*.py"))


def _called_name(call: ast.Call) -> str | None:
    if isinstance(call.func, ast.Attribute):
        return call.func.attr
    if isinstance(call.func, ast.Name):
        return call.func.id
    return None


def _literal_name(call: ast.Call) -> str | None:
    name_node = next((kw.value for kw in call.keywords if kw.arg == "name"), None)
    if name_node is None and call.args:
        name_node = call.args[0]
    if isinstance(name_node, ast.Constant) and isinstance(name_node.value, str):
        return name_node.value
    return None


def _single_metric_blocks(tree: ast.AST) -> Iterator[tuple[str | None, list[ast.Call]]]:
    """(metric name, the add_dimension calls inside) for every `with single_metric(...)` block."""
    for node in ast.walk(tree):
        if isinstance(node, ast.With):
            for item in node.items:
                call = item.context_expr
                if isinstance(call, ast.Call) and _called_name(call) == "single_metric":
                    inner = [
                        c
                        for statement in node.body
                        for c in ast.walk(statement)
                        if isinstance(c, ast.Call) and _called_name(c) == "add_dimension"
                    ]
                    yield _literal_name(call), inner


def scan_source(files: Iterator[Path] | None = None) -> SourceScan:
    """Every metric name passed to add_metric/single_metric, and every call that would add a dimension."""
    scan = SourceScan()
    for path in files if files is not None else _python_files():
        tree = ast.parse(path.read_text(encoding="utf-8"), filename=str(path))
        accounted: set[int] = set()
        for metric_name, dimension_calls in _single_metric_blocks(tree):
            names = {_literal_name(c) for c in dimension_calls}
            if metric_name is not None and None not in names:
                scan.single_metric_dimensions[metric_name] = frozenset(n for n in names if n is not None)
                accounted.update(id(c) for c in dimension_calls)
        for node in ast.walk(tree):
            if not isinstance(node, ast.Call):
                continue
            called = _called_name(node)
            where = f"{path.relative_to(ROOT) if path.is_relative_to(ROOT) else path}:{node.lineno}"
            if called in DIMENSION_SETTERS and id(node) not in accounted:
                scan.dimension_calls.append(where)
            if called not in METRIC_EMITTERS:
                continue
            name = _literal_name(node)
            if name is not None:
                scan.metrics.setdefault(name, []).append(where)
            else:
                scan.unreadable.append(where)
    return scan


def _handler_function(handler: str) -> tuple[Path, str]:
    module, function = handler.rsplit(".", 1)
    return ROOT / (module.replace(".", "/") + ".py"), function


def captures_cold_start(handler: str) -> bool:
    """Whether the handler is decorated with `<metrics>.log_metrics(capture_cold_start_metric=True)`."""
    path, function = _handler_function(handler)
    tree = ast.parse(path.read_text(encoding="utf-8"))
    for node in tree.body:
        if isinstance(node, ast.FunctionDef) and node.name == function:
            for decorator in node.decorator_list:
                if isinstance(decorator, ast.Call) and _called_name(decorator) == "log_metrics":
                    flag = next((kw.value for kw in decorator.keywords if kw.arg == "capture_cold_start_metric"), None)
                    if isinstance(flag, ast.Constant) and flag.value is True:
                        return True
    return False


class _Context:
    function_name = "probe-function"


def powertools_dimensions() -> dict[str, set[str]]:
    """The dimension names Powertools puts on an app metric and on its cold-start metric, learnt by emitting both."""
    provider = AmazonCloudWatchEMFProvider(namespace="Probe", service="probe-service")
    provider.add_metric(name="Probe", unit=MetricUnit.Count, value=1)
    (app_dimensions,) = provider.serialize_metric_set()["_aws"]["CloudWatchMetrics"][0]["Dimensions"]
    printed = io.StringIO()
    with contextlib.redirect_stdout(printed):
        provider.add_cold_start_metric(context=_Context())  # type: ignore[arg-type]
    blob = json.loads(printed.getvalue())
    (cold_start,) = blob["_aws"]["CloudWatchMetrics"]
    assert [m["Name"] for m in cold_start["Metrics"]] == [COLD_START_METRIC]
    assert blob["function_name"] == _Context.function_name
    (cold_start_dimensions,) = cold_start["Dimensions"]
    return {"app": set(app_dimensions), COLD_START_METRIC: set(cold_start_dimensions)}


_PROBE = """
import json, sys
from aws_lambda_powertools import Metrics
module = __import__(sys.argv[1], fromlist=["_"])
found = {(m.namespace, m.service) for m in vars(module).values() if isinstance(m, Metrics)}
print(json.dumps(sorted(found)))
"""


@cache
def emitted_identity(function_id: str) -> tuple[str, str]:
    """(namespace, service) of the Metrics object the function's handler module uses, under the template's env."""
    config = function_config(function_id)
    module = config.handler.rsplit(".", 1)[0]
    env = {
        **{key: value for key, value in os.environ.items() if not key.startswith(("POWERTOOLS_", "DATABASE_", "DB_"))},
        **config.environment,
        # ARN-shaped so the settings code sees the deployed shape; importing a handler fetches nothing.
        "DATABASE_SECRET_ARN": "arn:aws:secretsmanager:us-east-1:123456789012:secret:alarm-test-AbCdEf",
        "AWS_LAMBDA_FUNCTION_NAME": function_id,
        "AWS_REGION": "us-east-1",
        "AWS_DEFAULT_REGION": "us-east-1",
    }
    completed = subprocess.run(
        [sys.executable, "-c", _PROBE, module], cwd=ROOT, env=env, capture_output=True, text=True, timeout=120
    )
    assert completed.returncode == 0, completed.stderr
    found = json.loads(completed.stdout)
    assert len(found) == 1, f"{module} must use exactly one Metrics object, found {found}"
    namespace, service = found[0]
    return str(namespace), str(service)


@dataclass(frozen=True)
class Contract:
    """What the deployed code emits, as the template would see it."""

    namespace: str
    service: str
    app_metrics: frozenset[str]
    app_dimensions: frozenset[str]
    single_metric_dimensions: Mapping[str, frozenset[str]]
    cold_start_dimensions: frozenset[str]
    cold_start_functions: frozenset[str]


@cache
def contract() -> Contract:
    identities = {emitted_identity(function_id) for function_id in function_ids(TEMPLATE)}
    assert len(identities) == 1, f"the functions emit under different namespaces/services: {identities}"
    ((namespace, service),) = identities
    scan = scan_source()
    dimensions = powertools_dimensions()
    cold = {fid for fid in function_ids(TEMPLATE) if captures_cold_start(function_properties(TEMPLATE, fid)["Handler"])}
    return Contract(
        namespace=namespace,
        service=service,
        app_metrics=frozenset(scan.metrics),
        app_dimensions=frozenset(dimensions["app"]),
        single_metric_dimensions=dict(scan.single_metric_dimensions),
        cold_start_dimensions=frozenset(dimensions[COLD_START_METRIC]),
        cold_start_functions=frozenset(cold),
    )


def observability_resolver(
    overrides: Mapping[str, str] | None = None,
    *,
    stack_name: str | None = None,
    application: NestedApplication = OBSERVABILITY,
) -> Resolver:
    """observability.yaml's values as template.yaml passes them (deployed with these parameters, under this name)."""
    parent = Resolver(TEMPLATE, overrides=dict(overrides or {}), symbolic=True)
    if stack_name is not None:
        parent = Resolver(
            TEMPLATE,
            overrides=dict(overrides or {}),
            pseudo={**parent.pseudo, "AWS::StackName": stack_name},
            symbolic=True,
        )
    return nested_resolver(parent, application)


def alarms(template: Mapping[str, Any] = OBSERVABILITY.template) -> dict[str, Any]:
    """Logical id -> resource of every AWS::CloudWatch::Alarm of the observability template."""
    return {rid: r for rid, r in template["Resources"].items() if r["Type"] == "AWS::CloudWatch::Alarm"}


def alarm_metrics(
    template: Mapping[str, Any] = OBSERVABILITY.template, resolver: Resolver | None = None
) -> list[MetricRef]:
    """Every metric every AWS::CloudWatch::Alarm reads, with intrinsics evaluated (resources stay symbolic)."""
    resolver = resolver or observability_resolver()
    refs: list[MetricRef] = []
    for alarm_id, resource in alarms(template).items():
        props = resolver.resolve(resource["Properties"])
        if "MetricName" in props:
            dims = {d["Name"]: d["Value"] for d in props.get("Dimensions", [])}
            refs.append(MetricRef(alarm_id, props["Namespace"], props["MetricName"], dims))
        for query in props.get("Metrics", []):
            if "MetricStat" in query:
                metric = query["MetricStat"]["Metric"]
                dims = {d["Name"]: d["Value"] for d in metric.get("Dimensions", [])}
                refs.append(MetricRef(f"{alarm_id}/{query['Id']}", metric["Namespace"], metric["MetricName"], dims))
        assert "MetricName" in props or any("MetricStat" in q for q in props.get("Metrics", [])), alarm_id
    return refs


_SUB_REFERENCE = re.compile(r"^\$\{([A-Za-z0-9]+)(?:\.([A-Za-z0-9]+))?\}$")


def _symbolic(value: str) -> Any:
    """A dashboard's "${Resource}" / "${Resource.Attribute}" as the alarms' resolver would have kept it."""
    match = _SUB_REFERENCE.match(value)
    if not match:
        return value
    resource, attribute = match.groups()
    return {"Fn::GetAtt": [resource, attribute]} if attribute else {"Ref": resource}


def dashboard() -> dict[str, Any]:
    (resource,) = [r for r in OBSERVABILITY.template["Resources"].values() if r["Type"] == "AWS::CloudWatch::Dashboard"]
    return dict(resource["Properties"])


def dashboard_body(resolver: Resolver | None = None) -> dict[str, Any]:
    body = (resolver or observability_resolver()).resolve(dashboard()["DashboardBody"])
    return dict(json.loads(body))


def dashboard_metrics(resolver: Resolver | None = None) -> list[MetricRef]:
    refs: list[MetricRef] = []
    for index, widget in enumerate(dashboard_body(resolver)["widgets"]):
        for line in widget["properties"].get("metrics", []):
            fields = [item for item in line if not isinstance(item, dict)]
            # CloudWatch's "..." shorthand repeats the previous line's fields; written out, each line can be checked.
            assert "..." not in fields, "write every dashboard metric out in full"
            namespace, name, *pairs = fields
            assert len(pairs) % 2 == 0, line
            dims = {pairs[i]: _symbolic(pairs[i + 1]) for i in range(0, len(pairs), 2)}
            refs.append(MetricRef(f"widget {index} ({widget['properties']['title']})", namespace, name, dims))
    return refs


def problems(ref: MetricRef, emitted: Contract, template: Mapping[str, Any] = TEMPLATE) -> list[str]:
    """Why the metric is not one the stack produces (empty when it is); `template`: the one holding the watched."""
    resources = template["Resources"]
    if ref.namespace == emitted.namespace:
        if ref.name == COLD_START_METRIC:
            function = ref.dimensions.get("function_name")
            if not (isinstance(function, dict) and function.get("Ref") in emitted.cold_start_functions):
                return [f"{ref.where}: ColdStart function_name {function!r} is not a function that captures it"]
            if set(ref.dimensions) != emitted.cold_start_dimensions:
                expected = sorted(emitted.cold_start_dimensions)
                return [f"{ref.where}: ColdStart dimensions {sorted(ref.dimensions)} != {expected}"]
        elif ref.name not in emitted.app_metrics:
            return [f"{ref.where}: {ref.name} is not emitted by lib/ or handlers/ ({sorted(emitted.app_metrics)})"]
        elif set(ref.dimensions) != emitted.single_metric_dimensions.get(ref.name, emitted.app_dimensions):
            expected = sorted(emitted.single_metric_dimensions.get(ref.name, emitted.app_dimensions))
            return [f"{ref.where}: {ref.name} dimensions {sorted(ref.dimensions)} != {expected}"]
        if ref.dimensions.get("service") != emitted.service:
            return [f"{ref.where}: service {ref.dimensions.get('service')!r} != emitted {emitted.service!r}"]
        return []
    if ref.namespace not in AWS_METRICS:
        return [
            f"{ref.where}: namespace {ref.namespace!r} is neither the app's ({emitted.namespace!r}) nor watched AWS"
        ]
    if ref.name not in AWS_METRICS[ref.namespace]:
        return [f"{ref.where}: {ref.namespace} has no metric {ref.name!r} here"]
    dimension = AWS_DIMENSION[ref.namespace]
    if set(ref.dimensions) != {dimension}:
        return [
            f"{ref.where}: {ref.namespace} {ref.name} must be read by {dimension} alone, not {sorted(ref.dimensions)}"
        ]
    target = ref.dimensions[dimension]
    logical_id = target.get("Ref") if "Ref" in target else target.get("Fn::GetAtt", [None])[0]
    if resources.get(logical_id, {}).get("Type") != AWS_DIMENSION_TARGET[ref.namespace]:
        return [f"{ref.where}: {dimension} {target!r} is not a {AWS_DIMENSION_TARGET[ref.namespace]} of this stack"]
    if ref.namespace == "AWS/SQS" and target != {"Fn::GetAtt": [logical_id, "QueueName"]}:
        return [f"{ref.where}: QueueName must be the queue's QueueName attribute"]
    return []


def test_the_source_scan_reads_every_metric_name_and_finds_no_extra_dimension() -> None:
    scan = scan_source()
    assert scan.metrics, "no add_metric(name=...) call found under lib/ or handlers/"
    assert not scan.unreadable, f"metric names must be string literals for the alarms to be checked: {scan.unreadable}"
    # The alarms select exactly Powertools' own dimensions, or a single_metric's own; a dimension added to the
    # shared metrics object would make them match nothing.
    assert not scan.dimension_calls, f"a dimension added in code must be added to the alarms: {scan.dimension_calls}"


def test_both_functions_capture_the_cold_start_metric() -> None:
    assert contract().cold_start_functions == frozenset(function_ids(TEMPLATE))


@pytest.mark.parametrize("function_id", function_ids(TEMPLATE))
def test_handlers_emit_under_the_namespace_and_service_the_template_sets(function_id: str) -> None:
    environment = function_config(function_id).environment
    assert emitted_identity(function_id) == (
        environment["POWERTOOLS_METRICS_NAMESPACE"],
        environment["POWERTOOLS_SERVICE_NAME"],
    )


@pytest.mark.parametrize("function_id", function_ids(TEMPLATE))
def test_each_stack_emits_under_its_own_service_so_previews_do_not_mix_with_production(function_id: str) -> None:
    for stack in ("neon-notes", "neon-notes-pr-7"):
        resolver = Resolver(TEMPLATE, pseudo={**Resolver(TEMPLATE).pseudo, "AWS::StackName": stack})
        environment = resolver.resolve(function_properties(TEMPLATE, function_id)["Environment"])["Variables"]
        assert environment["POWERTOOLS_SERVICE_NAME"] == stack


def test_every_alarm_reads_a_metric_the_stack_emits() -> None:
    found = [problem for ref in alarm_metrics() for problem in problems(ref, contract())]
    assert not found, "\n".join(found)


def test_every_dashboard_metric_is_one_the_stack_emits() -> None:
    found = [problem for ref in dashboard_metrics() for problem in problems(ref, contract())]
    assert not found, "\n".join(found)


def test_the_dashboard_shows_every_emitted_metric_and_both_functions_lambda_metrics() -> None:
    refs = dashboard_metrics()
    shown = {ref.name for ref in refs if ref.namespace == contract().namespace}
    assert contract().app_metrics | {COLD_START_METRIC} <= shown
    for function_id in function_ids(TEMPLATE):
        lambda_metrics = {
            r.name for r in refs if r.namespace == "AWS/Lambda" and r.dimensions["FunctionName"] == {"Ref": function_id}
        }
        assert {"Invocations", "Errors", "Throttles", "Duration"} <= lambda_metrics, function_id
        cold = [
            r for r in refs if r.name == COLD_START_METRIC and r.dimensions["function_name"] == {"Ref": function_id}
        ]
        assert cold, f"no cold-start line for {function_id}"


def test_the_dashboard_lists_every_alarm() -> None:
    (alarm_widget,) = [w for w in dashboard_body()["widgets"] if w["type"] == "alarm"]
    listed = {_symbolic(arn)["Fn::GetAtt"][0] for arn in alarm_widget["properties"]["alarms"]}
    assert listed == set(alarms())


@pytest.mark.parametrize("stack", ["neon-notes", "neon-notes-pr-7"])
def test_alarms_and_dashboard_follow_the_parent_stack_not_the_nested_one(stack: str) -> None:
    # The functions emit under the parent's name (POWERTOOLS_SERVICE_NAME); CloudFormation names the nested stack
    # <parent>-Observability-<suffix>, which must appear nowhere. Names start with the parent's, as the deploy roles'
    # resource patterns (infra/github-oidc.yaml: alarm:<StackName>*, dashboard/<StackName>*) require.
    resolver = observability_resolver(stack_name=stack)
    assert resolver.pseudo["AWS::StackName"] != stack
    services = {
        ref.dimensions.get("service") for ref in alarm_metrics(resolver=resolver) if ref.namespace == "NeonNotes"
    }
    services |= {ref.dimensions["service"] for ref in dashboard_metrics(resolver) if "service" in ref.dimensions}
    assert services == {stack}
    names = [resolver.resolve(alarm["Properties"]["AlarmName"]) for alarm in alarms().values()]
    names.append(resolver.resolve(dashboard()["DashboardName"]))
    assert all(name.startswith(f"{stack}-") or name == stack for name in names), names
    assert not [name for name in names if resolver.pseudo["AWS::StackName"] in name]


def _alarm_targets() -> set[tuple[str, str, str]]:
    targets = set()
    for ref in alarm_metrics():
        target = next(iter(ref.dimensions.values()), None) if ref.namespace.startswith("AWS/") else None
        logical = "" if not isinstance(target, dict) else (target.get("Ref") or target["Fn::GetAtt"][0])
        targets.add((ref.namespace.split("/")[0] if ref.namespace.startswith("AWS/") else "app", ref.name, logical))
    return targets


def test_the_alarms_the_issue_asks_for_exist() -> None:
    targets = _alarm_targets()
    assert {("app", "DbPoolExhausted", ""), ("app", "DbConnectRetries", ""), ("AWS", "5xx", "HttpApi")} <= targets
    assert ("AWS", "ApproximateNumberOfMessagesVisible", "PurgeDeadLetterQueue") in targets
    for function_id in function_ids(TEMPLATE):
        assert {("AWS", "Errors", function_id), ("AWS", "Throttles", function_id)} <= targets


def test_the_purge_alarm_counts_finished_runs_and_treats_silence_as_failure() -> None:
    emitting = scan_source().metrics
    (raw,) = [r["Properties"] for r in alarms().values() if r["Properties"].get("Statistic") == "SampleCount"]
    # template.yaml's parameters reach the alarm through the nested application's.
    overrides = {"PurgeIntervalSeconds": "900", "PurgeMissedRunsBeforeAlarm": "4"}
    alarm = observability_resolver(overrides).resolve(raw)
    # The metric is written once per finished run, by the scheduled job's code.
    assert len(emitting[alarm["MetricName"]]) == 1
    assert alarm["TreatMissingData"] == "breaching"
    assert alarm["ComparisonOperator"] == "LessThanThreshold"
    assert alarm["Threshold"] == 1
    assert alarm["Period"] == "900"
    assert alarm["EvaluationPeriods"] == alarm["DatapointsToAlarm"] == "4"


def _rate_seconds(expression: str) -> int:
    match = re.fullmatch(r"rate\((\d+) (minute|minutes|hour|hours|day|days)\)", expression)
    assert match, f"the default schedule must be a rate() expression, got {expression!r}"
    count, unit = int(match.group(1)), match.group(2).rstrip("s")
    return count * {"minute": 60, "hour": 3600, "day": 86400}[unit]


def test_the_purge_interval_default_matches_the_default_schedule() -> None:
    parameters = Resolver(TEMPLATE).parameters
    assert _rate_seconds(parameters["ScheduleExpression"]) == int(parameters["PurgeIntervalSeconds"])


def test_the_api_5xx_alarm_is_a_percentage_of_requests() -> None:
    alarm = observability_resolver({"Api5xxPercentAlarm": "7"}).resolve(alarms()["Api5xxRateAlarm"]["Properties"])
    assert alarm["Threshold"] == "7"
    by_id = {query["Id"]: query for query in alarm["Metrics"]}
    (returned,) = [query for query in alarm["Metrics"] if query["ReturnData"]]
    assert "100 * errors / requests" in returned["Expression"]
    assert by_id["errors"]["MetricStat"]["Metric"]["MetricName"] == "5xx"
    assert by_id["requests"]["MetricStat"]["Metric"]["MetricName"] == "Count"


def test_the_replica_fallback_alarm_is_a_percentage_of_read_only_units() -> None:
    resolver = observability_resolver({"ReplicaFallbackPercentAlarm": "25"})
    alarm = resolver.resolve(alarms()["DbReplicaFallbackAlarm"]["Properties"])
    by_id = {query["Id"]: query for query in alarm["Metrics"]}
    (returned,) = [query for query in alarm["Metrics"] if query["ReturnData"]]
    assert "100 * fallbacks / (fallbacks + reads)" in returned["Expression"]
    assert by_id["fallbacks"]["MetricStat"]["Metric"]["MetricName"] == "DbReplicaFallback"
    assert by_id["reads"]["MetricStat"]["Metric"]["MetricName"] == "DbReplicaReads"
    assert alarm["Threshold"] == "25"
    # Without a replica there is no data: never an alarm.
    assert alarm["TreatMissingData"] == "notBreaching"


@pytest.mark.parametrize(
    ("field_name", "wrong"),
    [("MetricName", "DbPoolExhaustd"), ("Namespace", "NeonNote"), ("Dimensions", [{"Name": "Service", "Value": "x"}])],
)
def test_a_mistyped_alarm_is_reported(field_name: str, wrong: Any) -> None:
    template = json.loads(json.dumps(OBSERVABILITY.template))
    template["Resources"]["DbPoolExhaustedAlarm"]["Properties"][field_name] = wrong
    (ref,) = [r for r in alarm_metrics(template) if r.where == "DbPoolExhaustedAlarm"]
    assert problems(ref, contract())


@pytest.mark.parametrize(
    ("parameter", "wrong"),
    [("ApiFunctionName", {"Ref": "ApiAccessLogGroup"}), ("MetricsNamespace", "NeonNote"), ("ServiceName", "other")],
)
def test_a_miswired_nested_parameter_is_reported(parameter: str, wrong: Any) -> None:
    # What template.yaml passes is what the alarms read: a wrong value there is a wrong alarm.
    parameters = {**OBSERVABILITY.parameters, parameter: wrong}
    miswired = NestedApplication(OBSERVABILITY.logical_id, OBSERVABILITY.path, OBSERVABILITY.template, parameters)
    refs = alarm_metrics(resolver=observability_resolver(application=miswired))
    assert [problem for ref in refs for problem in problems(ref, contract())]


def test_a_single_metric_carries_the_dimensions_its_block_adds(tmp_path: Path) -> None:
    source = tmp_path / "module.py"
    source.write_text(
        'with single_metric(name="Once", unit="Count", value=1) as metric:\n'
        '    metric.add_dimension(name="service", value=SERVICE)\n'
        'metrics.add_dimension(name="tenant", value="x")\n'
    )
    scan = scan_source(iter([source]))
    assert scan.single_metric_dimensions == {"Once": frozenset({"service"})}
    assert [where.rsplit(":", 1)[1] for where in scan.dimension_calls] == ["3"]


def test_a_metric_dropped_from_the_code_is_reported(tmp_path: Path) -> None:
    source = tmp_path / "module.py"
    source.write_text(
        'metrics.add_metric(name="Other", unit="Count", value=1)\n'
        'metrics.add_metric(name=f"{x}", unit="Count", value=1)\n'
    )
    scan = scan_source(iter([source]))
    assert set(scan.metrics) == {"Other"}
    assert len(scan.unreadable) == 1
    emitted = Contract(**{**contract().__dict__, "app_metrics": frozenset(scan.metrics)})
    (ref,) = [r for r in alarm_metrics() if r.where == "DbPoolExhaustedAlarm"]
    assert problems(ref, emitted)
