"""The backends, one entry each, as the board presets are (amc.targets.presets): what a graph file
is called, which quantization variants the backend lowers to, what runs its graphs from Python and
natively, and the module that lowers, runs and inspects them. Adding a backend is adding one
`Backend` and its module; nothing else dispatches on a backend's name."""

from __future__ import annotations

from dataclasses import dataclass
from pathlib import Path
from types import ModuleType
from typing import Callable

from amc.common.errors import InputError
from amc.targets.backends import executorch, onnx, tflite


@dataclass(frozen=True)
class Backend:
    name: str
    extension: str                   # of its graph files
    variants: tuple[str, ...]        # quantization variants it lowers to; the first is the default
    python_runtime: str              # what runs its graphs when amc verifies a bundle
    module: ModuleType               # check_toolchain, lower, open_runner, inspect_file, CALIBRATION_FRAMES
    native_runtime: str = ""         # what times its graphs natively (amc-runner), if anything does
    no_native_runtime: str = ""      # why nothing does
    invoke_timing: Callable | None = None   # (bundle, manifest) -> the runtime's invoke alone, timed
    cross_check: Callable | None = None     # (bundle, manifest, samples, micro) -> the other interpreters

    def open_runner(self, path: Path, graph: dict, micro: bool = False, arena: int | None = None):
        """A callable float arrays -> list of float arrays, in the manifest's output order.
        `micro`: TFLite Micro instead of the backend's own runtime, in a tensor arena of `arena`
        bytes (default: the measured need and some room)."""
        if micro and self.name != "tflite":
            raise InputError(f"TFLite Micro runs .tflite graphs, not {self.name} ones")
        return self.module.open_runner(path, graph, micro=micro, arena=arena)


BACKENDS = {backend.name: backend for backend in (
    Backend("executorch", ".pte", ("int8",), "executorch.runtime (XNNPACK)", executorch,
            native_runtime="amc-runner (ExecuTorch C++ Module, XNNPACK)"),
    Backend("tflite", ".tflite", ("int8", "int16x8"), "ai-edge-litert", tflite,
            invoke_timing=tflite.invoke_timing, cross_check=tflite.cross_check,
            no_native_runtime="amc-runner has no LiteRT runtime built in: the ai-edge-litert wheel ships "
                              "libLiteRt.so without the C headers to compile against"),
    Backend("onnx", ".onnx", ("int8",), "onnxruntime", onnx,
            no_native_runtime="amc-runner runs ExecuTorch bundles only"),
)}
"""int8: int8 weights and activations. int16x8 (TFLite): int8 weights with int16 activations, which
keeps more resolution in the recurrent state."""


def get_backend(name: str) -> Backend:
    if name not in BACKENDS:
        raise InputError(f"unknown backend '{name}': use one of {', '.join(BACKENDS)}")
    return BACKENDS[name]


def backend_of_file(path: Path) -> Backend:
    """The backend whose graph files end like `path`."""
    for backend in BACKENDS.values():
        if path.suffix == backend.extension:
            return backend
    raise InputError(f"{path}: not a bundle directory or a "
                     f"{'/'.join(b.extension for b in BACKENDS.values())} file")
