"""The GitHub workflows read as data: what each runs, in which order, with which permissions and pins.

They cannot run here; actionlint and zizmor (`make lint-workflows`) check their syntax and security, and these
tests check that they do what docs/deploy.md says, with the Makefile verbs and tools that exist.
"""

from __future__ import annotations

import fnmatch
import re
import shlex
import tomllib
from typing import Any

import pytest
import yaml

from devtools.paths import ROOT

WORKFLOWS = ROOT / ".github" / "workflows"
FULL_SHA = re.compile(r"^[^@\s]+@[0-9a-f]{40}$")
OIDC_ACTION = "aws-actions/configure-aws-credentials"


def load(name: str) -> dict[str, Any]:
    document = yaml.safe_load((WORKFLOWS / name).read_text(encoding="utf-8"))
    # YAML 1.1 reads the key `on` as True.
    if True in document:
        document["on"] = document.pop(True)
    return dict(document)


def workflow_files() -> list[str]:
    return sorted(path.name for path in WORKFLOWS.glob("*.yml"))


def steps(workflow: dict[str, Any], job: str) -> list[dict[str, Any]]:
    return list(workflow["jobs"][job].get("steps", []))


def step_index(job_steps: list[dict[str, Any]], *, uses: str | None = None, run: str | None = None) -> int:
    for index, step in enumerate(job_steps):
        if uses is not None and str(step.get("uses", "")).startswith(uses + "@"):
            return index
        if run is not None and run in str(step.get("run", "")):
            return index
    raise AssertionError(f"no step uses={uses} run={run}")


def make_targets() -> set[str]:
    text = "".join(
        path.read_text(encoding="utf-8") for path in (ROOT / "Makefile", *sorted(ROOT.glob("devtools/*.mk")))
    )
    return {target for line in re.findall(r"^([a-zA-Z][\w -]*):(?!=)", text, re.MULTILINE) for target in line.split()}


def test_the_five_workflows_exist() -> None:
    # template.yml tests copier copy/update: the template repository's only (copier.yml keeps it out of projects).
    template_only = ["template.yml"] if (ROOT / "copier.yml").exists() else []
    expected = ["ci.yml", "conformance.yml", "dependency-watch.yml", "deploy.yml", "preview.yml", *template_only]
    assert workflow_files() == expected


def test_ci_runs_exactly_what_dot_ci_run_runs() -> None:
    ci = load("ci.yml")
    assert {"push", "pull_request", "workflow_call"} <= set(ci["on"])
    (job,) = ci["jobs"].values()
    runs = [step["run"] for step in job["steps"] if "run" in step]
    assert runs == [".ci/run"]
    assert job["runs-on"].startswith("ubuntu-")
    commands = [
        line.strip()
        for line in (ROOT / ".ci" / "run").read_text(encoding="utf-8").splitlines()
        if line.strip() and not line.startswith("#") and not line.startswith(("set ", "cd "))
    ]
    assert commands == ["make test"]
    assert "make test" in (ROOT / "README.md").read_text(encoding="utf-8")


@pytest.mark.parametrize("name", workflow_files())
def test_every_action_is_pinned_by_full_commit_sha_with_its_version_beside_it(name: str) -> None:
    text = (WORKFLOWS / name).read_text(encoding="utf-8")
    for line in text.splitlines():
        match = re.match(r"^\s*(?:-\s*)?uses:\s*(\S+)(.*)$", line)
        if not match or match.group(1).startswith(("./", "$/")):
            continue
        assert FULL_SHA.match(match.group(1)), f"{name}: {line.strip()} is not pinned by commit SHA"
        assert re.match(r"^\s*#\s*v\d+\.\d+\.\d+$", match.group(2)), f"{name}: {line.strip()} lacks its version"


