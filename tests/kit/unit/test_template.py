"""template.yaml read as data: least-privilege IAM, capacity within Neon's pooler, limits, routes, build defaults, and
its layout: functions first, observability in a nested application (observability.yaml)."""

from __future__ import annotations

import json
import math
import re
import subprocess
from collections.abc import Mapping
from pathlib import Path
from typing import Any

import pytest

from devtools.function_config import function_config
from devtools.paths import ROOT
from devtools.sam_template import (
    APPLICATION_TYPE,
    NO_VALUE,
    Resolver,
    function_ids,
    function_properties,
    load_template,
    nested_applications,
    nested_resolver,
)
from lib.dbkit.dsn import DEFAULT_CONNECT_TIMEOUT, parse_database_url
from lib.dbkit.settings import Settings

TEMPLATE = load_template()
SECRET_ARN = "arn:aws:secretsmanager:us-east-1:123456789012:secret:neon-pooled-url-AbCdEf"
PARAMETER_NAME = "/neon/prod/database-url"
PARAMETER_ARN = "arn:aws:ssm:us-east-1:123456789012:parameter/neon/prod/database-url"
KMS_KEY_ARN = "arn:aws:kms:us-east-1:123456789012:key/1234abcd-12ab-34cd-56ef-1234567890ab"
DATABASE_SOURCES: dict[str, dict[str, str]] = {
    "secret": {"DatabaseSecretArn": SECRET_ARN},
    "parameter": {"DatabaseUrlParameterName": PARAMETER_NAME},
}
# X-Ray's write actions have no resource-level permissions: "*" is the only resource they accept.
STAR_ONLY_ACTIONS = frozenset({"xray:PutTraceSegments", "xray:PutTelemetryRecords"})

# Neon docs, "Connection pooling" (2026): max_connections by compute size (CU); the pooler's default_pool_size
# (server connections per user+database) is 90 % of it. The template's default is sized for the smallest compute.
NEON_MAX_CONNECTIONS = {0.25: 104, 0.5: 209, 1: 419, 2: 839, 3: 1258, 4: 1678, 5: 2098, 6: 2517, 7: 2937, 8: 3357}
NEON_MAX_CONNECTIONS_9_CU_AND_UP = 4000
DEFAULT_COMPUTE_CU = 0.25
# API Gateway HTTP APIs end an integration after 30 s whatever the function's timeout.
HTTP_API_INTEGRATION_LIMIT_SECONDS = 30


def neon_default_pool_size(compute_units: float) -> int:
    """PgBouncer default_pool_size of Neon's pooler for a compute size."""
    max_connections = NEON_MAX_CONNECTIONS.get(compute_units, NEON_MAX_CONNECTIONS_9_CU_AND_UP)
    return math.floor(0.9 * max_connections)


def _as_list(value: Any) -> list[Any]:
    return value if isinstance(value, list) else [value]


def role_statements(role_id: str, overrides: Mapping[str, str]) -> list[dict[str, Any]]:
    """The statements of a role's inline policies with conditions and parameters evaluated."""
    resolver = Resolver(TEMPLATE, overrides=dict(overrides), symbolic=True)
    role = resolver.resolve(TEMPLATE["Resources"][role_id]["Properties"])
    return [statement for policy in role["Policies"] for statement in policy["PolicyDocument"]["Statement"]]


def grants(role_id: str, overrides: Mapping[str, str]) -> dict[str, list[Any]]:
    """action -> resources the role allows it on."""
    granted: dict[str, list[Any]] = {}
    for statement in role_statements(role_id, overrides):
        assert statement["Effect"] == "Allow"
        for action in _as_list(statement["Action"]):
            granted.setdefault(action, []).extend(_as_list(statement["Resource"]))
    return granted


def role_of(function_id: str) -> str:
    role = function_properties(TEMPLATE, function_id)["Role"]
    assert set(role) == {"Fn::GetAtt"}, f"{function_id} must use a role defined in this template"
    role_id, attribute = role["Fn::GetAtt"]
    assert attribute == "Arn"
    return str(role_id)


def log_group_arn(function_id: str) -> dict[str, Any]:
    return {"Fn::GetAtt": [f"{function_id}LogGroup", "Arn"]}


