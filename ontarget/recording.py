"""What the host side of an on-target test holds: the bundle to test, recorded graph inputs and
the host's outputs on them, a weight update to patch with, and the comparisons of a board's
outputs and streams against the host's."""

from __future__ import annotations

import os
import shutil
from dataclasses import dataclass
from pathlib import Path

import numpy as np

from amc.common.errors import AmcError, InputError
from amc.common.paths import build_root
from amc.common.progress import quiet
from amc.targets.presets import Target

WORK_ROOT = build_root() / "ondevice"
GRAPHS = ("fast", "slow", "arbitrator")


@dataclass
class Settings:
    utterances: int = 4              # streamed end to end on the board
    records_per_graph: int = 96      # recorded inputs each graph runs on the board
    mflops: float | None = None      # processor speed for the backlog (default: the model's nominal)
    patch: bool = True               # the amc-patch step


# ---- 2. the bundle ------------------------------------------------------------------------------

def resolve_bundle(target: Target, bundle: Path | str | None, backend: str | None, report=quiet) -> Path:
    """The bundle to test: the one given, else `out/<target>-<backend>`, compiled when missing."""
    from amc.compiler.manifest import read_manifest
    from amc.targets.presets import check_backend

    if bundle is None:
        from amc.compiler.pipeline import compile_bundle, default_output

        backend = check_backend(target, backend)
        bundle = default_output(target.name, backend)
        if not (bundle / "manifest.json").is_file():
            compile_bundle(target=target.name, backend=backend, output=bundle, report=report)
    bundle = Path(bundle)
    manifest = read_manifest(bundle)
    check_bundle_target(bundle, manifest, target)
    if backend is not None and manifest["backend"] != backend:
        raise InputError(f"{bundle}: bundle is for backend '{manifest['backend']}', not '{backend}'")
    return bundle


def check_bundle_target(bundle: Path, manifest: dict, target: Target) -> None:
    if manifest.get("target") != target.name:
        raise InputError(f"{bundle}: bundle is for target '{manifest.get('target')}', not '{target.name}': "
                         f"compile one with `amc compile --target {target.name}`")


def default_data(report=quiet) -> Path:
    """Utterances to stream: the held-out split of the reproducible calibration corpus."""
    from amc.calibration.audio import default_corpus

    return default_corpus(report) / "test"


# ---- 4. recorded inputs and host outputs ----------------------------------------------------------

@dataclass
class Recording:
    inputs: dict[str, list[list[np.ndarray]]]
    outputs: dict[str, list[list[np.ndarray]]]


def load_utterances(data: Path | str | None, config, most: int, report=quiet):
    """The audio folder's features (default: the calibration corpus's test split) and the first
    `most` utterances of it, as arrays."""
    from amc.model.feature_set import load_features

    data_dir = Path(data) if data is not None else default_data(report)
    features = load_features(data_dir, config.features, report)
    if not len(features):
        raise InputError(f"{data_dir}: no utterances")
    return features, [features.features[i].numpy() for i in range(min(most, len(features)))]


def audio_files(data: Path | str | None, report=quiet) -> list[Path]:
    """The WAV files of the audio folder the harness streams (default: the calibration corpus's test split)."""
    from amc.model.corpus.audio_folder import read_audio_folder

    return [Path(u.path) for u in read_audio_folder(Path(data) if data is not None else default_data(report))]


def frontend_tables(bundle) -> bytes:
    """The bundle's front-end table file, or a one-line error saying how to get one."""
    entry = bundle.manifest.get("frontend")
    if entry is None or not (Path(bundle.path) / entry["file"]).is_file():
        raise InputError(f"{bundle.path}: the bundle has no front end (frontend.bin), so a board cannot "
                         f"hear audio with it: compile it again with this amc")
    return (Path(bundle.path) / entry["file"]).read_bytes()


