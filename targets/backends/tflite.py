"""TFLite/LiteRT lowering: litert-torch conversion -> ai-edge-quantizer static quantization
(int8 weights; int8 activations, or int16 activations with the `int16x8` variant) -> .tflite;
the runner that executes it in `ai-edge-litert`; the cross-check of runtimes.

Inputs and outputs are quantized (int8 or int16) at the graph boundary. The state tensors (h and
c, at the inputs and the outputs of fast and slow, and h at the arbitrator's input) are given the
joint state ranges before quantization, so every graph reads and writes the state with one scale
and zero point: the device hands the state from one graph to the next as it is."""

from __future__ import annotations

import logging
import os
import tempfile
import time
from pathlib import Path

import numpy as np

from amc.common.errors import LoweringError, ToolMissingError
from amc.device.board.tflite_board import dequantize, quantize
from amc.targets.lowered import LoweredGraph, QuantizedTensor, TensorSpec
from amc.targets.step_graph import StepGraph

ROUNDING = "rint(float / scale) + zero_point, clamped (ai-edge-quantizer)"
SIGNATURE = "serving_default"


CALIBRATION_FRAMES = 400
"""Calibration frames a graph. ai-edge-quantizer takes each activation's min/max, which only widens
with more frames: on the reference model the bundle's CER is 0.48 points above float with 400
frames and 0.79 with 1,600 (whole test split, docs/benchmarks.md)."""


def check_toolchain() -> None:
    try:
        import ai_edge_quantizer  # noqa: F401
        import litert_torch  # noqa: F401
        from ai_edge_litert.interpreter import Interpreter  # noqa: F401
    except ImportError as error:
        raise ToolMissingError(f"the TFLite toolchain is not installed ({error}); "
                               "pip install litert-torch ai-edge-quantizer ai-edge-litert") from None


def _quiet():
    os.environ.setdefault("TF_CPP_MIN_LOG_LEVEL", "3")
    logging.getLogger("absl").setLevel(logging.ERROR)


def _state_tensor_names(step: StepGraph) -> dict[str, list[str]]:
    """TFLite tensor names of the state at the boundary (litert-torch names inputs args_i and
    outputs output_i, in the step graph's order)."""
    names: dict[str, list[str]] = {"h": [], "c": []}
    for index, name in enumerate(step.inputs):
        if name in names:
            names[name].append(f"{SIGNATURE}_args_{index}")
    for index, name in enumerate(step.outputs):
        if name.removesuffix("_next") in names:
            names[name.removesuffix("_next")].append(f"{SIGNATURE}_output_{index}_output")
    return names


def lower(step: StepGraph, calibration: list[tuple[np.ndarray, ...]], state_ranges: dict,
          variant: str = "int8") -> LoweredGraph:
    _quiet()
    import litert_torch
    from ai_edge_quantizer import quantizer, recipe

    with tempfile.TemporaryDirectory(prefix="amc-tflite-") as scratch:
        float_path = Path(scratch) / f"{step.name}_f32.tflite"
        try:
            litert_torch.convert(step.module, step.example_inputs).export(str(float_path))
        except Exception as error:  # the converter raises many types; name the op it reports
            raise LoweringError(f"graph '{step.name}': litert-torch cannot convert it "
                                f"({_first_line(error)})") from None
        qt = quantizer.Quantizer(str(float_path))
        qt.load_quantization_recipe(recipe.static_wi8_ai16() if variant == "int16x8" else recipe.static_wi8_ai8())
        input_names = [f"args_{i}" for i in range(len(step.inputs))]
        samples = [dict(zip(input_names, (np.asarray(a, np.float32) for a in sample))) for sample in calibration]
        ranges = _calibrate(qt, samples)
        for state, tensor_names in _state_tensor_names(step).items():
            low, high = state_ranges[state]
            for name in tensor_names:
                if name in ranges:
                    ranges[name] = {"min": np.array(low, np.float32).reshape(ranges[name]["min"].shape),
                                    "max": np.array(high, np.float32).reshape(ranges[name]["max"].shape)}
        result = qt.quantize(ranges)
        quantized_path = Path(scratch) / f"{step.name}.tflite"
        result.export_model(str(quantized_path), overwrite=True)
        data = _inline_buffers(quantized_path.read_bytes())
    model = read_flatbuffer(data)
    inputs, outputs = _io(data, step)
    weights = _weights(model, step)
    return LoweredGraph(step.name, "tflite", data, inputs, outputs, weights, ops=model["ops"],
                        notes=[f"{variant}: activations {'int16' if variant == 'int16x8' else 'int8'}, weights int8"])


