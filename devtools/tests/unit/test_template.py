"""copier copy and copier update of this repository, with Copier itself (no network: the template is a local clone).

The template is a clone of the repository's HEAD (uncommitted changes are not in it). The empty app is generated and
checked; the sample is generated, edited as an adopter would, updated to a later template commit and checked.
"""

from __future__ import annotations

import subprocess
import sys
from pathlib import Path

import pytest

from devtools.paths import ROOT
from devtools.sam_template import function_ids, load_template
from devtools.template.check import (
    SAMPLE,
    SKELETON,
    AdopterEdits,
    AdopterScenario,
    adopt,
    check_generated,
    check_update,
    generate,
    git,
)


@pytest.fixture(scope="module")
def template(tmp_path_factory: pytest.TempPathFactory) -> Path:
    clone = tmp_path_factory.mktemp("template") / "repo"
    git(ROOT, "clone", "--quiet", "--no-hardlinks", str(ROOT), str(clone))
    return clone


def check_valid(project: Path) -> None:
    """template.yaml's handlers are modules of the project, and ruff finds nothing (the rename kept the code clean)."""
    template = load_template(project / "template.yaml")
    for function_id in function_ids(template):
        handler = template["Resources"][function_id]["Properties"]["Handler"]
        assert (project / f"{handler.rpartition('.')[0].replace('.', '/')}.py").is_file(), handler
    ruff = subprocess.run(
        [sys.executable, "-m", "ruff", "check", "--no-cache", "--quiet", "."],
        cwd=project,
        capture_output=True,
        text=True,
    )
    assert ruff.returncode == 0, ruff.stdout + ruff.stderr
    assert (project / ".copier-answers.yml").is_file()
    assert not (project / "copier.yml").exists()
    assert not (project / "devtools/template").exists()


def test_copier_copy_of_the_empty_app_names_it_as_asked_and_leaves_no_sample(template: Path, tmp_path: Path) -> None:
    # The sample variant is generated (and checked the same way) by the update test below.
    project = tmp_path / "project"
    generate(template, "HEAD", project, SKELETON)
    check_generated(project, SKELETON)
    check_valid(project)


def test_readme_make_it_yours_applies_to_a_generated_sample_and_leaves_it_lint_clean(
    template: Path, tmp_path: Path
) -> None:
    # The scenario's make test runs in .github/workflows/template.yml; here: it applies, and ruff passes on the result
    # (a package name of another length can reflow lines, which ruff format --check would show).
    project = tmp_path / "project"
    generate(template, "HEAD", project, SAMPLE)
    touched = adopt(project)
    assert touched == AdopterScenario(SAMPLE.app_package).touched
    assert f"lib/{SAMPLE.app_package}/tags.py" in touched
    assert git(project, "status", "--porcelain") == ""
    check_generated(project, SAMPLE)
    check_valid(project)
    formatted = subprocess.run(
        [sys.executable, "-m", "ruff", "format", "--no-cache", "--check", "--quiet", "."],
        cwd=project,
        capture_output=True,
        text=True,
    )
    assert formatted.returncode == 0, formatted.stdout + formatted.stderr


def test_copier_update_brings_a_template_change_and_keeps_the_adopters_edits(template: Path, tmp_path: Path) -> None:
    base = git(template, "rev-parse", "HEAD")
    # A later template version: a kit fix, and a change to a file of the app the adopter also edits.
    kit = template / "lib/dbkit/__init__.py"
    kit.write_text(kit.read_text(encoding="utf-8") + "# a later kit fix\n", encoding="utf-8")
    api = template / "lib/sample_app/api.py"
    api.write_text(api.read_text(encoding="utf-8").replace("The notes HTTP API", "The notes API", 1), encoding="utf-8")
    git(template, "commit", "--quiet", "--all", "--message", "a later template version")
    project = check_update(template, base, "HEAD", tmp_path, SAMPLE)  # check_generated too
    check_valid(project)
    package = SAMPLE.app_package
    assert (project / "lib/dbkit/__init__.py").read_text(encoding="utf-8").endswith("# a later kit fix\n")
    edited = (project / f"lib/{package}/api.py").read_text(encoding="utf-8")
    assert edited.startswith('"""The notes API (FastAPI)')
    assert edited.endswith(AdopterEdits(package).appended_text)
    assert (project / AdopterEdits(package).new_module).is_file()
