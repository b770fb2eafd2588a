"""devtools.sam_template, devtools.function_config and devtools.invoke: template reading, errors, no runs."""

from __future__ import annotations

import json
from pathlib import Path

import pytest
import yaml

from devtools import invoke as local_invoke
from devtools.function_config import (
    InvokeUsageError,
    database_environment,
    function_config,
    function_environment,
    replica_environment,
)
from devtools.invoke import invoke, sam_local_env_vars
from devtools.paths import ROOT
from devtools.sam_template import (
    NO_VALUE,
    CfnLoader,
    Resolver,
    TemplateError,
    UnresolvableError,
    function_ids,
    function_properties,
    load_template,
    merge_globals,
)
from devtools.stack import read_env

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


@pytest.fixture
def fake_function(tmp_path: Path) -> Path:
    """A template with one function in tmp_path; returns the template path."""
    template = tmp_path / "template.yaml"
    template.write_text(FAKE_TEMPLATE.replace("{module}", "echo_handler"), encoding="utf-8")
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


def test_database_comes_from_the_environment_first_then_the_stack_env_file(tmp_path: Path) -> None:
    stack_env = tmp_path / "env"
    stack_env.write_text(
        "# by devtools.stack\nexport DATABASE_URL='postgresql://stack'\nexport DB_POOLER_HOSTS='localhost:6432'\n",
        encoding="utf-8",
    )
    assert read_env(stack_env)["DB_POOLER_HOSTS"] == "localhost:6432"
    assert database_environment({}, stack_env) == {
        "DATABASE_URL": "postgresql://stack",
        "DB_POOLER_HOSTS": "localhost:6432",
    }
    assert database_environment({"DATABASE_URL": "postgresql://mine"}, stack_env)["DATABASE_URL"] == "postgresql://mine"
    with pytest.raises(InvokeUsageError, match="no database"):
        database_environment({}, tmp_path / "missing")


def test_the_template_environment_gets_the_local_database_only_when_it_names_none(fake_function: Path) -> None:
    config = function_config("EchoFunction", template_path=fake_function)
    assert function_environment(config, DB, fake_function.parent / "no-stack-env") == {**config.environment, **DB}
    with_secret = function_config("EchoFunction", parameters={"Secret": "arn:x"}, template_path=fake_function)
    assert "DATABASE_URL" not in function_environment(with_secret, {**DB, "DB_POOLER_HOSTS": "localhost:6432"})
    assert function_environment(with_secret, {"DB_POOLER_HOSTS": "localhost:6432"})["DB_POOLER_HOSTS"] == (
        "localhost:6432"
    )


READ = {"DATABASE_READ_URL": "postgresql://u:p@localhost:1/neondb_replica?sslmode=verify-full"}


def test_the_replica_comes_with_the_primary_from_the_caller_or_from_the_stack_env_file(tmp_path: Path) -> None:
    stack_env = tmp_path / "env"
    stack_env.write_text(
        "export DATABASE_URL='postgresql://stack'\nexport DATABASE_READ_URL='postgresql://stack-replica'\n",
        encoding="utf-8",
    )
    assert replica_environment({}, stack_env) == {"DATABASE_READ_URL": "postgresql://stack-replica"}
    assert replica_environment({**DB, **READ}, stack_env) == READ
    # The caller's own primary never gets the stack's replica.
    assert replica_environment(DB, stack_env) == {}
    assert replica_environment({}, tmp_path / "missing") == {}


def test_only_a_function_that_declares_the_replica_gets_it_as_deployed() -> None:
    api, purge = function_config("ApiFunction"), function_config("PurgeFunction")
    assert "DATABASE_READ_URL" in api.declared
    assert "DATABASE_READ_URL" not in purge.declared
    assert function_environment(api, {**DB, **READ})["DATABASE_READ_URL"] == READ["DATABASE_READ_URL"]
    assert "DATABASE_READ_URL" not in function_environment(purge, {**DB, **READ})
    assert "DATABASE_READ_URL" not in function_environment(api, DB, ROOT / "no-stack-env")
    # A replica the template names (a secret) is what the function gets, not the local one.
    with_secret = function_config(
        "ApiFunction", parameters={"DatabaseReadSecretArn": "arn:aws:secretsmanager:us-east-1:123456789012:secret:r"}
    )
    variables = function_environment(with_secret, {**DB, **READ})
    assert "DATABASE_READ_URL" not in variables
    assert variables["DATABASE_READ_SECRET_ARN"].endswith(":secret:r")


def test_env_json_gives_the_replica_to_the_functions_that_declare_it() -> None:
    stack_env = {
        "DATABASE_URL": "postgresql://u:p@localhost:6432/neondb?sslmode=verify-full&sslrootcert=/home/me/ca.crt",
        "DATABASE_READ_URL": "postgresql://u:p@localhost:6432/neondb_replica?sslmode=verify-full&sslrootcert=/x.crt",
    }
    generated = sam_local_env_vars(stack_env)
    assert generated["ApiFunction"] == {
        "DATABASE_READ_URL": "postgresql://u:p@localhost:6432/neondb_replica?sslmode=verify-full&sslrootcert=/var/task/stack-ca.crt"
    }
    assert "PurgeFunction" not in generated
    assert "DATABASE_READ_URL" not in generated["Parameters"]


def test_function_config_reads_what_the_local_runtime_and_api_need_from_the_template() -> None:
    api = function_config("ApiFunction")
    assert (api.runtime, api.timeout_seconds, api.memory_mb) == ("python3.13", 25, 512)
    assert api.code_root == ROOT
    assert api.reserved_concurrency == 80
    assert api.tracing == "Active"
    assert not api.snap_start
    assert function_config("PurgeFunction").reserved_concurrency == 1
    unbounded = function_config("ApiFunction", parameters={"ReservedConcurrency": "none", "EnableSnapStart": "true"})
    assert unbounded.reserved_concurrency is None
    assert unbounded.snap_start


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
    generated = sam_local_env_vars(
        {
            "DATABASE_URL": "postgresql://u:p@localhost:1/db",
            "DATABASE_READ_URL": "postgresql://r",
            "DB_POOLER_HOSTS": "x",
        }
    )
    template = load_template()
    assert set(env_json) <= {"Parameters", *function_ids(template)}
    for function_id in function_ids(template):
        declared = set(function_properties(template, function_id)["Environment"]["Variables"])
        assert set(function_config(function_id).declared) == declared
        for variables in (
            env_json["Parameters"],
            env_json.get(function_id, {}),
            generated["Parameters"],
            generated.get(function_id, {}),
        ):
            assert set(variables) <= declared, (function_id, sorted(set(variables) - declared))


def test_local_only_database_variables_are_never_deployed() -> None:
    for function_id in function_ids(load_template()):
        deployed = function_config(function_id, parameters={"DatabaseSecretArn": "arn:x"}).environment
        assert "DATABASE_URL" not in deployed
        assert "DB_POOLER_HOSTS" not in deployed