def test_template_declares_the_two_functions_with_their_handlers() -> None:
    handlers = {fid: function_properties(TEMPLATE, fid)["Handler"] for fid in function_ids(TEMPLATE)}
    assert handlers == {"ApiFunction": "handlers.api.handler", "PurgeFunction": "handlers.scheduled.handler"}


@pytest.mark.parametrize("function_id", function_ids(TEMPLATE))
def test_functions_use_own_roles_without_managed_policies(function_id: str) -> None:
    # SAM's generated role would attach AWSLambdaBasicExecutionRole (logs:* on every log group).
    properties = TEMPLATE["Resources"][function_id]["Properties"]
    assert "Policies" not in properties
    role = TEMPLATE["Resources"][role_of(function_id)]
    assert role["Type"] == "AWS::IAM::Role"
    assert "ManagedPolicyArns" not in role["Properties"]
    (trust,) = role["Properties"]["AssumeRolePolicyDocument"]["Statement"]
    assert trust == {"Effect": "Allow", "Principal": {"Service": "lambda.amazonaws.com"}, "Action": "sts:AssumeRole"}


@pytest.mark.parametrize("source", sorted(DATABASE_SOURCES))
def test_api_role_grants_exactly_logs_tracing_and_the_one_database_url(source: str) -> None:
    expected = {
        "logs:CreateLogStream": [log_group_arn("ApiFunction")],
        "logs:PutLogEvents": [log_group_arn("ApiFunction")],
        "xray:PutTraceSegments": ["*"],
        "xray:PutTelemetryRecords": ["*"],
        **(
            {"secretsmanager:GetSecretValue": [SECRET_ARN]}
            if source == "secret"
            else {"ssm:GetParameter": [PARAMETER_ARN]}
        ),
    }
    assert grants(role_of("ApiFunction"), DATABASE_SOURCES[source]) == expected


@pytest.mark.parametrize("source", sorted(DATABASE_SOURCES))
def test_purge_role_adds_only_sending_to_its_dead_letter_queue(source: str) -> None:
    api = grants(role_of("ApiFunction"), DATABASE_SOURCES[source])
    purge = grants(role_of("PurgeFunction"), DATABASE_SOURCES[source])
    logs = {"logs:CreateLogStream", "logs:PutLogEvents"}
    queue_key = [{"Fn::GetAtt": ["MessagesKey", "Arn"]}]
    assert {action: resources for action, resources in purge.items() if action not in logs} == {
        **{action: resources for action, resources in api.items() if action not in logs},
        "sqs:SendMessage": [{"Fn::GetAtt": ["PurgeDeadLetterQueue", "Arn"]}],
        # The queue is encrypted with the stack's key: sending needs a data key, only through SQS.
        "kms:GenerateDataKey": queue_key,
        "kms:Decrypt": queue_key,
    }
    assert all(purge[action] == [log_group_arn("PurgeFunction")] for action in logs)
    (queue_key_statement,) = [
        s for s in role_statements(role_of("PurgeFunction"), DATABASE_SOURCES[source]) if s["Resource"] == queue_key[0]
    ]
    assert queue_key_statement["Condition"] == {"StringEquals": {"kms:ViaService": "sqs.us-east-1.amazonaws.com"}}


@pytest.mark.parametrize("source", sorted(DATABASE_SOURCES))
def test_customer_managed_key_adds_one_decrypt_scoped_to_the_key_and_the_secret_services(source: str) -> None:
    overrides = {**DATABASE_SOURCES[source], "DatabaseKmsKeyArn": KMS_KEY_ARN}
    for function_id in function_ids(TEMPLATE):
        kms = [
            s
            for s in role_statements(role_of(function_id), overrides)
            if "kms:Decrypt" in _as_list(s["Action"]) and s["Resource"] == KMS_KEY_ARN
        ]
        assert kms == [
            {
                "Effect": "Allow",
                "Action": "kms:Decrypt",
                "Resource": KMS_KEY_ARN,
                "Condition": {
                    "StringEquals": {
                        "kms:ViaService": ["secretsmanager.us-east-1.amazonaws.com", "ssm.us-east-1.amazonaws.com"]
                    }
                },
            }
        ]


