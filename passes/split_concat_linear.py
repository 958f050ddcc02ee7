"""Split a projection of concatenated inputs into one projection per input, summed.

Requires: `linear(cat([a, b, ...], -1), W, bias)` with a constant W, the cat used only by this
linear, and the widths of a, b, ... known from the export.
Ensures: `linear(a, W[:, A], bias) + linear(b, W[:, B]) + ...` over the column spans A, B, ...
(an input narrower than MIN_WIDTH columns would stay concatenated with its left neighbour;
MIN_WIDTH is 1: even the arbitrator's one backlog column gets its own scale, since the backlog
in milliseconds spans a range far from the features').
The gates of an LSTM layer read `[features, h]`; a quantizer ties the inputs of a cat to one
scale, so without this split the recurrent state shares its int8 scale with the log-mel
features (a range several times wider) and loses most of its resolution. After the split every
input keeps its own scale, and h/c can be pinned to the joint state ranges. Numerically the
identity up to float summation order."""

from __future__ import annotations

import torch
from torch import fx

from amc.passes import add_constant, finish, get_constant, is_linear, linear_bias, source_of

NAME = "split_concat_linear"

_CAT, _ADD = torch.ops.aten.cat.default, torch.ops.aten.add.Tensor
MIN_WIDTH = 1


def _groups(inputs: list, widths: list[int]) -> list[list[int]]:
    groups: list[list[int]] = []
    for index, width in enumerate(widths):
        if groups and (width < MIN_WIDTH or sum(widths[i] for i in groups[-1]) < MIN_WIDTH):
            groups[-1].append(index)
        else:
            groups.append([index])
    return groups


def run(gm: fx.GraphModule) -> tuple[fx.GraphModule, bool]:
    modified = False
    for linear in list(gm.graph.nodes):
        if not is_linear(linear):
            continue
        cat = linear.args[0]
        if not (isinstance(cat, fx.Node) and cat.op == "call_function" and cat.target is _CAT
                and len(cat.users) == 1):
            continue
        axis = cat.args[1] if len(cat.args) > 1 else 0
        inputs = list(cat.args[0])
        widths = [item.meta["val"].shape[-1] if "val" in item.meta else None for item in inputs]
        weight = get_constant(gm, linear.args[1])
        if axis not in (-1, 1) or weight is None or None in widths or len(inputs) < 2:
            continue
        groups = _groups(inputs, widths)
        if len(groups) < 2:
            continue
        w_source = source_of(gm, linear.args[1])
        bias = linear_bias(linear)
        total, start = None, 0
        for index, group in enumerate(groups):
            width = sum(widths[i] for i in group)
            if len(group) == 1:
                item = inputs[group[0]]
            else:
                with gm.graph.inserting_before(linear):
                    item = gm.graph.call_function(_CAT, ([inputs[i] for i in group], -1))
            part = add_constant(gm, f"{linear.args[1].target}_cols{start}", weight[:, start:start + width],
                                before=linear, parameter=w_source["parameter"],
                                transform=w_source["transform"] + [f"columns {start}:{start + width}"])
            with gm.graph.inserting_before(linear):
                args = (item, part, bias) if index == 0 and bias is not None else (item, part)
                term = gm.graph.call_function(torch.ops.aten.linear.default, args)
                total = term if total is None else gm.graph.call_function(_ADD, (total, term))
            start += width
        linear.replace_all_uses_with(total)
        gm.graph.erase_node(linear)
        modified = True
    return finish(gm, modified)
