"""Generate a project with Copier, edit its app as an adopter would, update it to a later version, and check the result.

Used by devtools/tests/unit/test_copier.py and by .github/workflows/template.yml (which then runs the project's
`make test`). The check after the update is the strong one: every file equals what a fresh `copier copy` of the new
version renders with the same answers, except the adopter's own files and edits, which are still there.

    python -m devtools.template.check copy --template . --ref HEAD --out /tmp/p [--skeleton | --adopt]
    python -m devtools.template.check update --template . --from v0.1.0 --to HEAD --out /tmp/p [--skeleton | --adopt]
    python -m devtools.template.check adopt --out /tmp/p   # README "Make it yours" applied to a generated project
    python -m devtools.template.check base-ref --template .   # the newest tag before HEAD, else the first version
"""

from __future__ import annotations

import argparse
import filecmp
import re
import subprocess
import sys
import tempfile
from collections.abc import Iterator, Sequence
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import copier

SAMPLE_PACKAGE = "sample_app"
ANSWERS_FILE = ".copier-answers.yml"
# Without tags (a clone that did not fetch them), the version an update is checked from is the first commit that had
# this file: the first of the final layout, the one tagged v0.2.0 (v0.1.0, before the kit's HTTP parts and app.toml,
# needs the hand edits docs/template.md lists).
FIRST_VERSION_MARKER = "devtools/template/adopter/tags.patch"
# Paths a project never compares: Git's, Copier's (its answers name the version), and what its tools write.
UNCOMPARED = (
    ".git",
    ANSWERS_FILE,
    ".venv",
    ".venv-3.12",
    ".venv-3.13",
    ".venv-sam",
    ".venv-checkov",
    ".stack",
    ".cache",
)
# The sample's subject, which the empty app's own files never mention.
NOTES = re.compile(r"\bnotes?\b", re.IGNORECASE)
GIT_IDENTITY = (
    "-c",
    "user.name=template check",
    "-c",
    "user.email=template-check@localhost",
    "-c",
    "commit.gpgsign=false",
)


# README "Make it yours" followed literally on the sample (tags on a note: model, revision, data functions, routes,
# HttpApi events, an event file, app.toml, a test), as a patch on the sample with the placeholder package name.
ADOPTER_PATCH = Path(__file__).parent / "adopter" / "tags.patch"


class CheckError(AssertionError):
    """The generated or updated project is not what the template promises."""


@dataclass(frozen=True)
class Variant:
    """One set of Copier answers."""

    app_package: str
    sample: bool

    def data(self) -> dict[str, Any]:
        return {
            "project_name": self.app_package.replace("_", "-"),
            "app_package": self.app_package,
            "with_sample": self.sample,
        }


SAMPLE = Variant(app_package="shop_api", sample=True)
SKELETON = Variant(app_package="blank_api", sample=False)


@dataclass(frozen=True)
class AdopterEdits:
    """What an adopter does to the generated app: a new module with a model, and an edit to a rendered file."""

    package: str

    @property
    def new_module(self) -> str:
        return f"lib/{self.package}/tags.py"

    @property
    def edited_module(self) -> str:
        return f"lib/{self.package}/api.py"

    @property
    def new_module_text(self) -> str:
        return (
            '"""Tags: a model the adopter added after copier copy."""\n\n'
            "from __future__ import annotations\n\n"
            "from sqlalchemy import String\n"
            "from sqlalchemy.orm import Mapped, mapped_column\n\n"
            f"from lib.{self.package}.models import Base\n\n\n"
            "class Tag(Base):\n"
            '    """A tag."""\n\n'
            '    __tablename__ = "tags"\n\n'
            "    name: Mapped[str] = mapped_column(String(50), primary_key=True)\n"
        )

    @property
    def appended_text(self) -> str:
        return (
            "\n\ndef tag_names(tags: list[str]) -> list[str]:\n"
            '    """An adopter\'s helper, added after copier copy."""\n'
            "    return sorted(set(tags))\n"
        )

    def apply(self, project: Path) -> None:
        (project / self.new_module).write_text(self.new_module_text, encoding="utf-8")
        with (project / self.edited_module).open("a", encoding="utf-8") as edited:
            edited.write(self.appended_text)


