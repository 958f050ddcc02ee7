"""fold_normalization: linear(cat([(x - mean) / std, h]), W, b) reads the raw x."""

import torch
from torch import nn

from amc.passes import fold_normalization

TOLERANCE = 1e-4


class Normalized(nn.Module):
    def __init__(self, bias=True):
        super().__init__()
        self.register_buffer("mean", torch.randn(5))
        self.register_buffer("std", torch.rand(5) + 0.5)
        self.linear = nn.Linear(8, 4, bias=bias)

    def forward(self, x, h):
        return self.linear(torch.cat([(x - self.mean) / self.std, h], dim=-1))


class ScaledInput(nn.Module):
    def __init__(self):
        super().__init__()
        self.linear = nn.Linear(4, 3)

    def forward(self, x, backlog):
        return self.linear(torch.cat([x, backlog / 100.0], dim=-1))


def _export(module, *shapes):
    return torch.export.export(module, tuple(torch.randn(*s) for s in shapes)).module()


def test_folds_into_the_weight_columns_and_bias():
    torch.manual_seed(0)
    for bias in (True, False):
        module = Normalized(bias).eval()
        gm = _export(module, (1, 5), (1, 3))
        x, h = torch.randn(1, 5) * 3, torch.randn(1, 3)
        expected = module(x, h)
        gm, modified = fold_normalization.run(gm)
        assert modified is True
        targets = [n.target for n in gm.graph.nodes if n.op == "call_function"]
        assert torch.ops.aten.div.Tensor not in targets and torch.ops.aten.sub.Tensor not in targets
        assert torch.allclose(gm(x, h), expected, atol=TOLERANCE)


def test_folds_a_scalar_input_scale():
    torch.manual_seed(0)
    module = ScaledInput().eval()
    gm = _export(module, (1, 3), (1, 1))
    x, backlog = torch.randn(1, 3), torch.rand(1, 1) * 300
    expected = module(x, backlog)
    gm, modified = fold_normalization.run(gm)
    assert modified is True
    assert torch.allclose(gm(x, backlog), expected, atol=TOLERANCE)


def test_no_normalization_no_change():
    gm = _export(nn.Linear(5, 4).eval(), (1, 5))
    gm, modified = fold_normalization.run(gm)
    assert modified is False
