"""amc-runner, the streaming runner of bundles on Linux boards (sources in device/runner/):
cross-compiling it for a preset against the device runtime libraries (or, for the host preset,
building it natively against the installed executorch package), the two little-endian files it
reads and writes (AMCF: utterances of feature frames; AMCR: records of graph tensors), and its
native timing of a bundle's graphs on this machine (`amc-runner bench`)."""

from __future__ import annotations

import json
import os
import shutil
import struct
import subprocess
from dataclasses import dataclass
from pathlib import Path

import numpy as np

from amc.common.errors import AmcError, InputError
from amc.common.paths import build_root, device_sources
from amc.common.progress import quiet
from amc.device.board import tflite_board as tflite_device
from amc.targets.device_libs import DeviceLibs, device_libs, installed_libs
from amc.targets.presets import get_target
from amc.targets.qemu import cross_toolchain, need_tool

SOURCES = device_sources("runner")
BUILD_ROOT = build_root() / "runner"
TOOLCHAIN_FILES = {triple: device_sources("runtime") / "cmake" / f"toolchain-{triple}.cmake"
                   for triple in ("aarch64-linux-gnu", "arm-linux-gnueabihf")}
"""The runner builds with the same toolchain files as the patch runtime."""


@dataclass(frozen=True)
class RunnerBuild:
    target: str
    program: Path
    executorch: DeviceLibs

    @property
    def library_path(self) -> list[Path]:
        return [self.executorch.lib_dir]


def build_runner(target_name: str, report=quiet) -> RunnerBuild:
    """cmake configure (once) and build of device/runner for a Linux preset into build/runner/<target>:
    cross-compiled against the board's wheel, or for `host` natively against the installed package."""
    target = get_target(target_name)
    report(f"runtime libraries for {target.name}", 0, 1)
    if target.triple:
        tools = cross_toolchain(target)
        cmake, compiler = tools.cmake, [f"-DCMAKE_TOOLCHAIN_FILE={TOOLCHAIN_FILES[target.triple]}"]
        executorch = device_libs("executorch", target.triple)
    else:
        cmake = need_tool("cmake", "cmake")
        compiler = [f"-DCMAKE_CXX_COMPILER={need_tool('c++', 'g++')}"]
        executorch = installed_libs("executorch")
    report(f"runtime libraries for {target.name}", 1, 1)
    out = BUILD_ROOT / target.name
    report(f"build amc-runner for {target.name}", 0, 1)
    configure = [cmake, "-S", str(SOURCES), "-B", str(out), "-DCMAKE_BUILD_TYPE=Release", *compiler,
                 f"-DEXECUTORCH_ROOT={executorch.root}", f"-DAMC_RUNNER_TARGET={target.name}",
                 f"-DAMC_RUNNER_CFLAGS={' '.join(f for f in target.cflags if not f.startswith('-O'))}"]
    stamp = out / "amc-configure.txt"
    if not stamp.exists() or stamp.read_text() != "\n".join(configure):
        shutil.rmtree(out, ignore_errors=True)      # a changed toolchain or library needs a fresh tree
        _run(configure, f"cmake configure of amc-runner for {target.name}")
        stamp.write_text("\n".join(configure))
    _run([cmake, "--build", str(out), "-j2"], f"amc-runner build for {target.name}")
    report(f"build amc-runner for {target.name}", 1, 1)
    return RunnerBuild(target.name, out / "amc-runner", executorch)


def _run(cmd: list[str], what: str) -> None:
    try:
        result = subprocess.run(cmd, capture_output=True, text=True, timeout=900)
    except subprocess.TimeoutExpired:
        raise AmcError(f"{what} took more than 900 s") from None
    if result.returncode:
        output = (result.stdout + result.stderr).splitlines()
        first = next((line.strip() for line in output if "error" in line.lower()), output[-1] if output else "")
        raise AmcError(f"{what} failed: {first}")


# ---- AMCF: utterances of feature frames ------------------------------------------------------