def _inline_buffers(data: bytes) -> bytes:
    """The same model with every weight buffer inside the flatbuffer. The quantizer writes large
    buffers after the flatbuffer, addressed by offset; TFLite Micro does not read those (it takes
    such tensors for activations without data and plans them into the arena: 0.9 MB for the
    reference model's slow graph, and wrong outputs)."""
    import flatbuffers
    from ai_edge_litert import schema_py_generated as schema

    model = schema.ModelT.InitFromPackedBuf(data, 0)
    moved = False
    for buffer in model.buffers or []:
        if buffer.offset > 1:
            buffer.data = np.frombuffer(data[buffer.offset:buffer.offset + buffer.size], np.uint8).copy()
            buffer.offset, buffer.size = 0, 0
            moved = True
    if not moved:
        return data
    builder = flatbuffers.Builder(len(data) + 4096)
    builder.Finish(model.Pack(builder), file_identifier=b"TFL3")
    return bytes(builder.Output())


def _calibrate(qt, samples: list[dict]) -> dict:
    """Tensor ranges over all calibration frames (min of mins, max of maxes). The quantizer's
    default update is a moving average of per-sample ranges, which for one-frame samples is far
    narrower than the real range of the recurrent tensors and clips them (12 dB SNR on the state
    instead of 30+)."""
    from ai_edge_quantizer import calibrator
    from ai_edge_quantizer.utils import qsv_utils

    calib = calibrator.Calibrator(qt._float_model_buffer, num_threads=1,
                                  qsv_update_func=qsv_utils.min_max_update)
    calib.calibrate({SIGNATURE: samples}, qt._recipe_manager)
    return calib.get_model_qsvs()


def _first_line(error: Exception) -> str:
    text = str(error).strip().splitlines()
    return (text[0] if text else type(error).__name__)[:200]


_TYPES = {0: "float32", 1: "float16", 2: "int32", 3: "uint8", 4: "int64", 7: "int16", 9: "int8"}


def read_flatbuffer(data: bytes) -> dict:
    """Tensors (name, type, shape, quantization, where their data lies in the file), the
    operator counts and the operators in execution order (type, input and output tensor
    indices) of a .tflite file."""
    from ai_edge_litert import schema_py_generated as schema

    model = schema.Model.GetRootAsModel(data, 0)
    subgraph = model.Subgraphs(0)
    tensors = []
    for i in range(subgraph.TensorsLength()):
        tensor = subgraph.Tensors(i)
        buffer = model.Buffers(tensor.Buffer())
        offset = length = None
        if buffer is not None:
            if buffer.Offset() > 1:
                offset, length = int(buffer.Offset()), int(buffer.Size())
            elif buffer.DataLength() > 0:
                table = buffer._tab
                offset, length = int(table.Vector(table.Offset(4))), int(buffer.DataLength())
        q = tensor.Quantization()
        scales = q.ScaleAsNumpy() if q is not None and q.ScaleLength() else None
        zero_points = q.ZeroPointAsNumpy() if q is not None and q.ZeroPointLength() else None
        tensors.append({
            "index": i, "name": tensor.Name().decode(), "dtype": _TYPES.get(tensor.Type(), str(tensor.Type())),
            "shape": [int(s) for s in tensor.ShapeAsNumpy()] if tensor.ShapeLength() else [],
            "offset": offset, "length": length,
            "data": bytes(data[offset:offset + length]) if offset is not None else None,
            "scales": np.asarray(scales, np.float32) if scales is not None else None,
            "zero_points": np.asarray(zero_points, np.int64) if zero_points is not None else None,
            "axis": int(q.QuantizedDimension()) if q is not None else None,
        })
    ops: dict[str, int] = {}
    operators = []
    names = {v: k for k, v in schema.BuiltinOperator.__dict__.items() if not k.startswith("_")}
    for i in range(subgraph.OperatorsLength()):
        operator = subgraph.Operators(i)
        code = model.OperatorCodes(operator.OpcodeIndex())
        builtin = max(code.BuiltinCode(), code.DeprecatedBuiltinCode())
        name = names.get(builtin, str(builtin))
        ops[name] = ops.get(name, 0) + 1
        operators.append({"op": name, "inputs": [int(t) for t in operator.InputsAsNumpy() if t >= 0],
                          "outputs": [int(t) for t in operator.OutputsAsNumpy()]})
    return {"tensors": tensors, "ops": ops, "operators": operators,
            "inputs": [tensors[subgraph.Inputs(i)]["name"] for i in range(subgraph.InputsLength())],
            "outputs": [tensors[subgraph.Outputs(i)]["name"] for i in range(subgraph.OutputsLength())]}


