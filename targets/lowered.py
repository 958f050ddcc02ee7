"""What a backend hands back for one step graph: the file's bytes, its I/O with quantization
parameters, and every quantized weight tensor as stored (for the weight map)."""

from __future__ import annotations

from dataclasses import dataclass, field

import numpy as np


@dataclass
class TensorSpec:
    name: str
    shape: tuple[int, ...]
    dtype: str                        # as the graph's caller passes it: "float32", "int8", "int16"
    scale: float | None = None        # quantization of the tensor inside (or at) the graph boundary
    zero_point: int | None = None

    def to_json(self) -> dict:
        return {"name": self.name, "shape": list(self.shape), "dtype": self.dtype,
                "scale": self.scale, "zero_point": self.zero_point}


@dataclass
class QuantizedTensor:
    attr: str                         # the float graph constant it was quantized from
    values: np.ndarray                # exactly as stored in the file (dtype and layout)
    scales: np.ndarray | None = None  # float32, one per channel (or one)
    zero_points: np.ndarray | None = None
    axis: int | None = None           # channel axis of `scales` in `values`
    quant_min: int | None = None
    quant_max: int | None = None
    rounding: str = ""                # how values = clamp(round(float / scale) + zero_point)
    layout: str = ""                  # e.g. "transposed" when values = quantize(float).T
    offset: int | None = None         # byte offset in the file where the backend knows it


@dataclass
class LoweredGraph:
    graph: str
    backend: str
    data: bytes
    inputs: list[TensorSpec]
    outputs: list[TensorSpec]
    weights: list[QuantizedTensor]
    ops: dict[str, int] = field(default_factory=dict)       # operator -> count, in the lowered file
    notes: list[str] = field(default_factory=list)
    extra: dict = field(default_factory=dict)