def frontend_check(bundle, wavs: list[Path], device_frames: list[np.ndarray],
                   training_frames: list[np.ndarray], device_label: str) -> dict:
    """The device's frames against the host build of the same C front end (equal to the bit, or
    not: `<device_label>_equals_host_c`) and against the training features (each graph's int8
    `features` input, in quantization steps). `host_frames`: the host C's frames, what
    `amc transcribe` streams on the host."""
    import torch

    from amc.runtime.frontend import CFrontEnd, against_graph_inputs, pcm_of

    front = CFrontEnd.from_tables(frontend_tables(bundle))
    host_frames = [front.frames(pcm_of(path)) for path in wavs]
    equal = len(host_frames) == len(device_frames) and all(
        h.shape == d.shape and h.tobytes() == d.tobytes() for h, d in zip(host_frames, device_frames))
    return {f"{device_label}_equals_host_c": bool(equal),
            **against_graph_inputs(bundle.manifest, device_frames, training_frames),
            "host_frames": [torch.from_numpy(f) for f in host_frames]}


def record_graph_inputs(bundle, utterances: list[np.ndarray], per_graph: int, mflops: float) -> Recording:
    """Stream on the host as the device does (arbitrator with the live backlog, the chosen
    branch's state carried on) and record each graph's inputs; both branches run on every frame
    so that each sees the states the other one produced."""
    from amc.model.evaluate import _softmax
    from amc.model.routing import BranchCosts, advance_backlog

    config = bundle.config
    costs = BranchCosts(**{g: 2 * bundle.macs[g] / 1e6 for g in GRAPHS}).ms(mflops)
    inputs: dict[str, list] = {g: [] for g in GRAPHS}
    outputs: dict[str, list] = {g: [] for g in GRAPHS}

    def keep(graph: str, args: list[np.ndarray], result: list[np.ndarray]) -> None:
        if len(inputs[graph]) < per_graph:
            inputs[graph].append([np.array(a, np.float32, copy=True) for a in args])
            outputs[graph].append([np.array(r, copy=True) for r in result])

    for frames in utterances:
        h = np.zeros((1, config.state_dim), np.float32)
        c = np.zeros((1, config.state_dim), np.float32)
        backlog = 0.0
        for frame in frames:
            if all(len(inputs[g]) >= per_graph for g in GRAPHS):
                return Recording(inputs, outputs)
            x = frame[None, :].astype(np.float32)
            b = np.array([[backlog]], np.float32)
            route_logits = bundle.step("arbitrator", x, b, h)
            keep("arbitrator", [x, b, h], route_logits)
            go_fast = bool(_softmax(route_logits[0])[0, 1] > config.route_threshold)
            results = {}
            for graph in ("fast", "slow"):
                results[graph] = bundle.step(graph, x, h, c)
                keep(graph, [x, h, c], results[graph])
            _, h, c = results["fast" if go_fast else "slow"]
            backlog = advance_backlog(backlog, costs.arbitrator + (costs.fast if go_fast else costs.slow),
                                      config.features.frame_ms)
    return Recording(inputs, outputs)


def host_outputs(bundle, inputs: dict[str, list[list[np.ndarray]]]) -> dict[str, list[list[np.ndarray]]]:
    return {g: [[np.array(o, copy=True) for o in bundle.step(g, *record)] for record in inputs[g]] for g in inputs}


def compare_outputs(manifest: dict, host: dict[str, list], device: dict[str, list]) -> dict:
    """Largest difference of each graph output in its quantization steps (|device - host| / scale
    for float values: float I/O around an int8 graph, or int8 I/O the runner dequantized; the
    integer difference for integer values)."""
    per_graph, compared, worst = {}, 0, 0.0
    for graph in GRAPHS:
        specs = manifest["graphs"][graph]["outputs"]
        graph_worst, values = 0.0, 0
        if len(host[graph]) != len(device[graph]):
            raise AmcError(f"graph '{graph}': {len(device[graph])} output records on the board, "
                           f"{len(host[graph])} on the host")
        for host_record, device_record in zip(host[graph], device[graph]):
            for spec, h, d in zip(specs, host_record, device_record):
                h, d = np.asarray(h).reshape(-1), np.asarray(d).reshape(-1)
                if h.shape != d.shape:
                    raise AmcError(f"graph '{graph}': output '{spec['name']}' has {d.size} values on the board, "
                                   f"{h.size} on the host")
                diff = np.abs(d.astype(np.float64) - h.astype(np.float64))
                if np.issubdtype(h.dtype, np.floating):
                    diff = diff / (spec.get("scale") or 1.0)
                graph_worst = max(graph_worst, float(diff.max()) if diff.size else 0.0)
                values += h.size
        per_graph[graph] = {"records": len(host[graph]), "values": values,
                            "max_step_diff": round(graph_worst, 4)}
        compared += values
        worst = max(worst, graph_worst)
    return {"outputs_compared": compared, "max_int8_step_diff": round(worst, 4), "graphs": per_graph}


