"""split_concat_linear: linear(cat([a, b]), W, bias) -> linear(a, W[:, A], bias) + linear(b, W[:, B])."""

import torch
from torch import nn

from amc.passes import split_concat_linear, weight_sources

TOLERANCE = 1e-5


class Gates(nn.Module):
    def __init__(self):
        super().__init__()
        self.linear = nn.Linear(7, 8)

    def forward(self, x, h):
        return self.linear(torch.cat([x, h], dim=-1))


def test_splits_the_projection_per_input():
    torch.manual_seed(0)
    module = Gates().eval()
    gm = torch.export.export(module, (torch.randn(1, 4), torch.randn(1, 3))).module()
    x, h = torch.randn(1, 4), torch.randn(1, 3)
    expected = module(x, h)
    gm, modified = split_concat_linear.run(gm)
    assert modified is True
    targets = [n.target for n in gm.graph.nodes if n.op == "call_function"]
    assert torch.ops.aten.cat.default not in targets
    assert targets.count(torch.ops.aten.linear.default) == 2
    assert torch.allclose(gm(x, h), expected, atol=TOLERANCE)
    transforms = sorted(v["transform"][-1] for v in weight_sources(gm).values())
    assert transforms == ["columns 0:4", "columns 4:7"]


def test_plain_linear_is_left_alone():
    gm = torch.export.export(nn.Linear(4, 2).eval(), (torch.randn(1, 4),)).module()
    gm, modified = split_concat_linear.run(gm)
    assert modified is False
