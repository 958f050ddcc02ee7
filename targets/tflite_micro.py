"""TFLite Micro: the interpreter an MCU runs (reference kernels), used here to size the tensor
arena of each graph, check the preset's flash and RAM budgets, cross-check outputs against
ai-edge-litert, and emit the C sources (model_data.c/.h) a firmware build links."""

from __future__ import annotations

import os
import re
import sys
from pathlib import Path

import numpy as np

from amc.compiler.errors import BudgetError, LoweringError, ToolMissingError
from amc.targets.tflite import SIGNATURE, dequantize, quantize, read_flatbuffer

ALIGNMENT = 16
PROBE_ARENA = 1 << 20
ARENA_MARGIN = 1024
"""Bytes added to the measured minimum arena: TFLM's own bookkeeping differs a little between
the Python wrapper and a firmware build."""


def _runtime():
    try:
        from tflite_micro.python.tflite_micro import runtime
    except ImportError as error:
        raise ToolMissingError(f"tflite-micro is not installed ({error}); pip install tflite-micro") from None
    return runtime


def _open(data: bytes, arena: int, graph: str):
    runtime = _runtime()
    try:
        return runtime.Interpreter.from_bytes(data, arena_size=arena)
    except (RuntimeError, ValueError) as error:
        message = str(error)
        op = re.search(r"(?:opcode|op)\s*'?([A-Z_0-9]+)'?", message)
        if "find op" in message or "registration" in message.lower() or "unsupported" in message.lower():
            name = op.group(1) if op else "an operator"
            raise LoweringError(f"graph '{graph}': TFLite Micro has no kernel for {name}") from None
        raise


