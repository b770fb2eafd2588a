"""`make api`'s server (python -m devtools.http_api) as a subprocess on a free port, for tests that speak real HTTP."""

from __future__ import annotations

import os
import re
import signal
import subprocess
import sys
import threading
import time
from collections.abc import Iterator, Mapping, Sequence
from contextlib import contextmanager
from dataclasses import dataclass, field
from pathlib import Path

from devtools.paths import ROOT
from devtools.testing.processes import alive

_URL = re.compile(r"^Local HTTP API .* on (http://127\.0\.0\.1:\d+)$")
_NEW_ENVIRONMENT = re.compile(r"^\[(?P<id>[^\]]+)\] new execution environment \(pid (?P<pid>\d+)\)")
_ACCESS = re.compile(
    r"^\d\d:\d\d:\d\d (?P<method>[A-Z]+) (?P<target>\S+) (?P<status>\d{3}) (?P<ms>[\d.]+) ms "
    r"(?P<temperature>cold|warm|-) (?P<environment>\S+)$"
)
START_SECONDS = 60


@dataclass(frozen=True)
class AccessLine:
    """One line of the server's access log."""

    method: str
    target: str
    status: int
    temperature: str
    environment: str


@dataclass
class ApiServer:
    """A running server: its URL and everything it printed so far."""

    url: str
    process: subprocess.Popen[str]
    stdout: list[str] = field(default_factory=list)
    stderr: list[str] = field(default_factory=list)

    def access_log(self) -> list[AccessLine]:
        """The access-log lines printed so far."""
        lines = []
        for line in list(self.stdout):
            match = _ACCESS.match(line)
            if match:
                lines.append(
                    AccessLine(
                        match["method"],
                        match["target"],
                        int(match["status"]),
                        match["temperature"],
                        match["environment"],
                    )
                )
        return lines

    def wait_for_access(self, count: int, target_prefix: str = "", timeout: float = 10) -> list[AccessLine]:
        """The access-log lines for targets starting with `target_prefix`, once there are at least `count`
        (a line is printed just after its response is sent)."""
        deadline = time.monotonic() + timeout
        while len(lines := [line for line in self.access_log() if line.target.startswith(target_prefix)]) < count:
            assert time.monotonic() < deadline, f"{len(lines)} access-log lines for {target_prefix!r}, not {count}"
            time.sleep(0.02)
        return lines

    def environment_pids(self) -> dict[str, int]:
        """Execution environment id → pid, from the server's announcements."""
        found = (_NEW_ENVIRONMENT.match(line) for line in list(self.stderr))
        return {match["id"]: int(match["pid"]) for match in found if match}


def _collect(stream: Iterator[str], into: list[str]) -> None:
    for line in stream:
        into.append(line.rstrip("\n"))


@contextmanager
def running_api(
    environ: Mapping[str, str], *, template: Path | None = None, parameters: Sequence[str] = ()
) -> Iterator[ApiServer]:
    """Start the server on a free port with `environ` added to ours; on exit, stop it as Ctrl-C does and check
    that it ended every execution environment it started."""
    command = [sys.executable, "-m", "devtools.http_api", "--port", "0"]
    if template is not None:
        command += ["--template", str(template)]
    for parameter in parameters:
        command += ["--parameter", parameter]
    process = subprocess.Popen(
        command,
        cwd=ROOT,
        env={**os.environ, **environ},
        stdin=subprocess.DEVNULL,
        stdout=subprocess.PIPE,
        stderr=subprocess.PIPE,
        text=True,
        bufsize=1,
    )
    assert process.stdout is not None
    assert process.stderr is not None
    stdout: list[str] = []
    stderr: list[str] = []
    readers = [
        threading.Thread(target=_collect, args=(process.stdout, stdout), daemon=True),
        threading.Thread(target=_collect, args=(process.stderr, stderr), daemon=True),
    ]
    for reader in readers:
        reader.start()
    try:
        deadline = time.monotonic() + START_SECONDS
        url = None
        while url is None:
            assert process.poll() is None, f"the API server exited: {stderr[-20:]}"
            assert time.monotonic() < deadline, "the API server did not print its URL"
            url = next((m[1] for m in (_URL.match(line) for line in list(stdout)) if m), None)
            time.sleep(0.05)
        server = ApiServer(url, process, stdout, stderr)
        yield server
    finally:
        if process.poll() is None:
            process.send_signal(signal.SIGINT)
        try:
            process.wait(timeout=30)
        except subprocess.TimeoutExpired:
            process.kill()
            process.wait()
        for reader in readers:
            reader.join(timeout=5)
    assert process.returncode == 0, stderr[-20:]
    assert any(line.startswith("stopped; ") for line in stdout), stdout[-5:]
    leftover = {env: pid for env, pid in server.environment_pids().items() if alive(pid)}
    assert not leftover, f"environments still running after Ctrl-C: {leftover}"