def _io(data: bytes, step: StepGraph) -> tuple[list[TensorSpec], list[TensorSpec]]:
    from ai_edge_litert.interpreter import Interpreter

    interpreter = Interpreter(model_content=data)
    runner = interpreter.get_signature_runner(SIGNATURE)
    details_in, details_out = runner.get_input_details(), runner.get_output_details()
    inputs = []
    for index, name in enumerate(step.inputs):
        d = details_in[f"args_{index}"]
        inputs.append(TensorSpec(name, tuple(int(s) for s in d["shape"]), np.dtype(d["dtype"]).name,
                                 float(d["quantization"][0]) or None, int(d["quantization"][1])))
    outputs = []
    for index, name in enumerate(step.outputs):
        d = details_out[f"output_{index}"]
        outputs.append(TensorSpec(name, tuple(int(s) for s in d["shape"]), np.dtype(d["dtype"]).name,
                                  float(d["quantization"][0]) or None, int(d["quantization"][1])))
    return inputs, outputs


def _weights(model: dict, step: StepGraph) -> list[QuantizedTensor]:
    """Constant integer tensors with quantization: weights (int8, per channel) and biases
    (int32, or int64 with int16 activations), matched to the float constant they came from.
    Scalar operands that come from no model constant (the cell clip's bounds, as the operands of
    MINIMUM and MAXIMUM) are not weights and stay out."""
    constants = {name: t.numpy() for name, t in step.constants().items()}
    matched = [_match(tensor, constants) for tensor in model["tensors"]
               if tensor["offset"] is not None and tensor["scales"] is not None
               and tensor["dtype"] in ("int8", "int16", "int32", "int64")]
    return [m for m in matched if m.attr in constants or m.values.size > 1]


_BOUND = {"int8": (-127, 127), "int16": (-32767, 32767), "int32": (-(2 ** 31) + 1, 2 ** 31 - 1),
          "int64": (-(2 ** 63) + 1, 2 ** 63 - 1)}


def _match(tensor: dict, constants: dict[str, np.ndarray]) -> QuantizedTensor | None:
    shape = tuple(tensor["shape"])
    scales, zero_points = tensor["scales"], tensor["zero_points"]
    axis = tensor["axis"] if scales.size > 1 else None
    qmin, qmax = _BOUND[tensor["dtype"]]
    if axis is None and tensor["dtype"] == "int8":
        qmin = -128       # a per-tensor (asymmetric) constant, e.g. the operand of an elementwise MUL
    candidate = QuantizedTensor(tensor["name"], np.zeros(shape, tensor["dtype"]), scales, zero_points, axis,
                                qmin, qmax, ROUNDING, offset=tensor["offset"])
    for attr, value in constants.items():
        flat = value.reshape(shape) if value.size == int(np.prod(shape)) and value.ndim != len(shape) else None
        for layout, arranged in (("row-major", value), ("transposed", value.T if value.ndim == 2 else None),
                                 ("reshaped", flat)):
            if arranged is None or arranged.shape != shape:
                continue
            candidate.values = _quantize(arranged, scales, zero_points, axis, qmin, qmax, tensor["dtype"])
            candidate.attr, candidate.layout = attr, "" if layout == "row-major" else layout
            if layout == "reshaped":
                candidate.layout = "reshaped " + "x".join(str(d) for d in value.shape)
            if candidate.values.tobytes() == tensor["data"]:
                return candidate
    candidate.values = np.frombuffer(tensor["data"], tensor["dtype"]).reshape(shape).copy()
    candidate.attr, candidate.layout = tensor["name"], ""
    return candidate