@dataclass(frozen=True)
class AdopterScenario:
    """README "Make it yours" as an adopter follows it: ADOPTER_PATCH, with the app's package name, one commit."""

    package: str

    @property
    def patch(self) -> str:
        return ADOPTER_PATCH.read_text(encoding="utf-8").replace(SAMPLE_PACKAGE, self.package)

    @property
    def touched(self) -> list[str]:
        return re.findall(r"^diff --git a/(\S+) ", self.patch, flags=re.MULTILINE)

    def apply(self, project: Path) -> None:
        """Apply the patch (CheckError naming the file when the template moved under it); commit nothing."""
        done = subprocess.run(
            ["git", "apply", "--whitespace=nowarn", "-"],
            cwd=project,
            input=self.patch,
            capture_output=True,
            text=True,
            check=False,
        )
        if done.returncode:
            raise CheckError(
                f"README's 'Make it yours' scenario ({ADOPTER_PATCH.name}) no longer applies: {done.stderr.strip()}; "
                "redo its steps on a generated project and save the diff (docs/template.md)"
            )


def git(cwd: Path, *args: str) -> str:
    """Run git in `cwd` and return its output (an error names the command and what git said)."""
    done = subprocess.run(["git", *GIT_IDENTITY, *args], cwd=cwd, capture_output=True, text=True, check=False)
    if done.returncode:
        raise CheckError(f"git {' '.join(args)} in {cwd}: {done.stderr.strip()}")
    return done.stdout.strip()


def generate(template: Path, ref: str, project: Path, variant: Variant) -> None:
    """`copier copy` of the template at `ref` into a new git repository with one commit."""
    copier.run_copy(str(template), project, data=variant.data(), vcs_ref=ref, defaults=True, unsafe=True, quiet=True)
    git(project, "init", "--quiet", "--initial-branch=main")
    git(project, "add", "--all")
    git(project, "commit", "--quiet", "--message", f"copier copy at {ref}")


def update(project: Path, ref: str) -> None:
    """`copier update` of the project to the template at `ref`, committed (conflicts are left for the check)."""
    copier.run_update(project, vcs_ref=ref, defaults=True, overwrite=True, unsafe=True, quiet=True, skip_answered=True)
    git(project, "add", "--all")
    git(project, "commit", "--quiet", "--allow-empty", "--message", f"copier update to {ref}")


def check_generated(project: Path, variant: Variant) -> None:
    """The app is named as asked everywhere and the sample is gone when the skeleton was asked for."""
    package = variant.app_package
    problems = []
    if (project / "lib" / SAMPLE_PACKAGE).exists():
        problems.append(f"lib/{SAMPLE_PACKAGE} is still there")
    if not (project / "lib" / package / "api.py").is_file():
        problems.append(f"lib/{package}/api.py is missing")
    problems += [f"{path}:{line}: names {SAMPLE_PACKAGE}" for path, line in _mentions(project, SAMPLE_PACKAGE)]
    if not variant.sample:
        app_paths = (f"lib/{package}/", "tests/app/", "events/", "handlers/")
        problems += [f"{path}:{line}: names the notes sample" for path, line in _mentions(project, NOTES, *app_paths)]
        if list((project / "migrations/app").glob("*.py")):
            problems.append("migrations/app has revisions: the skeleton's app history starts empty")
    if f'"lib.{package}"' not in (project / "pyproject.toml").read_text(encoding="utf-8"):
        problems.append(f"pyproject.toml's import contracts do not name lib.{package}")
    if f"lib.{package}.models:Base.metadata" not in (project / "alembic.ini").read_text(encoding="utf-8"):
        problems.append(f"alembic.ini's target_metadata is not lib.{package}.models:Base.metadata")
    if problems:
        raise CheckError("\n".join(problems))


def check_updated(project: Path, fresh: Path, edits: AdopterEdits) -> None:
    """The project equals a fresh copy of the new version, plus the adopter's files and edits; no conflict left."""
    problems = []
    ours = set(_tree(project))
    theirs = set(_tree(fresh))
    for path in sorted(theirs - ours):
        problems.append(f"{path}: the new version has it, the updated project does not")
    for path in sorted(ours - theirs - {edits.new_module}):
        problems.append(f"{path}: left over in the updated project, not in the new version")
    if (project / edits.new_module).read_text(encoding="utf-8") != edits.new_module_text:
        problems.append(f"{edits.new_module}: the adopter's module was changed or lost")
    for path in sorted(ours & theirs):
        if path == edits.edited_module:
            expected = (fresh / path).read_text(encoding="utf-8") + edits.appended_text
            if (project / path).read_text(encoding="utf-8") != expected:
                problems.append(f"{path}: not the new version with the adopter's edit")
        elif not filecmp.cmp(project / path, fresh / path, shallow=False):
            problems.append(f"{path}: differs from the new version")
    problems += [f"{path}: a rejected hunk" for path in ours if path.endswith(".rej")]
    if problems:
        raise CheckError("\n".join(problems))