def arena_bytes(data: bytes, graph: str) -> int:
    """The tensor arena TFLite Micro's recording allocator reports for this graph after one
    invoke ("Arena allocation total"), plus ARENA_MARGIN, rounded up to ALIGNMENT. (Probing
    smaller and smaller arenas instead crashes the interpreter on some sizes.)"""
    import tempfile

    interpreter = _open(data, PROBE_ARENA + 4 * len(data), graph)
    interpreter.invoke()
    with tempfile.TemporaryFile(mode="w+b") as capture:
        sys.stderr.flush()
        saved = os.dup(2)
        try:
            os.dup2(capture.fileno(), 2)
            interpreter.print_allocations()
        finally:
            os.dup2(saved, 2)
            os.close(saved)
        capture.seek(0)
        text = capture.read().decode(errors="replace")
    found = re.search(r"Arena allocation total (\d+) bytes", text)
    if not found:
        raise LoweringError(f"graph '{graph}': TFLite Micro did not report its arena size")
    return -(-(int(found.group(1)) + ARENA_MARGIN) // ALIGNMENT) * ALIGNMENT


def plan(preset, paths: dict[str, Path], state: dict) -> dict:
    """Arena per graph and the totals the budgets are checked against. The three graphs run one
    after another on a frame, so they share one arena (the largest); the state (h, c) lives
    outside it, in the device's own buffers."""
    arenas = {graph: arena_bytes(Path(path).read_bytes(), graph) for graph, path in paths.items()}
    flash = sum(Path(path).stat().st_size for path in paths.values())
    state_bytes = 0
    for tensor in ("h", "c"):
        state_bytes += 2 * int(np.prod(_first_state_shape(paths, tensor))) * np.dtype(state["dtype"]).itemsize
    return {"arena_bytes": arenas, "shared_arena_bytes": max(arenas.values()), "state_bytes": state_bytes,
            "flash_need_bytes": flash, "ram_need_bytes": max(arenas.values()) + state_bytes,
            "flash_budget_bytes": preset.flash_bytes, "ram_budget_bytes": preset.ram_bytes,
            "c_sources": ["model_data.h", "model_data.c"]}


def _first_state_shape(paths: dict[str, Path], tensor: str) -> list[int]:
    model = read_flatbuffer(Path(paths["slow"]).read_bytes())
    index = {"h": 1, "c": 2}[tensor]
    name = f"{SIGNATURE}_args_{index}"
    return next(t["shape"] for t in model["tensors"] if t["name"] == name)


def check_budget(preset, mcu: dict) -> None:
    if preset.flash_bytes is not None and mcu["flash_need_bytes"] > preset.flash_bytes:
        raise BudgetError(f"flash budget of {preset.name} exceeded: the three graphs need "
                          f"{mcu['flash_need_bytes']} bytes, the budget is {preset.flash_bytes} bytes")
    if preset.ram_bytes is not None and mcu["ram_need_bytes"] > preset.ram_bytes:
        raise BudgetError(f"RAM budget of {preset.name} exceeded: arena {mcu['shared_arena_bytes']} + state "
                          f"{mcu['state_bytes']} = {mcu['ram_need_bytes']} bytes needed, the budget is "
                          f"{preset.ram_bytes} bytes")


def _c_array(name: str, data: bytes) -> str:
    rows = []
    for start in range(0, len(data), 16):
        rows.append("  " + ", ".join(f"0x{b:02x}" for b in data[start:start + 16]) + ",")
    return (f"const unsigned char {name}[{len(data)}] AMC_MODEL_ALIGN = {{\n" + "\n".join(rows) + "\n};\n"
            f"const unsigned int {name}_len = {len(data)}u;\n")


def write_c_sources(directory: Path, files: dict[str, bytes], mcu: dict, state: dict) -> None:
    """model_data.h / model_data.c: each graph as an aligned const array (in flash), the arena
    size, and the state quantization the firmware hands from graph to graph unchanged."""
    guard = "AMC_MODEL_DATA_H"
    header = [f"/* Generated by amc compile. The three step graphs of the branched encoder (TFLite flatbuffers). */",
              f"#ifndef {guard}", f"#define {guard}", "",
              "#ifndef AMC_MODEL_ALIGN", f"#define AMC_MODEL_ALIGN __attribute__((aligned({ALIGNMENT})))", "#endif", "",
              f"#define AMC_TENSOR_ARENA_BYTES {mcu['shared_arena_bytes']}u",
              f"#define AMC_STATE_SCALE_H {state['h']['scale']!r}f",
              f"#define AMC_STATE_ZERO_POINT_H {state['h']['zero_point']}",
              f"#define AMC_STATE_SCALE_C {state['c']['scale']!r}f",
              f"#define AMC_STATE_ZERO_POINT_C {state['c']['zero_point']}", ""]
    source = ['#include "model_data.h"', ""]
    for graph, data in files.items():
        name = f"amc_{graph}_model"
        header += [f"extern const unsigned char {name}[{len(data)}];", f"extern const unsigned int {name}_len;",
                   f"#define AMC_{graph.upper()}_ARENA_BYTES {mcu['arena_bytes'][graph]}u"]
        source.append(_c_array(name, data))
    header += ["", f"#endif /* {guard} */", ""]
    (Path(directory) / "model_data.h").write_text("\n".join(header))
    (Path(directory) / "model_data.c").write_text("\n".join(source))


class MicroRunner:
    """A .tflite in the TFLite Micro interpreter; same call convention as TfliteRunner."""

    def __init__(self, path, graph: dict):
        data = Path(path).read_bytes()
        model = read_flatbuffer(data)
        self.interpreter = _open(data, arena_bytes(data, str(path)) + 4096, str(path))
        n_in, n_out = len(graph["inputs"]), len(graph["outputs"])
        # micro indexes tensors by subgraph order; the step graph's order is args_i / output_i
        self.input_index = [model["inputs"].index(f"{SIGNATURE}_args_{i}") for i in range(n_in)]
        self.output_index = [model["outputs"].index(f"{SIGNATURE}_output_{i}_output") for i in range(n_out)]
        self.input_details = [_details(self.interpreter.get_input_details(i)) for i in self.input_index]
        self.output_details = [_details(self.interpreter.get_output_details(i)) for i in self.output_index]

    def raw(self, *arrays: np.ndarray) -> list[np.ndarray]:
        for index, array in zip(self.input_index, arrays):
            self.interpreter.set_input(np.ascontiguousarray(array), index)
        self.interpreter.invoke()
        return [np.array(self.interpreter.get_output(index)) for index in self.output_index]

    def __call__(self, *arrays: np.ndarray) -> list[np.ndarray]:
        quantized = [quantize(a, d) for a, d in zip(arrays, self.input_details)]
        return [dequantize(v, d) for v, d in zip(self.raw(*quantized), self.output_details)]


def _details(detail: dict) -> dict:
    q = detail.get("quantization_parameters", {})
    scales, zero_points = q.get("scales", []), q.get("zero_points", [])
    scale = float(scales[0]) if len(scales) else 0.0
    zero_point = int(zero_points[0]) if len(zero_points) else 0
    return {"dtype": detail["dtype"], "quantization": (scale, zero_point)}
