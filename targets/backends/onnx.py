"""ONNX lowering: torch.onnx export of the step graph -> QDQ int8 with onnxruntime.quantization
(per-channel weights, static activations from the same calibration frames) -> .onnx; and the
runner that executes it in onnxruntime. I/O stays float32 (QuantizeLinear/DequantizeLinear at the
boundary); the state tensors' activation ranges are pinned to the joint state ranges."""

from __future__ import annotations

import tempfile
from pathlib import Path

import numpy as np

from amc.common.errors import LoweringError, ToolMissingError
from amc.targets.lowered import LoweredGraph, QuantizedTensor, TensorSpec
from amc.targets.step_graph import StepGraph

ROUNDING = "rint(float / scale) + zero_point, clamped (onnxruntime.quantization)"


CALIBRATION_FRAMES = 400
"""Calibration frames a graph: onnxruntime's default calibration takes min/max, which widens with
more frames (as in the TFLite backend)."""


def check_toolchain() -> None:
    try:
        import onnx  # noqa: F401
        import onnxruntime  # noqa: F401
        import onnxscript  # noqa: F401
    except ImportError as error:
        raise ToolMissingError(f"the ONNX toolchain is not installed ({error}); pip install onnx onnxscript onnxruntime") from None


def lower(step: StepGraph, calibration: list[tuple[np.ndarray, ...]], state_ranges: dict,
          variant: str = "int8") -> LoweredGraph:
    import onnx
    import torch
    from onnxruntime.quantization import CalibrationDataReader, QuantFormat, QuantType, quantize_static
    from onnxruntime.quantization.calibrate import CalibrationMethod

    class Reader(CalibrationDataReader):
        def __init__(self):
            self.samples = iter(calibration)

        def get_next(self):
            sample = next(self.samples, None)
            return None if sample is None else dict(zip(step.inputs, sample))

    with tempfile.TemporaryDirectory(prefix="amc-onnx-") as scratch:
        float_path, quantized_path = Path(scratch) / "float.onnx", Path(scratch) / "quantized.onnx"
        try:
            torch.onnx.export(step.module, step.example_inputs, str(float_path), input_names=list(step.inputs),
                              output_names=list(step.outputs), dynamo=True, external_data=False)
        except Exception as error:
            raise LoweringError(f"graph '{step.name}': the ONNX exporter cannot export it "
                                f"({str(error).strip().splitlines()[0][:200]})") from None
        model = onnx.load(str(float_path))
        onnx.save(model, str(float_path))
        pinned = {}
        for name in step.inputs + step.outputs:
            state = name.removesuffix("_next")
            if state in state_ranges:     # the state, and its per-layer slices, on the joint range
                for tensor in [name] + (_layout_descendants(model, name) if name in step.inputs else []):
                    pinned[tensor] = state_ranges[state]
        quantize_static(str(float_path), str(quantized_path), Reader(), quant_format=QuantFormat.QDQ,
                        per_channel=True, weight_type=QuantType.QInt8, activation_type=QuantType.QInt8,
                        calibrate_method=CalibrationMethod.MinMax,
                        extra_options={"TensorQuantOverrides": {
                            name: [{"rmin": np.float32(low), "rmax": np.float32(high)}]
                            for name, (low, high) in pinned.items()}})
        data = quantized_path.read_bytes()
    quantized = onnx.load_from_string(data)
    return LoweredGraph(step.name, "onnx", data, *_io(quantized, step), _weights(quantized, step),
                        ops=_ops(quantized))


def _ops(model) -> dict[str, int]:
    ops: dict[str, int] = {}
    for node in model.graph.node:
        ops[node.op_type] = ops.get(node.op_type, 0) + 1
    return ops


LAYOUT_OPS = {"Slice", "Split", "Reshape", "Squeeze", "Unsqueeze", "Identity", "Gather"}


def _layout_descendants(model, name: str) -> list[str]:
    """Tensors computed from `name` by layout-only ops, nearest first."""
    consumers: dict[str, list] = {}
    for node in model.graph.node:
        if node.op_type in LAYOUT_OPS and node.input:
            consumers.setdefault(node.input[0], []).append(node)
    found, pending = [], [name]
    while pending:
        for node in consumers.get(pending.pop(0), []):
            for output in node.output:
                if output not in found:
                    found.append(output)
                    pending.append(output)
    return found