@pytest.mark.parametrize(
    "overrides",
    [*DATABASE_SOURCES.values(), {**DATABASE_SOURCES["secret"], "DatabaseKmsKeyArn": KMS_KEY_ARN}],
    ids=["secret", "parameter", "secret-with-customer-key"],
)
def test_no_role_wildcards_an_action_or_a_resource_that_has_a_narrower_form(overrides: dict[str, str]) -> None:
    for function_id in function_ids(TEMPLATE):
        for action, resources in grants(role_of(function_id), overrides).items():
            assert "*" not in action, f"{function_id}: wildcard action {action}"
            for resource in resources:
                if action in STAR_ONLY_ACTIONS:
                    assert resource == "*"
                else:
                    assert "*" not in str(resource), f"{function_id}: {action} on {resource}"


def test_dead_letter_queue_accepts_messages_only_from_the_purge_schedule_rule() -> None:
    resources = TEMPLATE["Resources"]
    (statement,) = resources["PurgeDeadLetterQueuePolicy"]["Properties"]["PolicyDocument"]["Statement"]
    # SAM names the rule it generates for a Schedule event <function id><event id>.
    assert "PurgeSchedule" in resources["PurgeFunction"]["Properties"]["Events"]
    assert statement["Principal"] == {"Service": "events.amazonaws.com"}
    assert statement["Action"] == "sqs:SendMessage"
    assert statement["Resource"] == {"Fn::GetAtt": ["PurgeDeadLetterQueue", "Arn"]}
    assert statement["Condition"] == {
        "ArnEquals": {"aws:SourceArn": {"Fn::GetAtt": ["PurgeFunctionPurgeSchedule", "Arn"]}}
    }


def test_scheduled_purge_retries_and_keeps_failed_runs() -> None:
    properties = TEMPLATE["Resources"]["PurgeFunction"]["Properties"]
    schedule = properties["Events"]["PurgeSchedule"]
    queue_arn = {"Fn::GetAtt": ["PurgeDeadLetterQueue", "Arn"]}
    assert schedule["Type"] == "Schedule"
    assert schedule["Properties"]["Schedule"] == {"Ref": "ScheduleExpression"}
    assert schedule["Properties"]["RetryPolicy"]["MaximumRetryAttempts"] > 0
    assert schedule["Properties"]["DeadLetterConfig"] == {"Arn": queue_arn}
    invoke_config = properties["EventInvokeConfig"]
    assert invoke_config["MaximumRetryAttempts"] > 0
    assert invoke_config["DestinationConfig"]["OnFailure"] == {"Type": "SQS", "Destination": queue_arn}


@pytest.mark.parametrize(
    ("overrides", "accepted"),
    [
        (DATABASE_SOURCES["secret"], True),
        (DATABASE_SOURCES["parameter"], True),
        ({**DATABASE_SOURCES["secret"], **DATABASE_SOURCES["parameter"]}, False),
        ({}, False),
    ],
    ids=["secret", "parameter", "both", "neither"],
)
def test_deploy_rule_requires_exactly_one_database_source(overrides: dict[str, str], accepted: bool) -> None:
    (assertion,) = TEMPLATE["Rules"]["ExactlyOneDatabaseSource"]["Assertions"]
    assert Resolver(TEMPLATE, overrides=overrides).resolve(assertion["Assert"]) is accepted


@pytest.mark.parametrize("source", sorted(DATABASE_SOURCES))
def test_functions_get_exactly_the_configured_database_source(source: str) -> None:
    for function_id in function_ids(TEMPLATE):
        environment = function_config(function_id, parameters=DATABASE_SOURCES[source]).environment
        present = {
            name: environment[name] for name in ("DATABASE_SECRET_ARN", "DATABASE_URL_PARAMETER") if name in environment
        }
        assert present == (
            {"DATABASE_SECRET_ARN": SECRET_ARN} if source == "secret" else {"DATABASE_URL_PARAMETER": PARAMETER_NAME}
        )
        assert environment["DB_MODE"] == "serverless"
        assert {"POWERTOOLS_SERVICE_NAME", "POWERTOOLS_METRICS_NAMESPACE", "POWERTOOLS_LOG_LEVEL"} <= set(environment)


READ_SECRET_ARN = "arn:aws:secretsmanager:us-east-1:123456789012:secret:neon-replica-url-GhIjKl"
READ_PARAMETER_NAME = "/neon/prod/database-read-url"
READ_SOURCES: dict[str, dict[str, str]] = {
    "secret": {"DatabaseReadSecretArn": READ_SECRET_ARN},
    "parameter": {"DatabaseReadUrlParameterName": READ_PARAMETER_NAME},
}