def compare_streams(host_traces: list[dict], device: list[dict], device_label: str = "board") -> dict:
    if len(device) != len(host_traces):
        raise AmcError(f"the {device_label} streamed {len(device)} utterances, the host {len(host_traces)}")
    transcripts, routes_equal, latency, frames, rerouted = [], True, 0.0, 0, 0
    for trace, streamed in zip(host_traces, device):
        host_routes = "".join("F" if f else "S" for f in trace["fast"])
        device_routes = streamed.get("routes", "")
        routes_equal &= device_routes == host_routes
        rerouted += sum(a != b for a, b in zip(host_routes, device_routes)) + abs(len(host_routes) - len(device_routes))
        latency = max(latency, abs(float(streamed.get("latency_ms", -1.0)) - float(trace["backlog_ms"][-1]
                                                                                   if len(trace["backlog_ms"]) else 0.0)))
        frames += len(host_routes)
        transcripts.append({"host": trace["hypothesis"], device_label: streamed.get("text", ""),
                            "fast_frames": int(np.sum(trace["fast"])), "frames": len(host_routes)})
    return {"transcripts_equal": all(t["host"] == t[device_label] for t in transcripts),
            "routes_equal": bool(routes_equal), "route_frames_differing": rerouted,
            "max_latency_diff_ms": round(latency, 6), "frames": frames, "transcripts": transcripts}


# ---- 6. the patch step -------------------------------------------------------------------------

def make_weight_update(bundle: Path, into: Path, seed: int = 6, fraction: float = 0.05,
                       version: int = 2, key: bytes | None = None) -> tuple[Path, Path, bytes]:
    """A new bundle that differs from `bundle` in some int8 weights (a sparse update of every
    weight-mapped tensor of the slow and fast graphs, as a neural diff produces) and the `.amcp`
    blob from one to the other, signed with `key` (default: a key made for this update alone).
    Returns (new bundle, blob, public key)."""
    from amc.compiler.manifest import read_manifest
    from amc.patch import blob as pb
    from amc.runtime.apply import update_manifest

    manifest = read_manifest(bundle)
    rng = np.random.default_rng(seed)
    new_bundle = into / "new-bundle"
    if new_bundle.exists():
        shutil.rmtree(new_bundle)
    shutil.copytree(bundle, new_bundle, ignore=shutil.ignore_patterns(".amc-patch"))
    names = [manifest["graphs"][g]["file"] for g in ("fast", "slow")]
    base = {name: (bundle / name).read_bytes() for name in names}
    new = {name: bytearray(data) for name, data in base.items()}
    records = []
    for entry in sorted(manifest["weight_map"], key=lambda e: (names.index(e["file"]) if e["file"] in names else 9,
                                                               e["offset"])):
        if entry["file"] not in names or entry["dtype"] != "int8":
            continue
        start, length = entry["offset"], entry["length"]
        region = np.frombuffer(base[entry["file"]][start:start + length], np.int8).astype(np.int16)
        count = max(1, int(length * fraction))
        where = rng.choice(length, size=count, replace=False)
        updated = region.copy()
        updated[where] = np.clip(updated[where] + rng.choice([-3, -2, -1, 1, 2, 3], size=count), -127, 127)
        new_region = updated.astype(np.int8).tobytes()
        record = pb.sparse_record_from_diff(names.index(entry["file"]), start, region.astype(np.int8).tobytes(),
                                            new_region)
        if record is not None:
            records.append(record)
            new[entry["file"]][start:start + length] = new_region
    if not records:
        raise InputError(f"{bundle}: the weight map names no int8 weights of the fast and slow graphs to update")
    key = key or os.urandom(32)    # a key made for this check alone: the blob never leaves the work folder
    blob, produced = pb.make_blob(base, records, version, key)
    for name in names:
        if produced[name] != bytes(new[name]):
            raise AmcError(f"the blob writer's result for {name} differs from the update")
        (new_bundle / name).write_bytes(produced[name])
    update_manifest(new_bundle, names)
    blob_path = into / "update.amcp"
    blob_path.write_bytes(blob)
    return new_bundle, blob_path, pb.public_key(key)
