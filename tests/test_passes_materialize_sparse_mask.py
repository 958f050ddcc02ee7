"""materialize_sparse_mask: linear(z, W * mask, b) -> linear(z, (W * mask) const, b)."""

import torch
from torch import nn
from torch.nn import functional as F

from amc.passes import materialize_sparse_mask, weight_sources

TOLERANCE = 1e-6


class Masked(nn.Module):
    def __init__(self):
        super().__init__()
        self.weight = nn.Parameter(torch.randn(6, 5))
        self.register_buffer("mask", (torch.rand(6, 5) > 0.5).float())
        self.bias = nn.Parameter(torch.randn(6))

    def forward(self, z):
        return F.linear(z, self.weight * self.mask, self.bias)


def _export(module):
    return torch.export.export(module, (torch.randn(1, 5),)).module()


def test_materializes_the_mask_and_keeps_the_numbers():
    torch.manual_seed(0)
    module = Masked().eval()
    gm = _export(module)
    z = torch.randn(1, 5)
    expected = module(z)
    gm, modified = materialize_sparse_mask.run(gm)
    assert modified is True
    targets = [n.target for n in gm.graph.nodes if n.op == "call_function"]
    assert torch.ops.aten.mul.Tensor not in targets
    assert torch.allclose(gm(z), expected, atol=TOLERANCE)
    (attr, source), = [(k, v) for k, v in weight_sources(gm).items()]
    assert source["parameter"] == "weight" and source["transform"] == ["mul mask"]


def test_dense_linear_is_left_alone():
    gm = _export(nn.Linear(5, 6).eval())
    gm, modified = materialize_sparse_mask.run(gm)
    assert modified is False
