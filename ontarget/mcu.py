"""A microcontroller preset (cortex-m4, cortex-m7): the model half checked on the host in the
interpreter an MCU runs, TFLite Micro, against ai-edge-litert (steps 1-5 of amc.ontarget.harness)."""

from __future__ import annotations

import json
import shutil
import tempfile
import time
from pathlib import Path

import numpy as np
import torch

from amc.common.errors import AmcError, InputError
from amc.common.progress import quiet
from amc.model.feature_set import FeatureSet
from amc.ontarget.recording import (
    audio_files,
    GRAPHS,
    WORK_ROOT,
    Recording,
    Settings,
    load_utterances,
    compare_outputs,
    compare_streams,
    frontend_check,
    frontend_tables,
    host_outputs,
    make_weight_update,
    record_graph_inputs,
    resolve_bundle,
)
from amc.targets.presets import Target

KERNEL_STEP_BOUND = 1
"""How far a TFLite Micro kernel may be from LiteRT's on equal inputs, in steps of its output: one
rounding apart."""


def test_mcu_reference(target: Target, bundle: Path | str | None, data: Path | str | None, settings: Settings,
                       report=quiet) -> dict:
    """Steps 1-5 for a microcontroller preset (see the module docstring); returns the figures."""
    from amc.compiler.bundle import load_bundle
    from amc.compiler.manifest import read_manifest
    from amc.model.decoding import error_rates
    from amc.model.evaluate import evaluate_bundle
    from amc.targets.backends import tflite, tflite_micro

    started = time.monotonic()
    # 1. tools
    tflite.check_toolchain()
    tflite_micro.check_runtime()
    # 2. the bundle
    bundle = resolve_bundle(target, bundle, None, report)
    manifest = read_manifest(bundle)
    if manifest["backend"] != "tflite" or "mcu" not in manifest:
        raise InputError(f"{bundle}: the {target.name} check runs TFLite bundles with TFLite Micro arenas; this one is "
                         f"'{manifest['backend']}': compile with `amc compile --target {target.name} --backend tflite`")
    arena = check_arenas(bundle, manifest, report)
    host_bundle = load_bundle(bundle)
    micro_bundle = load_bundle(bundle, runtime="tflite-micro")     # each graph in the firmware's arena
    config = host_bundle.config
    mflops = settings.mflops or config.nominal_mflops
    features, utterances = load_utterances(data, config, settings.utterances, report)
    count = len(utterances)
    # 3. graphs on recorded inputs: TFLite Micro against LiteRT, then kernel by kernel
    report("record LiteRT inputs", 0, 1)
    recording = record_graph_inputs(host_bundle, utterances, settings.records_per_graph, mflops)
    report("record LiteRT inputs", 1, 1)
    report("graphs in TFLite Micro", 0, 1)
    micro_outputs = host_outputs(micro_bundle, recording.inputs)
    report("graphs in TFLite Micro", 1, 1)
    graphs = compare_outputs(manifest, recording.outputs, micro_outputs)
    kernels = {}
    for done, graph in enumerate(GRAPHS):
        report("trace kernels", done, len(GRAPHS))
        spec = manifest["graphs"][graph]
        kernels[graph] = tflite_micro.kernel_differences(bundle / spec["file"], spec, recording.inputs[graph])
        graphs["graphs"][graph]["kernels"] = kernels[graph]
    report("trace kernels", len(GRAPHS), len(GRAPHS))
    kernel_steps = {k: max(kernels[g][k]["max_step_diff"] for g in GRAPHS) for k in kernels["fast"]}
    differing = {k: sorted({op for g in GRAPHS for op in kernels[g][k]["ops"]}) for k in kernels["fast"]}
    # 4. streaming end to end, from the frames the MCU's own front end makes of the WAV files
    front = mcu_frontend(target, host_bundle, data, utterances, report)
    subset = FeatureSet(front.pop("frames"), features.texts[:count], features.files[:count])
    report("stream in LiteRT and TFLite Micro", 0, 2)
    host = evaluate_bundle(host_bundle, subset, mflops=mflops, keep_traces=True)
    report("stream in LiteRT and TFLite Micro", 1, 2)
    micro = evaluate_bundle(micro_bundle, subset, mflops=mflops, keep_traces=True)
    report("stream in LiteRT and TFLite Micro", 2, 2)
    streaming = compare_streams(host["traces"], [_as_streamed(t) for t in micro["traces"]], "tflite_micro")
    between, _ = error_rates([t["hypothesis"] for t in host["traces"]], [t["hypothesis"] for t in micro["traces"]])
    # 5. the patch
    patch = None
    if settings.patch:
        WORK_ROOT.mkdir(parents=True, exist_ok=True)
        work = Path(tempfile.mkdtemp(prefix=f"{target.name}-", dir=WORK_ROOT))
        try:
            patch = patch_mcu_bundle(target, bundle, recording, micro_outputs, work, report)
        finally:
            shutil.rmtree(work, ignore_errors=True)
    result = {
        "target": target.name, "bundle": str(bundle), "backend": host_bundle.backend,
        "interpreters": f"tflite-micro {_package_version('tflite-micro')} (the manifest's shared arena) vs "
                        f"ai-edge-litert {_package_version('ai-edge-litert')}",
        "arena": arena,
        "outputs_compared": graphs["outputs_compared"],
        "max_int8_step_diff": graphs["max_int8_step_diff"],
        "max_kernel_step_diff": kernel_steps,
        "kernels_differing": differing,
        "graphs": graphs["graphs"],
        "utterances": count, "frames": streaming["frames"], "mflops": mflops,
        "audio_in": True, "frontend_max_step_diff": front["max_step_diff"], "frontend": front,
        "transcripts_equal": streaming["transcripts_equal"], "routes_equal": streaming["routes_equal"],
        "route_frames_differing": streaming["route_frames_differing"],
        "max_latency_diff_ms": streaming["max_latency_diff_ms"],
        "cer": {"ai-edge-litert": host["cer"], "tflite-micro": micro["cer"], "between_transcripts": round(between, 3)},
        "fast_fraction": {"ai-edge-litert": host["fast_fraction"], "tflite-micro": micro["fast_fraction"]},
        "transcripts": streaming["transcripts"],
        "patched_equal": patch["patched_equal"] if patch else None,
        "patch": patch,
        "seconds": round(time.monotonic() - started, 1),
    }
    result["ok"] = bool(arena["fits"] and max(kernel_steps.values()) <= KERNEL_STEP_BOUND
                        and result["transcripts_equal"] and result["routes_equal"] and front["mcu_equals_host_c"]
                        and result["patched_equal"] is not False)
    return result


