"""fold_factorized: linear(linear(z, V), U, b) -> linear(z, U @ V, b) where the pair does not pay."""

import torch
from torch import nn

from amc.passes import fold_factorized

TOLERANCE = 1e-5


class Pair(nn.Module):
    def __init__(self, n, r, m):
        super().__init__()
        self.down = nn.Linear(n, r, bias=False)
        self.up = nn.Linear(r, m)

    def forward(self, z):
        return self.up(self.down(z))


def _export(module, n):
    return torch.export.export(module, (torch.randn(1, n),)).module()


def test_folds_a_pair_that_costs_more_than_the_product():
    torch.manual_seed(0)
    module = Pair(8, 6, 8).eval()          # 6 * 16 = 96 >= 64
    gm = _export(module, 8)
    z = torch.randn(1, 8)
    expected = module(z)
    gm, modified = fold_factorized.run(gm)
    assert modified is True
    linears = [n for n in gm.graph.nodes if n.op == "call_function" and n.target is torch.ops.aten.linear.default]
    assert len(linears) == 1
    assert torch.allclose(gm(z), expected, atol=TOLERANCE)


def test_keeps_a_pair_that_pays():
    gm = _export(Pair(64, 4, 64).eval(), 64)  # 4 * 128 < 4096
    gm, modified = fold_factorized.run(gm)
    assert modified is False
    assert fold_factorized.pays(4, 64, 64) and not fold_factorized.pays(6, 8, 8)
