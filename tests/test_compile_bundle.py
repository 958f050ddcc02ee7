"""End to end: a tiny checkpoint compiled for each backend, verified in the real runtimes."""

from __future__ import annotations

import hashlib
import json

import numpy as np
import pytest

from amc.compiler.bundle import load_bundle
from amc.compiler.inspect import inspect_path
from amc.compiler.pipeline import compile_bundle
from tests.compile_fixtures import tiny_checkpoint, tiny_corpus

pytestmark = pytest.mark.toolchain

CELL_CLIP = 1.5     # the tiny model's cells reach past it: the clamp is in every step graph (and not
# +-1, which TFLite would fold into a fused activation)


@pytest.fixture(scope="module")
def inputs(tmp_path_factory):
    root = tmp_path_factory.mktemp("compile")
    return tiny_checkpoint(root / "ckpt", cell_clip=CELL_CLIP), tiny_corpus(root / "corpus")


@pytest.fixture(scope="module")
def executorch_bundle(inputs, tmp_path_factory):
    checkpoint, corpus = inputs
    out = tmp_path_factory.mktemp("bundles") / "rpi4-executorch"
    return compile_bundle(checkpoint, target="rpi4", backend="executorch", calib=corpus, output=out)


def _check_bundle(result: dict) -> None:
    assert set(result["graphs"]) == {"fast", "slow", "arbitrator"}
    for graph in result["graphs"].values():
        assert graph["bytes"] > 0 and graph["macs_per_frame"] > 0 and "int8" in graph["weight_dtypes"]
    state = result["state"]
    assert state["h"]["scale"] and state["c"]["scale"]
    scale, zero = state["c"]["scale"], state["c"]["zero_point"]    # c's int8 range is the cell clip
    low, high = (-128 - zero) * scale, (127 - zero) * scale
    assert abs(low + CELL_CLIP) <= scale and abs(high - CELL_CLIP) <= scale, state["c"]
    verification = result["verification"]
    for graph, v in verification["one_frame"].items():
        assert v["snr_db"] > 15, (graph, v)        # random tiny model: a loose floor; the real one is in docs
    assert verification["stream"]["slow"]["last_second_snr_db"] > 10
    assert verification["accuracy"]["utterances"] == 2


def test_executorch_bundle(executorch_bundle):
    result = executorch_bundle
    _check_bundle(result)
    files = sorted(p.name for p in __import__("pathlib").Path(result["bundle"]).iterdir())
    assert files == ["arbitrator.pte", "fast.pte", "frontend.bin", "manifest.json", "report.json", "report.md",
                     "slow.pte"]
    manifest = json.loads((__import__("pathlib").Path(result["bundle"]) / "manifest.json").read_text())
    front = manifest["frontend"]
    tables = (__import__("pathlib").Path(result["bundle"]) / front["file"]).read_bytes()
    assert front["sha256"] == hashlib.sha256(tables).hexdigest() and front["input"]["dtype"] == "int16"
    assert front["output"]["shape"] == [1, manifest["graphs"]["slow"]["inputs"][0]["shape"][1]]
    # the device's frames feed every graph's int8 input as the host's do: the compile's own check
    checked = result["verification"]["frontend"]
    assert checked["int8_identical_fraction"] >= 0.999 and checked["max_step_diff"] <= 1, checked
    assert abs(checked["cer_delta"]) <= 0.1 + 1e-9, checked
    for tensor in ("h", "c"):       # same state quantization at every boundary of fast and slow
        pairs = {(t["scale"], t["zero_point"]) for g in ("fast", "slow")
                 for t in manifest["graphs"][g]["inputs"] + manifest["graphs"][g]["outputs"]
                 if t["name"] in (tensor, f"{tensor}_next")}
        assert len(pairs) == 1


def test_bundle_streams_like_the_evaluator_expects(executorch_bundle):
    bundle = load_bundle(executorch_bundle["bundle"])
    config = bundle.config
    x = np.zeros((1, config.features.frame_dim), np.float32)
    h = np.zeros((1, config.state_dim), np.float32)
    logits, h2, c2 = bundle.slow_step(x, h, h)
    assert logits.shape == (1, len(config.vocabulary)) and h2.shape == h.shape
    logits, h3, c3 = bundle.fast_step(x, h2, c2)
    assert bundle.route_logits(x, np.array([[30.0]], np.float32), h3).shape == (1, 2)
    assert set(bundle.macs) == {"fast", "slow", "arbitrator"}


def test_inspect_checks_the_weight_map(executorch_bundle):
    summary = inspect_path(executorch_bundle["bundle"])
    assert summary["weight_map"]["checked_against_files"] is True
    assert all(g["sha256_ok"] for g in summary["graphs"].values())


def test_tflite_mcu_bundle(inputs, tmp_path):
    checkpoint, corpus = inputs
    result = compile_bundle(checkpoint, target="cortex-m7", backend="tflite", calib=corpus, output=tmp_path / "m7")
    _check_bundle(result)
    runtimes = result["verification"]["runtimes"]    # TFLite Micro vs LiteRT: a few int8 kernels round apart
    assert max(runtimes["tflite_micro_max_lsb"].values()) <= 2, runtimes
    from amc.targets.backends.tflite_runtime import interpreter_python
    if interpreter_python() is not None:             # `make setup` makes its venv where it installs
        checked = runtimes["tflite-runtime"]          # an older interpreter: a few kernels round apart
        assert checked.startswith("runs the bundle; ") and (
            "identical" in checked or int(checked.split("at most ")[1].split()[0]) <= 2), checked
    mcu = result["mcu"]
    assert mcu["ram_need_bytes"] <= mcu["ram_budget_bytes"] and all(b > 0 for b in mcu["arena_bytes"].values())
    source = (tmp_path / "m7" / "model_data.c").read_text()
    assert "amc_slow_model" in source and "aligned" in (tmp_path / "m7" / "model_data.h").read_text()
    assert inspect_path(tmp_path / "m7")["weight_map"]["checked_against_files"] is True
    from amc.cli.compilecmd import compile_summary
    assert any(line.lstrip().startswith("mcu") and f"arena {mcu['shared_arena_bytes']:,} B" in line
               for line in compile_summary(result))


def test_onnx_bundle(inputs, tmp_path):
    checkpoint, corpus = inputs
    result = compile_bundle(checkpoint, target="rpi4", backend="onnx", calib=corpus, output=tmp_path / "onnx")
    _check_bundle(result)


def test_compile_summary_says_where_and_how_far_int8_drifts(executorch_bundle):
    """What `amc compile` prints without --json: a few lines a person reads, from the result."""
    from amc.cli.compilecmd import compile_summary

    result = executorch_bundle
    lines = compile_summary(result)
    text = "\n".join(lines)
    assert len(lines) <= 16 and not text.lstrip().startswith("{")
    assert f"{result['bundle']}/" in text
    assert f"{result['bundle_graph_bytes']:,} B" in text
    accuracy = result["verification"]["accuracy"]
    assert f"({accuracy['cer_delta']:+.2f})" in text
    assert "fast/slow per frame: " in text and str(result["verification"]["timing"]["fast_over_slow"]) in text
    assert f"amc test --target rpi4 --bundle {result['bundle']}" in text
    unverified = compile_summary({**result, "verification": None})
    assert any("not run" in line for line in unverified) and not any("int8 " in line for line in unverified)