def _quantize(values, scales, zero_points, axis, qmin, qmax, dtype) -> np.ndarray:
    values = np.asarray(values, np.float32)
    shape = [1] * values.ndim
    if axis is not None and values.ndim:
        shape[axis] = -1
    s = np.asarray(scales, np.float32).reshape(shape) if axis is not None else np.float32(scales.reshape(-1)[0])
    z = np.asarray(zero_points, np.int64).reshape(shape) if axis is not None else int(zero_points.reshape(-1)[0])
    return np.clip(np.rint(values / s) + z, qmin, qmax).astype(dtype)


class TfliteRunner:
    """A .tflite in ai-edge-litert: float numpy in, quantized with the input parameters, outputs
    dequantized, in the step graph's output order."""

    def __init__(self, path, graph: dict, reference_kernels: bool = False):
        """`reference_kernels`: LiteRT's reference kernels (the ones TFLite Micro shares) instead
        of the optimized ones, whose requantization may round 1-2 LSB differently."""
        from ai_edge_litert.interpreter import Interpreter, OpResolverType

        _quiet()
        resolver = OpResolverType.BUILTIN_REF if reference_kernels else OpResolverType.AUTO
        self.interpreter = Interpreter(model_path=str(path), num_threads=1,
                                       experimental_op_resolver_type=resolver)
        self.runner = self.interpreter.get_signature_runner(SIGNATURE)
        details = self.runner.get_input_details()
        self.inputs = [(f"args_{i}", details[f"args_{i}"]) for i in range(len(graph["inputs"]))]
        out_details = self.runner.get_output_details()
        self.outputs = [(f"output_{i}", out_details[f"output_{i}"]) for i in range(len(graph["outputs"]))]

    def raw(self, *arrays: np.ndarray) -> list[np.ndarray]:
        """Quantized inputs in, quantized outputs out."""
        result = self.runner(**{name: a for (name, _), a in zip(self.inputs, arrays)})
        return [result[name] for name, _ in self.outputs]

    def quantize_inputs(self, arrays) -> list[np.ndarray]:
        return [quantize(a, d) for (_, d), a in zip(self.inputs, arrays)]

    def __call__(self, *arrays: np.ndarray) -> list[np.ndarray]:
        return [dequantize(v, d) for v, (_, d) in zip(self.raw(*self.quantize_inputs(arrays)), self.outputs)]


def lsb_distance(a: np.ndarray, b: np.ndarray) -> int:
    return int(np.max(np.abs(a.astype(np.int64) - b.astype(np.int64)))) if a.size else 0


def invoke_timing(bundle_dir: Path, manifest: dict, calls: int = 2000, warmup: int = 200) -> dict:
    """Median and p90 wall time per frame of each graph of a TFLite bundle, ai-edge-litert's
    Interpreter.invoke() alone (inputs set once to fixed pseudo-random values, num_threads=1),
    graphs interleaved call by call; as ratios to the slow graph. What remains of Python here is
    one thin binding call; no native runner exists for LiteRT (amc.targets.backends)."""
    from ai_edge_litert.interpreter import Interpreter

    graphs = manifest["graphs"]
    rng = np.random.default_rng(0)
    invokes = {}
    for graph in ("fast", "slow", "arbitrator"):
        interpreter = Interpreter(model_path=str(bundle_dir / graphs[graph]["file"]), num_threads=1)
        interpreter.allocate_tensors()
        for detail in interpreter.get_input_details():
            dtype = np.dtype(detail["dtype"])
            if dtype.kind in "iu":
                info = np.iinfo(dtype)
                values = rng.integers(info.min, info.max, detail["shape"], endpoint=True)
            else:
                values = rng.uniform(-1.0, 1.0, detail["shape"])
            interpreter.set_tensor(detail["index"], values.astype(dtype))
        invokes[graph] = interpreter.invoke
    times = {graph: [] for graph in invokes}
    order = list(invokes)
    for round_ in range(warmup + calls):
        for k in range(len(order)):
            graph = order[(round_ + k) % len(order)]
            started = time.perf_counter()
            invokes[graph]()
            elapsed = time.perf_counter() - started
            if round_ >= warmup:
                times[graph].append(elapsed)
    medians = {g: float(np.median(t)) * 1e6 for g, t in times.items()}
    return {"runtime": "ai-edge-litert Interpreter.invoke()",
            "fast_over_slow": round(medians["fast"] / (medians["slow"] or 1e-6), 3),
            "arbitrator_over_slow": round(medians["arbitrator"] / (medians["slow"] or 1e-6), 3),
            "calls": calls, "threads": "num_threads=1",
            "median_us": {g: round(m, 2) for g, m in medians.items()},
            "p90_us": {g: round(float(np.percentile(t, 90)) * 1e6, 2) for g, t in times.items()},
            "timed": "from Python: invoke() alone, inputs set once (time.perf_counter)"}

