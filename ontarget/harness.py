"""`amc test --target T`: prove a bundle on the board's own CPU, under QEMU.

For a Linux board (rpi4) the steps run top to bottom:

1. tools: the cross compilers, the sysroot and qemu-user, or a one-line install hint;
2. the bundle: the one given, or `out/<target>-<backend>` (compiled from the reference
   checkpoint when missing); it must be for this target;
3. the device runtime: for an ExecuTorch bundle the executorch aarch64 wheel (cached) and
   amc-runner built against it; for a TFLite bundle the board's own CPython with the aarch64
   wheels of numpy and ai-edge-litert (targets/board_python.py) running device/board/tflite_board.py,
   the graphs also in LiteRT's reference kernels (`reference_kernels`: the same integers on
   every instruction set, while XNNPACK's int8 kernels for ARM and x86-64 may round apart);
4. graphs: a few utterances streamed on the host record every graph's inputs (the arbitrator
   with the live backlog, both branches with the carried state); the board runs each graph on
   those inputs and its outputs are compared with the host's from the same runtime, in
   quantization steps of each output;
5. streaming: the same utterances end to end through amc-runner on the board: routes,
   transcripts and end-of-utterance latency against `evaluate_bundle` on the host;
6. patch: a weight update of the bundle as a signed `.amcp` blob, applied in place on the board
   by the runtime's `amc-patch` (resume first, as at boot), then the patched graphs run on the
   board and are compared with the new bundle's outputs on the host.

For a microcontroller preset (cortex-m4, cortex-m7) the model half is checked on the host by the
interpreter an MCU runs, TFLite Micro, against ai-edge-litert (`test_mcu_reference`); the patch
runtime's half runs bare-metal under qemu-system-arm in `amc runtime test`:

1. tools: tflite-micro and ai-edge-litert;
2. the bundle: a TFLite bundle for this preset (the one given, or `out/<target>-tflite`); every
   graph must run in TFLite Micro in the manifest's arenas (`check_arenas`);
3. graphs: inputs recorded as in step 4 above from the LiteRT stream; each graph runs on them in
   TFLite Micro with the arena the manifest records for it (what the firmware allocates), and
   its outputs are compared with LiteRT's, in quantization steps; every operator is traced in
   both interpreters to find which kernels round apart and by how much (`kernel_differences`);
4. streaming: the same utterances end to end with every graph in TFLite Micro (the arbitrator
   with the live backlog, `evaluate_bundle`) against the LiteRT stream: routes and transcripts;
5. patch: the weight update of step 6 above applied to a copy of the bundle by the C runtime's
   host `amc-patch` (a bundle's graph files are larger than the bare-metal test program's
   buffers), then the patched graphs run in TFLite Micro against the new bundle's.

TFLite Micro and LiteRT round some kernels apart by one step (docs/benchmarks.md), and a
recurrent int8 graph can carry such a step far, so `ok` asks for at most one step per kernel on
equal inputs and equal routes and transcripts, and reports the graph outputs' differences."""

from __future__ import annotations

import json
import shutil
import tempfile
import time
from dataclasses import dataclass
from pathlib import Path

import numpy as np

from amc.common.paths import build_root
from amc.common.errors import AmcError, InputError, ToolMissingError
from amc.common.progress import quiet
from amc.targets.presets import Target, get_target

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


def _utterances(data: Path | str | None, config, most: int, report=quiet):
    """The audio folder's features (default: the calibration corpus's test split) and the first
    `most` utterances of it, as arrays."""
    from amc.model.feature_set import load_features

    data_dir = Path(data) if data is not None else default_data(report)
    features = load_features(data_dir, config.features, report)
    if not len(features):
        raise InputError(f"{data_dir}: no utterances")
    return features, [features.features[i].numpy() for i in range(min(most, len(features)))]


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


# ---- the board -------------------------------------------------------------------------------------