def check_update(
    template: Path, base: str, target: str, workdir: Path, variant: Variant, *, adopt: bool = False
) -> Path:
    """Generate at `base`, edit as an adopter, update to `target`, check; returns the updated project.

    With `adopt`, the edits are README's scenario (AdopterScenario), and the updated project must equal, byte for
    byte, git's three-way merge of the adopter's version (a fresh copy of `base` with the scenario) and a fresh copy of
    `target`, from a fresh copy of `base`: the template's changes and the adopter's, both kept, as in one merge.
    """
    project, fresh = workdir / "project", workdir / "fresh"
    edits = AdopterEdits(variant.app_package)
    scenario = AdopterScenario(variant.app_package)
    generate(template, base, project, variant)
    if adopt:
        scenario.apply(project)
    else:
        edits.apply(project)
    git(project, "add", "--all")
    git(project, "commit", "--quiet", "--message", "the adopter's edits")
    update(project, target)
    copier.run_copy(str(template), fresh, data=variant.data(), vcs_ref=target, defaults=True, unsafe=True, quiet=True)
    check_generated(project, variant)
    if adopt:
        check_same(project, merged(template, base, fresh, scenario, workdir / "merged", variant))
    else:
        check_updated(project, fresh, edits)
    return project


def merged(template: Path, base: str, fresh: Path, scenario: AdopterScenario, out: Path, variant: Variant) -> Path:
    """`out`: a fresh copy of `base`, the scenario on a branch, a fresh copy of the new version (`fresh`) merged in."""
    copier.run_copy(str(template), out, data=variant.data(), vcs_ref=base, defaults=True, unsafe=True, quiet=True)
    git(out, "init", "--quiet", "--initial-branch=adopter")
    git(out, "add", "--all")
    git(out, "commit", "--quiet", "--message", "base")
    git(out, "branch", "template")
    scenario.apply(out)
    git(out, "add", "--all")
    git(out, "commit", "--quiet", "--message", "the adopter's edits")
    git(out, "switch", "--quiet", "template")
    subprocess.run(["git", "rm", "-r", "--quiet", "."], cwd=out, check=True)
    subprocess.run(["cp", "-a", *[str(path) for path in fresh.iterdir() if path.name != ".git"], str(out)], check=True)
    git(out, "add", "--all")
    git(out, "commit", "--quiet", "--allow-empty", "--message", "the new version")
    git(out, "switch", "--quiet", "adopter")
    git(out, "merge", "--quiet", "--no-edit", "template")  # a conflict here: the check's own edits overlap
    return out


def check_same(project: Path, expected: Path) -> None:
    """Both trees hold the same files with the same bytes; no rejected hunk, no conflict marker."""
    ours, theirs = set(_tree(project)), set(_tree(expected))
    problems = [f"{path}: expected, missing from the updated project" for path in sorted(theirs - ours)]
    problems += [f"{path}: in the updated project, not expected" for path in sorted(ours - theirs)]
    problems += [
        f"{path}: differs from the expected file"
        for path in sorted(ours & theirs)
        if not filecmp.cmp(project / path, expected / path, shallow=False)
    ]
    problems += [f"{path}:{line}: a conflict marker" for path, line in _mentions(project, r"^(<<<<<<<|>>>>>>>) ")]
    if problems:
        raise CheckError("\n".join(problems))