def mcu_frontend(target: Target, bundle, data, utterances: list[np.ndarray], report=quiet) -> dict:
    """The bundle's front end as the MCU runs it (the C, bare metal under qemu-system-arm) on the
    WAV files, checked as `frontend_check` does. `frames`: the MCU's frames, to stream."""
    from amc.runtime.frontend import frames_on_board

    wavs = audio_files(data, report)[:len(utterances)]
    WORK_ROOT.mkdir(parents=True, exist_ok=True)
    work = Path(tempfile.mkdtemp(prefix=f"{target.name}-frontend-", dir=WORK_ROOT))
    try:
        frames = frames_on_board(target.name, frontend_tables(bundle), wavs, work, report)
    finally:
        shutil.rmtree(work, ignore_errors=True)
    check = frontend_check(bundle, wavs, frames, utterances, "mcu")
    check.pop("host_frames")
    return check | {"frames": [torch.from_numpy(f) for f in frames]}


def check_arenas(bundle: Path, manifest: dict, report=quiet) -> dict:
    """Whether each graph allocates and runs in TFLite Micro in the arenas the manifest gives
    (and model_data.h defines): the shared one the firmware allocates, which the checks run in
    (a graph that does not fit it stops them here), and the graph's own."""
    from amc.targets.backends.tflite_micro import arena_fits

    mcu = manifest["mcu"]
    shared = int(mcu["shared_arena_bytes"])
    own = {}
    for done, graph in enumerate(GRAPHS):
        report("arenas in TFLite Micro", done, len(GRAPHS))
        data = (bundle / manifest["graphs"][graph]["file"]).read_bytes()
        if not arena_fits(data, shared):
            raise AmcError(f"{bundle}: graph '{graph}' does not run in TFLite Micro in the manifest's shared arena of "
                           f"{shared} bytes (AMC_TENSOR_ARENA_BYTES): recompile the bundle")
        own[graph] = {"bytes": int(mcu["arena_bytes"][graph]), "fits": arena_fits(data, mcu["arena_bytes"][graph])}
    report("arenas in TFLite Micro", len(GRAPHS), len(GRAPHS))
    return {"shared_bytes": shared, "graphs": own, "fits": all(g["fits"] for g in own.values())}


