"""`compile_bundle`: checkpoint -> three int8 step graphs for one target and backend, and the
front end's tables -> a verified bundle directory. The steps run top to bottom; each is named in the progress report."""

from __future__ import annotations

import shutil
import time
from pathlib import Path

import numpy as np

from amc.common.atomic import replace_directory, staging_directory
from amc.common.errors import AmcError, InputError
from amc.common.progress import Report, quiet
from amc.compiler.manifest import SCHEMA, SCHEMA_VERSION, sha256_file, tool_versions, write_manifest
from amc.compiler.split import DEFAULT_PASSES, GRAPHS, split_model
from amc.runtime.frontend import BUNDLE_FILE as FRONTEND_FILE
from amc.runtime.frontend import manifest_entry as frontend_entry
from amc.runtime.frontend import table_bytes as frontend_tables
from amc.targets.backends import get_backend
from amc.targets.lowered import LoweredGraph
from amc.targets.step_graph import StepGraph


def default_output(target: str, backend: str) -> Path:
    return Path("out") / f"{target}-{backend}"


def compile_bundle(checkpoint: Path | str | None = None, target: str = "rpi4", backend: str | None = None,
                   calib: Path | str | None = None, variant: str = "int8", output: Path | str | None = None,
                   passes: tuple[str, ...] = DEFAULT_PASSES, verify: bool = True, report: Report = quiet) -> dict:
    from amc.model.checkpoint import REFERENCE, load_checkpoint
    from amc.targets.presets import check_backend, get_target

    started = time.monotonic()
    # 1. target and backend: refuse before any work
    preset = get_target(target)
    backend = check_backend(preset, backend)
    variants = get_backend(backend).variants
    if variant not in variants:
        raise InputError(f"variant '{variant}' is not available for backend '{backend}': "
                         f"use one of {', '.join(variants)}")
    lowering = get_backend(backend).module
    lowering.check_toolchain()
    micro = not preset.linux                  # a microcontroller runs its .tflite graphs in TFLite Micro
    output = Path(output) if output is not None else default_output(preset.name, backend)

    # 2. the float model
    checkpoint = Path(checkpoint) if checkpoint is not None else REFERENCE
    model = load_checkpoint(checkpoint)
    config = model.config
    float_bytes = sum(t.numel() * t.element_size() for t in model.state_dict().values())

    # 3. calibration and verification audio
    from amc.calibration.audio import load_calibration_audio
    audio = load_calibration_audio(Path(calib) if calib is not None else None, config.features, report)

    # 4. split into three step graphs, float passes
    report("split and float passes", 0, 1)
    steps = split_model(model, passes)
    report("split and float passes", 1, 1)

    # 5. calibration inputs per graph, streamed with the arbitrator at the target's speed
    from amc.calibration.step_inputs import gather
    calibration = gather(model, audio.calibration.features, preset.mflops,
                         max_samples=lowering.CALIBRATION_FRAMES, report=report)

    # 6. lower each graph
    lowered: dict[str, LoweredGraph] = {}
    for index, graph in enumerate(GRAPHS):
        report(f"lower ({backend})", index, len(GRAPHS))
        lowered[graph] = lowering.lower(steps[graph], calibration.inputs[graph], calibration.state_ranges,
                                        variant=variant)
    report(f"lower ({backend})", len(GRAPHS), len(GRAPHS))

    staging = staging_directory(output)
    try:
        result = _write_bundle(staging, output, model, checkpoint, preset, backend, variant, steps, lowered,
                               calibration, audio, float_bytes, micro, verify, passes, report)
        result["compile_seconds"] = round(time.monotonic() - started, 1)
        _finish_report(staging, result)
        replace_directory(staging, output)
    except BaseException:
        shutil.rmtree(staging, ignore_errors=True)
        raise
    result["bundle"] = str(output)
    return result