@pytest.mark.parametrize("source", sorted(READ_SOURCES))
def test_a_read_replica_reaches_the_api_only_and_its_role_may_read_that_url(source: str) -> None:
    overrides = {**DATABASE_SOURCES["secret"], **READ_SOURCES[source], "DbReplicaMaxLag": "2.5"}
    api = function_config("ApiFunction", parameters=overrides).environment
    purge = function_config("PurgeFunction", parameters=overrides).environment
    expected = (
        {"DATABASE_READ_SECRET_ARN": READ_SECRET_ARN}
        if source == "secret"
        else {"DATABASE_READ_URL_PARAMETER": READ_PARAMETER_NAME}
    )
    names = ("DATABASE_READ_SECRET_ARN", "DATABASE_READ_URL_PARAMETER", "DATABASE_READ_URL")
    assert {name: api[name] for name in names if name in api} == expected
    assert api["DB_REPLICA_MAX_LAG"] == "2.5"
    # The scheduled purge writes: it never gets the replica (nor the right to read its URL).
    assert not {*names, "DB_REPLICA_MAX_LAG"} & set(purge)
    read_grant = (
        {"secretsmanager:GetSecretValue": [SECRET_ARN, READ_SECRET_ARN]}
        if source == "secret"
        else {
            "secretsmanager:GetSecretValue": [SECRET_ARN],
            "ssm:GetParameter": ["arn:aws:ssm:us-east-1:123456789012:parameter/neon/prod/database-read-url"],
        }
    )
    api_grants = grants(role_of("ApiFunction"), overrides)
    assert {action: api_grants[action] for action in read_grant} == read_grant
    purge_grants = grants(role_of("PurgeFunction"), overrides)
    assert purge_grants["secretsmanager:GetSecretValue"] == [SECRET_ARN]
    assert "ssm:GetParameter" not in purge_grants


def test_without_a_replica_the_api_gets_no_replica_variable() -> None:
    api = function_config("ApiFunction", parameters=DATABASE_SOURCES["secret"]).environment
    assert not [name for name in api if name.startswith(("DATABASE_READ", "DB_REPLICA"))]


@pytest.mark.parametrize(
    ("overrides", "accepted"),
    [({}, True), (READ_SOURCES["secret"], True), (READ_SOURCES["parameter"], True),
     ({**READ_SOURCES["secret"], **READ_SOURCES["parameter"]}, False)],
    ids=["none", "secret", "parameter", "both"],
)  # fmt: skip
def test_deploy_rule_allows_at_most_one_read_replica_source(overrides: dict[str, str], accepted: bool) -> None:
    (assertion,) = TEMPLATE["Rules"]["AtMostOneReadReplicaSource"]["Assertions"]
    assert Resolver(TEMPLATE, overrides=overrides).resolve(assertion["Assert"]) is accepted


def test_stage_and_pool_parameters_reach_the_functions() -> None:
    environment = function_config("ApiFunction", parameters={"Stage": "staging", "DbPool": "nullpool"}).environment
    assert (environment["APP_ENV"], environment["DB_POOL"]) == ("staging", "nullpool")


def connections_per_environment(pool_profile: str) -> int:
    """Most pooler client connections one execution environment holds, from the app's own pool settings."""
    url = parse_database_url(
        "postgresql://app:pw@ep-calm-sun-123456-pooler.us-east-2.aws.neon.tech/neondb?sslmode=require"
    )
    pool = Settings(database=url, mode="serverless", pool_profile=pool_profile).pool  # type: ignore[arg-type]
    # NullPool keeps nothing between invocations but still holds one connection during one.
    return max(1, pool.pool_size + pool.max_overflow)


def reserved_concurrency(overrides: Mapping[str, str] | None = None) -> dict[str, int | None]:
    resolver = Resolver(TEMPLATE, overrides=dict(overrides or {}))
    reserved: dict[str, int | None] = {}
    for function_id in function_ids(TEMPLATE):
        properties = function_properties(TEMPLATE, function_id)
        value = resolver.resolve({"value": properties.get("ReservedConcurrentExecutions", NO_VALUE)}).get("value")
        reserved[function_id] = None if value is None else int(value)
    return reserved