class Board:
    """A Linux board preset under qemu-user, with amc-runner built for it."""

    def __init__(self, target: Target, report=quiet):
        from amc.targets.amc_runner import build_runner
        from amc.targets.qemu import cross_toolchain, qemu_user

        self.target = target
        self.qemu = qemu_user(target)
        cross_toolchain(target)
        self.runner = build_runner(target.name, report)
        self.library_path = self.runner.library_path
        self.runtime = f"executorch {self.runner.executorch.version} ({self.runner.executorch.wheel.name})"

    def run(self, program: Path, args: list, what: str, timeout: float = 600, accept: tuple[int, ...] = (0,)) -> str:
        from amc.targets.qemu import run_on_board

        result = run_on_board(self.target, program, args, self.library_path, timeout=timeout)
        return _checked(self.target, result, what, accept)

    def run_bundle_tool(self, args: list, what: str, timeout: float = 600) -> str:
        """One command of the board's bundle runner: amc-runner (`graph ...`, `stream ...`)."""
        return self.run(self.runner.program, args, what, timeout)

    def kernel_options(self, exact: bool) -> list[str]:
        """`exact`: the kernels whose integers do not depend on the instruction set, where the
        runtime has such a choice (ExecuTorch: the same kernels either way)."""
        return []

    def run_graphs(self, bundle: Path, inputs: dict[str, list], work: Path, exact: bool = False) -> dict[str, list]:
        """Each graph on the recorded inputs on the board (see `kernel_options` for `exact`)."""
        from amc.targets.amc_runner import read_records, write_records

        out = {}
        for graph in GRAPHS:
            given, produced = work / f"{graph}.in.amcr", work / f"{graph}.out.amcr"
            write_records(given, inputs[graph])
            self.run_bundle_tool(["graph", bundle, graph, given, produced, *self.kernel_options(exact)],
                                 f"graph '{graph}'")
            out[graph] = read_records(produced)
        return out

    def host_outputs(self, bundle: Path, inputs: dict[str, list], exact: bool = False) -> dict[str, list]:
        """The host's outputs of `bundle`'s graphs on the inputs, in the kernels `run_graphs` runs."""
        from amc.compiler.bundle import load_bundle

        return host_outputs(load_bundle(bundle), inputs)

    def stream(self, bundle: Path, utterances: list[np.ndarray], mflops: float, work: Path) -> list[dict]:
        from amc.targets.amc_runner import parse_stream, write_features

        features = write_features(work / "utterances.amcf", utterances)
        return parse_stream(self.run_bundle_tool(["stream", bundle, features, "--mflops", repr(float(mflops))],
                                                 "streaming"))


class LiteRtBoard(Board):
    """A Linux board preset under qemu-user that runs TFLite bundles with ai-edge-litert's aarch64
    wheel in the board's own CPython (targets/board_python.py), through device/board/tflite_board.py;
    native programs (amc-patch) run as on `Board`."""

    def __init__(self, target: Target, report=quiet):
        from amc.targets.board_python import board_python, check
        from amc.targets.qemu import qemu_user

        self.target = target
        report(f"Python and ai-edge-litert for {target.name}", 0, 1)
        self.python = board_python(target)
        self.qemu = qemu_user(target, self.python.sysroot)
        check(self.python)
        report(f"Python and ai-edge-litert for {target.name}", 1, 1)
        self.library_path = []
        self.runtime = self.python.description

    def run_bundle_tool(self, args: list, what: str, timeout: float = 900) -> str:
        return _checked(self.target, self.python.run("tflite_board.py", args, timeout=timeout), what)

    def kernel_options(self, exact: bool) -> list[str]:
        """`exact`: LiteRT's reference kernels (the same integers on every instruction set) instead
        of the optimized ones (XNNPACK, whose int8 kernels for ARM and for x86-64 may round apart)."""
        return ["--kernels", "reference" if exact else "optimized"]

    def host_outputs(self, bundle: Path, inputs: dict[str, list], exact: bool = False) -> dict[str, list]:
        from amc.compiler.manifest import read_manifest
        from amc.targets.backends.tflite import TfliteRunner

        graphs = read_manifest(bundle)["graphs"]
        runners = {g: TfliteRunner(Path(bundle) / graphs[g]["file"], graphs[g], reference_kernels=exact) for g in GRAPHS}
        return {g: [[np.array(o, copy=True) for o in runners[g](*record)] for record in inputs[g]] for g in inputs}


def _checked(target: Target, result, what: str, accept: tuple[int, ...] = (0,)) -> str:
    """The standard output of a finished board program, or an AmcError with its last error line."""
    output = result.stdout.decode(errors="replace")
    if result.returncode not in accept:
        errors = [line for line in result.stderr.decode(errors="replace").splitlines() if "error" in line.lower()]
        raise AmcError(f"{what} failed on {target.name} (qemu, exit status {result.returncode}): "
                       f"{errors[-1] if errors else output.strip().splitlines()[-1:] or ''}")
    return output


