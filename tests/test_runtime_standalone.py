"""device/runtime stands alone: plain cmake and ctest build it and run its C tests on the fixtures
checked into device/runtime/tests/fixtures/, with no Python involved; and those fixtures are
what the Python reference writes today."""

from __future__ import annotations

import re
import subprocess
from pathlib import Path

REPO = Path(__file__).resolve().parent.parent
RUNTIME = REPO / "device" / "runtime"
FIXTURES = RUNTIME / "tests" / "fixtures"
CTEST_NAMES = {"crosscheck", "reject", "powercut", "badblob", "all_packs", "hash_vectors"}


def test_cmake_build_and_ctest_pass_on_their_own(tmp_path):
    build = tmp_path / "build"
    command = (f"cmake -S {RUNTIME} -B {build} && cmake --build {build} && "
               f"ctest --test-dir {build} --output-on-failure")
    result = subprocess.run(["bash", "-c", command], capture_output=True, text=True, timeout=900,
                            cwd=tmp_path)
    output = result.stdout + result.stderr
    assert result.returncode == 0, output[-4000:]
    summary = re.search(r"(\d+)% tests passed, (\d+) tests failed out of (\d+)", output)
    assert summary, output[-4000:]
    assert summary.group(2) == "0" and int(summary.group(3)) >= len(CTEST_NAMES)
    passed = set(re.findall(r"Test +#\d+: (\w+) \.+ +Passed", output))
    assert CTEST_NAMES <= passed, output[-4000:]


def test_checked_in_fixtures_are_what_the_python_reference_writes(tmp_path):
    from amc.runtime.fixtures import write_standalone_fixtures

    written = write_standalone_fixtures(tmp_path)
    assert {path.name for path in FIXTURES.iterdir()} == \
        {path.name for path in written.values()}
    for path in written.values():
        assert path.read_bytes() == (FIXTURES / path.name).read_bytes(), \
            f"{path.name} is stale: python -m amc.runtime.fixtures --write {FIXTURES}"
    assert sum(path.stat().st_size for path in written.values()) < 128 * 1024