def test_default_capacity_fits_the_pooler_of_the_smallest_compute() -> None:
    reserved = reserved_concurrency()
    assert None not in reserved.values(), f"every function must reserve concurrency by default: {reserved}"
    default_pool = TEMPLATE["Parameters"]["DbPool"]["Default"]
    environments = sum(value for value in reserved.values() if value is not None)
    assert neon_default_pool_size(DEFAULT_COMPUTE_CU) == 93
    assert environments * connections_per_environment(default_pool) <= neon_default_pool_size(DEFAULT_COMPUTE_CU)


@pytest.mark.parametrize("pool_profile", TEMPLATE["Parameters"]["DbPool"]["AllowedValues"])
def test_every_pool_profile_holds_one_connection_per_environment(pool_profile: str) -> None:
    # The capacity math in docs/deploy.md (environments x 1) holds for both profiles.
    assert connections_per_environment(pool_profile) == 1


def test_reserved_concurrency_parameter_sets_the_api_limit_and_none_lifts_it() -> None:
    assert reserved_concurrency({"ReservedConcurrency": "500"}) == {"ApiFunction": 500, "PurgeFunction": 1}
    assert reserved_concurrency({"ReservedConcurrency": "none"}) == {"ApiFunction": None, "PurgeFunction": None}


def test_timeouts_cover_connect_retries_and_stay_under_the_http_api_limit() -> None:
    api = function_config("ApiFunction")
    purge = function_config("PurgeFunction")
    assert 2 * DEFAULT_CONNECT_TIMEOUT <= api.timeout_seconds < HTTP_API_INTEGRATION_LIMIT_SECONDS
    assert purge.timeout_seconds >= api.timeout_seconds


def api_events() -> dict[str, dict[str, Any]]:
    """Event id -> properties of every HttpApi event of the template's functions."""
    return {
        event_id: event["Properties"]
        for function_id in function_ids(TEMPLATE)
        for event_id, event in function_properties(TEMPLATE, function_id).get("Events", {}).items()
        if event["Type"] == "HttpApi"
    }


def test_every_route_is_an_event_of_the_api_function_on_the_one_http_api() -> None:
    # SAM CLI (`sam local start-api`) reads routes only from the functions' HttpApi events, so no route is a raw
    # AWS::ApiGatewayV2 resource; devtools/tests/unit/test_sam_cli.py checks the routes against the app's.
    resources = TEMPLATE["Resources"]
    assert not [rid for rid, r in resources.items() if r["Type"].startswith("AWS::ApiGatewayV2::")]
    assert [rid for rid, r in resources.items() if r["Type"] == "AWS::Serverless::HttpApi"] == ["HttpApi"]
    assert set(TEMPLATE["Resources"]["ApiFunction"]["Properties"]["Events"]) == set(api_events())
    assert all(properties["ApiId"] == {"Ref": "HttpApi"} for properties in api_events().values())


def test_unmatched_requests_reach_the_app_for_its_error_shape() -> None:
    defaults = [eid for eid, properties in api_events().items() if "Path" not in properties]
    assert defaults == ["Default"], "one event without Path: the $default route sends unknown routes to the app"
    assert "Method" not in api_events()["Default"]


def test_the_api_is_sams_http_api_with_the_stacks_name() -> None:
    api = Resolver(TEMPLATE, symbolic=True).resolve(TEMPLATE["Resources"]["HttpApi"]["Properties"])
    assert (api["Name"], api["StageName"]) == ("local-notes", "$default")
    # The Auth block's Fn::If must be resolved before SAM reads it: CloudFormation's language extensions do that.
    assert TEMPLATE["Transform"] == ["AWS::LanguageExtensions", "AWS::Serverless-2016-10-31"]


@pytest.mark.parametrize(
    ("overrides", "accepted"),
    [
        ({"Auth": "jwt", "JwtIssuer": "https://issuer.example", "JwtAudience": "notes"}, True),
        ({"Auth": "jwt", "JwtAudience": "notes"}, False),
        ({"Auth": "jwt", "JwtIssuer": "https://issuer.example"}, False),
        ({"Auth": "iam"}, True),
    ],
    ids=["jwt-complete", "jwt-no-issuer", "jwt-no-audience", "iam"],
)
def test_jwt_needs_an_issuer_and_an_audience(overrides: dict[str, str], accepted: bool) -> None:
    rule = TEMPLATE["Rules"]["JwtNeedsIssuerAndAudience"]
    resolver = Resolver(TEMPLATE, overrides={**DATABASE_SOURCES["secret"], **overrides})
    applies = resolver.resolve(rule["RuleCondition"])
    assert (not applies or all(resolver.resolve(a["Assert"]) for a in rule["Assertions"])) is accepted