def _write_bundle(staging: Path, output: Path, model, checkpoint: Path, preset, backend: str, variant: str,
                  steps: dict[str, StepGraph], lowered: dict[str, LoweredGraph], calibration, audio,
                  float_bytes: int, micro: bool, verify: bool, passes: tuple[str, ...], report) -> dict:
    from amc.compiler import weight_map
    from amc.compiler.cost import macs_per_frame

    extension = get_backend(backend).extension
    files = {}
    graphs: dict[str, dict] = {}
    entries: list[dict] = []
    notes: list[str] = list(calibration.notes)
    # 7. graph files, weight map (checked against the bytes, and requantization checked exact)
    for graph in GRAPHS:
        low = lowered[graph]
        name = f"{graph}{extension}"
        (staging / name).write_bytes(low.data)
        files[name] = low.data
        graph_entries, graph_notes = weight_map.build(low, name, steps[graph])
        constants = steps[graph].constants()
        for entry in graph_entries:
            source = constants.get(entry["attr"])
            if source is None:
                raise AmcError(f"graph '{graph}': weight map entry '{entry['attr']}' has no float source")
            if weight_map.requantize(entry, source.numpy()) != low.data[entry["offset"]:entry["offset"] + entry["length"]]:
                raise AmcError(f"graph '{graph}': requantizing '{entry['attr']}' with its frozen scales does "
                               f"not reproduce the file bytes")
        entries += graph_entries
        notes += [f"{graph}: {n}" for n in graph_notes + low.notes]
        macs = macs_per_frame(steps[graph])
        graphs[graph] = {
            "file": name, "bytes": len(low.data), "sha256": sha256_file(staging / name),
            "inputs": [t.to_json() for t in low.inputs], "outputs": [t.to_json() for t in low.outputs],
            "macs_per_frame": macs["dense"], "macs_per_frame_nonzero": macs["nonzero"],
            "weight_bytes": sum(e["length"] for e in graph_entries),
            "passes": steps[graph].passes_applied, "ops": low.ops,
            "memory": {"state_bytes": 0, **low.extra.get("memory", {})},
        }
    # the front end's tables, for the C front end every device runs on PCM (device/frontend)
    tables = frontend_tables(model.config.features)
    (staging / FRONTEND_FILE).write_bytes(tables)
    problems = weight_map.check(entries, files)
    if problems:
        raise AmcError(f"weight map does not match the files: {problems[0]}")
    state_dim = model.config.state_dim
    state = _state_quantization(lowered)
    for graph in GRAPHS:
        io_bytes = sum(int(np.prod(t["shape"])) * _itemsize(t["dtype"]) for t in graphs[graph]["inputs"] + graphs[graph]["outputs"])
        graphs[graph]["memory"]["io_bytes"] = io_bytes
        graphs[graph]["memory"]["state_bytes"] = 2 * state_dim * _itemsize(state["dtype"]) if graph != "arbitrator" else 0

    # 8. MCU: TFLite Micro arenas, budgets, C sources
    mcu = None
    if micro:
        from amc.targets.backends import tflite_micro
        report("tflite-micro arena", 0, 1)
        mcu = tflite_micro.plan(preset, {g: staging / graphs[g]["file"] for g in GRAPHS}, state)
        for graph in GRAPHS:
            graphs[graph]["memory"]["arena_bytes"] = mcu["arena_bytes"][graph]
        mcu["frontend_tables_bytes"] = len(tables)          # in flash beside the graphs
        mcu["flash_need_bytes"] += len(tables)
        tflite_micro.check_budget(preset, mcu)
        tflite_micro.write_c_sources(staging, {g: files[graphs[g]["file"]] for g in GRAPHS}, mcu, state, tables)
        report("tflite-micro arena", 1, 1)

    manifest = {
        "schema": SCHEMA, "schema_version": SCHEMA_VERSION, "tools": tool_versions(),
        "target": preset.name, "backend": backend, "variant": variant,
        "model": {"checkpoint": str(checkpoint), "config": model.config.to_json(), "float_bytes": float_bytes,
                  "safetensors_sha256": sha256_file(checkpoint / "model.safetensors")},
        "passes": list(passes),
        "state": state,
        "graphs": graphs,
        "frontend": frontend_entry(model.config.features, tables),
        "weight_map": entries,
    }
    if mcu:
        manifest["mcu"] = mcu
    write_manifest(staging, manifest)

    int8_bytes = sum(graphs[g]["bytes"] for g in GRAPHS)
    result = {
        "bundle": str(output), "target": preset.name, "backend": backend, "variant": variant,
        "float_bytes": float_bytes, "bundle_graph_bytes": int8_bytes,
        "size_ratio": round(int8_bytes / float_bytes, 4),
        "graphs": {g: {"file": graphs[g]["file"], "bytes": graphs[g]["bytes"],
                       "macs_per_frame": graphs[g]["macs_per_frame"],
                       "weight_dtypes": sorted({e["dtype"] for e in entries if e["graph"] == g}),
                       "memory": graphs[g]["memory"]} for g in GRAPHS},
        "state": state,
        "calibration": calibration.summary() | audio.summary(),
        "weight_map_entries": len(entries),
        "notes": notes,
    }
    if mcu:
        result["mcu"] = {k: v for k, v in mcu.items() if k != "arena_bytes"} | {"arena_bytes": mcu["arena_bytes"]}
    # 9. verification in the real runtimes
    if verify:
        result["verification"] = _verify(staging, model, preset, backend, micro, calibration, audio, report)
        macs = {g: graphs[g]["macs_per_frame"] for g in GRAPHS}
        fraction = result["verification"]["accuracy"].get("int8", {}).get("fast_fraction", calibration.fast_fraction)
        result["amortized_macs_per_frame"] = round(
            macs["arbitrator"] + fraction * macs["fast"] + (1 - fraction) * macs["slow"])
        result["amortized_vs_slow"] = round(result["amortized_macs_per_frame"] / max(1, macs["slow"]), 4)
    return result


