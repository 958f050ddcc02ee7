"""ExecuTorch lowering: torch.export -> PT2E int8 (XNNPACK quantizer, per-channel weights) ->
to_edge_transform_and_lower with the XNNPACK partitioner -> .pte; and the runner that executes a
.pte through `executorch.runtime`.

The graph I/O stays float32 (the delegate quantizes and dequantizes at its boundary). The state
observers (h and c, at the inputs and the outputs) are replaced by fixed ranges: the joint state
ranges over both branches, so fast and slow quantize the state identically."""

from __future__ import annotations

from pathlib import Path

import numpy as np
import torch

from amc.common.errors import LoweringError, ToolMissingError
from amc.targets.lowered import LoweredGraph, QuantizedTensor, TensorSpec
from amc.targets.step_graph import StepGraph, batch_dynamic

ROUNDING = "round_half_even(float * (1 / scale)) + zero_point, clamped (torch quantize_per_channel)"


def _toolchain():
    try:
        from executorch.backends.xnnpack.partition.xnnpack_partitioner import XnnpackPartitioner
        from executorch.backends.xnnpack.quantizer.xnnpack_quantizer import (
            XNNPACKQuantizer,
            get_symmetric_quantization_config,
        )
        from executorch.exir import to_edge_transform_and_lower
        from torchao.quantization.pt2e.quantize_pt2e import convert_pt2e, prepare_pt2e
    except ImportError as error:
        raise ToolMissingError(f"ExecuTorch is not installed ({error}); pip install executorch==1.5.1") from None
    return XnnpackPartitioner, XNNPACKQuantizer, get_symmetric_quantization_config, to_edge_transform_and_lower, \
        prepare_pt2e, convert_pt2e


CALIBRATION_FRAMES = 1600
"""Calibration frames a graph. The XNNPACK quantizer observes activations with histograms, whose
ranges settle with more frames: on the reference model the bundle's CER is 0.56 points above float
with 400 frames and 0.37 with 1,600 (whole test split, docs/benchmarks.md)."""


def _observer_after(node):
    """The observer module call that observes `node`, if any."""
    for user in node.users:
        if user.op == "call_module" and "activation_post_process" in str(user.target):
            return user.target
    return None


def _state_observers(prepared, step: StepGraph) -> dict[str, set[str]]:
    """Observer module names on the state tensors: slices of the h/c inputs and the h'/c' outputs."""
    found: dict[str, set[str]] = {"h": set(), "c": set()}
    placeholders = {n.target: n for n in prepared.graph.nodes if n.op == "placeholder"}
    for state in ("h", "c"):
        node = placeholders.get(state)
        if node is None:
            continue
        frontier = [node]
        while frontier:
            current = frontier.pop()
            name = _observer_after(current)
            if name:
                found[state].add(name)
                continue
            for user in current.users:
                if user.op == "call_function" and user.target in (torch.ops.aten.slice.Tensor,):
                    frontier.append(user)
    output = next(n for n in prepared.graph.nodes if n.op == "output")
    values = output.args[0]
    for state, index in (("h", 1), ("c", 2)):
        if len(values) > index and values[index].op == "call_module":
            found[state].add(values[index].target)
    return found


def _pin(prepared, names: set[str], low: float, high: float) -> None:
    from torchao.quantization.pt2e.observer import MinMaxObserver

    observers = {id(getattr(prepared, name)): getattr(prepared, name) for name in names}
    for old in observers.values():
        pinned = MinMaxObserver(dtype=old.dtype, qscheme=old.qscheme, quant_min=old.quant_min,
                                quant_max=old.quant_max, eps=float(getattr(old, "eps", torch.finfo(torch.float32).eps)))
        pinned(torch.tensor([low, high], dtype=torch.float32))
        # a shared quantization spec is one observer object under several names: replace them all
        for name, module in list(prepared._modules.items()):
            if module is old:
                setattr(prepared, name, pinned)


def _get(gm, target: str) -> torch.Tensor:
    value = gm
    for part in target.split("."):
        value = getattr(value, part)
    return value


def _match_attr(step: StepGraph, values: torch.Tensor, scales: torch.Tensor, zero_points: torch.Tensor,
                axis: int, qmin: int, qmax: int) -> str | None:
    from torch.ao.quantization.fx._decomposed import quantize_per_channel

    for attr, tensor in step.constants().items():
        if tuple(tensor.shape) != tuple(values.shape) or tensor.dtype != torch.float32:
            continue
        q = quantize_per_channel(tensor, scales.to(torch.float32), zero_points, axis, qmin, qmax, values.dtype)
        if torch.equal(q, values):
            return attr
    return None


def calibration_batches(calibration: list[tuple[np.ndarray, ...]], size: int = 100):
    """The calibration frames stacked into batches (one frame a row)."""
    for start in range(0, len(calibration), size):
        chunk = calibration[start:start + size]
        yield tuple(torch.from_numpy(np.concatenate([sample[i] for sample in chunk])) for i in range(len(chunk[0])))