def test_cors_is_off_by_default_and_lists_exactly_the_given_origins() -> None:
    api = TEMPLATE["Resources"]["HttpApi"]["Properties"]
    assert "CorsConfiguration" not in Resolver(TEMPLATE, symbolic=True).resolve(api)
    origins = "https://app.example.com,https://admin.example.com"
    cors = Resolver(TEMPLATE, overrides={"CorsAllowOrigins": origins}, symbolic=True).resolve(api)["CorsConfiguration"]
    assert cors["AllowOrigins"] == origins.split(",")
    assert "*" not in str(cors)
    # What a SigV4- or JWT-signed browser request and the app's idempotency key need.
    assert {"authorization", "content-type", "idempotency-key", "x-amz-date"} <= set(cors["AllowHeaders"])


def test_throttling_comes_from_the_parameters() -> None:
    api = TEMPLATE["Resources"]["HttpApi"]["Properties"]
    overrides = {"ThrottleRateLimit": "10", "ThrottleBurstLimit": "20"}
    settings = Resolver(TEMPLATE, overrides=overrides, symbolic=True).resolve(api)["DefaultRouteSettings"]
    assert settings == {"ThrottlingRateLimit": "10", "ThrottlingBurstLimit": "20"}


def test_access_log_is_one_json_object_with_request_id_status_latency_and_integration_error() -> None:
    settings = TEMPLATE["Resources"]["HttpApi"]["Properties"]["AccessLogSettings"]
    assert settings["DestinationArn"] == {"Fn::GetAtt": ["ApiAccessLogGroup", "Arn"]}
    # API Gateway writes "-" for a variable without a value; every value is quoted, so the line stays JSON.
    line = json.loads(re.sub(r"\$context\.[A-Za-z.]+", "-", settings["Format"]))
    assert {"requestId", "status", "responseLatency", "integrationLatency", "integrationError"} <= set(line)
    variables = dict(re.findall(r'"(\w+)":"(\$context\.[A-Za-z.]+)"', settings["Format"]))
    assert variables["requestId"] == "$context.requestId"
    assert variables["status"] == "$context.status"
    assert variables["integrationError"] == "$context.integrationErrorMessage"
    retention = TEMPLATE["Resources"]["ApiAccessLogGroup"]["Properties"]["RetentionInDays"]
    assert retention == {"Ref": "LogRetentionDays"}


def test_dead_letter_queue_is_encrypted_with_a_rotating_key_the_schedule_may_use() -> None:
    resources = TEMPLATE["Resources"]
    assert resources["PurgeDeadLetterQueue"]["Properties"]["KmsMasterKeyId"] == {"Ref": "MessagesKey"}
    key = resources["MessagesKey"]["Properties"]
    assert key["EnableKeyRotation"] is True
    statements = Resolver(TEMPLATE, symbolic=True).resolve(key["KeyPolicy"])["Statement"]
    (events,) = [s for s in statements if s["Principal"] == {"Service": "events.amazonaws.com"}]
    schedule = resources["PurgeFunction"]["Properties"]["Events"]["PurgeSchedule"]["Properties"]
    rule_name = Resolver(TEMPLATE).resolve(schedule["Name"])
    assert events["Condition"] == {
        "ArnEquals": {"aws:SourceArn": f"arn:aws:events:us-east-1:123456789012:rule/{rule_name}"}
    }
    assert sorted(events["Action"]) == ["kms:Decrypt", "kms:GenerateDataKey"]
    principals = [s["Principal"] for s in statements]
    assert "*" not in str(principals)


OBSERVABILITY = nested_applications(TEMPLATE)["Observability"]
OBSERVABILITY_TYPES = ("AWS::CloudWatch::", "AWS::SNS::", "AWS::Logs::MetricFilter", "AWS::Logs::SubscriptionFilter")


