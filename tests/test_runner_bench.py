"""Native timing of a bundle's graphs on this machine: amc-runner built for the host against the
installed executorch package, its `bench` report, the compile report that carries it beside the
Python-runtime timing, and the fallback when the runner cannot be built. No speed is asserted:
the shared machines' load decides the numbers, not the code."""

from __future__ import annotations

import json
import os
import subprocess

import pytest

from amc.common.errors import AmcError

GRAPHS = {"fast", "slow", "arbitrator"}


@pytest.fixture(scope="module")
def bundle():
    from tests.ondevice_fixtures import fixture_bundle  # the tiny rpi4 / ExecuTorch bundle, built once

    return fixture_bundle()[0]


# ---- plain -----------------------------------------------------------------------------------------

def test_bench_output_is_parsed_after_runtime_log_lines():
    from amc.targets.amc_runner import parse_bench

    out = ('I 00:00:00.003 executorch:cpuinfo_utils.cpp:71] Reading file\n'
           '{"runner_target": "host", "frames": 3, "graphs": {"slow": {"median_us": 2.5}}}\n')
    assert parse_bench(out)["graphs"]["slow"]["median_us"] == 2.5
    with pytest.raises(AmcError, match="no JSON"):
        parse_bench("I executorch: nothing measured\n")


def test_native_timing_falls_back_without_cmake(tmp_path, monkeypatch):
    from amc.compiler.verify import native_timing

    monkeypatch.setenv("PATH", str(tmp_path))                  # no cmake, no compiler
    result = native_timing(tmp_path, "executorch")
    assert set(result) == {"unavailable"} and "apt-get install cmake" in result["unavailable"]
    assert "C headers" in native_timing(tmp_path, "tflite")["unavailable"]


def test_report_labels_python_and_native_timing():
    from amc.compiler.report import render_markdown

    python = {"runtime": "executorch.runtime (XNNPACK)", "fast_over_slow": 0.6, "arbitrator_over_slow": 0.2,
              "calls": 300, "median_us": {}}
    native = {"runtime": "amc-runner (ExecuTorch C++ Module, XNNPACK)", "fast_over_slow": 0.45,
              "arbitrator_over_slow": 0.1, "calls": 2000, "threads": "calling thread only",
              "median_us": {"fast": 4.5, "slow": 10.0, "arbitrator": 1.0}}
    result = {"target": "rpi4", "backend": "executorch", "variant": "int8", "float_bytes": 1, "bundle_graph_bytes": 1,
              "size_ratio": 1.0, "graphs": {}, "calibration": {"source": "s", "calibration_utterances": 1, "frames": 1,
                                                               "fast_fraction": 0.5, "mflops": 1},
              "state": {"dtype": "int8", "h": {"scale": 1, "zero_point": 0}, "c": {"scale": 1, "zero_point": 0}},
              "verification": {"one_frame": {}, "accuracy": {},
                               "stream": {"seconds": 10.0} | {g: {"first_second_snr_db": 1, "last_second_snr_db": 1,
                                                                   "end_state_snr_db": {"h": 1, "c": 1}}
                                                                for g in ("slow", "fast")},
                               "timing": python | {"native": native}}}
    text = render_markdown(result)
    assert "executorch.runtime (XNNPACK) called from Python" in text and "fast/slow 0.6" in text
    assert "Native, amc-runner" in text and "fast/slow 0.45" in text and "4.5 / 10.0 / 1.0 us" in text
    result["verification"]["timing"]["native"] = {"unavailable": "'cmake' not found"}
    assert "Native timing not measured: 'cmake' not found." in render_markdown(result)


# ---- the host runner (needs cmake, a C++ compiler and the ExecuTorch export stack) -------------------

@pytest.mark.toolchain
def test_host_runner_benches_every_graph(bundle):
    from amc.targets.amc_runner import bench_bundle

    result = bench_bundle(bundle, frames=40, warmup=4)
    assert result["runner_target"] == "host" and result["bundle_target"] == "rpi4"
    assert result["backend"] == "executorch" and result["frames"] == 40 and result["warmup"] == 4
    assert result["threads"] == "calling thread only"
    assert set(result["graphs"]) == GRAPHS
    for graph, times in result["graphs"].items():
        assert 0 < times["min_us"] <= times["median_us"] <= times["p90_us"], graph
        assert times["macs"] > 0, graph
    assert result["graphs"]["slow"]["macs"] > result["graphs"]["fast"]["macs"] > result["graphs"]["arbitrator"]["macs"]


@pytest.mark.toolchain
def test_host_runner_refuses_bad_bench_options(bundle):
    from amc.targets.amc_runner import build_runner

    runner = build_runner("host")
    env = dict(os.environ, LD_LIBRARY_PATH=os.pathsep.join(map(str, runner.library_path)))
    for options in (["--frames", "0"], ["--warmup", "-1"], ["--repeats", "3"], ["--frames"]):
        run = subprocess.run([str(runner.program), "bench", str(bundle), *options], capture_output=True, text=True,
                             env=env, timeout=120)
        assert run.returncode == 2, options
        assert run.stderr.strip().splitlines()[-1].startswith("amc-runner: error: "), options
        assert not run.stdout.strip(), options


@pytest.mark.toolchain
def test_compile_report_carries_native_and_python_timing(bundle):
    report = json.loads((bundle / "report.json").read_text())
    timing = report["verification"]["timing"]
    assert timing["timed"].startswith("from Python") and timing["runtime"] == "executorch.runtime (XNNPACK)"
    native = timing["native"]
    assert "unavailable" not in native, native
    assert native["timed"].startswith("in C++") and native["runtime"].startswith("amc-runner")
    assert set(native["median_us"]) == set(native["p90_us"]) == GRAPHS
    assert native["fast_over_slow"] > 0 and native["arbitrator_over_slow"] > 0
    assert "Native, amc-runner" in (bundle / "report.md").read_text()