def _io(model, step: StepGraph):
    """I/O specs, with the scale/zero point of the QuantizeLinear that reads each input (through
    any layout-only ops: the state is sliced per layer before it is quantized) and the
    DequantizeLinear that writes each output."""
    from onnx import numpy_helper

    init = {t.name: numpy_helper.to_array(t) for t in model.graph.initializer}
    q_of, dq_of = {}, {}
    for node in model.graph.node:
        if node.op_type == "QuantizeLinear":
            q_of[node.input[0]] = (float(init[node.input[1]]), int(init[node.input[2]]))
        if node.op_type == "DequantizeLinear" and node.input[1] in init and init[node.input[1]].size == 1:
            dq_of[node.output[0]] = (float(init[node.input[1]]), int(init[node.input[2]]))
    def quantizer_of(name: str):
        return next((q_of[t] for t in [name] + _layout_descendants(model, name) if t in q_of), (None, None))

    shapes = {v.name: [d.dim_value for d in v.type.tensor_type.shape.dim] for v in
              list(model.graph.input) + list(model.graph.output)}
    inputs = [TensorSpec(n, tuple(shapes[n]), "float32", *quantizer_of(n)) for n in step.inputs]
    outputs = [TensorSpec(n, tuple(shapes[n]), "float32", *dq_of.get(n, (None, None))) for n in step.outputs]
    return inputs, outputs


def _weights(model, step: StepGraph) -> list[QuantizedTensor]:
    """Integer initializers read by a DequantizeLinear, matched to their float constant."""
    from onnx import numpy_helper

    init = {t.name: numpy_helper.to_array(t) for t in model.graph.initializer}
    constants = {name: t.numpy() for name, t in step.constants().items()}
    out = []
    for node in model.graph.node:
        if node.op_type != "DequantizeLinear" or node.input[0] not in init:
            continue
        values = init[node.input[0]]
        if values.dtype not in (np.int8, np.int32):
            continue
        scales, zero_points = init[node.input[1]], init[node.input[2]] if len(node.input) > 2 else np.zeros(1, np.int32)
        axis = next((a.i for a in node.attribute if a.name == "axis"), 1) if np.size(scales) > 1 else None
        qmin, qmax = (-127, 127) if values.dtype == np.int8 else (-(2 ** 31), 2 ** 31 - 1)
        if values.dtype == np.int8 and axis is None:
            qmin = -128
        tensor = QuantizedTensor(node.input[0], values, np.asarray(scales, np.float32).reshape(-1),
                                 np.asarray(zero_points, np.int64).reshape(-1), axis, qmin, qmax, ROUNDING)
        for attr, value in constants.items():
            if value.shape == values.shape and _requantized(value, tensor) == values.tobytes():
                tensor.attr = attr
                break
        out.append(tensor)
    return out


def _requantized(value: np.ndarray, tensor: QuantizedTensor) -> bytes:
    shape = [1] * value.ndim
    if tensor.axis is not None:
        shape[tensor.axis] = -1
    scales = tensor.scales.reshape(shape) if tensor.axis is not None else tensor.scales[0]
    zero_points = tensor.zero_points.reshape(shape) if tensor.axis is not None else tensor.zero_points[0]
    q = np.clip(np.rint(value.astype(np.float32) / scales) + zero_points, tensor.quant_min, tensor.quant_max)
    return q.astype(tensor.values.dtype).tobytes()


class OnnxRunner:
    def __init__(self, path, graph: dict):
        import onnxruntime as ort

        options = ort.SessionOptions()
        options.intra_op_num_threads = 1
        options.inter_op_num_threads = 1
        self.session = ort.InferenceSession(str(path), options, providers=["CPUExecutionProvider"])
        self.inputs = [t["name"] for t in graph["inputs"]]
        self.outputs = [t["name"] for t in graph["outputs"]]

    def __call__(self, *arrays: np.ndarray) -> list[np.ndarray]:
        feed = {name: np.ascontiguousarray(a, np.float32) for name, a in zip(self.inputs, arrays)}
        return self.session.run(self.outputs, feed)


def open_runner(path, graph: dict, micro: bool = False, arena: int | None = None):
    return OnnxRunner(path, graph)


def inspect_file(path: Path) -> dict:
    """`amc inspect FILE`: the graph file's I/O, operators and constants."""
    import onnx

    model = onnx.load(str(path))
    ops: dict[str, int] = {}
    for node in model.graph.node:
        ops[node.op_type] = ops.get(node.op_type, 0) + 1
    return {"path": str(path), "kind": "onnx", "bytes": path.stat().st_size, "ops": ops,
            "inputs": [i.name for i in model.graph.input], "outputs": [o.name for o in model.graph.output],
            "initializers": [{"name": t.name, "dtype": onnx.TensorProto.DataType.Name(t.data_type), "shape": list(t.dims)}
                             for t in model.graph.initializer]}
