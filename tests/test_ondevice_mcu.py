"""`amc test --target cortex-m7`: the model half of an MCU bundle in TFLite Micro (the interpreter an
MCU runs, in the manifest's arena) against ai-edge-litert, on a tiny compiled bundle; the one
kernel that rounds apart (FULLY_CONNECTED's requantization); the arena check; the CLI's exit."""

from __future__ import annotations

import json
import shutil
import warnings
from pathlib import Path

import numpy as np
import pytest

from amc.common.errors import InputError
from tests.compile_fixtures import tiny_checkpoint, tiny_corpus


def _fake_bundle(path: Path, target: str, backend: str) -> Path:
    path.mkdir()
    graphs = {g: {"file": f"{g}.pte"} for g in ("fast", "slow", "arbitrator")}
    (path / "manifest.json").write_text(json.dumps({"schema": "amc-bundle", "schema_version": 1, "target": target,
                                                    "backend": backend, "graphs": graphs}))
    return path


def test_an_executorch_bundle_is_refused_for_a_microcontroller(tmp_path):
    from amc.ontarget.harness import test_on_target

    bundle = _fake_bundle(tmp_path / "b", "cortex-m7", "executorch")
    with pytest.raises(InputError, match="compile with `amc compile --target cortex-m7 --backend tflite`"):
        test_on_target("cortex-m7", bundle)
    with pytest.raises(InputError, match="for target 'cortex-m7', not 'cortex-m4'"):
        test_on_target("cortex-m4", bundle)


# ---- a tiny MCU bundle (export toolchains) ------------------------------------------------------------

@pytest.fixture(scope="module")
def mcu_bundle(tmp_path_factory) -> tuple[Path, Path]:
    """(bundle, audio folder): the compile tests' tiny model compiled for cortex-m7 (TFLite), its
    cell state clipped as the reference model's is (the clamp's MINIMUM runs in float, between a
    DEQUANTIZE and a QUANTIZE)."""
    from amc.compiler.pipeline import compile_bundle

    root = tmp_path_factory.mktemp("mcu")
    checkpoint, corpus = tiny_checkpoint(root / "ckpt", cell_clip=1.5), tiny_corpus(root / "corpus")
    compile_bundle(checkpoint, target="cortex-m7", backend="tflite", calib=corpus, output=root / "m7")
    return root / "m7", corpus / "test"


@pytest.mark.toolchain
def test_graphs_streams_and_patch_in_tflite_micro(mcu_bundle):
    from amc.ontarget.harness import Settings, test_on_target
    from amc.ontarget.mcu import KERNEL_STEP_BOUND

    bundle, audio = mcu_bundle
    result = test_on_target("cortex-m7", bundle, data=audio, settings=Settings(utterances=2, records_per_graph=32))
    manifest = json.loads((bundle / "manifest.json").read_text())
    assert result["arena"]["shared_bytes"] == manifest["mcu"]["shared_arena_bytes"]
    assert result["arena"]["fits"] and all(g["fits"] for g in result["arena"]["graphs"].values())
    assert result["outputs_compared"] == sum(g["values"] for g in result["graphs"].values()) > 0
    # kernel by kernel, on equal inputs: TFLite Micro and LiteRT's reference kernels differ only in
    # FULLY_CONNECTED, by one step; the optimized kernels round a few more apart, by one step too
    assert result["max_kernel_step_diff"]["reference_kernels"] <= KERNEL_STEP_BOUND
    assert result["max_kernel_step_diff"]["optimized_kernels"] <= KERNEL_STEP_BOUND
    assert set(result["kernels_differing"]["reference_kernels"]) <= {"FULLY_CONNECTED"}
    for graph in result["graphs"].values():
        reference = graph["kernels"]["reference_kernels"]
        assert 0 < reference["op_runs_compared"] <= reference["op_runs"]
    # a step carried through the sigmoids and the cell state grows in the graph outputs: reported, not bounded
    assert result["max_int8_step_diff"] >= 0.0
    assert result["frames"] == sum(t["frames"] for t in result["transcripts"]) > 0
    # WAV audio in: the front end bare metal on the Cortex-M7 makes the host's frames to the bit
    assert result["audio_in"] is True and result["frontend"]["mcu_equals_host_c"]
    assert result["frontend_max_step_diff"] <= 1 and result["frontend"]["int8_identical_fraction"] >= 0.999
    assert set(result["cer"]) == {"ai-edge-litert", "tflite-micro", "between_transcripts"}
    assert (result["cer"]["between_transcripts"] == 0.0) == result["transcripts_equal"]
    assert (result["route_frames_differing"] == 0) == result["routes_equal"]
    patch = result["patch"]
    assert "skipped" not in patch, patch                 # the host amc-patch builds here
    assert patch["files_equal"] and patch["outputs_changed"] and result["patched_equal"] is True
    assert set(patch["files"]) == {"fast.tflite", "slow.tflite"}
    assert result["ok"] == (result["transcripts_equal"] and result["routes_equal"])


