"""A module run as `python -m` in a process of its own (a new execution environment) on the test database."""

from __future__ import annotations

import json
import os
import subprocess
import sys
from collections.abc import Mapping
from typing import Any

from devtools.paths import ROOT
from devtools.testing.database import DatabaseTarget

# Other pg8000 releases, each in a folder of its own: installed by devtools/bootstrap.sh (OTHER_PG8000).
PG8000_RELEASES = ROOT / ".venv" / "pg8000"
# `env` for a run that chooses its driver as in Lambda: from the pg8000 installed, the URL from DATABASE_URL alone.
AS_DEPLOYED: Mapping[str, str | None] = {"DB_DRIVER": None, "DATABASE_SECRET_ARN": None, "DATABASE_URL_PARAMETER": None}


def run_module(
    module: str,
    *args: str,
    database: DatabaseTarget,
    pg8000: str | None = None,
    env: Mapping[str, str | None] | None = None,
) -> list[dict[str, Any]]:
    """Run `module` in serverless mode on the database's pooled URL (`pg8000`: that release first on the path; `env`:
    variables to set, None to unset), check it exited 0 without printing the password; the JSON lines it printed."""
    environ = {
        **os.environ,
        "DATABASE_URL": database.pooled_url,
        "DB_POOLER_HOSTS": database.pooler_hosts,
        "DB_MODE": "serverless",
    }
    if pg8000 is not None:
        release = PG8000_RELEASES / pg8000
        assert (release / "pg8000").is_dir(), f"run `make venv`: {release} is missing"
        environ["PYTHONPATH"] = os.pathsep.join([str(release), str(ROOT)])
    for name, value in (env or {}).items():
        if value is None:
            environ.pop(name, None)
        else:
            environ[name] = value
    completed = subprocess.run(
        [sys.executable, "-m", module, *args],
        cwd=ROOT,
        env=environ,
        capture_output=True,
        text=True,
        timeout=120,
        check=False,
    )
    assert completed.returncode == 0, completed.stderr[-3000:]
    assert database.password not in completed.stdout + completed.stderr
    return [json.loads(line) for line in completed.stdout.splitlines() if line.startswith("{")]
