"""Fold the feature normalization (x - mean) / std into the projections that read the features.

Requires: `div(sub(x, mean), std)` with constant mean and std of shape (F,), std without zeros,
or `div(x, s)` with a nonzero Python scalar s (the arbitrator's backlog_ms / backlog_scale_ms),
whose every user is a `cat` along the last axis that feeds only linear nodes with constant
weights.
Ensures: those linears read the raw features: their columns for the feature span are divided
by std and their bias absorbs -W_cols @ (mean / std) (a bias is added where there was none);
sub and div disappear. This removes two elementwise ops a frame and the quantization step of
the normalized features (TFLite Micro has no int8 DIV). Numerically equal up to float rounding."""

from __future__ import annotations

import torch
from torch import fx

from amc.passes import add_constant, finish, get_constant, is_linear, linear_bias, source_of

NAME = "fold_normalization"

_SUB, _DIV, _CAT = torch.ops.aten.sub.Tensor, torch.ops.aten.div.Tensor, torch.ops.aten.cat.default


def _column_span(cat: fx.Node, feature: fx.Node) -> tuple[int, int] | None:
    inputs, axis = cat.args[0], cat.args[1] if len(cat.args) > 1 else 0
    if axis not in (-1, 1) or inputs.count(feature) != 1:
        return None
    start = 0
    for item in inputs:
        width = item.meta.get("val").shape[-1] if "val" in item.meta else None
        if width is None:
            return None
        if item is feature:
            return start, start + width
        start += width
    return None


def run(gm: fx.GraphModule) -> tuple[fx.GraphModule, bool]:
    modified = False
    for div in list(gm.graph.nodes):
        if not (div.op == "call_function" and div.target is _DIV):
            continue
        sub = div.args[0]
        if isinstance(div.args[1], (int, float)) and isinstance(sub, fx.Node) and div.args[1] != 0:
            raw, mean, std = sub, torch.zeros(()), torch.tensor(float(div.args[1]))
            mean_name, std_name = "0", repr(float(div.args[1]))
        elif (isinstance(sub, fx.Node) and sub.op == "call_function" and sub.target is _SUB
                and len(sub.users) == 1):
            raw, mean, std = sub.args[0], get_constant(gm, sub.args[1]), get_constant(gm, div.args[1])
            if mean is None or std is None or mean.dim() != 1 or std.shape != mean.shape or bool((std == 0).any()):
                continue
            mean_name = source_of(gm, sub.args[1])["parameter"]
            std_name = source_of(gm, div.args[1])["parameter"]
        else:
            continue
        plan = []
        for cat in div.users:
            if not (cat.op == "call_function" and cat.target is _CAT):
                break
            span = _column_span(cat, div)
            linears = list(cat.users)
            if span is None or not linears or not all(
                    is_linear(l) and l.args[0] is cat and get_constant(gm, l.args[1]) is not None for l in linears):
                break
            plan.append((cat, span, linears))
        else:
            if not plan:
                continue
            shift = mean / std
            for cat, (start, stop), linears in plan:
                for linear in linears:
                    weight = get_constant(gm, linear.args[1]).clone()
                    columns = weight[:, start:stop]
                    bias_node = linear_bias(linear)
                    bias = get_constant(gm, bias_node) if bias_node is not None else None
                    correction = columns @ shift.expand(columns.shape[1])
                    weight[:, start:stop] = columns / std
                    w_source = source_of(gm, linear.args[1])
                    new_weight = add_constant(
                        gm, f"{linear.args[1].target}_normfolded", weight, before=linear,
                        parameter=w_source["parameter"],
                        transform=w_source["transform"] + [f"fold_normalization columns {start}:{stop} "
                                                           f"{mean_name} {std_name}"])
                    if bias is not None:
                        b_source = source_of(gm, bias_node)
                        new_bias = add_constant(
                            gm, f"{bias_node.target}_normfolded", bias - correction, before=linear,
                            parameter=b_source["parameter"],
                            transform=b_source["transform"] + [f"fold_normalization bias {start}:{stop} "
                                                               f"{w_source['parameter']} {mean_name} {std_name}"])
                    else:
                        new_bias = add_constant(
                            gm, f"{linear.args[1].target}_normbias", -correction, before=linear,
                            parameter=w_source["parameter"],
                            transform=w_source["transform"] + [f"fold_normalization new_bias {start}:{stop} "
                                                               f"{mean_name} {std_name}"])
                    linear.args = (linear.args[0], new_weight, new_bias)
                    linear.kwargs = {}
                cat.replace_input_with(div, raw)
            modified = True
    return finish(gm, modified)
