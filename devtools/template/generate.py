"""Copier's task (copier.yml): make a rendered copy of this repository the adopter's project, from their answers.

Run by Copier in the rendered project with the template's clone as --template: swaps in the empty app skeleton
(--skeleton), renames the app package lib/sample_app to the chosen name everywhere it is named, and sets the chosen
deploy defaults (auth, architecture, Python) and the project's name. Standard library only: it runs on whatever
Python runs Copier. `copier update` runs it on every render it makes (the old version, the project itself, the new
version), so each step only writes the files Copier just rendered and is harmless to repeat (docs/template.md).
"""

from __future__ import annotations

import argparse
import os
import re
import shutil
import subprocess
import sys
from collections.abc import Iterator, Sequence
from dataclasses import dataclass
from pathlib import Path

SAMPLE_PACKAGE = "sample_app"
# The skeleton mirrors the project's layout, its package also spelled sample_app, so one rename serves both variants.
SKELETON = Path("devtools/template/skeleton")
# The sample's routes in template.yaml (HttpApi events of ApiFunction): the empty app has none of them. Health and the
# $default catch-all stay, the kit answers both.
SAMPLE_ROUTE_EVENTS = ("CreateNote", "ListNotes", "GetNote", "DeleteNote")
# Where the app's name may appear: the wiring, the app, its tests and migrations, the docs and the files that name
# it. Neither the kit nor the tooling (devtools/) names it (import-linter contracts): the tooling finds the app in
# template.yaml, events/ and app.toml.
RENAME_ROOTS = ("handlers", "lib", "tests", "migrations", "docs", "bench")
RENAME_FILES = ("pyproject.toml", "alembic.ini", "app.toml", "template.yaml", "README.md", "Makefile", "samconfig.toml")
RENAME_SUFFIXES = frozenset({".py", ".md", ".toml", ".ini", ".yaml", ".yml", ".json", ".txt", ".mako", ".cfg"})
SKIPPED_DIRS = frozenset({"__pycache__", ".venv", ".stack", ".aws-sam", ".mypy_cache", ".ruff_cache", ".pytest_cache"})
WORKFLOWS = Path(".github/workflows")
AUTH_CHOICES = ("iam", "jwt", "none")
ARCHITECTURES = ("arm64", "x86_64")
PYTHON_VERSIONS = ("3.13", "3.12")
RESERVED = frozenset({"dbkit", "handlers", "devtools", "tests", "lib", "migrations", "events", "bench", "docs", "app"})


class GenerationError(Exception):
    """The project cannot be made as asked; the message names what to change."""


@dataclass(frozen=True)
class Answers:
    """The Copier answers the task acts on."""

    project_name: str
    app_package: str
    sample: bool
    auth: str
    architecture: str
    python_version: str

    def check(self) -> None:
        """Refuse answers Copier's validators should already have refused (the task may be run by hand too)."""
        if not re.fullmatch(r"[a-z_][a-z0-9_]*", self.app_package) or self.app_package in RESERVED:
            raise GenerationError(
                f"app package {self.app_package!r}: a lower-case identifier, not one of {sorted(RESERVED)}"
            )
        if not re.fullmatch(r"[a-z][a-z0-9-]{0,62}", self.project_name):
            raise GenerationError(f"project name {self.project_name!r}: lower-case letters, digits and hyphens")
        for value, choices, what in (
            (self.auth, AUTH_CHOICES, "auth"),
            (self.architecture, ARCHITECTURES, "architecture"),
            (self.python_version, PYTHON_VERSIONS, "python version"),
        ):
            if value not in choices:
                raise GenerationError(f"{what} {value!r}: one of {', '.join(choices)}")