def check_toolchain() -> None:
    _toolchain()


def lower(step: StepGraph, calibration: list[tuple[np.ndarray, ...]], state_ranges: dict,
          variant: str = "int8") -> LoweredGraph:
    XnnpackPartitioner, XNNPACKQuantizer, symmetric_config, to_edge_transform_and_lower, prepare_pt2e, convert_pt2e = \
        _toolchain()
    example = step.example_inputs
    try:
        with torch.no_grad():
            exported = torch.export.export(step.module, tuple(torch.cat([e, e]) for e in example), strict=False,
                                           dynamic_shapes=batch_dynamic(example))
            prepared = prepare_pt2e(exported.module(),
                                    XNNPACKQuantizer().set_global(symmetric_config(is_per_channel=True)))
            for batch in calibration_batches(calibration):
                prepared(*batch)
            pinned = _state_observers(prepared, step) if step.name != "arbitrator" else {"h": set(), "c": set()}
            if step.name == "arbitrator":
                pinned["h"] = _state_observers(prepared, step)["h"]
            for state, names in pinned.items():
                if names:
                    _pin(prepared, names, *state_ranges[state])
            quantized = convert_pt2e(prepared)
            weights = _quantized_weights(quantized, step)
            edge = to_edge_transform_and_lower(torch.export.export(quantized, example, strict=False),
                                               partitioner=[XnnpackPartitioner()])
            ops = _ops(edge.exported_program().graph_module)
            program = edge.to_executorch()
    except (RuntimeError, NotImplementedError, torch._dynamo.exc.Unsupported) as error:
        op = _op_in(str(error))
        raise LoweringError(f"graph '{step.name}': ExecuTorch/XNNPACK cannot lower {op or 'an operator'} "
                            f"({str(error).splitlines()[0][:160]})") from None
    outside = {op: n for op, n in ops.items()
               if op not in _BOUNDARY_OPS and op.removeprefix("aten.").split(".")[0] not in _DATA_MOVEMENT}
    if outside:
        op = sorted(outside)[0]
        raise LoweringError(f"graph '{step.name}': operator {op} is not taken by the XNNPACK delegate "
                            f"(it would run unquantized on portable kernels)")
    io_q = _io_quantization(quantized, step)
    inputs = [TensorSpec(n, tuple(t.shape), "float32", *io_q.get(n, (None, None)))
              for n, t in zip(step.inputs, example)]
    with torch.no_grad():
        results = step.module(*example)
    results = results if isinstance(results, tuple) else (results,)
    outputs = [TensorSpec(n, tuple(t.shape), "float32", *io_q.get(n, (None, None)))
               for n, t in zip(step.outputs, results)]
    notes = [f"state observers pinned to the joint ranges: {sorted(pinned['h'] | pinned['c'])}"]
    return LoweredGraph(step.name, "executorch", bytes(program.buffer), inputs, outputs, weights,
                        ops=ops, notes=notes)


_BOUNDARY_OPS = {"executorch_call_delegate", "getitem"}
_DATA_MOVEMENT = ("slice_copy", "view_copy", "cat", "alias_copy", "unsqueeze_copy", "squeeze_copy", "clone",
                  "_to_copy", "split_with_sizes_copy", "split_copy", "select_copy", "expand_copy", "permute_copy")
"""Ops that only move data: fine outside the delegate (slicing the float state inputs)."""


def _ops(gm) -> dict[str, int]:
    counts: dict[str, int] = {}
    for node in gm.graph.nodes:
        if node.op == "call_function":
            name = getattr(node.target, "__name__", str(node.target))
            counts[name] = counts.get(name, 0) + 1
    return counts


def _op_in(message: str) -> str | None:
    import re

    found = re.search(r"(aten\.[A-Za-z0-9_]+(?:\.[A-Za-z0-9_]+)?)", message)
    return found.group(1) if found else None


