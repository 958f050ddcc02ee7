"""Fold a factorized pair of projections back into one matrix when the factorization does not pay.

Requires: `linear(linear(z, V), U, b)` with constant V (r, n) and U (m, r), no bias on the inner
linear, and the inner result used only by the outer one.
Ensures: where r * (n + m) >= n * m (the pair costs at least as many MACs and bytes as the
product) the pair becomes `linear(z, U @ V, b)`; thinner pairs are left alone. Numerically equal
up to float rounding of the product."""

from __future__ import annotations

from torch import fx

from amc.passes import add_constant, finish, get_constant, is_linear, linear_bias, source_of

NAME = "fold_factorized"


def pays(rank: int, n: int, m: int) -> bool:
    """True where the factorized pair is cheaper than one (m, n) matrix."""
    return rank * (n + m) < n * m


def run(gm: fx.GraphModule) -> tuple[fx.GraphModule, bool]:
    modified = False
    for outer in list(gm.graph.nodes):
        if not is_linear(outer):
            continue
        inner = outer.args[0]
        if not (isinstance(inner, fx.Node) and is_linear(inner) and len(inner.users) == 1
                and linear_bias(inner) is None):
            continue
        down, up = get_constant(gm, inner.args[1]), get_constant(gm, outer.args[1])
        if down is None or up is None:
            continue
        rank, n = down.shape
        m = up.shape[0]
        if pays(rank, n, m):
            continue
        up_source, down_source = source_of(gm, outer.args[1]), source_of(gm, inner.args[1])
        product = add_constant(gm, f"{outer.args[1].target}_folded", up @ down, before=outer,
                               parameter=up_source["parameter"],
                               transform=up_source["transform"] + [f"matmul {down_source['parameter']}"])
        outer.args = (inner.args[0], product) + tuple(outer.args[2:])
        modified = True
    return finish(gm, modified)