@pytest.mark.parametrize("name", workflow_files())
def test_permissions_are_declared_everywhere_and_oidc_only_where_aws_is_used(name: str) -> None:
    workflow = load(name)
    assert "permissions" in workflow, f"{name}: no workflow-level permissions"
    assert workflow["permissions"] in ({}, {"contents": "read"})
    for job_id, job in workflow["jobs"].items():
        assert "permissions" in job, f"{name}/{job_id}: no job-level permissions"
        granted = job["permissions"]
        uses_oidc = any(str(step.get("uses", "")).startswith(OIDC_ACTION) for step in job.get("steps", []))
        assert (granted.get("id-token") == "write") is uses_oidc, f"{name}/{job_id}: id-token only for AWS"
        writes = {scope for scope, level in granted.items() if level == "write"} - {"id-token"}
        allowed = {"issues"} if (name, job_id) == ("dependency-watch.yml", "issue") else {"pull-requests"}
        assert writes <= allowed, f"{name}/{job_id}: writes {writes}"
        if writes:
            # The job that may write to the pull request or an issue runs no code of the repository (no checkout,
            # no scripts) and holds no AWS credentials.
            assert not uses_oidc
            assert not any("run" in s for s in job["steps"])
            assert not any(str(s.get("uses", "")).startswith("actions/checkout@") for s in job["steps"])


@pytest.mark.parametrize("name", workflow_files())
def test_checkouts_keep_no_credentials_and_scripts_take_no_expressions(name: str) -> None:
    workflow = load(name)
    for job in workflow["jobs"].values():
        for step in job.get("steps", []):
            if str(step.get("uses", "")).startswith("actions/checkout@"):
                assert step["with"]["persist-credentials"] is False
            # Values reach scripts through env:, never pasted into the script (template injection).
            assert "${{" not in str(step.get("run", "")), step


@pytest.mark.parametrize("name", workflow_files())
def test_every_make_verb_and_tool_command_in_the_workflows_exists(name: str) -> None:
    targets = make_targets()
    for job in load(name)["jobs"].values():
        for step in job.get("steps", []):
            for command in re.findall(r"(?m)^\s*make ([\w-]+)", str(step.get("run", ""))):
                assert command in targets, f"{name}: make {command} is not a Makefile target"
            for module in re.findall(r"-m (devtools(?:\.\w+)+)", str(step.get("run", ""))):
                path = ROOT / module.replace(".", "/")
                assert path.with_suffix(".py").exists() or (path / "__main__.py").exists(), module
            for subcommand in re.findall(r"-m devtools\.preview ([\w-]+)", str(step.get("run", ""))):
                assert subcommand in {"put-database-url", "stack-output", "smoke", "delete"}, subcommand


def test_preview_migrates_then_tests_then_deploys_then_smoke_tests() -> None:
    preview = load("preview.yml")
    assert preview["on"]["pull_request"]["types"] == ["opened", "synchronize", "reopened", "closed"]
    job = steps(preview, "deploy")
    branch = step_index(job, uses="neondatabase/create-branch-action")
    migrate = step_index(job, run="make migrate")
    check = step_index(job, run="make check")
    credentials = step_index(job, uses=OIDC_ACTION)
    deploy = step_index(job, run="sam deploy")
    smoke = step_index(job, run="devtools.preview smoke")
    assert branch < migrate < check < credentials < deploy < smoke
    assert job[migrate]["env"] == {"DIRECT_DATABASE_URL": "${{ steps.branch.outputs.db_url }}"}
    assert job[check]["env"] == {
        "TEST_DATABASE_URL": "${{ steps.branch.outputs.db_url_pooled }}",
        "TEST_DIRECT_DATABASE_URL": "${{ steps.branch.outputs.db_url }}",
    }
    # The password is masked before any step could print it.
    assert "::add-mask::" in job[branch + 1]["run"]
    assert "steps.branch.outputs.password" in str(job[branch + 1]["env"])