def generate(project: Path, template: Path, answers: Answers) -> None:
    """Turn the rendered copy in `project` into the adopter's project."""
    answers.check()
    if not answers.sample:
        install_skeleton(project, template / SKELETON)
        remove_events(project / "template.yaml", SAMPLE_ROUTE_EVENTS)
    rename_package(project, answers.app_package)
    set_parameter_default(project / "template.yaml", "Auth", answers.auth)
    set_parameter_default(project / "template.yaml", "Architecture", answers.architecture)
    set_parameter_default(project / "template.yaml", "PythonRuntime", f"python{answers.python_version}")
    set_make_default(project / "devtools/sam.mk", "SAM_ARCHITECTURE", answers.architecture)
    set_make_default(project / "devtools/sam.mk", "SAM_PYTHON_RUNTIME", f"python{answers.python_version}")
    set_workflow_python(project / WORKFLOWS, answers.python_version)
    set_project_name(project, answers.project_name)


def install_skeleton(project: Path, skeleton: Path) -> None:
    """Copy the empty app's files over the rendered project (Copier rendered none of the sample's own, copier.yml)."""
    if not skeleton.is_dir():
        raise GenerationError(f"{skeleton} is missing: is --template the template's root?")
    for source in sorted(skeleton.rglob("*")):
        if source.is_file() and not _skipped(source.relative_to(skeleton)):
            target = project / source.relative_to(skeleton)
            target.parent.mkdir(parents=True, exist_ok=True)
            shutil.copyfile(source, target)


def remove_events(template_yaml: Path, names: Sequence[str]) -> None:
    """Remove these events (a `Name:` line and the lines indented under it) from a function's Events in template.yaml.

    The file is the one Copier just rendered, so this is update-safe; an event already gone is left gone.
    """
    lines = template_yaml.read_text(encoding="utf-8").splitlines(keepends=True)
    kept: list[str] = []
    removing_indent: int | None = None
    for line in lines:
        indent = len(line) - len(line.lstrip(" "))
        if removing_indent is not None:
            if line.strip() and indent <= removing_indent:
                removing_indent = None
            else:
                continue
        if line.strip().removesuffix(":") in names and line.rstrip().endswith(":"):
            removing_indent = indent
            continue
        kept.append(line)
    template_yaml.write_text("".join(kept), encoding="utf-8")


def rename_package(project: Path, package: str) -> None:
    """Move lib/sample_app to lib/<package> (over what is there) and rename it in every file that names it."""
    if package == SAMPLE_PACKAGE:
        return
    source, target = project / "lib" / SAMPLE_PACKAGE, project / "lib" / package
    if source.is_dir():
        # Over the project's own lib/<package> on `copier update`: the files just rendered replace theirs, then
        # Copier applies the adopter's changes to them as a patch, as for any other rendered file.
        for path in sorted(source.rglob("*")):
            if path.is_file() and not _skipped(path.relative_to(source)):
                moved = target / path.relative_to(source)
                moved.parent.mkdir(parents=True, exist_ok=True)
                os.replace(path, moved)
        shutil.rmtree(source)
    pattern = re.compile(rf"\b{SAMPLE_PACKAGE}\b")
    renamed_modules = []
    for path in _files_naming_the_app(project):
        text = path.read_text(encoding="utf-8")
        renamed = pattern.sub(package, text)
        if renamed != text:
            path.write_text(renamed, encoding="utf-8")
            if path.suffix == ".py":
                renamed_modules.append(path)
    reformat(project, renamed_modules)


def reformat(project: Path, modules: Sequence[Path]) -> None:
    """ruff format the modules a rename changed: a longer or shorter name may wrap or join a statement's lines.

    Imports need no re-sorting: the app's have a block of their own (pyproject.toml, isort sections). Without ruff
    (Copier installed on its own) the modules are left for `make fmt` and the task says so.
    """
    if not modules:
        return
    ruff = _ruff()
    if ruff is None:
        print("[template] ruff not found beside Copier: run `make fmt` once after `make venv`", file=sys.stderr)
        return
    names = [str(path.relative_to(project)) for path in modules]
    subprocess.run([ruff, "format", "--quiet", "--no-cache", *names], cwd=project, check=True)


def _ruff() -> str | None:
    try:
        # Only where Copier runs on a Python with ruff (as in this repository's .venv).
        from ruff.__main__ import find_ruff_bin
    except ImportError:
        return shutil.which("ruff")
    return str(find_ruff_bin())