def observability(overrides: Mapping[str, str] | None = None) -> Resolver:
    """observability.yaml's values as template.yaml passes them, deployed with these parameters."""
    return nested_resolver(Resolver(TEMPLATE, overrides=dict(overrides or {}), symbolic=True), OBSERVABILITY)


def test_functions_come_first_and_observability_is_the_nested_application_last() -> None:
    resources = list(TEMPLATE["Resources"].items())
    assert resources[0][1]["Type"] == "AWS::Serverless::Function"
    assert [rid for rid, r in resources if r["Type"] == APPLICATION_TYPE] == [resources[-1][0]] == ["Observability"]
    assert TEMPLATE["Resources"]["Observability"]["Properties"]["Location"] == "observability.yaml"
    assert OBSERVABILITY.path == ROOT / "observability.yaml"
    # Every alarm, dashboard, topic and log-based metric is the nested template's; none is left in template.yaml.
    assert not [rid for rid, r in resources if r["Type"].startswith(OBSERVABILITY_TYPES)]
    nested_types = {r["Type"] for r in OBSERVABILITY.template["Resources"].values()}
    assert nested_types == {"AWS::CloudWatch::Alarm", "AWS::CloudWatch::Dashboard", "AWS::SNS::Topic"}


def test_the_parent_passes_exactly_the_parameters_the_nested_template_declares() -> None:
    # CloudFormation refuses a nested stack with a value missing or one it does not declare.
    assert set(OBSERVABILITY.parameters) == set(OBSERVABILITY.template["Parameters"])
    # Plain CloudFormation: template.yaml's transforms (language extensions, SAM) apply to template.yaml only.
    assert "Transform" not in OBSERVABILITY.template


def test_every_nested_template_is_linted_like_template_yaml() -> None:
    lint = (ROOT / "devtools" / "lint.mk").read_text(encoding="utf-8")
    (checkov,) = re.findall(r"^CHECKOV_TEMPLATES := (.*)$", lint, re.MULTILINE)
    for application in nested_applications(TEMPLATE).values():
        assert str(application.path.relative_to(ROOT)) in checkov.split()


def test_alarm_topic_exists_only_with_an_email_and_is_encrypted() -> None:
    topic = OBSERVABILITY.template["Resources"]["AlarmTopic"]
    assert topic["Condition"] == "AlarmEmailSet"
    assert not observability().condition("AlarmEmailSet")
    resolver = observability({"AlarmEmail": "ops@example.com"})
    assert resolver.condition("AlarmEmailSet")
    # The stack's rotating key, whose policy lets CloudWatch alarms use it (test_dead_letter_queue_... reads it).
    assert resolver.resolve(topic["Properties"]["KmsMasterKeyId"]) == {"Ref": "MessagesKey"}
    assert resolver.resolve(topic["Properties"]["Subscription"]) == [
        {"Protocol": "email", "Endpoint": "ops@example.com"}
    ]
    alarms = [r for r in OBSERVABILITY.template["Resources"].values() if r["Type"] == "AWS::CloudWatch::Alarm"]
    assert len(alarms) == 10
    for alarm in alarms:
        assert resolver.resolve(alarm["Properties"])["AlarmActions"] == [{"Ref": "AlarmTopic"}]
        assert resolver.resolve(alarm["Properties"])["OKActions"] == [{"Ref": "AlarmTopic"}]
        assert not {"AlarmActions", "OKActions"} & set(observability().resolve(alarm["Properties"]))


@pytest.mark.parametrize("email", ["", "ops@example.com"])
def test_the_nested_outputs_the_parent_reads_exist_exactly_when_it_reads_them(email: str) -> None:
    resolver = observability({"AlarmEmail": email})
    nested = {
        name: output
        for name, output in OBSERVABILITY.template["Outputs"].items()
        if "Condition" not in output or resolver.condition(output["Condition"])
    }
    parent = Resolver(TEMPLATE, overrides={"AlarmEmail": email})
    for name, output in TEMPLATE["Outputs"].items():
        if "Condition" in output and not parent.condition(output["Condition"]):
            continue
        value = output["Value"]
        if "Fn::GetAtt" in value and value["Fn::GetAtt"][0] == "Observability":
            assert value["Fn::GetAtt"][1] == f"Outputs.{name}"
            assert name in nested, f"{name}: the nested stack has no such output with AlarmEmail={email!r}"