@pytest.mark.toolchain
def test_arena_fits_without_crashing_the_caller(mcu_bundle):
    from amc.targets.backends.tflite_micro import arena_fits

    bundle, _ = mcu_bundle
    manifest = json.loads((bundle / "manifest.json").read_text())
    data = (bundle / "fast.tflite").read_bytes()
    assert arena_fits(data, manifest["mcu"]["arena_bytes"]["fast"])
    assert not arena_fits(data, 1024)


def _quantize_multiplier(real: float) -> tuple[int, int]:
    """tflite::QuantizeMultiplier: real = q * 2^shift, q in [0.5, 1) as a Q31 integer."""
    fraction, shift = np.frexp(real)
    q = int(np.floor(fraction * (1 << 31) + 0.5))
    if q == 1 << 31:
        q, shift = q // 2, shift + 1
    return q, int(shift)


def _rounding_divide_by_pot(x: int, exponent: int) -> int:
    """gemmlowp::RoundingDivideByPOT: round half away from zero."""
    mask = (1 << exponent) - 1
    return (x >> exponent) + int((x & mask) > (mask >> 1) + int(x < 0))


def _double_rounding(acc: int, multiplier: int, shift: int) -> int:
    """SaturatingRoundingDoublingHighMul, then RoundingDivideByPOT (gemmlowp): rounds twice."""
    product = (acc << max(shift, 0)) * multiplier
    nudge = (1 << 30) if product >= 0 else 1 - (1 << 30)
    high = abs(product + nudge) >> 31
    return _rounding_divide_by_pot(high if product + nudge >= 0 else -high, max(-shift, 0))


def _single_rounding(acc: int, multiplier: int, shift: int) -> int:
    """One rounding: (acc * multiplier + 2^(s-1)) >> s with s = 31 - shift."""
    total = 31 - shift
    return (acc * multiplier + (1 << (total - 1))) >> total


