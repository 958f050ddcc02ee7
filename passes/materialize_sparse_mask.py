"""Materialize the sparse branch's pruning mask into its weight.

Requires: linear nodes whose weight is `mul(W, mask)` of two constants (the sparse projection
as exported: `F.linear(z, weight * mask, bias)`).
Ensures: each such linear takes one constant `W * mask` as its weight, so the quantizer sees a
weight (quantized per channel, zeros stay exact zeros) instead of an activation computed every
frame; the mul disappears. Numerically the identity."""

from __future__ import annotations

import torch
from torch import fx

from amc.passes import add_constant, finish, get_constant, is_linear, source_of

NAME = "materialize_sparse_mask"


def run(gm: fx.GraphModule) -> tuple[fx.GraphModule, bool]:
    modified = False
    for node in list(gm.graph.nodes):
        if not is_linear(node):
            continue
        product = node.args[1]
        if not (isinstance(product, fx.Node) and product.op == "call_function"
                and product.target is torch.ops.aten.mul.Tensor and len(product.users) == 1):
            continue
        weight_node, mask_node = product.args[0], product.args[1]
        weight, mask = get_constant(gm, weight_node), get_constant(gm, mask_node)
        if weight is None or mask is None or weight.shape != mask.shape:
            continue
        source = source_of(gm, weight_node)
        mask_source = source_of(gm, mask_node)["parameter"]
        materialized = add_constant(gm, f"{weight_node.target}_masked", weight * mask, before=product,
                                    parameter=source["parameter"],
                                    transform=source["transform"] + [f"mul {mask_source}"])
        node.replace_input_with(product, materialized)
        modified = True
    return finish(gm, modified)