@pytest.mark.parametrize("function_id", function_ids(TEMPLATE))
def test_permissions_boundary_is_set_only_when_given(function_id: str) -> None:
    role = TEMPLATE["Resources"][role_of(function_id)]["Properties"]
    boundary = "arn:aws:iam::123456789012:policy/neon-notes-function-boundary"
    assert "PermissionsBoundary" not in Resolver(TEMPLATE, symbolic=True).resolve(role)
    resolved = Resolver(TEMPLATE, overrides={"RolePermissionsBoundaryArn": boundary}, symbolic=True).resolve(role)
    assert resolved["PermissionsBoundary"] == boundary


def _make_default(path: Path, variable: str) -> str:
    match = re.search(rf"^{variable}\s*\?=\s*(\S+)\s*$", path.read_text(encoding="utf-8"), re.MULTILINE)
    assert match, f"{path} has no `{variable} ?= ...` default"
    return match.group(1)


def test_build_makefiles_default_to_the_templates_runtime_and_architecture() -> None:
    parameters = Resolver(TEMPLATE).parameters
    build_makefile = ROOT / "devtools" / "sam" / "Makefile"
    assert f"python{_make_default(build_makefile, 'LAMBDA_PYTHON_VERSION')}" == parameters["PythonRuntime"]
    assert _make_default(build_makefile, "LAMBDA_ARCHITECTURE") == parameters["Architecture"]
    verbs = ROOT / "devtools" / "sam.mk"
    assert _make_default(verbs, "SAM_PYTHON_RUNTIME") == parameters["PythonRuntime"]
    assert _make_default(verbs, "SAM_ARCHITECTURE") == parameters["Architecture"]


@pytest.mark.parametrize("function_id", function_ids(TEMPLATE))
def test_every_function_is_built_by_the_runtime_only_makefile(function_id: str) -> None:
    metadata = TEMPLATE["Resources"][function_id]["Metadata"]
    assert (metadata["BuildMethod"], metadata["ContextPath"]) == ("makefile", "devtools/sam")
    # `sam build` runs `make build-<LogicalId>`: make (dry run) must find a rule for it, here the one pattern rule.
    makefile = ROOT / "devtools" / "sam" / "Makefile"
    dry_run = subprocess.run(
        ["make", "-n", "-f", str(makefile), f"build-{function_id}", "ARTIFACTS_DIR=/nonexistent"],
        cwd=ROOT,
        capture_output=True,
        text=True,
        check=False,
    )
    assert dry_run.returncode == 0, dry_run.stderr
    assert "cp -R handlers lib" in dry_run.stdout


def test_outputs_name_the_api_url_and_the_functions() -> None:
    assert {"ApiUrl", "ApiFunctionName", "PurgeFunctionName", "DashboardUrl", "AlarmTopicArn"} <= set(
        TEMPLATE["Outputs"]
    )


def test_every_checkov_skip_gives_its_reason() -> None:
    skips = [
        (rid, skip)
        for template in (TEMPLATE, OBSERVABILITY.template)
        for rid, resource in template["Resources"].items()
        for skip in resource.get("Metadata", {}).get("checkov", {}).get("skip", [])
    ]
    assert skips
    for rid, skip in skips:
        assert re.fullmatch(r"CKV2?_AWS_\d+", skip["id"]), (rid, skip)
        assert len(skip.get("comment", "")) >= 30, f"{rid}: skip {skip['id']} without a reason"


def test_capacity_table_in_the_deploy_guide_follows_neons_numbers() -> None:
    guide = (ROOT / "docs" / "deploy.md").read_text(encoding="utf-8")
    section = guide.split("## Capacity", 1)[1].split("\n## ", 1)[0]
    rows = re.findall(r"^\| ([0-9.]+)(?: and up)? \| (\d+) \| (\d+) \| (\d+) \|$", section, re.MULTILINE)
    assert len(rows) >= 7, section
    purge_reserved = reserved_concurrency()["PurgeFunction"] or 0
    for compute, max_connections, pool_size, largest_reserved in rows:
        units = float(compute)
        documented = NEON_MAX_CONNECTIONS.get(units, NEON_MAX_CONNECTIONS_9_CU_AND_UP)
        assert int(max_connections) == documented, compute
        assert int(pool_size) == neon_default_pool_size(units), compute
        assert int(largest_reserved) == neon_default_pool_size(units) - purge_reserved, compute
