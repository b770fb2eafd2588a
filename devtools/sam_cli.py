"""SAM CLI's and SAM's own reading of a template, from .venv-sam (`make sam-venv`), through devtools/sam_cli_probe.py.

SAM CLI pins its own dependencies, so it lives in its own virtualenv and is asked in a subprocess: one process
answers a batch of cases (a second or two, mostly importing SAM CLI).
"""

from __future__ import annotations

import json
import subprocess
from collections.abc import Mapping, Sequence
from dataclasses import dataclass
from pathlib import Path
from typing import Any

from devtools.paths import ROOT
from devtools.sam_check import sam_environment
from devtools.sam_template import TEMPLATE_PATH

SAM_VENV = ROOT / ".venv-sam"
PROBE = ROOT / "devtools" / "sam_cli_probe.py"
# What SAM CLI calls the method of the $default route (and of an `ANY` route written with API Gateway's extension).
ANY_METHOD_EXTENSION = "X-AMAZON-APIGATEWAY-ANY-METHOD"


class SamCliError(RuntimeError):
    """.venv-sam is missing or SAM CLI failed; the message says which and how to fix it."""


@dataclass(frozen=True)
class SamCliRoute:
    """One route as SAM CLI's ApiProvider lists it: the function, one method, the path ("$default" included)."""

    function_id: str
    method: str
    path: str


@dataclass(frozen=True)
class RoutesCase:
    """Ask for the routes `sam local start-api` would serve, with or without --language-extensions."""

    parameters: Mapping[str, str]
    language_extensions: bool

    def request(self) -> dict[str, Any]:
        return {"kind": "routes", "parameters": dict(self.parameters), "language_extensions": self.language_extensions}


@dataclass(frozen=True)
class StacksCase:
    """Ask which stacks SAM CLI reads from the template: the root, then each nested application with a local file."""

    parameters: Mapping[str, str]

    def request(self) -> dict[str, Any]:
        return {"kind": "stacks", "parameters": dict(self.parameters)}


@dataclass(frozen=True)
class TranslateCase:
    """Ask for the CloudFormation resources SAM makes for these parameter values (language extensions first)."""

    parameters: Mapping[str, str]

    def request(self) -> dict[str, Any]:
        return {"kind": "translate", "parameters": dict(self.parameters)}


def sam_python(sam_venv: Path = SAM_VENV) -> Path:
    """.venv-sam's interpreter; SamCliError naming the fix when it is missing."""
    python = sam_venv / "bin" / "python"
    if not python.exists():
        raise SamCliError(f"{python} not found: run `make sam-venv` (SAM CLI in its own virtualenv)")
    return python


def ask(
    cases: Sequence[RoutesCase | StacksCase | TranslateCase],
    *,
    template_path: Path = TEMPLATE_PATH,
    sam_venv: Path = SAM_VENV,
    timeout: float = 300,
) -> list[Any]:
    """One answer per case, in order, from one run of SAM CLI's Python."""
    request = {"template": str(template_path), "cases": [case.request() for case in cases]}
    completed = subprocess.run(
        [str(sam_python(sam_venv)), "-I", str(PROBE)],
        input=json.dumps(request),
        capture_output=True,
        text=True,
        cwd=template_path.parent,
        env=sam_environment(),
        timeout=timeout,
        check=False,
    )
    if completed.returncode != 0:
        raise SamCliError(f"SAM CLI failed on {template_path}:\n{completed.stderr.strip()}")
    answers: list[Any] = json.loads(completed.stdout)
    return answers


def routes_from(answer: Sequence[Mapping[str, Any]]) -> list[SamCliRoute]:
    """A routes answer as one SamCliRoute per method, API Gateway's ANY extension written ANY."""
    return [
        SamCliRoute(str(route["function"]), "ANY" if method == ANY_METHOD_EXTENSION else method, str(route["path"]))
        for route in answer
        for method in route["methods"]
    ]