def _quantized_weights(quantized, step: StepGraph) -> list[QuantizedTensor]:
    out = []
    for node in quantized.graph.nodes:
        if node.op != "call_function" or node.target is not torch.ops.quantized_decomposed.dequantize_per_channel.default:
            continue
        source, scale_node, zp_node, axis, qmin, qmax, dtype = node.args[:7]
        if source.op != "get_attr":
            continue
        values, scales, zps = _get(quantized, source.target), _get(quantized, scale_node.target), _get(quantized, zp_node.target)
        attr = _match_attr(step, values, scales, zps, axis, qmin, qmax)
        out.append(QuantizedTensor(attr or source.target, values.numpy().copy(),
                                   scales.to(torch.float32).numpy().copy(), zps.numpy().astype(np.int32),
                                   axis, qmin, qmax, ROUNDING))
    # biases: float in the graph, quantized to int32 by the XNNPACK delegate with
    # scale = weight_scale[channel] * input_scale (executorch/backends/xnnpack/operators/quant_params.py)
    from torch.ao.quantization.fx._decomposed import quantize_per_channel

    dq_tensor = torch.ops.quantized_decomposed.dequantize_per_tensor.default
    dq_channel = torch.ops.quantized_decomposed.dequantize_per_channel.default
    for node in quantized.graph.nodes:
        if not (node.op == "call_function" and node.target is torch.ops.aten.linear.default and len(node.args) > 2):
            continue
        activation, weight, bias = node.args[:3]
        if not (isinstance(bias, torch.fx.Node) and bias.op == "get_attr" and activation.target is dq_tensor
                and weight.target is dq_channel):
            continue
        float_bias = _get(quantized, bias.target).detach().to(torch.float32)
        scales = _get(quantized, weight.args[1].target) * float(activation.args[1])
        zero_points = torch.zeros(scales.shape[0], dtype=torch.int32)
        values = quantize_per_channel(float_bias, scales, zero_points, 0, -(2 ** 31), 2 ** 31 - 1, torch.int32)
        attr = bias.target if bias.target in step.constants() else bias.target
        out.append(QuantizedTensor(attr, values.numpy().copy(), scales.to(torch.float32).numpy().copy(),
                                   zero_points.numpy(), 0, -(2 ** 31), 2 ** 31 - 1, ROUNDING))
    return out


def _io_quantization(quantized, step: StepGraph) -> dict[str, tuple[float, int]]:
    """The int8 scale/zero point the delegate applies to each input (first quantize after it) and
    output (last quantize before it)."""
    q = torch.ops.quantized_decomposed.quantize_per_tensor.default
    dq = torch.ops.quantized_decomposed.dequantize_per_tensor.default
    found = {}
    for node in quantized.graph.nodes:
        if node.op == "placeholder" and node.target in step.inputs:
            frontier = [node]
            while frontier:
                current = frontier.pop()
                hit = [u for u in current.users if u.op == "call_function" and u.target is q]
                if hit:
                    found[node.target] = (float(hit[0].args[1]), int(hit[0].args[2]))
                    break
                frontier += [u for u in current.users if u.op == "call_function"
                             and u.target in (torch.ops.aten.slice.Tensor,)]
    output = next(n for n in quantized.graph.nodes if n.op == "output")
    for name, value in zip(step.outputs, output.args[0]):
        if value.op == "call_function" and value.target is dq:
            found[name] = (float(value.args[1]), int(value.args[2]))
    return found


def executorch_runtime():
    """Import `executorch.runtime` (what the host side runs the bundle with) without the
    exporter. Its pybindings import `executorch.exir._warnings` only, but importing that runs
    `executorch/exir/__init__.py`, which loads the whole export stack (exir passes, torchao):
    8.6 s of a 8.7 s import on idle cores, about 55 s on these shared ones. A bare package object
    stands in for `executorch.exir` during that import and is removed afterwards, so a later
    `import executorch.exir` (the compiler) still runs the real one. Nothing happens when the
    exporter or the runtime is already loaded. Returns the `Runtime` singleton."""
    import sys

    if "executorch.runtime" not in sys.modules and "executorch.exir" not in sys.modules:
        _import_runtime_without_exporter()
    from executorch.runtime import Runtime

    return Runtime.get()


def _import_runtime_without_exporter() -> None:
    import os
    import sys
    import types

    import executorch

    stand_in = types.ModuleType("executorch.exir")
    stand_in.__path__ = [os.path.join(executorch.__path__[0], "exir")]
    sys.modules["executorch.exir"] = stand_in
    try:
        import executorch.runtime  # noqa: F401
    finally:
        if sys.modules.get("executorch.exir") is stand_in:
            del sys.modules["executorch.exir"]
        if getattr(executorch, "exir", None) is stand_in:
            del executorch.exir


class ExecutorchRunner:
    """One .pte, one method 'forward'; float numpy in, float numpy out."""

    def __init__(self, path):
        self.program = executorch_runtime().load_program(str(path))
        self.method = self.program.load_method("forward")

    def __call__(self, *arrays: np.ndarray) -> list[np.ndarray]:
        outputs = self.method.execute([torch.from_numpy(np.ascontiguousarray(a, np.float32)) for a in arrays])
        return [o.numpy() for o in outputs]


def open_runner(path, graph: dict, micro: bool = False, arena: int | None = None):
    return ExecutorchRunner(path)


def inspect_file(path: Path) -> dict:
    """`amc inspect FILE`: the graph file's I/O, operators and constants."""
    program = executorch_runtime().load_program(str(path))
    meta = program.metadata("forward")
    return {"path": str(path), "kind": "pte", "bytes": path.stat().st_size,
            "inputs": [str(meta.input_tensor_meta(i)) for i in range(meta.num_inputs())],
            "outputs": [str(meta.output_tensor_meta(i)) for i in range(meta.num_outputs())],
            "methods": sorted(program.method_names)}