def _as_streamed(trace: dict) -> dict:
    """An `evaluate_bundle` trace in the form `compare_streams` reads from a board."""
    return {"routes": "".join("F" if f else "S" for f in trace["fast"]), "text": trace["hypothesis"],
            "latency_ms": float(trace["backlog_ms"][-1]) if len(trace["backlog_ms"]) else 0.0}


def _package_version(name: str) -> str:
    from importlib.metadata import PackageNotFoundError, version

    try:
        return version(name)
    except PackageNotFoundError:
        return "unknown"


def patch_mcu_bundle(target: Target, bundle: Path, recording: Recording, micro_outputs: dict, work: Path,
                     report=quiet) -> dict:
    """The weight update of `make_weight_update`, applied to a copy of the bundle by the C runtime
    (the host build of `amc-patch`: the same apply code the bare-metal suites run on the preset),
    then the patched graphs in TFLite Micro against the new bundle's, on the recorded inputs."""
    from amc.compiler.bundle import load_bundle
    from amc.runtime.apply import apply_patch, host_cli

    bare_metal = (f"the patch runtime's bare-metal suites run on {target.name} under qemu-system-arm in "
                  f"`amc runtime test --target {target.name}` (test files of up to 96 KiB a case); whole bundles "
                  f"of up to 1.5 MiB are patched bare-metal on cortex-m7 by `amc bench diff --cortex-m7 BUNDLE`")
    try:
        host_cli(report)
    except AmcError as missing:
        return {"skipped": str(missing), "patched_equal": None, "bare_metal": bare_metal}
    new_bundle, blob, public = make_weight_update(bundle, work)
    device_bundle = work / "device-bundle"          # the device's storage: a copy of the deployed bundle
    shutil.copytree(bundle, device_bundle, ignore=shutil.ignore_patterns(".amc-patch"))
    applied = apply_patch(device_bundle, blob, public, report)
    manifest = json.loads((new_bundle / "manifest.json").read_text())
    names = [manifest["graphs"][g]["file"] for g in GRAPHS]
    files_equal = all((device_bundle / n).read_bytes() == (new_bundle / n).read_bytes() for n in names)
    report("patched graphs in TFLite Micro", 0, 1)
    patched = host_outputs(load_bundle(device_bundle, runtime="tflite-micro"), recording.inputs)
    expected = host_outputs(load_bundle(new_bundle, runtime="tflite-micro"), recording.inputs)
    report("patched graphs in TFLite Micro", 1, 1)
    comparison = compare_outputs(manifest, expected, patched)
    changed = any(not np.array_equal(a, b) for g in ("fast", "slow")
                  for ra, rb in zip(patched[g], micro_outputs[g]) for a, b in zip(ra, rb))
    return {"applied_by": "amc-patch (the C runtime, host build)", "bare_metal": bare_metal,
            "blob_bytes": blob.stat().st_size, "version": applied.version, "files": applied.files,
            "files_equal": files_equal, "outputs_changed": changed,
            "max_int8_step_diff": comparison["max_int8_step_diff"],
            "patched_equal": bool(files_equal and comparison["max_int8_step_diff"] == 0.0),
            "runtime": applied.runtime_output}