def test_preview_deploys_the_pr_stack_with_the_pooled_string_and_cleans_everything_up_on_close() -> None:
    preview = load("preview.yml")
    assert preview["env"]["STACK_NAME"] == "neon-notes-pr-${{ github.event.pull_request.number }}"
    job = steps(preview, "deploy")
    store = job[step_index(job, run="devtools.preview put-database-url")]
    assert store["env"] == {"DATABASE_URL": "${{ steps.branch.outputs.db_url_pooled }}"}
    deploy = shlex.split(job[step_index(job, run="sam deploy")]["run"])
    assert "DatabaseUrlParameterName=${DATABASE_URL_PARAMETER}" in deploy
    assert "--role-arn" in deploy
    assert "closed" not in preview["jobs"]["deploy"]["if"].replace("!= 'closed'", "")
    cleanup = preview["jobs"]["cleanup"]
    assert "== 'closed'" in cleanup["if"]
    cleanup_steps = cleanup["steps"]
    assert step_index(cleanup_steps, run="devtools.preview delete") < step_index(
        cleanup_steps, uses="neondatabase/delete-branch-action"
    )
    assert preview["jobs"]["comment"]["needs"] == "deploy"


def test_deploy_tests_then_migrates_before_it_deploys_in_the_production_environment() -> None:
    deploy = load("deploy.yml")
    assert deploy["on"]["push"]["branches"] == ["main"]
    assert deploy["jobs"]["test"]["uses"].endswith(".github/workflows/ci.yml")
    job = deploy["jobs"]["deploy"]
    assert job["needs"] == "test"
    assert job["environment"] == "production"
    job_steps = job["steps"]
    migrate = step_index(job_steps, run="make migrate")
    assert job_steps[migrate]["env"] == {"DIRECT_DATABASE_URL": "${{ secrets.NEON_DIRECT_DATABASE_URL }}"}
    assert migrate < step_index(job_steps, run="make sam-build") < step_index(job_steps, run="sam deploy")
    assert deploy["concurrency"]["cancel-in-progress"] is False


def test_every_secret_and_variable_the_workflows_read_is_documented() -> None:
    used: set[str] = set()
    for name in workflow_files():
        used |= set(re.findall(r"\b((?:secrets|vars)\.[A-Z_]+)", (WORKFLOWS / name).read_text(encoding="utf-8")))
    guide = (ROOT / "docs" / "deploy.md").read_text(encoding="utf-8")
    documented = {
        f"{kind}.{name}" for kind, name in re.findall(r"^\s*\| (secret|variable) \| `([A-Z_]+)` \|", guide, re.M)
    }
    documented = {item.replace("secret.", "secrets.").replace("variable.", "vars.") for item in documented}
    assert used, "no secrets or variables found"
    assert used == documented


def test_ci_deploy_config_never_prompts() -> None:
    samconfig = (ROOT / "samconfig.toml").read_text(encoding="utf-8")
    section = samconfig.split("[ci.deploy.parameters]", 1)[1]
    assert "confirm_changeset = false" in section
    assert "fail_on_empty_changeset = false" in section


@pytest.mark.parametrize("environment", ["default", "ci"])
def test_every_deploy_acknowledges_the_nested_application(environment: str) -> None:
    from devtools.sam_template import load_template, nested_applications

    # A template with transforms and a nested stack (observability.yaml) needs CAPABILITY_AUTO_EXPAND; the
    # workflows deploy with --config-env ci, `sam deploy` by hand with the default environment.
    assert nested_applications(load_template())
    deploy = tomllib.loads((ROOT / "samconfig.toml").read_text(encoding="utf-8"))[environment]["deploy"]
    assert set(deploy["parameters"]["capabilities"].split()) == {"CAPABILITY_IAM", "CAPABILITY_AUTO_EXPAND"}
    for name in ("deploy.yml", "preview.yml"):
        for job in load(name)["jobs"].values():
            for step in job.get("steps", []):
                run = str(step.get("run", ""))
                if "sam deploy" in run:
                    # The capabilities come from samconfig.toml; a --capabilities flag would replace them.
                    assert "--config-env ci" in run
                    assert "--capabilities" not in run


def test_migrate_uses_the_given_direct_string_without_the_local_stack() -> None:
    makefile = (ROOT / "Makefile").read_text(encoding="utf-8")
    (rule,) = re.findall(r"^migrate:.*\n\t.*$", makefile, re.MULTILINE)
    assert "$(if $(DIRECT_DATABASE_URL),,stack-up)" in rule
    assert "$(if $(DIRECT_DATABASE_URL),,$(WITH_STACK_ENV))" in rule
    # Alembic: the kit's history, then the app's (devtools/migrate.py); the old numbered-SQL runner is gone.
    assert rule.endswith("$(PYTHON) -m devtools.migrate")