def _verify(staging: Path, model, preset, backend: str, micro: bool, calibration, audio, report) -> dict:
    from amc.compiler import verify
    from amc.compiler.bundle import Bundle

    bundle = Bundle(staging)
    samples = verify.verification_samples(model, audio.verification, calibration.inputs, preset.mflops)
    out = {}
    report("verify: one frame", 0, 1)
    out["one_frame"] = verify.one_frame_snr(model, bundle, samples)
    report("verify: 10 s stream", 0, 1)
    out["stream"] = verify.stream_snr(model, bundle, audio.verification if audio.verification.features
                                      else audio.calibration)
    report("verify: CER", 0, 1)
    out["accuracy"] = verify.accuracy(model, bundle, audio.verification, preset.mflops)
    report("verify: front end", 0, 1)
    out["frontend"] = verify.frontend(staging, bundle, audio.verification, preset.mflops,
                                      out["accuracy"].get("int8", {}).get("cer"))
    report("verify: timing", 0, 1)
    out["timing"] = verify.timing(bundle, samples)
    chosen = get_backend(backend)
    out["timing"]["runtime"] = chosen.python_runtime
    report("verify: native timing", 0, 1)
    out["timing"]["native"] = verify.native_timing(staging, backend)
    if chosen.invoke_timing:
        out["timing"]["invoke"] = chosen.invoke_timing(staging, bundle.manifest)
    if chosen.cross_check:
        out["runtimes"] = chosen.cross_check(staging, bundle.manifest, samples, micro)
    return out


def _state_quantization(lowered: dict[str, LoweredGraph]) -> dict:
    """The state tensors' quantization, which must be the same in fast and slow."""
    state = {}
    for tensor in ("h", "c"):
        specs = {}
        for graph in ("fast", "slow"):
            by_name = {t.name: t for t in lowered[graph].inputs + lowered[graph].outputs}
            specs[graph] = [(by_name[n].scale, by_name[n].zero_point) for n in (tensor, f"{tensor}_next")]
        first = specs["slow"][0]
        if any(pair != first for graph in specs for pair in specs[graph]):
            raise AmcError(f"state '{tensor}' is quantized differently in fast and slow: {specs}")
        state[tensor] = {"scale": first[0], "zero_point": first[1]}
    dtype = lowered["slow"].inputs[1].dtype
    state["dtype"] = dtype
    return state


def _itemsize(dtype: str) -> int:
    return np.dtype(dtype).itemsize


def _finish_report(staging: Path, result: dict) -> None:
    import json

    from amc.compiler.report import render_markdown

    (staging / "report.json").write_text(json.dumps(result, indent=1, default=str) + "\n")
    (staging / "report.md").write_text(render_markdown(result))
