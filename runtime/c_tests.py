"""Run the runtime's C tests on a board preset (natively, under qemu-user, or bare-metal under
qemu-system-arm with semihosting) and read their counts. `amc runtime test --target T` calls
`test_runtime`."""

from __future__ import annotations

import os
import time
from dataclasses import dataclass
from pathlib import Path

from amc.common.errors import AmcError
from amc.common.progress import Report, quiet
from amc.runtime.build import BUILD_ROOT, build_runtime
from amc.runtime.fixtures import cached_fixture_packs, write_bench_pack
from amc.runtime.tools import last_line, run_tool
from amc.targets.presets import Target, get_target
from amc.targets.qemu import need_tool


@dataclass
class RuntimeTestResult:
    target: str
    ok: bool
    suites: dict
    seconds: float
    output: str

    def to_json(self) -> dict:
        return {"target": self.target, "ok": self.ok, "suites": self.suites,
                "seconds": round(self.seconds, 2)}


def runner_command(target: Target, program: Path, args: list[str]) -> list[str]:
    """How a built test program runs here: natively, under qemu-user, or bare-metal."""
    if not target.qemu:
        return [str(program), *args]
    need_tool(target.qemu[0], "qemu-user" if target.linux else "qemu-system-arm")
    if target.linux:
        return [*target.qemu, str(program), *args]
    return [*target.qemu, "-nographic", "-monitor", "none", "-serial", "none",
            "-semihosting-config", "enable=on,target=native", "-kernel", str(program),
            "-append", " ".join(args)]


def parse_suites(output: str) -> dict:
    suites = {}
    for line in output.splitlines():
        words = line.split()
        if len(words) >= 2 and all("=" in w for w in words[1:]):
            suites[words[0]] = {k: _number(v) for k, v in (w.split("=", 1) for w in words[1:])}
    return suites


def _number(text: str):
    try:
        return int(text)
    except ValueError:
        try:
            return float(text)
        except ValueError:
            return text


def test_runtime(target_name: str, report: Report = quiet, variant: str = "",
                 crosscheck_cases: int = 300) -> RuntimeTestResult:
    """Build for the preset, write the fixture packs, run the C tests there, parse the counts."""
    target = get_target(target_name)
    build = build_runtime(target_name, variant=variant, report=report)
    fixtures = BUILD_ROOT / "fixtures"
    report("write fixtures", 0, 1)
    packs = cached_fixture_packs(fixtures, crosscheck_cases)
    report("write fixtures", 1, 1)
    args = [os.path.relpath(p, BUILD_ROOT) for p in packs.values()]
    report(f"run C tests on {target.name}", 0, 1)
    start = time.monotonic()
    result = run_tool(runner_command(target, build.tests, args), cwd=BUILD_ROOT, timeout=900)
    seconds = time.monotonic() - start
    report(f"run C tests on {target.name}", 1, 1)
    output = result.stdout + result.stderr
    ok = result.returncode == 0 and "RESULT ok" in output
    return RuntimeTestResult(target.name, ok, parse_suites(output), seconds, output)


def crosscheck_dumped(target_name: str, pack: Path, dump_dir: Path,
                      report: Report = quiet) -> tuple[list[dict], float]:
    """The crosscheck cases of one pack in the 'large' bare-metal build of the test program, each
    case's files as the apply left them written back to `dump_dir` (case<K>-file<I>.bin): the
    program's `crosscheck_case` line of each case (index, rc, files_equal, seconds) and the
    run's wall seconds."""
    target = get_target(target_name)
    build = build_runtime(target_name, variant="large", report=report)
    dump_dir.mkdir(parents=True, exist_ok=True)
    # semihosting hands the program a short command line: paths relative to the pack's folder
    args = ["--dump", os.path.relpath(dump_dir, pack.parent), pack.name]
    report(f"crosscheck on {target.name}", 0, 1)
    start = time.monotonic()
    result = run_tool(runner_command(target, build.tests, args), cwd=pack.parent, timeout=1800)
    seconds = time.monotonic() - start
    report(f"crosscheck on {target.name}", 1, 1)
    output = result.stdout + result.stderr
    cases = [{k: _number(v) for k, v in (w.split("=", 1) for w in line.split()[1:])}
             for line in output.splitlines() if line.startswith("crosscheck_case ")]
    if "RESULT" not in output or "FAIL bad case" in output or "FAIL cannot write" in output:
        failed = [line for line in output.splitlines() if line.startswith("FAIL")]
        raise AmcError(f"the {target.name} test program did not run {pack.name}: "
                       f"{failed[0] if failed else last_line(result)}")
    return cases, seconds


def bench_runtime(report: Report = quiet) -> list[dict]:
    """Host throughput: verify + apply of 1 MiB graph files on the simulated flash, one core."""
    build = build_runtime("host", report=report)
    pack = write_bench_pack(BUILD_ROOT / "fixtures")
    result = run_tool([str(build.tests), "--bench", str(pack)], timeout=600)
    if result.returncode:
        raise AmcError(f"runtime benchmark failed: {last_line(result)}")
    return [{k: _number(v) for k, v in (w.split("=", 1) for w in line.split()[1:])}
            for line in result.stdout.splitlines() if line.startswith("bench ")]