def cross_check(bundle_dir: Path, manifest: dict, samples: dict[str, list[tuple]], micro: bool) -> dict:
    """The other interpreters on the same quantized inputs: TFLite Micro (MCU bundles) against
    ai-edge-litert's reference kernels and its optimized ones: whether the outputs are identical
    and the largest difference in LSB. They are not: TFLite Micro requantizes FULLY_CONNECTED
    with two roundings, LiteRT with one (one step apart on a few values), and the sigmoids and
    the cell state carry such a step to more in the outputs (`tflite_micro.kernel_differences`
    traces it operator by operator). tflite-runtime is tried where a venv of it exists."""
    result = {}
    if micro:
        from amc.targets.backends.tflite_micro import MicroRunner

        mismatches, compared, reference_lsb, optimized_lsb = 0, 0, 0, 0
        for graph, inputs in samples.items():
            spec = manifest["graphs"][graph]
            reference = TfliteRunner(bundle_dir / spec["file"], spec, reference_kernels=True)
            optimized = TfliteRunner(bundle_dir / spec["file"], spec)
            micro_runner = MicroRunner(bundle_dir / spec["file"], spec)
            for arrays in inputs[:16]:
                q = reference.quantize_inputs(arrays)
                a, b = reference.raw(*q), micro_runner.raw(*q)
                compared += 1
                mismatches += sum(int(not np.array_equal(x, y)) for x, y in zip(a, b))
                reference_lsb = max([reference_lsb] + [lsb_distance(x, y) for x, y in zip(a, b)])
                optimized_lsb = max([optimized_lsb] + [lsb_distance(x, y) for x, y in zip(b, optimized.raw(*q))])
        result["tflite-micro vs ai-edge-litert (reference kernels)"] = (
            f"identical on {compared} frames" if mismatches == 0
            else f"{mismatches} differing outputs over {compared} frames")
        result["tflite_micro_identical"] = mismatches == 0
        result["tflite_micro_max_lsb"] = {"reference_kernels": reference_lsb, "optimized_kernels": optimized_lsb}
    from amc.targets.backends.tflite_runtime import check_with_tflite_runtime

    result["tflite-runtime"] = check_with_tflite_runtime(bundle_dir, manifest, samples)
    return result


def open_runner(path: Path, graph: dict, micro: bool = False, arena: int | None = None):
    if micro:
        from amc.targets.backends.tflite_micro import MicroRunner
        return MicroRunner(path, graph, arena)
    return TfliteRunner(path, graph)


def inspect_file(path: Path) -> dict:
    """`amc inspect FILE`: the graph file's I/O, operators and constants."""
    model = read_flatbuffer(path.read_bytes())
    by_name = {t["name"]: t for t in model["tensors"]}

    def describe(name):
        t = by_name[name]
        return {"name": name, "shape": t["shape"], "dtype": t["dtype"],
                "scale": float(t["scales"][0]) if t["scales"] is not None and t["scales"].size == 1 else None,
                "zero_point": int(t["zero_points"][0]) if t["zero_points"] is not None and t["zero_points"].size == 1 else None}

    constants = [t for t in model["tensors"] if t["offset"] is not None]
    return {"path": str(path), "kind": "tflite", "bytes": path.stat().st_size, "ops": model["ops"],
            "inputs": [describe(n) for n in model["inputs"]], "outputs": [describe(n) for n in model["outputs"]],
            "weights": [{"name": t["name"], "dtype": t["dtype"], "shape": t["shape"], "offset": t["offset"],
                         "length": t["length"], "per_channel": t["scales"] is not None and t["scales"].size > 1}
                        for t in constants]}