def test_the_deploy_roles_may_use_every_transform_the_template_declares() -> None:
    from devtools.sam_template import load_template, nested_applications

    template = load_template()
    transforms: set[str] = set()
    for document in (template, *(app.template for app in nested_applications(template).values())):
        declared = document.get("Transform", [])
        transforms |= {name.removeprefix("AWS::") for name in (declared if isinstance(declared, list) else [declared])}
    resources = load_template(ROOT / "infra" / "github-oidc.yaml")["Resources"]
    for role in ("PreviewRole", "DeployRole"):
        statements = [
            statement
            for policy in resources[role]["Properties"]["Policies"]
            for statement in policy["PolicyDocument"]["Statement"]
        ]
        (allowed,) = [s for s in statements if s.get("Sid") == "SamTransform"]
        assert allowed["Action"] == "cloudformation:CreateChangeSet"
        arns = [resource["Fn::Sub"] for resource in allowed["Resource"]]
        prefix = "arn:${AWS::Partition}:cloudformation:${AWS::Region}:aws:transform/"
        assert all(arn.startswith(prefix) for arn in arns), arns
        assert {arn.removeprefix(prefix) for arn in arns} == transforms, role


@pytest.mark.parametrize("stack", ["neon-notes", "neon-notes-pr-7"])
def test_the_execution_role_may_manage_exactly_the_nested_stacks_of_the_template(stack: str) -> None:
    from devtools.sam_template import Resolver, load_template, nested_applications

    infra = load_template(ROOT / "infra" / "github-oidc.yaml")
    parameters = {"GitHubOwner": "o", "GitHubRepository": "r", "StackName": "neon-notes"}
    resolver = Resolver(infra, overrides=parameters, symbolic=True)
    policy = infra["Resources"]["CloudFormationExecutionRole"]["Properties"]["Policies"][0]["PolicyDocument"]
    statements = [resolver.resolve(s) for s in policy["Statement"]]
    stack_actions = [s for s in statements if any(a.startswith("cloudformation:") for a in _as_list(s["Action"]))]
    (nested,) = stack_actions
    assert {"cloudformation:CreateStack", "cloudformation:UpdateStack", "cloudformation:DeleteStack"} <= set(
        nested["Action"]
    )
    arn = "arn:aws:cloudformation:us-east-1:123456789012:stack/{}/0f1e2d3c"
    # CloudFormation names a nested stack <parent>-<logical id>-<suffix>.
    for logical_id in nested_applications(load_template()):
        assert fnmatch.fnmatchcase(arn.format(f"{stack}-{logical_id}-1A2B3C4D5E6F"), nested["Resource"])
    # Not the parent stacks themselves, nor other stacks of the account.
    for other in (stack, f"{stack}-Other-1A2B3C4D5E6F", "someone-else-Observability-1A2B3C4D5E6F"):
        assert not fnmatch.fnmatchcase(arn.format(other), nested["Resource"])


def _as_list(value: Any) -> list[Any]:
    return value if isinstance(value, list) else [value]


def test_the_deploy_roles_trust_only_this_repositorys_pull_requests_and_production_environment() -> None:
    from devtools.sam_template import load_template

    infra = load_template(ROOT / "infra" / "github-oidc.yaml")
    resources = infra["Resources"]
    subjects = {}
    for role in ("PreviewRole", "DeployRole"):
        (statement,) = resources[role]["Properties"]["AssumeRolePolicyDocument"]["Statement"]
        condition = statement["Condition"]["StringEquals"]
        assert condition["token.actions.githubusercontent.com:aud"] == "sts.amazonaws.com"
        subjects[role] = condition["token.actions.githubusercontent.com:sub"]["Fn::Sub"]
    assert subjects == {
        "PreviewRole": "repo:${GitHubOwner}/${GitHubRepository}:pull_request",
        "DeployRole": "repo:${GitHubOwner}/${GitHubRepository}:environment:${ProductionEnvironment}",
    }
    # Function roles only with the boundary: a changed template cannot create an administrator.
    policy = resources["CloudFormationExecutionRole"]["Properties"]["Policies"][0]["PolicyDocument"]["Statement"]
    (create,) = [s for s in policy if "iam:CreateRole" in s["Action"]]
    assert create["Condition"] == {"StringEquals": {"iam:PermissionsBoundary": {"Ref": "FunctionRoleBoundary"}}}
    assert not [s for s in policy if s["Action"] == "*" or "iam:*" in s["Action"]]


