"""tools.sam_template and tools.invoke without a database: template reading, environment, context, errors."""

from __future__ import annotations

import json
import os
from pathlib import Path

import pytest
import yaml

from tools import invoke as local_invoke
from tools.invoke import (
    InvokeUsageError,
    LambdaContext,
    database_environment,
    function_config,
    invoke,
    read_stack_env,
    sam_local_env_vars,
)
from tools.sam_template import (
    NO_VALUE,
    ROOT,
    CfnLoader,
    Resolver,
    TemplateError,
    UnresolvableError,
    function_ids,
    function_properties,
    load_template,
    merge_globals,
)

FAKE_TEMPLATE = """\
Transform: AWS::Serverless-2016-10-31
Parameters:
  Mode: { Type: String, Default: serverless }
  Secret: { Type: String, Default: "" }
Conditions:
  HasSecret: !Not [!Equals [!Ref Secret, ""]]
Globals:
  Function:
    Timeout: 7
    MemorySize: 256
    Environment:
      Variables:
        DB_MODE: !Ref Mode
        DATABASE_SECRET_ARN: !If [HasSecret, !Ref Secret, !Ref AWS::NoValue]
        QUEUE_URL: !Ref SomeQueue
Resources:
  EchoFunction:
    Type: AWS::Serverless::Function
    Properties:
      Handler: {module}.handler
      Runtime: python3.13
      Environment:
        Variables:
          REGION_NOTE: !Sub "in ${AWS::Region}"
  SomeQueue:
    Type: AWS::SQS::Queue
"""

HANDLER_MODULE = """\
import os

def handler(event, context):
    print("hello from the handler")
    if event.get("fail"):
        raise ValueError("asked to fail")
    names = ("DB_MODE", "DATABASE_URL", "AWS_LAMBDA_FUNCTION_NAME", "REGION_NOTE", "QUEUE_URL", "DATABASE_SECRET_ARN")
    return {
        "env": {name: os.environ.get(name) for name in names},
        "remaining_ms": context.get_remaining_time_in_millis(),
        "request_id": context.aws_request_id,
        "memory": context.memory_limit_in_mb,
    }
"""


