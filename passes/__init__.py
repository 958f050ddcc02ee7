"""amc.passes: graph passes on the exported float step graphs (torch.fx GraphModules from
`torch.export.export(...).module()`), one pass a file.

Every pass is a function `run(graph_module) -> (graph_module, modified)` that states what it
requires and ensures in its docstring and computes `modified` from what it rewrote. Passes that
create or change a weight record where it comes from in `weight_sources(graph_module)`, so the
weight map can name the model parameter behind every quantized tensor and the transform applied
to it (the diff-patch requantizes new float weights through the same passes)."""

from __future__ import annotations

import torch
from torch import fx

SOURCES_KEY = "amc.weight_sources"


def weight_sources(gm: fx.GraphModule) -> dict[str, dict]:
    """attribute name -> {"parameter": model parameter name, "transform": [steps]}."""
    return gm.meta.setdefault(SOURCES_KEY, {})


def get_constant(gm: fx.GraphModule, node: fx.Node) -> torch.Tensor | None:
    """The tensor behind a get_attr node, or None if `node` is not one."""
    if node is None or not isinstance(node, fx.Node) or node.op != "get_attr":
        return None
    value = gm
    for part in node.target.split("."):
        value = getattr(value, part)
    return value if isinstance(value, torch.Tensor) else None


def add_constant(gm: fx.GraphModule, name: str, value: torch.Tensor, before: fx.Node,
                 parameter: str, transform: list[str]) -> fx.Node:
    """Register `value` as a new buffer `name` and return a get_attr node for it."""
    attr = name.replace(".", "_")
    base, n = attr, 1
    while hasattr(gm, attr):
        attr, n = f"{base}_{n}", n + 1
    gm.register_buffer(attr, value.detach().clone().contiguous())
    with gm.graph.inserting_before(before):
        node = gm.graph.get_attr(attr)
    weight_sources(gm)[attr] = {"parameter": parameter, "transform": list(transform)}
    return node


def source_of(gm: fx.GraphModule, node: fx.Node) -> dict:
    sources = weight_sources(gm)
    return sources.get(node.target, {"parameter": node.target, "transform": []})


def is_linear(node: fx.Node) -> bool:
    return node.op == "call_function" and node.target is torch.ops.aten.linear.default


def linear_bias(node: fx.Node):
    return node.args[2] if len(node.args) > 2 else node.kwargs.get("bias")


def finish(gm: fx.GraphModule, modified: bool) -> tuple[fx.GraphModule, bool]:
    if modified:
        gm.graph.eliminate_dead_code()
        gm.graph.lint()
        gm.recompile()
        used = {node.target for node in gm.graph.nodes if node.op == "get_attr"}
        for name in [n for n in weight_sources(gm) if n not in used]:
            del weight_sources(gm)[name]
    return gm, modified
