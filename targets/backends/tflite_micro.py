"""TFLite Micro: the interpreter an MCU runs (reference kernels), used here to size the tensor
arena of each graph, check the preset's flash and RAM budgets, cross-check outputs against
ai-edge-litert, and emit the C sources (model_data.c/.h) a firmware build links."""

from __future__ import annotations

import os
import re
import sys
from pathlib import Path

import numpy as np

from amc.common.errors import AmcError, BudgetError, LoweringError, ToolMissingError
from amc.targets.backends.tflite import SIGNATURE, dequantize, quantize, read_flatbuffer

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


def check_runtime() -> None:
    _runtime()


def _open(data: bytes, arena: int, graph: str, preserve_all_tensors: bool = False):
    """An interpreter on `arena` bytes; `preserve_all_tensors` keeps every intermediate tensor
    (readable with GetTensor) instead of reusing the arena, for tracing only."""
    runtime = _runtime()
    config = (runtime.InterpreterConfig.kPreserveAllTensors if preserve_all_tensors
              else runtime.InterpreterConfig.kAllocationRecording)
    try:
        return runtime.Interpreter.from_bytes(data, arena_size=arena, intrepreter_config=config)
    except (RuntimeError, ValueError) as error:
        message = str(error)
        op = re.search(r"(?:opcode|op)\s*'?([A-Z_0-9]+)'?", message)
        if "find op" in message or "registration" in message.lower() or "unsupported" in message.lower():
            name = op.group(1) if op else "an operator"
            raise LoweringError(f"graph '{graph}': TFLite Micro has no kernel for {name}") from None
        if "allocate" in message.lower():
            raise AmcError(f"graph '{graph}': TFLite Micro cannot place its tensors in an arena of "
                           f"{arena} bytes") from None
        raise


