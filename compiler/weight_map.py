"""The weight map: where every quantized weight tensor lives inside its graph file.

Each entry gives the file, byte offset and length, dtype, shape, the quantization (per-channel
scales and zero points, exactly as the file holds them, with the rounding rule) and the model
parameter (plus the float-pass transform) the tensor was quantized from. Entries are checked
against the file bytes when they are made and whenever a bundle is inspected; docs/manifest.md
specifies the format."""

from __future__ import annotations

import hashlib

import numpy as np

from amc.common.errors import AmcError
from amc.targets.lowered import LoweredGraph, QuantizedTensor
from amc.targets.step_graph import StepGraph


def _find_all(data: bytes, needle: bytes, limit: int = 2) -> list[int]:
    found, start = [], 0
    while len(found) < limit:
        at = data.find(needle, start)
        if at < 0:
            break
        found.append(at)
        start = at + 1
    return found


def _entry(graph: str, file: str, tensor: QuantizedTensor, offset: int, source: dict) -> dict:
    raw = np.ascontiguousarray(tensor.values).tobytes()
    entry = {
        "graph": graph, "file": file, "attr": tensor.attr,
        "parameter": source["parameter"], "transform": source["transform"],
        "offset": offset, "length": len(raw), "dtype": str(tensor.values.dtype),
        "shape": list(tensor.values.shape), "layout": tensor.layout or "row-major",
        "sha256": hashlib.sha256(raw).hexdigest(),
    }
    if tensor.scales is not None:
        scales = np.asarray(tensor.scales, np.float32).reshape(-1)
        zero_points = np.asarray(tensor.zero_points, np.int64).reshape(-1)
        entry["quantization"] = {
            "scheme": "per_channel" if scales.size > 1 or tensor.axis is not None else "per_tensor",
            "axis": tensor.axis, "quant_min": tensor.quant_min, "quant_max": tensor.quant_max,
            "rounding": tensor.rounding,
            # float32 values written as the shortest decimal that reads back to the same float32
            "scales": [float(np.format_float_positional(s, unique=True)) if np.isfinite(s) else None
                       for s in scales],
            "zero_points": [int(z) for z in zero_points],
        }
    else:
        entry["quantization"] = None
    return entry


def build(lowered: LoweredGraph, file: str, step: StepGraph) -> tuple[list[dict], list[str]]:
    """Entries for one graph file. Quantized (integer) tensors must be found exactly once;
    float tensors stored as they are enter the map only where their bytes are unambiguous."""
    data = lowered.data
    entries, notes = [], []
    for tensor in lowered.weights:
        raw = np.ascontiguousarray(tensor.values).tobytes()
        quantized = tensor.scales is not None
        if tensor.offset is not None:
            offsets = [tensor.offset] if data[tensor.offset:tensor.offset + len(raw)] == raw else []
        else:
            offsets = _find_all(data, raw)
        if len(offsets) != 1:
            if quantized:
                raise AmcError(f"graph '{lowered.graph}': quantized weight '{tensor.attr}' occurs "
                               f"{len(offsets)} times in {file}; cannot map it")
            notes.append(f"{tensor.attr}: float bytes not located uniquely, left out of the weight map")
            continue
        entries.append(_entry(lowered.graph, file, tensor, offsets[0], step.parameter_of(tensor.attr)))
    return entries, notes


def check(entries: list[dict], files: dict[str, bytes]) -> list[str]:
    """Problems found comparing the entries with the file bytes (empty when all agree)."""
    problems = []
    for entry in entries:
        data = files.get(entry["file"])
        if data is None:
            problems.append(f"{entry['attr']}: file {entry['file']} missing")
            continue
        chunk = data[entry["offset"]:entry["offset"] + entry["length"]]
        if len(chunk) != entry["length"] or hashlib.sha256(chunk).hexdigest() != entry["sha256"]:
            problems.append(f"{entry['file']}@{entry['offset']}: bytes of '{entry['attr']}' do not match")
    return problems


def requantize(entry: dict, values: np.ndarray) -> bytes:
    """Quantize float `values` (the graph constant named by `entry['attr']`, e.g. from
    `amc.compiler.split.graph_weights` on an updated model) with the entry's frozen scales, into
    the bytes that go at `entry['offset']`."""
    values = np.asarray(values, np.float32)
    q = entry["quantization"]
    if q is None:
        out = values.astype(entry["dtype"])
    else:
        scales = np.asarray(q["scales"], np.float32)
        zero_points = np.asarray(q["zero_points"], np.int64)
        if entry["layout"] == "transposed":
            values = values.T
        elif entry["layout"].startswith("reshaped"):
            values = values.reshape(entry["shape"])
        axis = q["axis"]
        shape = [1] * values.ndim
        if axis is not None and values.ndim:
            shape[axis] = -1
        scales, zero_points = scales.reshape(shape), zero_points.reshape(shape)
        if q["rounding"].startswith("round_half_even(float * (1 / scale))"):
            scaled = values * (np.float32(1.0) / scales)
        else:
            scaled = values / scales
        if "half_away" in q["rounding"]:
            rounded = np.sign(scaled) * np.floor(np.abs(scaled) + np.float32(0.5))
        else:
            rounded = np.rint(scaled)
        out = np.clip(rounded + zero_points, q["quant_min"], q["quant_max"]).astype(entry["dtype"])
    if q is None and entry["layout"].startswith("reshaped"):
        out = out.reshape(entry["shape"])
    if list(out.shape) != entry["shape"]:
        raise AmcError(f"{entry['attr']}: requantized shape {list(out.shape)} != {entry['shape']}")
    return np.ascontiguousarray(out).tobytes()