# ---- 6. the patch step -------------------------------------------------------------------------

def make_weight_update(bundle: Path, into: Path, seed: int = 6, fraction: float = 0.05,
                       version: int = 2) -> tuple[Path, Path, bytes]:
    """A new bundle that differs from `bundle` in some int8 weights (a sparse update of every
    weight-mapped tensor of the slow and fast graphs, as a neural diff produces) and the signed
    `.amcp` blob from one to the other. Returns (new bundle, blob, public key)."""
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
    key = pb.example_signing_key()
    blob, produced = pb.make_blob(base, records, version, key)
    for name in names:
        if produced[name] != bytes(new[name]):
            raise AmcError(f"the blob writer's result for {name} differs from the update")
        (new_bundle / name).write_bytes(produced[name])
    update_manifest(new_bundle, names)
    blob_path = into / "update.amcp"
    blob_path.write_bytes(blob)
    return new_bundle, blob_path, pb.public_key(key)


def patch_tool(target: Target, report=quiet) -> Path:
    """amc-patch cross-built for the board by the runtime's own build (runtime/build.py)."""
    from amc.runtime.build import build_runtime

    build = build_runtime(target.name, report=report)
    if build.cli is None:
        raise ToolMissingError(f"the {target.name} runtime built without amc-patch: {build.cli_missing}")
    return build.cli


def patch_on_board(board: Board, tool: Path, bundle: Path, recording: Recording, work: Path, report=quiet) -> dict:
    new_bundle, blob, public = make_weight_update(bundle, work)
    device_bundle = work / "device-bundle"          # the board's storage: a copy of the deployed bundle
    if device_bundle.exists():
        shutil.rmtree(device_bundle)
    shutil.copytree(bundle, device_bundle, ignore=shutil.ignore_patterns(".amc-patch"))
    key = work / "update.pub"
    key.write_bytes(public)
    report("patch on the board", 0, 2)
    # boot order (device/boot/amc-apply-pending): finish a half-applied patch first (none
    # here: amc-patch answers status=idle), then apply the pending one
    resumed = board.run(tool, ["resume", "--dir", device_bundle, "--key", key, blob], "amc-patch resume")
    applied = board.run(tool, ["apply", "--dir", device_bundle, "--key", key, blob], "amc-patch apply")
    status = board.run(tool, ["status", "--dir", device_bundle], "amc-patch status")
    report("patch on the board", 1, 2)
    manifest = json.loads((new_bundle / "manifest.json").read_text())
    files_equal = all((device_bundle / n).read_bytes() == (new_bundle / n).read_bytes()
                      for n in [manifest["graphs"][g]["file"] for g in GRAPHS])
    new_host = board.host_outputs(new_bundle, recording.inputs, exact=True)
    device = board.run_graphs(device_bundle, recording.inputs, work, exact=True)
    comparison = compare_outputs(manifest, new_host, device)
    report("patch on the board", 2, 2)
    base_host = board.host_outputs(bundle, recording.inputs, exact=True)
    changed = any(not np.array_equal(a, b) for g in ("fast", "slow")
                  for ra, rb in zip(new_host[g], base_host[g]) for a, b in zip(ra, rb))
    return {"blob_bytes": blob.stat().st_size, "files_equal": files_equal, "outputs_changed": changed,
            "max_int8_step_diff": comparison["max_int8_step_diff"],
            "patched_equal": bool(files_equal and comparison["max_int8_step_diff"] == 0.0),
            "resume": resumed.strip(), "apply": applied.strip(), "status": status.strip()}


# ---- the whole test -------------------------------------------------------------------------------