def adopt(project: Path, package: str | None = None) -> list[str]:
    """Apply README's 'Make it yours' scenario to a generated sample project and commit it; the files it touched."""
    if package is None:
        answers = (project / ANSWERS_FILE).read_text(encoding="utf-8")
        found = re.search(r"^app_package: *(\S+)$", answers, flags=re.MULTILINE)
        if found is None:
            raise CheckError(f"{project / ANSWERS_FILE} names no app_package: pass --package")
        package = found.group(1)
    scenario = AdopterScenario(package)
    scenario.apply(project)
    git(project, "add", "--all")
    git(project, "commit", "--quiet", "--message", "README 'Make it yours': tags on a note")
    print(f"[template] 'Make it yours' applied to {project}: {', '.join(scenario.touched)}")
    return scenario.touched


def base_ref(template: Path) -> tuple[str, str]:
    """The version an update is checked from: the newest v* tag before HEAD, else the first version that could."""
    tags = git(template, "tag", "--merged", "HEAD~1", "--sort=-v:refname", "--list", "v*").splitlines()
    if tags:
        return tags[0], f"the newest tag before HEAD ({tags[0]})"
    # Untagged: the first commit that had this check, the first that generates both variants.
    first = git(template, "log", "--diff-filter=A", "--format=%H", "--", FIRST_VERSION_MARKER).splitlines()
    if not first or first[-1] == git(template, "rev-parse", "HEAD"):
        raise CheckError(
            f"no earlier version to update from: no v* tag before HEAD, {FIRST_VERSION_MARKER} new in HEAD"
        )
    return first[-1], f"no v* tag before HEAD: the first commit with {FIRST_VERSION_MARKER} ({first[-1][:12]})"


def _tree(root: Path) -> Iterator[str]:
    for path in root.rglob("*"):
        relative = path.relative_to(root)
        if path.is_file() and not _uncompared(relative):
            yield relative.as_posix()


def _uncompared(relative: Path) -> bool:
    top = relative.parts[0]
    return top in UNCOMPARED or top.startswith(".venv") or "__pycache__" in relative.parts


def _mentions(project: Path, pattern: str | re.Pattern[str], *roots: str) -> Iterator[tuple[str, int]]:
    regex = re.compile(pattern)
    for name in sorted(_tree(project)):
        if roots and not name.startswith(roots):
            continue
        try:
            lines = (project / name).read_text(encoding="utf-8").splitlines()
        except UnicodeDecodeError:
            continue
        for number, line in enumerate(lines, start=1):
            if regex.search(line):
                yield name, number


def main(argv: Sequence[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("command", choices=["copy", "update", "adopt", "base-ref"])
    parser.add_argument("--template", type=Path, default=Path.cwd(), help="the template repository (default: here)")
    parser.add_argument("--ref", "--to", dest="ref", default="HEAD", help="the version to generate or update to")
    parser.add_argument("--from", dest="base", help="update: the version to generate first (default: base-ref)")
    parser.add_argument("--out", type=Path, help="the project's directory (must not exist)")
    parser.add_argument("--skeleton", action="store_true", help="the empty app instead of the sample")
    parser.add_argument("--adopt", action="store_true", help="copy/update: README's 'Make it yours' on the sample")
    parser.add_argument("--package", help="adopt: the project's app package (default: its .copier-answers.yml)")
    args = parser.parse_args(argv)
    if args.adopt and args.skeleton:
        parser.error("--adopt follows 'Make it yours' on the sample: not with --skeleton")
    variant = SKELETON if args.skeleton else SAMPLE
    template = args.template.resolve()
    try:
        if args.command == "base-ref":
            ref, why = base_ref(template)
            print(ref)
            print(f"[template] update checked from {why}", file=sys.stderr)
            return 0
        if args.out is None:
            parser.error("--out is required")
        if args.command == "adopt":
            adopt(args.out, args.package)
        elif args.command == "copy":
            generate(template, args.ref, args.out, variant)
            check_generated(args.out, variant)
            if args.adopt:
                adopt(args.out, variant.app_package)
        else:
            base = args.base or base_ref(template)[0]
            with tempfile.TemporaryDirectory() as scratch:
                project = check_update(template, base, args.ref, Path(scratch), variant, adopt=args.adopt)
                subprocess.run(["cp", "-a", str(project), str(args.out)], check=True)
    except CheckError as error:
        print(f"[template] {args.command} check failed:\n{error}", file=sys.stderr)
        return 1
    what = "skeleton" if args.skeleton else "sample + 'Make it yours'" if args.adopt else "sample"
    print(f"[template] {args.command} of the {what} variant checked: {args.out}")
    return 0


if __name__ == "__main__":
    sys.exit(main())
