"""A step graph: the float fx graph of one frame of one branch or the arbitrator, with explicit
state, after the passes. It is what every backend lowers (amc.targets.backends) and what the
compiler's split produces (amc.compiler.split)."""

from __future__ import annotations

from dataclasses import dataclass, field

import torch
from torch import fx

from amc.passes import SOURCES_KEY


@dataclass
class StepGraph:
    name: str
    inputs: tuple[str, ...]
    outputs: tuple[str, ...]
    example_inputs: tuple[torch.Tensor, ...]
    module: fx.GraphModule                      # the float graph after the passes
    passes_applied: list[str] = field(default_factory=list)

    @property
    def weight_sources(self) -> dict[str, dict]:
        return self.module.meta.get(SOURCES_KEY, {})

    def constants(self) -> dict[str, torch.Tensor]:
        """Graph attribute name -> float tensor, for every constant the graph reads."""
        out = {}
        for node in self.module.graph.nodes:
            if node.op == "get_attr":
                value = self.module
                for part in node.target.split("."):
                    value = getattr(value, part)
                if isinstance(value, torch.Tensor):
                    out[node.target] = value.detach()
        return out

    def parameter_of(self, attr: str) -> dict:
        return self.weight_sources.get(attr, {"parameter": attr, "transform": []})


def batch_dynamic(example: tuple[torch.Tensor, ...]) -> tuple[dict, ...]:
    """Dynamic batch dimension for every input: the float graph runs a frame per row, so
    calibration can run many frames at once; backends export it at batch 1."""
    batch = torch.export.Dim("batch", min=1, max=1 << 16)
    return tuple({0: batch} for _ in example)
