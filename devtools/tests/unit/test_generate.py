"""devtools/template/generate.py, Copier's task, on small trees: each step, what it refuses, and that it repeats."""

from __future__ import annotations

from pathlib import Path

import pytest

from devtools.template import generate
from devtools.template.generate import Answers, GenerationError

TEMPLATE_YAML = """\
Parameters:
  Stage:
    Type: String
    Default: production
  PythonRuntime:
    Type: String
    Default: python3.13
    AllowedValues: [python3.12, python3.13]
  Architecture:
    Type: String
    Default: arm64
  Auth:
    Type: String
    Default: iam
Resources:
  Auth:
    Default: not-a-parameter
"""


def answers(**changes: object) -> Answers:
    fields: dict[str, object] = {
        "project_name": "shop-api",
        "app_package": "shop",
        "sample": True,
        "auth": "jwt",
        "architecture": "x86_64",
        "python_version": "3.12",
    }
    fields.update(changes)
    return Answers(**fields)  # type: ignore[arg-type]


def write(root: Path, files: dict[str, str]) -> None:
    for name, text in files.items():
        (root / name).parent.mkdir(parents=True, exist_ok=True)
        (root / name).write_text(text, encoding="utf-8")


@pytest.fixture
def project(tmp_path: Path) -> Path:
    root = tmp_path / "project"
    write(
        root,
        {
            "template.yaml": TEMPLATE_YAML,
            "devtools/sam.mk": "SAM_PYTHON_RUNTIME ?= python3.13\nSAM_ARCHITECTURE ?= arm64\n",
            ".github/workflows/ci.yml": 'steps:\n  - with:\n      python-version: "3.13"\n',
            "pyproject.toml": '[project]\nname = "tpl"\n[x]\nlayers = ["handlers", "lib.sample_app"]\n',
            "samconfig.toml": '[default.global.parameters]\nstack_name = "neon-notes"\n',
            "alembic.ini": "target_metadata = lib.sample_app.models:Base.metadata\n",
            "lib/sample_app/__init__.py": '"""The sample_app package; not sample_apps."""\n',
            "lib/sample_app/api.py": "from lib.sample_app import notes\n",
            "lib/dbkit/engine.py": "KIT = 1\n",
            "handlers/api.py": "from lib.sample_app.api import create_app\n",
            ".venv/lib/sample_app.py": "untouched = 'sample_app'\n",
        },
    )
    return root


def test_the_sample_variant_renames_the_package_everywhere_and_sets_the_defaults(project: Path, tmp_path: Path) -> None:
    generate.generate(project, tmp_path / "template", answers())
    assert not (project / "lib/sample_app").exists()
    assert (project / "lib/shop/api.py").read_text() == "from lib.shop import notes\n"
    assert (project / "lib/shop/__init__.py").read_text() == '"""The shop package; not sample_apps."""\n'
    assert (project / "handlers/api.py").read_text() == "from lib.shop.api import create_app\n"
    assert (project / "alembic.ini").read_text() == "target_metadata = lib.shop.models:Base.metadata\n"
    pyproject = (project / "pyproject.toml").read_text()
    assert 'name = "shop-api"' in pyproject
    assert 'layers = ["handlers", "lib.shop"]' in pyproject
    assert 'stack_name = "shop-api"' in (project / "samconfig.toml").read_text()
    assert (project / ".venv/lib/sample_app.py").read_text() == "untouched = 'sample_app'\n"
    template = (project / "template.yaml").read_text()
    assert "  Auth:\n    Type: String\n    Default: jwt\n" in template
    assert "  Architecture:\n    Type: String\n    Default: x86_64\n" in template
    assert "    Default: python3.12\n    AllowedValues: [python3.12, python3.13]\n" in template
    assert "    Default: production\n" in template
    assert "  Auth:\n    Default: not-a-parameter\n" in template  # a resource of that name is not a parameter
    assert (project / "devtools/sam.mk").read_text() == "SAM_PYTHON_RUNTIME ?= python3.12\nSAM_ARCHITECTURE ?= x86_64\n"
    assert 'python-version: "3.12"' in (project / ".github/workflows/ci.yml").read_text()


def test_a_second_run_over_the_result_changes_nothing(project: Path, tmp_path: Path) -> None:
    generate.generate(project, tmp_path / "template", answers())
    before = {path: path.read_bytes() for path in project.rglob("*") if path.is_file()}
    generate.generate(project, tmp_path / "template", answers())
    assert {path: path.read_bytes() for path in project.rglob("*") if path.is_file()} == before


