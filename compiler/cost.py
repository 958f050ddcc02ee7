"""What a step graph costs a frame: multiply-accumulates of its projections, and weight bytes."""

from __future__ import annotations

import torch

from amc.passes import get_constant, is_linear
from amc.targets.step_graph import StepGraph


def macs_per_frame(step: StepGraph) -> dict[str, int]:
    """`dense`: MACs the runtime executes (every projection as a dense matrix, batch 1);
    `nonzero`: only the nonzero weights (what a sparse kernel would execute)."""
    dense = nonzero = 0
    for node in step.module.graph.nodes:
        if is_linear(node):
            weight = get_constant(step.module, node.args[1])
            if weight is None:
                continue
            dense += weight.numel()
            nonzero += int(torch.count_nonzero(weight))
    return {"dense": dense, "nonzero": nonzero}