def write_features(path: Path, utterances: list[np.ndarray]) -> Path:
    """utterances: (frames, frame_dim) float arrays, all of the same frame_dim."""
    frame_dim = utterances[0].shape[1] if utterances else 0
    with open(path, "wb") as out:
        out.write(b"AMCF" + struct.pack("<III", 1, frame_dim, len(utterances)))
        for frames in utterances:
            frames = np.ascontiguousarray(frames, dtype="<f4")
            if frames.ndim != 2 or frames.shape[1] != frame_dim:
                raise InputError(f"utterance of shape {frames.shape}, expected (frames, {frame_dim})")
            out.write(struct.pack("<I", len(frames)) + frames.tobytes())
    return path


def read_features(path: Path) -> list[np.ndarray]:
    """An AMCF file (what `amc-runner features` writes) -> one (frames, frame_dim) array an utterance."""
    data = Path(path).read_bytes()
    if data[:4] != b"AMCF" or len(data) < 16:
        raise AmcError(f"{path}: not an AMCF file")
    _, frame_dim, count = struct.unpack_from("<III", data, 4)
    at, out = 16, []
    for _ in range(count):
        (frames,) = struct.unpack_from("<I", data, at)
        size = 4 * frames * frame_dim
        out.append(np.frombuffer(data, "<f4", frames * frame_dim, at + 4).reshape(frames, frame_dim).copy())
        at += 4 + size
    return out


# ---- AMCR: records of tensors, in the format the board script defines (numpy only) --------------

def write_records(path: Path, records: list[list[np.ndarray]]) -> Path:
    try:
        tflite_device.write_records(str(path), records)
    except tflite_device.BadInput as error:
        raise InputError(str(error)) from None
    return path


def read_records(path: Path) -> list[list[np.ndarray]]:
    try:
        return tflite_device.read_records(str(path))
    except tflite_device.BadInput as error:
        raise InputError(str(error)) from None


# ---- the stream report ---------------------------------------------------------------------------

def parse_stream(output: str) -> list[dict]:
    """The per-utterance lines of `amc-runner stream` -> [{frames, fast_frames, latency_ms, routes, text}]."""
    utterances: dict[int, dict] = {}
    for line in output.splitlines():
        kind, _, rest = line.partition(" ")
        if kind not in ("utterance", "routes", "text"):
            continue
        index_text, _, value = rest.partition(" ")
        entry = utterances.setdefault(int(index_text), {})
        if kind == "utterance":
            for field in value.split():
                key, _, number = field.partition("=")
                entry[key] = float(number) if key == "latency_ms" else int(number)
        elif kind == "routes":
            entry["routes"] = value
        else:
            entry["text"] = value
    return [utterances[i] for i in sorted(utterances)]


# ---- native timing on this machine ---------------------------------------------------------------

BENCH_FRAMES = 2000
BENCH_WARMUP = 200


def bench_bundle(bundle: Path, frames: int = BENCH_FRAMES, warmup: int = BENCH_WARMUP,
                 single_thread: bool = True, report=quiet) -> dict:
    """`amc-runner bench` of an ExecuTorch bundle with the host runner (built on first use): the
    runtime's own execute call timed in C++, per graph median / p90 / min microseconds. Whatever
    the bundle's target, it measures this machine. Raises ToolMissingError without cmake or a
    C++ compiler, AmcError when the build or the run fails."""
    runner = build_runner("host", report)
    args = [str(runner.program), "bench", str(bundle), "--frames", str(frames), "--warmup", str(warmup)]
    if single_thread:
        args.append("--single-thread")
    env = dict(os.environ, LD_LIBRARY_PATH=os.pathsep.join(
        [str(p) for p in runner.library_path] + [p for p in [os.environ.get("LD_LIBRARY_PATH")] if p]))
    report("amc-runner bench", 0, 1)
    try:
        result = subprocess.run(args, capture_output=True, text=True, env=env, timeout=600)
    except subprocess.TimeoutExpired:
        raise AmcError("amc-runner bench took more than 600 s") from None
    report("amc-runner bench", 1, 1)
    if result.returncode:
        errors = [line for line in result.stderr.splitlines() if "error" in line.lower()]
        raise AmcError(f"amc-runner bench failed (exit status {result.returncode}): "
                       f"{errors[-1] if errors else result.stderr.strip()[-200:]}")
    return parse_bench(result.stdout)


def parse_bench(output: str) -> dict:
    """The JSON line of `amc-runner bench` (the runtime may log other lines before it)."""
    for line in reversed(output.splitlines()):
        if line.startswith("{"):
            return json.loads(line)
    raise AmcError("amc-runner bench printed no JSON result")