def test_the_rendered_package_replaces_the_projects_files_and_keeps_its_own(project: Path, tmp_path: Path) -> None:
    # What copier update does in the project: the new version is rendered as lib/sample_app beside the adopter's
    # lib/shop; the task moves it over, and Copier then applies the adopter's changes as a patch.
    write(project, {"lib/shop/api.py": "edited by the adopter\n", "lib/shop/tags.py": "ADOPTERS = 1\n"})
    generate.generate(project, tmp_path / "template", answers())
    assert (project / "lib/shop/api.py").read_text() == "from lib.shop import notes\n"
    assert (project / "lib/shop/tags.py").read_text() == "ADOPTERS = 1\n"


def test_the_skeleton_variant_brings_the_empty_apps_files(project: Path, tmp_path: Path) -> None:
    template = tmp_path / "template"
    write(
        template / generate.SKELETON,
        {"lib/sample_app/api.py": "from lib.sample_app import x\n", "events/api-01-health.json": "{}\n"},
    )
    (project / "lib/sample_app/api.py").unlink()  # Copier rendered none of the sample's own files
    (project / "lib/sample_app/__init__.py").unlink()
    generate.generate(project, template, answers(sample=False))
    assert (project / "lib/shop/api.py").read_text() == "from lib.shop import x\n"
    assert (project / "events/api-01-health.json").read_text() == "{}\n"


ROUTES_YAML = """Resources:
  ApiFunction:
    Properties:
      Events:
        Health:
          Type: HttpApi
          Properties:
            Path: /health

        CreateNote:
          Type: HttpApi
          Properties: { ApiId: !Ref HttpApi, Method: POST, Path: /notes }
        GetNote:
          Type: HttpApi
          Properties: { ApiId: !Ref HttpApi, Method: GET, Path: "/notes/{id}" }
        # the catch-all
        Default:
          Type: HttpApi
  HttpApi:
    Type: AWS::Serverless::HttpApi
"""


def test_the_skeleton_variant_drops_the_samples_routes_and_keeps_the_others(tmp_path: Path) -> None:
    template_yaml = tmp_path / "template.yaml"
    template_yaml.write_text(ROUTES_YAML, encoding="utf-8")
    generate.remove_events(template_yaml, generate.SAMPLE_ROUTE_EVENTS)
    expected = ROUTES_YAML.replace(
        ROUTES_YAML[ROUTES_YAML.index("        CreateNote:") : ROUTES_YAML.index("        #")], ""
    )
    assert template_yaml.read_text(encoding="utf-8") == expected
    generate.remove_events(template_yaml, generate.SAMPLE_ROUTE_EVENTS)  # a second run changes nothing
    assert template_yaml.read_text(encoding="utf-8") == expected


def test_a_missing_skeleton_is_an_error_naming_the_option(project: Path, tmp_path: Path) -> None:
    with pytest.raises(GenerationError, match="--template"):
        generate.generate(project, tmp_path / "nowhere", answers(sample=False))


@pytest.mark.parametrize(
    ("changes", "message"),
    [
        ({"app_package": "dbkit"}, "app package 'dbkit'"),
        ({"app_package": "Shop"}, "app package 'Shop'"),
        ({"app_package": "2shop"}, "app package '2shop'"),
        ({"project_name": "Shop API"}, "project name"),
        ({"auth": "basic"}, "auth 'basic'"),
        ({"python_version": "3.11"}, "python version '3.11'"),
    ],
)
def test_answers_copier_would_refuse_are_refused(
    project: Path, tmp_path: Path, changes: dict[str, str], message: str
) -> None:
    with pytest.raises(GenerationError, match=message):
        generate.generate(project, tmp_path / "template", answers(**changes))


def test_a_template_without_the_parameter_is_an_error(tmp_path: Path) -> None:
    template = tmp_path / "template.yaml"
    template.write_text("Parameters:\n  Stage:\n    Default: x\n", encoding="utf-8")
    with pytest.raises(GenerationError, match=r"Parameters\.Auth\.Default"):
        generate.set_parameter_default(template, "Auth", "iam")


def test_the_command_line_reports_a_refusal_with_exit_status_2(project: Path, tmp_path: Path) -> None:
    argv = ["--template", str(tmp_path), "--project", str(project), "--project-name", "x", "--app-package", "lib"]
    assert generate.main([*argv, "--sample"]) == 2
