"""Running host tools for the runtime: a command with a time limit, and the line of its output
that says why it failed."""

from __future__ import annotations

import subprocess
from pathlib import Path

from amc.common.errors import AmcError


def run_tool(cmd: list[str], cwd: Path | None = None, timeout: float = 600) -> subprocess.CompletedProcess:
    try:
        return subprocess.run(cmd, cwd=cwd, capture_output=True, text=True, timeout=timeout)
    except subprocess.TimeoutExpired:
        raise AmcError(f"'{' '.join(cmd[:3])} ...' took more than {timeout:.0f} s") from None


def last_line(result: subprocess.CompletedProcess) -> str:
    lines = (result.stderr or result.stdout).strip().splitlines()
    return lines[-1] if lines else f"exit status {result.returncode}"


def first_error(result: subprocess.CompletedProcess) -> str:
    for line in (result.stdout + result.stderr).splitlines():
        if "error" in line:
            return line.strip()
    return last_line(result)