def test_on_target(target_name: str = "rpi4", bundle: Path | str | None = None, backend: str | None = None,
                   data: Path | str | None = None, settings: Settings | None = None, report=quiet) -> dict:
    """Run the on-target checks for a preset; returns the figures (see the module docstring)."""
    settings = settings or Settings()
    target = get_target(target_name)
    if not target.linux:
        return test_mcu_reference(target, bundle, data, settings, report)
    if not target.triple:
        raise InputError("`amc test` runs the board presets under QEMU (rpi4, rpi3, cortex-m4, cortex-m7); "
                         "host bundles are verified by `amc compile` itself")
    started = time.monotonic()
    # 1. tools, before any long work
    from amc.targets.qemu import cross_toolchain, qemu_user
    qemu_user(target)
    cross_toolchain(target)
    # 2. the bundle
    bundle = resolve_bundle(target, bundle, backend, report)
    from amc.compiler.bundle import load_bundle
    host_bundle = load_bundle(bundle)
    if host_bundle.backend not in ("executorch", "tflite"):
        raise InputError(f"{bundle}: on-target runs cover ExecuTorch and TFLite bundles; this one is "
                         f"'{host_bundle.backend}': compile with `amc compile --target {target.name} "
                         f"--backend executorch`")
    config = host_bundle.config
    mflops = settings.mflops or config.nominal_mflops
    # 3. the device runtime: amc-runner against the executorch wheel, or the board's Python with
    # the ai-edge-litert wheel
    board = Board(target, report) if host_bundle.backend == "executorch" else LiteRtBoard(target, report)
    # 4. graphs on recorded inputs
    features, utterances = _utterances(data, config, settings.utterances, report)
    count = len(utterances)
    report("record host inputs", 0, 1)
    recording = record_graph_inputs(host_bundle, utterances, settings.records_per_graph, mflops)
    report("record host inputs", 1, 1)
    WORK_ROOT.mkdir(parents=True, exist_ok=True)
    work = Path(tempfile.mkdtemp(prefix=f"{target.name}-", dir=WORK_ROOT))
    try:
        report("graphs on the board", 0, 1)
        device = board.run_graphs(bundle, recording.inputs, work)
        report("graphs on the board", 1, 1)
        graphs = compare_outputs(host_bundle.manifest, recording.outputs, device)
        exact = None
        if isinstance(board, LiteRtBoard):      # and in the kernels that round alike on every ISA
            report("graphs on the board, reference kernels", 0, 1)
            exact = compare_outputs(host_bundle.manifest, board.host_outputs(bundle, recording.inputs, exact=True),
                                    board.run_graphs(bundle, recording.inputs, work, exact=True))
            report("graphs on the board, reference kernels", 1, 1)
        # 5. streaming end to end
        from amc.model.evaluate import evaluate_bundle
        report("stream on the board", 0, 1)
        streamed = board.stream(bundle, utterances, mflops, work)
        report("stream on the board", 1, 1)
        host = evaluate_bundle(host_bundle, features.subset(range(count)), mflops=mflops, keep_traces=True)["traces"]
        streaming = compare_streams(host, streamed)
        # 6. the patch, applied on the board
        patch = None
        if settings.patch:
            try:
                tool = patch_tool(target, report)
            except ToolMissingError as missing:
                patch = {"skipped": str(missing), "patched_equal": None}
            else:
                patch = patch_on_board(board, tool, bundle, recording, work, report)
    finally:
        shutil.rmtree(work, ignore_errors=True)
    result = {
        "target": target.name, "bundle": str(bundle), "backend": host_bundle.backend,
        "emulator": " ".join(Path(board.qemu[0]).name if i == 0 else a for i, a in enumerate(board.qemu)),
        "runtime": board.runtime,
        "outputs_compared": graphs["outputs_compared"],
        "max_int8_step_diff": graphs["max_int8_step_diff"],
        "graphs": graphs["graphs"],
        "utterances": count, "frames": streaming["frames"], "mflops": mflops,
        "transcripts_equal": streaming["transcripts_equal"], "routes_equal": streaming["routes_equal"],
        "route_frames_differing": streaming["route_frames_differing"],
        "max_latency_diff_ms": streaming["max_latency_diff_ms"],
        "transcripts": streaming["transcripts"],
        "patched_equal": patch["patched_equal"] if patch else None,
        "patch": patch,
        "seconds": round(time.monotonic() - started, 1),
    }
    if exact is not None:
        result["reference_kernels"] = {"outputs_compared": exact["outputs_compared"],
                                       "max_int8_step_diff": exact["max_int8_step_diff"], "graphs": exact["graphs"]}
    result["ok"] = bool(result["max_int8_step_diff"] <= 1.0 and result["transcripts_equal"]
                        and result["routes_equal"] and result["patched_equal"] is not False
                        and (exact is None or exact["max_int8_step_diff"] == 0.0))
    return result


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


# ---- microcontrollers: the model half on the interpreter an MCU runs ---------------------------------

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
    features, utterances = _utterances(data, config, settings.utterances, report)
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
    # 4. streaming end to end
    subset = features.subset(range(count))
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
                        and result["transcripts_equal"] and result["routes_equal"]
                        and result["patched_equal"] is not False)
    return result


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
