"""Routing and the audio backlog: one definition for training, eval, simulate and the device.

Frames arrive every `frame_ms`. Frame t is complete at a_t = (t + 1) * frame_ms and starts
processing at s_t = max(a_t, e_{t-1}); it takes cost_t / speed. Its *backlog* is
b_t = s_t - a_t, the time it waited, which obeys

    b_0 = 0,   b_{t+1} = max(0, b_t + cost_t / speed - frame_ms).

The arbitrator sees b_t (in ms) before frame t. End-of-utterance latency is the backlog of the
last frame: how long after the audio ends the last frame starts being processed."""

from __future__ import annotations

from dataclasses import asdict, dataclass

import torch
from torch.utils.flop_counter import FlopCounterMode


@dataclass(frozen=True)
class BranchCosts:
    """MFLOPs of one frame in each step graph, counted by torch's flop counter."""

    slow: float
    fast: float
    arbitrator: float

    def ms(self, mflops_per_s: float) -> "BranchCosts":
        """The same costs as milliseconds on a processor of `mflops_per_s`."""
        scale = 1000.0 / mflops_per_s
        return BranchCosts(self.slow * scale, self.fast * scale, self.arbitrator * scale)

    def to_json(self) -> dict:
        return asdict(self)


def count_mflops(module: torch.nn.Module, *args: torch.Tensor) -> float:
    with FlopCounterMode(display=False) as counter, torch.no_grad():
        module(*args)
    return counter.get_total_flops() / 1e6


def branch_costs(model) -> BranchCosts:
    """Per-frame MFLOPs of the three step graphs. A sparse branch counts only its kept weights:
    the dense count of each masked matrix scaled by its density."""
    config = model.config
    x = torch.zeros(1, config.features.frame_dim)
    h = c = torch.zeros(1, config.state_dim)
    slow = count_mflops(model.step_module("slow"), x, h, c)
    fast = count_mflops(model.step_module("fast"), x, h, c)
    if config.fast_variant == "sparse":
        dense_matrices = sum(2 * p.mask.numel() for p in model.fast.projections) / 1e6
        kept = sum(2 * p.mask.sum().item() for p in model.fast.projections) / 1e6
        fast = fast - dense_matrices + kept
    arbitrator = count_mflops(model.step_module("arbitrator"), x, torch.zeros(1, 1), h)
    return BranchCosts(slow, fast, arbitrator)


def advance_backlog(backlog_ms, cost_ms, frame_ms: float):
    """b_{t+1} from b_t and frame t's processing time (floats or tensors)."""
    if isinstance(backlog_ms, torch.Tensor):
        return torch.clamp(backlog_ms + cost_ms - frame_ms, min=0.0)
    return max(0.0, backlog_ms + cost_ms - frame_ms)


def fast_probability(route_logits: torch.Tensor) -> torch.Tensor:
    return torch.softmax(route_logits, dim=-1)[..., 1]


def choose_fast(route_logits: torch.Tensor, threshold: float) -> torch.Tensor:
    """The route a device takes: fast when P(fast) > threshold."""
    return fast_probability(route_logits) > threshold