@pytest.fixture
def fake_function(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> Path:
    """A template with one function whose handler module lives in tmp_path; returns the template path."""
    module = f"echo_handler_{tmp_path.name.replace('-', '_')}"
    (tmp_path / f"{module}.py").write_text(HANDLER_MODULE, encoding="utf-8")
    monkeypatch.syspath_prepend(str(tmp_path))
    template = tmp_path / "template.yaml"
    template.write_text(FAKE_TEMPLATE.replace("{module}", module), encoding="utf-8")
    (tmp_path / "ok.json").write_text("{}", encoding="utf-8")
    (tmp_path / "fail.json").write_text('{"fail": true}', encoding="utf-8")
    return template


DB = {"DATABASE_URL": "postgresql://u:p@localhost:1/neondb?sslmode=verify-full"}


def test_short_form_tags_load_as_their_long_forms() -> None:
    text = "a: !Ref X\nb: !GetAtt Res.Arn\nc: !Sub 'x-${X}'\nd: !If [C, 1, !Ref AWS::NoValue]\ne: !Condition C\n"
    assert yaml.load(text, Loader=CfnLoader) == {  # noqa: S506 - CfnLoader is a SafeLoader
        "a": {"Ref": "X"},
        "b": {"Fn::GetAtt": ["Res", "Arn"]},
        "c": {"Fn::Sub": "x-${X}"},
        "d": {"Fn::If": ["C", 1, {"Ref": "AWS::NoValue"}]},
        "e": {"Condition": "C"},
    }


def test_globals_merge_maps_per_key_concatenate_lists_and_let_the_function_win() -> None:
    merged = merge_globals(
        {"Timeout": 3, "Layers": ["a"], "Environment": {"Variables": {"A": "1", "B": "1"}}},
        {"Timeout": 9, "Layers": ["b"], "Environment": {"Variables": {"B": "2"}}},
    )
    assert merged == {"Timeout": 9, "Layers": ["a", "b"], "Environment": {"Variables": {"A": "1", "B": "2"}}}


def test_resolver_evaluates_parameters_conditions_and_sub_and_drops_no_value() -> None:
    template = {
        "Parameters": {"Name": {"Default": "db"}},
        "Conditions": {"IsDb": {"Fn::Equals": [{"Ref": "Name"}, "db"]}},
        "Resources": {},
    }
    resolver = Resolver(template)
    assert resolver.resolve({"Fn::Sub": "${Name}-${AWS::Region}-${!Literal}"}) == "db-us-east-1-${Literal}"
    assert resolver.resolve({"k": {"Fn::If": ["IsDb", {"Ref": "AWS::NoValue"}, "x"]}, "j": 1}) == {"j": 1}
    assert resolver.resolve({"Ref": "AWS::NoValue"}) is NO_VALUE
    with pytest.raises(UnresolvableError):
        resolver.resolve({"Fn::GetAtt": ["Queue", "Arn"]})
    assert Resolver(template, symbolic=True).resolve({"Fn::GetAtt": ["Queue", "Arn"]}) == {
        "Fn::GetAtt": ["Queue", "Arn"]
    }
    with pytest.raises(TemplateError, match="unknown parameter"):
        Resolver(template, overrides={"Nmae": "x"})


def test_function_config_resolves_globals_and_skips_what_only_a_stack_knows(fake_function: Path) -> None:
    config = function_config("EchoFunction", template_path=fake_function)
    assert (config.timeout_seconds, config.memory_mb, config.runtime) == (7, 256, "python3.13")
    assert config.environment["DB_MODE"] == "serverless"
    assert "DATABASE_SECRET_ARN" not in config.environment
    assert config.unresolved == ("QUEUE_URL",)
    overridden = function_config("EchoFunction", parameters={"Secret": "arn:x"}, template_path=fake_function)
    assert overridden.environment["DATABASE_SECRET_ARN"] == "arn:x"


def test_unknown_function_is_a_usage_error_naming_the_functions(fake_function: Path) -> None:
    with pytest.raises(InvokeUsageError, match=r"unknown function 'Nope'.*EchoFunction"):
        function_config("Nope", template_path=fake_function)


def test_missing_event_file_is_a_usage_error_listing_the_functions_events() -> None:
    with pytest.raises(InvokeUsageError, match=r"no event file .*events for ApiFunction: .*events/api-"):
        invoke("ApiFunction", "events/does-not-exist.json", environ=DB)


def test_events_belong_to_a_function_by_its_handler_module_name() -> None:
    assert function_config("ApiFunction").event_prefix == "api-"
    assert function_config("PurgeFunction").event_prefix == "scheduled-"


def test_invoke_runs_the_handler_with_the_template_environment_and_restores_os_environ(fake_function: Path) -> None:
    before = dict(os.environ)
    result = invoke("EchoFunction", fake_function.parent / "ok.json", environ=DB, template_path=fake_function)
    assert result.ok, result.error
    environment = result.response["env"]
    assert environment.pop("REGION_NOTE").startswith("in ")
    assert environment == {
        "DB_MODE": "serverless",
        "DATABASE_URL": DB["DATABASE_URL"],
        "AWS_LAMBDA_FUNCTION_NAME": "EchoFunction",
        "QUEUE_URL": None,
        "DATABASE_SECRET_ARN": None,
    }
    assert 0 < result.response["remaining_ms"] <= 7000
    assert result.response["request_id"] == result.request_id
    assert result.response["memory"] == 256
    assert "hello from the handler" in result.logs
    assert dict(os.environ) == before


def test_a_raising_handler_becomes_lambdas_error_payload(fake_function: Path) -> None:
    result = invoke("EchoFunction", fake_function.parent / "fail.json", environ=DB, template_path=fake_function)
    assert not result.ok
    assert result.response == result.error
    assert result.error is not None
    assert (result.error["errorType"], result.error["errorMessage"]) == ("ValueError", "asked to fail")
    assert "[ERROR] ValueError: asked to fail" in result.logs


def test_database_comes_from_the_environment_first_then_the_stack_env_file(tmp_path: Path) -> None:
    stack_env = tmp_path / "env"
    stack_env.write_text(
        "# written by tools.stack\nexport DATABASE_URL='postgresql://stack'\nexport DB_POOLER_HOSTS='localhost:6432'\n",
        encoding="utf-8",
    )
    assert read_stack_env(stack_env)["DB_POOLER_HOSTS"] == "localhost:6432"
    assert database_environment({}, stack_env) == {
        "DATABASE_URL": "postgresql://stack",
        "DB_POOLER_HOSTS": "localhost:6432",
    }
    assert database_environment({"DATABASE_URL": "postgresql://mine"}, stack_env)["DATABASE_URL"] == "postgresql://mine"
    with pytest.raises(InvokeUsageError, match="no database"):
        database_environment({}, tmp_path / "missing")


def test_context_counts_the_remaining_time_down_from_the_timeout() -> None:
    config = function_config("ApiFunction")
    context = LambdaContext(config, "req-1", "eu-west-1")
    assert 0 < context.get_remaining_time_in_millis() <= config.timeout_seconds * 1000
    assert context.invoked_function_arn == "arn:aws:lambda:eu-west-1:123456789012:function:ApiFunction"


def test_cli_exits_2_naming_the_functions_for_an_unknown_one(capsys: pytest.CaptureFixture[str]) -> None:
    assert local_invoke.main(["Nope", "events/api-01-health.json"]) == local_invoke.EXIT_USAGE
    assert "ApiFunction, PurgeFunction" in capsys.readouterr().err


def test_cli_without_arguments_exits_2_with_usage(capsys: pytest.CaptureFixture[str]) -> None:
    assert local_invoke.main([]) == local_invoke.EXIT_USAGE
    assert "FUNCTION=<logical id> EVENT=<file>" in capsys.readouterr().err


def test_env_json_for_sam_local_points_at_the_stack_with_the_ca_inside_the_container() -> None:
    stack_env = {
        "DATABASE_URL": "postgresql://u:p%40ss@localhost:6432/neondb?sslmode=verify-full&sslrootcert=/home/me/.stack/ca.crt",
        "DB_POOLER_HOSTS": "localhost:6432",
    }
    variables = sam_local_env_vars(stack_env)["Parameters"]
    assert variables["DATABASE_URL"] == (
        "postgresql://u:p%40ss@localhost:6432/neondb?sslmode=verify-full&sslrootcert=/var/task/stack-ca.crt"
    )
    assert variables["DB_POOLER_HOSTS"] == "localhost:6432"
    with pytest.raises(InvokeUsageError, match="start the local stack"):
        sam_local_env_vars({})


def test_env_json_sets_only_variables_the_template_declares() -> None:
    # `sam local invoke --env-vars` silently ignores variables the function's template entry does not declare.
    env_json = json.loads((ROOT / "env.json").read_text(encoding="utf-8"))
    generated = sam_local_env_vars({"DATABASE_URL": "postgresql://u:p@localhost:1/db", "DB_POOLER_HOSTS": "x"})
    template = load_template()
    for function_id in function_ids(template):
        declared = set(function_properties(template, function_id)["Environment"]["Variables"])
        for variables in (env_json["Parameters"], env_json.get(function_id, {}), generated["Parameters"]):
            assert set(variables) <= declared, (function_id, sorted(set(variables) - declared))


def test_local_only_database_variables_are_never_deployed() -> None:
    for function_id in function_ids(load_template()):
        deployed = function_config(function_id, parameters={"DatabaseSecretArn": "arn:x"}).environment
        assert "DATABASE_URL" not in deployed
        assert "DB_POOLER_HOSTS" not in deployed
