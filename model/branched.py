"""The branched encoder: a slow LSTM stack, a fast compressed copy with the same state layout,
an arbitrator that picks a branch for every frame, and a shared CTC head.

State is explicit: `h` and `c`, each (batch, layers * hidden). Either branch maps
(features_t, h, c) -> (logits_t, h', c'), so the route can switch at any frame."""

from __future__ import annotations

import torch
from torch import nn
from torch.nn import functional as F

from amc.model.config import ModelConfig

SLOW, FAST = 0, 1
ROUTES = ("slow", "fast")


class DenseProjection(nn.Module):
    """gates = [x, h] W^T + b, W of shape (4H, in + H)."""

    def __init__(self, in_dim: int, out_dim: int):
        super().__init__()
        self.linear = nn.Linear(in_dim, out_dim)

    def forward(self, z: torch.Tensor) -> torch.Tensor:
        return self.linear(z)

    def effective_weight(self) -> torch.Tensor:
        return self.linear.weight


class FactorizedProjection(nn.Module):
    """W ~ U V of rank r: two thin matrices instead of one square one."""

    def __init__(self, in_dim: int, out_dim: int, rank: int):
        super().__init__()
        self.down = nn.Linear(in_dim, rank, bias=False)    # V: (r, in + H)
        self.up = nn.Linear(rank, out_dim)                 # U: (4H, r), with the bias

    def forward(self, z: torch.Tensor) -> torch.Tensor:
        return self.up(self.down(z))

    def effective_weight(self) -> torch.Tensor:
        return self.up.weight @ self.down.weight

    @property
    def linear(self) -> nn.Linear:
        return self.up


class SparseProjection(nn.Module):
    """W pruned to a fixed mask; the mask is a buffer so it travels with the checkpoint."""

    def __init__(self, in_dim: int, out_dim: int):
        super().__init__()
        self.linear = nn.Linear(in_dim, out_dim)
        self.register_buffer("mask", torch.ones(out_dim, in_dim))

    def forward(self, z: torch.Tensor) -> torch.Tensor:
        return F.linear(z, self.linear.weight * self.mask, self.linear.bias)

    def effective_weight(self) -> torch.Tensor:
        return self.linear.weight * self.mask

    def density(self) -> float:
        return float(self.mask.mean())


class LSTMStack(nn.Module):
    """A stack of LSTM layers written as one step with explicit (h, c)."""

    def __init__(self, config: ModelConfig, kind: str):
        super().__init__()
        self.hidden, self.layers, self.cell_clip = config.hidden, config.layers, config.cell_clip
        dims = [config.features.frame_dim] + [config.hidden] * (config.layers - 1)
        self.projections = nn.ModuleList(
            _projection(kind, config, in_dim + config.hidden, 4 * config.hidden) for in_dim in dims)

    def step(self, x: torch.Tensor, h: torch.Tensor, c: torch.Tensor) -> tuple[torch.Tensor, torch.Tensor]:
        hs, cs = [], []
        layer_input = x
        for index, projection in enumerate(self.projections):
            part = slice(index * self.hidden, (index + 1) * self.hidden)
            gates = projection(torch.cat([layer_input, h[:, part]], dim=-1))
            # four slices, not chunk(): XNNPACK takes a slice into its delegate but not a split,
            # so the whole step stays one delegate call
            i, f, g, o = (gates[:, k * self.hidden:(k + 1) * self.hidden] for k in range(4))
            c_next = torch.sigmoid(f) * c[:, part] + torch.sigmoid(i) * torch.tanh(g)
            if self.cell_clip is not None:
                c_next = torch.clamp(c_next, -self.cell_clip, self.cell_clip)
            h_next = torch.sigmoid(o) * torch.tanh(c_next)
            hs.append(h_next)
            cs.append(c_next)
            layer_input = h_next
        return torch.cat(hs, dim=-1), torch.cat(cs, dim=-1)

    def sequence(self, x: torch.Tensor) -> torch.Tensor:
        """Whole sequences (batch, time, in) -> top-layer outputs (batch, time, H): the fused LSTM
        kernel (the same arithmetic as `step`, about 3x faster to train), or `step` frame by frame
        when the cell state is clipped, which the fused kernel cannot do."""
        if self.cell_clip is not None:
            h = c = x.new_zeros(x.shape[0], self.layers * self.hidden)
            tops = []
            for t in range(x.shape[1]):
                h, c = self.step(x[:, t], h, c)
                tops.append(h[:, -self.hidden:])
            return torch.stack(tops, dim=1)
        params = []
        in_dim = x.shape[-1]
        for index, projection in enumerate(self.projections):
            weight = projection.effective_weight()
            split = in_dim if index == 0 else self.hidden
            params += [weight[:, :split], weight[:, split:], projection.linear.bias,
                       torch.zeros_like(projection.linear.bias)]
        zeros = x.new_zeros(self.layers, x.shape[0], self.hidden)
        output, _, _ = torch.lstm(x, (zeros, zeros), params, True, self.layers, 0.0, self.training, False, True)
        return output