@pytest.mark.toolchain
def test_fully_connected_requantizes_with_two_roundings_in_tflite_micro_and_one_in_litert(mcu_bundle):
    """The explanation in docs/benchmarks.md, pinned: FULLY_CONNECTED's int32 accumulators, given
    the same inputs, are requantized per channel by TFLite Micro with gemmlowp's two roundings and
    by LiteRT's reference kernel with one; the two formulas reproduce each interpreter exactly, and
    they are one step apart on the few accumulators where the first rounding tips the second."""
    from ai_edge_litert.interpreter import Interpreter, OpResolverType

    from amc.targets.backends.tflite import SIGNATURE, read_flatbuffer
    from amc.targets.backends.tflite_micro import PROBE_ARENA, _open

    bundle, _ = mcu_bundle
    data = (bundle / "slow.tflite").read_bytes()
    model = read_flatbuffer(data)
    tensors = model["tensors"]
    names = [f"{SIGNATURE}_args_{i}" for i in range(3)]
    micro = _open(data, PROBE_ARENA + 4 * len(data), "slow", preserve_all_tensors=True)
    with warnings.catch_warnings():
        warnings.simplefilter("ignore")
        lite = Interpreter(model_content=data, num_threads=1, experimental_op_resolver_type=OpResolverType.BUILTIN_REF,
                           experimental_preserve_all_tensors=True)
    lite.allocate_tensors()
    inputs = [next(t for t in tensors if t["name"] == name) for name in names]
    rng = np.random.default_rng(0)
    checked, apart = 0, 0
    for _ in range(24):          # random int8 features, h and c
        for tensor in inputs:
            array = rng.integers(-128, 128, size=tensor["shape"], dtype=np.int8)
            micro.set_input(array, model["inputs"].index(tensor["name"]))
            lite.set_tensor(tensor["index"], array)
        micro.invoke()
        lite.invoke()
        for operator in model["operators"]:
            if operator["op"] != "FULLY_CONNECTED":
                continue
            x, w = tensors[operator["inputs"][0]], tensors[operator["inputs"][1]]
            values = lite.get_tensor(x["index"]).reshape(-1).astype(np.int64)
            if not np.array_equal(values, np.asarray(micro.GetTensor(x["index"], 0)["tensor_data"]).reshape(-1)):
                continue
            weights = np.frombuffer(w["data"], np.int8).reshape(w["shape"]).astype(np.int64)
            bias = np.zeros(weights.shape[0], np.int64)
            if len(operator["inputs"]) > 2:
                bias = np.frombuffer(tensors[operator["inputs"][2]]["data"], np.int32).astype(np.int64)
            accumulators = weights @ (values - int(x["zero_points"][0])) + bias
            out = tensors[operator["outputs"][0]]
            zero = int(out["zero_points"][0])
            in_micro = np.asarray(micro.GetTensor(out["index"], 0)["tensor_data"]).reshape(-1)
            in_lite = lite.get_tensor(out["index"]).reshape(-1)
            for channel, acc in enumerate(accumulators.tolist()):
                real = float(x["scales"][0]) * float(w["scales"][channel]) / float(out["scales"][0])
                multiplier, shift = _quantize_multiplier(real)
                twice = min(127, max(-128, _double_rounding(acc, multiplier, shift) + zero))
                once = min(127, max(-128, _single_rounding(acc, multiplier, shift) + zero))
                assert in_micro[channel] == twice and in_lite[channel] == once, (operator, channel, acc)
                checked += 1
                apart += int(twice != once)
    assert checked > 1000 and apart > 0, (checked, apart)


@pytest.mark.toolchain
def test_cli_prints_the_figures_and_fails_on_an_arena_too_small(mcu_bundle, tmp_path, capsys):
    from tests.conftest import run_cli

    bundle, audio = mcu_bundle
    args = ["test", "--target", "cortex-m7", "--data", str(audio), "--utterances", "1", "--records", "4",
            "--no-patch", "--json"]
    code, out, _ = run_cli(args + ["--bundle", str(bundle)], capsys)
    result = json.loads(out)
    for key in ("outputs_compared", "max_int8_step_diff", "max_kernel_step_diff", "transcripts_equal",
                "routes_equal", "patched_equal", "ok"):
        assert key in result
    assert result["patched_equal"] is None and code == (0 if result["ok"] else 1)
    small = tmp_path / "small-arena"                    # a manifest whose fast arena TFLite Micro cannot use
    shutil.copytree(bundle, small)
    manifest = json.loads((small / "manifest.json").read_text())
    manifest["mcu"]["arena_bytes"]["fast"] = 1024
    (small / "manifest.json").write_text(json.dumps(manifest))
    code, out, _ = run_cli(args + ["--bundle", str(small)], capsys)
    result = json.loads(out)
    assert code == 1 and result["ok"] is False
    assert result["arena"]["graphs"]["fast"] == {"bytes": 1024, "fits": False} and not result["arena"]["fits"]
