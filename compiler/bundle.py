"""A compiled bundle, opened for streaming: the three graphs in their runtimes behind the step
interface the evaluator uses (float numpy arrays of the float shapes in and out; quantization
and dequantization happen inside the runners)."""

from __future__ import annotations

from pathlib import Path

import numpy as np

from amc.compiler.manifest import read_manifest
from amc.model.config import ModelConfig
from amc.targets.backends import get_backend


class Bundle:
    def __init__(self, path: Path | str, runtime: str | None = None):
        """`runtime='tflite-micro'` runs a TFLite bundle through the TFLite Micro interpreter, each
        graph in the arena a firmware allocates (the manifest's `mcu.shared_arena_bytes`) when the
        bundle is for a microcontroller. (An arena too small can crash the interpreter:
        `amc.targets.backends.tflite_micro.arena_fits` tries one safely.)"""
        self.path = Path(path)
        self.manifest = read_manifest(self.path)
        self.backend = self.manifest["backend"]
        self.config = ModelConfig.from_json(self.manifest["model"]["config"], f"{self.path}/manifest.json")
        graphs = self.manifest["graphs"]
        self.macs = {name: graphs[name]["macs_per_frame_nonzero"] for name in graphs}
        micro = runtime == "tflite-micro"
        arena = self.manifest.get("mcu", {}).get("shared_arena_bytes") if micro else None
        backend = get_backend(self.backend)
        self.runners = {name: backend.open_runner(self.path / graphs[name]["file"], graphs[name], micro, arena)
                        for name in ("fast", "slow", "arbitrator")}

    def slow_step(self, x: np.ndarray, h: np.ndarray, c: np.ndarray):
        logits, h, c = self.runners["slow"](x, h, c)
        return logits, h, c

    def fast_step(self, x: np.ndarray, h: np.ndarray, c: np.ndarray):
        logits, h, c = self.runners["fast"](x, h, c)
        return logits, h, c

    def route_logits(self, x: np.ndarray, backlog_ms: np.ndarray, h: np.ndarray) -> np.ndarray:
        return self.runners["arbitrator"](x, backlog_ms, h)[0]

    def step(self, graph: str, *arrays: np.ndarray) -> list[np.ndarray]:
        return self.runners[graph](*arrays)


def load_bundle(path: Path | str, runtime: str | None = None) -> Bundle:
    return Bundle(path, runtime)


def is_bundle(path: Path | str) -> bool:
    return (Path(path) / "manifest.json").is_file()
