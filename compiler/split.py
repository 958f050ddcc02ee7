"""Split the branched encoder into its three step graphs and export each as a float fx graph.

A step graph processes one frame with explicit state: fast and slow map (features, h, c) to
(logits, h', c') with the same state layout; the arbitrator maps (features, backlog_ms, h) to
route logits (slow, fast). The exported graph is what the passes rewrite and every backend lowers."""

from __future__ import annotations

import torch

from amc.model.branched import BranchedEncoder
from amc.passes import SOURCES_KEY, fold_factorized, fold_normalization, materialize_sparse_mask, split_concat_linear
from amc.targets.step_graph import StepGraph, batch_dynamic

GRAPHS = ("fast", "slow", "arbitrator")

PASSES = {
    materialize_sparse_mask.NAME: materialize_sparse_mask.run,
    fold_factorized.NAME: fold_factorized.run,
    fold_normalization.NAME: fold_normalization.run,
    split_concat_linear.NAME: split_concat_linear.run,
}
"""The float-graph passes, in the order they run."""

DEFAULT_PASSES = tuple(PASSES)


def signature(model: BranchedEncoder, graph: str) -> tuple[tuple[str, ...], tuple[str, ...], tuple[torch.Tensor, ...]]:
    config = model.config
    x = torch.zeros(1, config.features.frame_dim)
    h = torch.zeros(1, config.state_dim)
    if graph == "arbitrator":
        return ("features", "backlog_ms", "h"), ("route_logits",), (x, torch.zeros(1, 1), h)
    return ("features", "h", "c"), ("logits", "h_next", "c_next"), (x, h, h.clone())


def _prefix(graph: str) -> dict[str, str]:
    """Attribute prefixes of a step module -> the model's parameter names."""
    if graph == "arbitrator":
        return {"arbitrator.": "arbitrator.", "normalize.": ""}
    return {"stack.": f"{graph}.", "head.": "head.", "normalize.": ""}


def export_step(model: BranchedEncoder, graph: str, passes: tuple[str, ...] = DEFAULT_PASSES) -> StepGraph:
    """torch.export the step module of `graph`, then run the float passes on it."""
    if graph not in GRAPHS:
        raise ValueError(graph)
    inputs, outputs, example = signature(model, graph)
    module = model.step_module(graph).eval()
    with torch.no_grad():
        gm = torch.export.export(module, tuple(torch.cat([e, e]) for e in example), strict=False,
                                 dynamic_shapes=batch_dynamic(example)).module()
    sources = gm.meta.setdefault(SOURCES_KEY, {})
    for node in gm.graph.nodes:
        if node.op == "get_attr":
            for prefix, replacement in _prefix(graph).items():
                if node.target.startswith(prefix):
                    sources[node.target] = {"parameter": replacement + node.target[len(prefix):], "transform": []}
    applied = []
    with torch.no_grad():
        for name in passes:
            gm, modified = PASSES[name](gm)
            if modified:
                applied.append(name)
    return StepGraph(graph, inputs, outputs, example, gm, applied)


def split_model(model: BranchedEncoder, passes: tuple[str, ...] = DEFAULT_PASSES) -> dict[str, StepGraph]:
    return {graph: export_step(model, graph, passes) for graph in GRAPHS}


def graph_weights(model: BranchedEncoder, graph: str, passes: tuple[str, ...]) -> dict[str, torch.Tensor]:
    """The float constants of one step graph after `passes`, by graph attribute name: what the
    weight map's `attr` fields name, and what a diff requantizes with the frozen scales."""
    return export_step(model, graph, passes).constants()