def test_conformance_runs_make_conformance_on_pull_requests_and_main_and_keeps_its_results() -> None:
    workflow = load("conformance.yml")
    assert {"pull_request", "push"} <= set(workflow["on"])
    assert workflow["on"]["push"]["branches"] == ["main"]
    (job,) = workflow["jobs"].values()
    assert job["permissions"] == {"contents": "read"}
    job_steps = job["steps"]
    runs = [step["run"] for step in job_steps if "run" in step]
    assert runs[0] == "make conformance"
    upload = job_steps[step_index(job_steps, uses="actions/upload-artifact")]
    assert upload["if"] == "always()"
    assert ".cache/conformance/results.json" in upload["with"]["path"]


def test_dependency_watch_is_weekly_and_tests_the_newest_releases_with_conformance_and_both_drivers() -> None:
    from devtools.conformance.sources import WATCHED_PACKAGES

    workflow = load("dependency-watch.yml")
    assert workflow["permissions"] == {}
    assert "workflow_dispatch" in workflow["on"]
    (schedule,) = workflow["on"]["schedule"]
    _minute, _hour, day_of_month, month, day_of_week = schedule["cron"].split()
    assert (day_of_month, month) == ("*", "*"), "once a week"
    assert day_of_week.isdigit(), "once a week"
    job = workflow["jobs"]["watch"]
    assert job["permissions"] == {"contents": "read"}
    job_steps = steps(workflow, "watch")
    install = step_index(job_steps, run="pip install")
    installed = job_steps[install]["run"]
    assert "make venv" in installed
    assert installed.index("make venv") < installed.index("--upgrade")
    assert all(package in installed for package in WATCHED_PACKAGES)
    conformance = step_index(job_steps, run="make conformance ARGS=--unpinned")
    tiers = step_index(job_steps, run="make --no-print-directory pytest pytest-runtime")
    report = step_index(job_steps, run="devtools.conformance watch-report")
    fail = step_index(job_steps, run="exit 1")
    assert install < conformance < tiers < report < fail
    # Every check runs and is reported even when an earlier one failed; the workflow still fails visibly.
    assert job_steps[conformance]["continue-on-error"] is True
    assert job_steps[tiers]["continue-on-error"] is True
    assert job_steps[report]["if"] == "always()"
    assert job_steps[fail]["if"] == "steps.report.outputs.verdict != 'pass'"
    # The gate is widened in this checkout only from the conformance results, before the tiers run on it.
    tier_script = job_steps[tiers]["run"]
    assert tier_script.index("devtools.conformance range --write") < tier_script.index("make --no-print-directory")
    assert set(job["outputs"]) == {"verdict", "proposal", "report"}


def test_only_the_dependency_watch_issue_job_writes_issues_from_the_watch_report() -> None:
    workflow = load("dependency-watch.yml")
    job = workflow["jobs"]["issue"]
    assert job["permissions"] == {"issues": "write"}
    assert job["needs"] == "watch"
    assert "always()" in job["if"]
    (step,) = job["steps"]
    assert str(step["uses"]).startswith("actions/github-script@")
    assert step["env"]["REPORT"] == "${{ needs.watch.outputs.report }}"
    # The report reaches the script as data (env), never pasted into it.
    assert "${{" not in step["with"]["script"]
    for name in workflow_files():
        for job_id, other in load(name)["jobs"].items():
            if (name, job_id) != ("dependency-watch.yml", "issue"):
                assert other.get("permissions", {}).get("issues") != "write", f"{name}/{job_id}"