def arena_bytes(data: bytes, graph: str) -> int:
    """The tensor arena this graph needs in TFLite Micro, plus ARENA_MARGIN, rounded up to
    ALIGNMENT. First estimate: what the recording allocator reports after one invoke ("Arena
    allocation total"). That is the arena's final layout and can miss the allocator's peak while
    it plans the tensors (the reference model's fast graph reported 28,128 bytes and needs
    32,912), so the estimate is tried in a process of its own (`arena_fits`: too small an arena
    can crash the interpreter, not only fail) and, when short, the smallest arena that holds the
    graph is searched upward from it the same way."""
    need = _recorded_arena(data, graph)
    if not arena_fits(data, need):
        low, step = need, ARENA_MARGIN
        while not arena_fits(data, low + step):
            low, step = low + step, step * 2
            if low > PROBE_ARENA + 4 * len(data):
                raise LoweringError(f"graph '{graph}': TFLite Micro does not run it in an arena of {low} bytes")
        high = low + step
        while high - low > ARENA_MARGIN // 4:          # low does not fit, high does
            middle = (low + high) // 2 // ALIGNMENT * ALIGNMENT
            low, high = (low, middle) if arena_fits(data, middle) else (middle, high)
        need = high
    return -(-(need + ARENA_MARGIN) // ALIGNMENT) * ALIGNMENT


def _recorded_arena(data: bytes, graph: str) -> int:
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
    return int(found.group(1))


_FITS = """
import sys
from tflite_micro.python.tflite_micro import runtime
interpreter = runtime.Interpreter.from_bytes(sys.stdin.buffer.read(), arena_size=int(sys.argv[1]))
interpreter.invoke()
print("fits")
"""


def arena_fits(data: bytes, arena: int) -> bool:
    """Whether TFLite Micro allocates and invokes the graph in `arena` bytes, tried in a Python
    process of its own: on some sizes too small an arena crashes the interpreter."""
    import subprocess

    _runtime()
    result = subprocess.run([sys.executable, "-c", _FITS, str(int(arena))], input=data, capture_output=True,
                            timeout=300)
    return result.returncode == 0 and result.stdout.strip() == b"fits"


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
        raise BudgetError(f"flash budget of {preset.name} exceeded: the three graphs and the front end's tables need "
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


def write_c_sources(directory: Path, files: dict[str, bytes], mcu: dict, state: dict,
                    frontend: bytes | None = None) -> None:
    """model_data.h / model_data.c: each graph as an aligned const array (in flash), the arena
    size, the state quantization the firmware hands from graph to graph unchanged, and the front
    end's tables (`amc_frontend_init` reads them in place, from flash)."""
    guard = "AMC_MODEL_DATA_H"
    header = ["/* Generated by amc compile. The three step graphs of the branched encoder (TFLite flatbuffers). */",
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
    if frontend is not None:
        header += [f"extern const unsigned char amc_frontend_tables[{len(frontend)}];",
                   "extern const unsigned int amc_frontend_tables_len;"]
        source.append(_c_array("amc_frontend_tables", frontend))
    header += ["", f"#endif /* {guard} */", ""]
    (Path(directory) / "model_data.h").write_text("\n".join(header))
    (Path(directory) / "model_data.c").write_text("\n".join(source))


class MicroRunner:
    """A .tflite in the TFLite Micro interpreter; same call convention as TfliteRunner."""

    def __init__(self, path, graph: dict, arena: int | None = None):
        """`arena`: the tensor arena in bytes, as a firmware allocates it (the bundle manifest's
        `mcu.arena_bytes`); by default the measured need and some room."""
        data = Path(path).read_bytes()
        model = read_flatbuffer(data)
        self.arena = arena if arena is not None else arena_bytes(data, str(path)) + 4096
        self.interpreter = _open(data, self.arena, str(path))
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


# ---- which kernels round apart ------------------------------------------------------------------

def kernel_differences(path, graph: dict, records: list[list[np.ndarray]]) -> dict:
    """Every operator of a graph in TFLite Micro and in ai-edge-litert on the same inputs (float
    records, quantized as the graph's inputs), with all intermediate tensors kept. Where an
    operator's non-constant inputs are equal in both interpreters its outputs are compared: the
    count and the largest difference, in steps of the output's quantization (a float tensor
    between DEQUANTIZE and QUANTIZE in steps of the quantized tensor it came from), by operator
    type, against LiteRT's reference kernels (`BUILTIN_REF`, the code TFLite Micro's kernels come
    from) and its optimized ones. The graph outputs differ by these, carried through the graph
    (docs/benchmarks.md, "TFLite Micro vs ai-edge-litert")."""
    import warnings

    from ai_edge_litert.interpreter import Interpreter, OpResolverType

    from amc.targets.backends.tflite import TfliteRunner

    path = Path(path)
    data = path.read_bytes()
    model = read_flatbuffer(data)
    tensors = model["tensors"]
    steps = _float_steps(model)
    names = [f"{SIGNATURE}_args_{i}" for i in range(len(graph["inputs"]))]
    lite_inputs = [next(t["index"] for t in tensors if t["name"] == name) for name in names]
    micro_inputs = [model["inputs"].index(name) for name in names]
    micro = _open(data, PROBE_ARENA + 4 * len(data), str(path), preserve_all_tensors=True)
    quantizer = TfliteRunner(path, graph, reference_kernels=True)
    lite = {}
    with warnings.catch_warnings():       # "preserve all tensors is for debugging": it is
        warnings.simplefilter("ignore")
        for kernels, resolver in (("reference_kernels", OpResolverType.BUILTIN_REF),
                                  ("optimized_kernels", OpResolverType.AUTO)):
            lite[kernels] = Interpreter(model_content=data, num_threads=1, experimental_op_resolver_type=resolver,
                                        experimental_preserve_all_tensors=True)
            lite[kernels].allocate_tensors()
    found = {kernels: {"op_runs": 0, "op_runs_compared": 0, "max_step_diff": 0.0, "ops": {}} for kernels in lite}
    for record in records:
        quantized = quantizer.quantize_inputs(record)
        for array, index in zip(quantized, micro_inputs):
            micro.set_input(np.ascontiguousarray(array), index)
        micro.invoke()
        micro_tensor = {}

        def in_micro(index: int) -> np.ndarray:
            if index not in micro_tensor:
                micro_tensor[index] = np.asarray(micro.GetTensor(index, 0)["tensor_data"]).reshape(-1)
            return micro_tensor[index]

        for kernels, interpreter in lite.items():
            for array, index in zip(quantized, lite_inputs):
                interpreter.set_tensor(index, array.reshape(interpreter.get_tensor(index).shape))
            interpreter.invoke()
            summary = found[kernels]
            for operator in model["operators"]:
                summary["op_runs"] += 1
                if not all(tensors[i]["data"] is not None
                           or np.array_equal(in_micro(i), interpreter.get_tensor(i).reshape(-1))
                           for i in operator["inputs"]):
                    continue
                summary["op_runs_compared"] += 1
                worst = max(_step_diff(in_micro(o), interpreter.get_tensor(o).reshape(-1), steps.get(o, 1.0))
                            for o in operator["outputs"])
                if worst:
                    op = summary["ops"].setdefault(operator["op"], {"runs_differing": 0, "max_step_diff": 0.0})
                    op["runs_differing"] += 1
                    op["max_step_diff"] = max(op["max_step_diff"], worst)
                    summary["max_step_diff"] = max(summary["max_step_diff"], worst)
    return found


def _float_steps(model: dict) -> dict[int, float]:
    """The step of each float tensor between a DEQUANTIZE and a QUANTIZE (the cell clip's
    MINIMUM runs in float): the scale of the first quantized or already stepped input of the
    operator that writes it."""
    tensors, steps = model["tensors"], {}
    for operator in model["operators"]:
        for output in operator["outputs"]:
            if tensors[output]["dtype"] not in ("float32", "float16"):
                continue
            for index in operator["inputs"]:
                scales = tensors[index]["scales"]
                if index in steps or (scales is not None and scales.size and tensors[index]["data"] is None):
                    steps[output] = steps[index] if index in steps else float(scales.reshape(-1)[0])
                    break
    return steps


def _step_diff(a: np.ndarray, b: np.ndarray, step: float) -> float:
    """Largest |a - b|: in integer steps for integer tensors, divided by `step` for float ones."""
    if not a.size:
        return 0.0
    difference = float(np.abs(a.astype(np.float64) - b.astype(np.float64)).max())
    return round(difference / step, 4) if np.issubdtype(a.dtype, np.floating) else difference
