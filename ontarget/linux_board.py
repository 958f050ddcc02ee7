"""A Linux board under qemu-user (rpi4, rpi3): amc-runner (ExecuTorch bundles) or the board's own
Python (TFLite bundles) on the board's CPU, the patch applied there by amc-patch, and the whole
on-target test of such a board (steps 1-6 of amc.ontarget.harness)."""

from __future__ import annotations

import json
import shutil
import tempfile
import time
from pathlib import Path

import numpy as np

from amc.common.errors import AmcError, InputError, ToolMissingError
from amc.common.progress import quiet
from amc.ontarget.recording import (
    GRAPHS,
    WORK_ROOT,
    Recording,
    Settings,
    load_utterances,
    compare_outputs,
    audio_files,
    compare_streams,
    frontend_check,
    frontend_tables,
    host_outputs,
    make_weight_update,
    record_graph_inputs,
    resolve_bundle,
)
from amc.model.feature_set import FeatureSet
from amc.targets.presets import Target

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

    hears_audio = True
    """The board computes its own frames from PCM, with the C front end."""

    def frontend_options(self) -> list:
        return []           # amc-runner links the front end in

    def transcribe(self, bundle: Path, wavs: list[Path], mflops: float) -> list[dict]:
        from amc.targets.amc_runner import parse_stream

        return parse_stream(self.run_bundle_tool(["transcribe", bundle, *wavs, "--mflops", repr(float(mflops)),
                                                  *self.frontend_options()], "transcribing"))

    def frames(self, bundle: Path, wavs: list[Path], work: Path) -> list[np.ndarray]:
        from amc.targets.amc_runner import read_features

        out = work / "board-frames.amcf"
        self.run_bundle_tool(["features", bundle, *wavs, out, *self.frontend_options()], "front end")
        return read_features(out)


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

    def frontend_options(self) -> list:
        """The board's build of the C front end, which the script loads with ctypes."""
        from amc.runtime.frontend import build_frontend
        return ["--frontend-lib", build_frontend(self.target.name).shared_library]

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


def check_board(board: Board, bundle: Path, host_bundle, data, settings: Settings, mflops: float, work: Path,
                report=quiet) -> tuple[dict, Recording]:
    """Steps 4 and 5 on `board`: each graph on recorded inputs, then utterances streamed end to end
    (WAV audio in where the board has the front end), against the host. Returns the figures and
    the recording (the patch step runs the graphs on it again)."""
    from amc.model.evaluate import evaluate_bundle

    features, utterances = load_utterances(data, host_bundle.config, settings.utterances, report)
    count = len(utterances)
    report("record host inputs", 0, 1)
    recording = record_graph_inputs(host_bundle, utterances, settings.records_per_graph, mflops)
    report("record host inputs", 1, 1)
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
    front = None
    report("stream on the board", 0, 1)
    if board.hears_audio:
        frontend_tables(host_bundle)                   # a clear error before any board run
        wavs = audio_files(data, report)[:count]
        streamed = board.transcribe(bundle, wavs, mflops)
        front = frontend_check(host_bundle, wavs, board.frames(bundle, wavs, work), utterances, "board")
        heard = front.pop("host_frames")           # what `amc transcribe` computes on the host
    else:
        streamed = board.stream(bundle, utterances, mflops, work)
        heard = features.subset(range(count)).features
    report("stream on the board", 1, 1)
    host = evaluate_bundle(host_bundle, FeatureSet(list(heard), features.texts[:count], features.files[:count]),
                           mflops=mflops, keep_traces=True)["traces"]
    streaming = compare_streams(host, streamed)
    checks = {
        "outputs_compared": graphs["outputs_compared"],
        "max_int8_step_diff": graphs["max_int8_step_diff"],
        "graphs": graphs["graphs"],
        "utterances": count, "frames": streaming["frames"], "mflops": mflops,
        "audio_in": board.hears_audio,
        "frontend_max_step_diff": front["max_step_diff"] if front else None,
        "frontend": front,
        "transcripts_equal": streaming["transcripts_equal"], "routes_equal": streaming["routes_equal"],
        "route_frames_differing": streaming["route_frames_differing"],
        "max_latency_diff_ms": streaming["max_latency_diff_ms"],
        "transcripts": streaming["transcripts"],
    }
    if exact is not None:
        checks["reference_kernels"] = {"outputs_compared": exact["outputs_compared"],
                                       "max_int8_step_diff": exact["max_int8_step_diff"], "graphs": exact["graphs"]}
    checks["ok"] = bool(checks["max_int8_step_diff"] <= 1.0 and checks["transcripts_equal"]
                        and (front is None or front["board_equals_host_c"]) and checks["routes_equal"]
                        and (exact is None or exact["max_int8_step_diff"] == 0.0))
    return checks, recording


# ---- the whole test -------------------------------------------------------------------------------

def test_linux_board(target: Target, bundle: Path | str | None, backend: str | None, data: Path | str | None,
                     settings: Settings, report=quiet) -> dict:
    """Steps 1-6 for a Linux board (amc.ontarget.harness); returns the figures."""
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
    WORK_ROOT.mkdir(parents=True, exist_ok=True)
    work = Path(tempfile.mkdtemp(prefix=f"{target.name}-", dir=WORK_ROOT))
    try:
        checks, recording = check_board(board, bundle, host_bundle, data, settings, mflops, work, report)
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
        **checks,
        "patched_equal": patch["patched_equal"] if patch else None,
        "patch": patch,
        "seconds": round(time.monotonic() - started, 1),
    }
    result["ok"] = bool(checks["ok"] and result["patched_equal"] is not False)
    return result