def set_parameter_default(template: Path, parameter: str, value: str) -> None:
    """Set the Default of one of template.yaml's Parameters, leaving every other line as it is."""
    lines = template.read_text(encoding="utf-8").splitlines(keepends=True)
    in_parameters = in_parameter = False
    for index, line in enumerate(lines):
        if re.match(r"^\S", line):
            in_parameters = line.startswith("Parameters:")
            in_parameter = False
        elif in_parameters and re.match(r"^  \S", line):
            in_parameter = line.strip() == f"{parameter}:"
        elif in_parameter and (match := re.match(r"^(    Default: ).*$", line.rstrip("\n"))):
            lines[index] = f"{match.group(1)}{value}\n"
            template.write_text("".join(lines), encoding="utf-8")
            return
    raise GenerationError(f"{template.name}: no Parameters.{parameter}.Default line to set")


def set_make_default(makefile: Path, variable: str, value: str) -> None:
    """Set a `VARIABLE ?= value` default in a make file."""
    text = makefile.read_text(encoding="utf-8")
    changed, count = re.subn(rf"^({re.escape(variable)} \?= ).*$", rf"\g<1>{value}", text, count=1, flags=re.M)
    if not count:
        raise GenerationError(f"{makefile.name}: no `{variable} ?=` line to set")
    makefile.write_text(changed, encoding="utf-8")


def set_workflow_python(workflows: Path, version: str) -> None:
    """CI's setup-python installs the runtime's Python, as the template's workflows do."""
    for workflow in sorted(workflows.glob("*.yml")) if workflows.is_dir() else []:
        text = workflow.read_text(encoding="utf-8")
        changed = re.sub(r'^(\s+python-version: )"3\.\d+"$', rf'\g<1>"{version}"', text, flags=re.M)
        if changed != text:
            workflow.write_text(changed, encoding="utf-8")


def set_project_name(project: Path, name: str) -> None:
    """The project's name in pyproject.toml and its stack name in samconfig.toml."""
    for path, key in ((project / "pyproject.toml", "name"), (project / "samconfig.toml", "stack_name")):
        text = path.read_text(encoding="utf-8")
        changed, count = re.subn(rf'^({key} = )".*"$', rf'\g<1>"{name}"', text, count=1, flags=re.M)
        if not count:
            raise GenerationError(f'{path.name}: no `{key} = "..."` line to set')
        path.write_text(changed, encoding="utf-8")


def _files_naming_the_app(project: Path) -> Iterator[Path]:
    for name in RENAME_FILES:
        if (project / name).is_file():
            yield project / name
    for root in RENAME_ROOTS:
        for path in sorted((project / root).rglob("*")):
            relative = path.relative_to(project)
            if path.is_file() and path.suffix in RENAME_SUFFIXES and not _skipped(relative):
                yield path


def _skipped(relative: Path) -> bool:
    return any(part in SKIPPED_DIRS or part.startswith(".venv") for part in relative.parts)


def main(argv: Sequence[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--template", type=Path, required=True, help="the template's root (Copier's clone)")
    parser.add_argument("--project", type=Path, default=Path.cwd(), help="the rendered project (default: here)")
    parser.add_argument("--project-name", required=True)
    parser.add_argument("--app-package", required=True)
    variant = parser.add_mutually_exclusive_group(required=True)
    variant.add_argument("--sample", dest="sample", action="store_true", help="keep the sample notes app")
    variant.add_argument("--skeleton", dest="sample", action="store_false", help="the empty app instead")
    parser.add_argument("--auth", choices=AUTH_CHOICES, default="iam")
    parser.add_argument("--architecture", choices=ARCHITECTURES, default="arm64")
    parser.add_argument("--python-version", choices=PYTHON_VERSIONS, default="3.13")
    args = parser.parse_args(argv)
    answers = Answers(
        project_name=args.project_name,
        app_package=args.app_package,
        sample=args.sample,
        auth=args.auth,
        architecture=args.architecture,
        python_version=args.python_version,
    )
    try:
        generate(args.project.resolve(), args.template.resolve(), answers)
    except GenerationError as error:
        print(f"[template] {error}", file=sys.stderr)
        return 2
    return 0


if __name__ == "__main__":
    sys.exit(main())