def _projection(kind: str, config: ModelConfig, in_dim: int, out_dim: int) -> nn.Module:
    if kind == "dense":
        return DenseProjection(in_dim, out_dim)
    if kind == "factorized":
        return FactorizedProjection(in_dim, out_dim, config.fast_rank)
    if kind == "sparse":
        return SparseProjection(in_dim, out_dim)
    raise ValueError(kind)


class Arbitrator(nn.Module):
    """A tiny MLP on (frame features, backlog, top-layer state) -> route logits (slow, fast)."""

    def __init__(self, config: ModelConfig):
        super().__init__()
        self.top = slice((config.layers - 1) * config.hidden, config.layers * config.hidden)
        self.hidden_layer = nn.Linear(config.features.frame_dim + 1 + config.hidden, config.arbitrator_hidden)
        self.output = nn.Linear(config.arbitrator_hidden, 2)

    def forward(self, x: torch.Tensor, backlog: torch.Tensor, h: torch.Tensor) -> torch.Tensor:
        z = torch.cat([x, backlog, h[:, self.top]], dim=-1)
        return self.output(torch.relu(self.hidden_layer(z)))


class BranchedEncoder(nn.Module):
    def __init__(self, config: ModelConfig):
        super().__init__()
        self.config = config
        frame_dim = config.features.frame_dim
        self.register_buffer("feature_mean", torch.zeros(frame_dim))
        self.register_buffer("feature_std", torch.ones(frame_dim))
        self.slow = LSTMStack(config, "dense")
        self.fast = LSTMStack(config, config.fast_variant)
        self.arbitrator = Arbitrator(config)
        self.head = nn.Linear(config.hidden, len(config.vocabulary))

    # -- one frame, as the step graphs export it --------------------------------------------
    def normalize(self, x: torch.Tensor) -> torch.Tensor:
        return (x - self.feature_mean) / self.feature_std

    def branch(self, route: str) -> LSTMStack:
        return self.slow if route == "slow" else self.fast

    def branch_step(self, route: str, x: torch.Tensor, h: torch.Tensor, c: torch.Tensor):
        h, c = self.branch(route).step(self.normalize(x), h, c)
        return self.head(h[:, -self.config.hidden:]), h, c

    def route_logits(self, x: torch.Tensor, backlog_ms: torch.Tensor, h: torch.Tensor) -> torch.Tensor:
        return self.arbitrator(self.normalize(x), backlog_ms / self.config.backlog_scale_ms, h)

    def initial_state(self, batch: int = 1) -> tuple[torch.Tensor, torch.Tensor]:
        zeros = torch.zeros(batch, self.config.state_dim)
        return zeros, zeros.clone()

    def step_module(self, graph: str) -> nn.Module:
        """The module a step graph is exported from: 'fast', 'slow' or 'arbitrator'."""
        if graph in ROUTES:
            return BranchStep(self, graph)
        if graph == "arbitrator":
            return ArbitratorStep(self)
        raise ValueError(f"unknown graph '{graph}'")

    # -- whole sequences, for training and evaluation ---------------------------------------
    def sequence_logits(self, route: str, x: torch.Tensor) -> torch.Tensor:
        """(batch, time, frame_dim) -> CTC logits (batch, time, vocab) with one branch throughout."""
        return self.head(self.branch(route).sequence(self.normalize(x)))


class _Normalize(nn.Module):
    def __init__(self, encoder: BranchedEncoder):
        super().__init__()
        self.register_buffer("feature_mean", encoder.feature_mean)
        self.register_buffer("feature_std", encoder.feature_std)

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        return (x - self.feature_mean) / self.feature_std


class BranchStep(nn.Module):
    """(features (1, F), h, c) -> (logits (1, V), h', c'); holds only its branch and the head."""

    def __init__(self, encoder: BranchedEncoder, route: str):
        super().__init__()
        self.normalize = _Normalize(encoder)
        self.stack = encoder.branch(route)
        self.head = encoder.head
        self.hidden = encoder.config.hidden

    def forward(self, features: torch.Tensor, h: torch.Tensor, c: torch.Tensor):
        h, c = self.stack.step(self.normalize(features), h, c)
        return self.head(h[:, -self.hidden:]), h, c


class ArbitratorStep(nn.Module):
    """(features (1, F), backlog_ms (1, 1), h) -> route logits (1, 2): index 0 slow, 1 fast."""

    def __init__(self, encoder: BranchedEncoder):
        super().__init__()
        self.normalize = _Normalize(encoder)
        self.arbitrator = encoder.arbitrator
        self.backlog_scale_ms = encoder.config.backlog_scale_ms

    def forward(self, features: torch.Tensor, backlog_ms: torch.Tensor, h: torch.Tensor):
        return self.arbitrator(self.normalize(features), backlog_ms / self.backlog_scale_ms, h)
