"""Stream a batch of utterances frame by frame through the branched encoder, with the backlog
simulated along each one. Training (soft, Gumbel-softmax routes) and evaluation (hard routes)
share this loop, so what is trained is what is measured."""

from __future__ import annotations

from dataclasses import dataclass

import torch
from torch.nn import functional as F

from amc.model.branched import BranchedEncoder
from amc.model.routing import BranchCosts, advance_backlog, choose_fast

ROUTE_MODES = ("arbitrator", "slow", "fast")
# and "every:K": the fast branch on every K-th frame (K-1, 2K-1, ...), the slow one on the others, a
# fixed pattern that measures what switching routes costs, apart from the arbitrator's choices


def fast_period(route: str) -> int | None:
    """K of an 'every:K' route, None for the three route modes; ValueError for anything else."""
    if route in ROUTE_MODES:
        return None
    name, _, k = route.partition(":")
    if name != "every" or not k.isdigit() or int(k) < 1:
        raise ValueError(f"route must be one of {', '.join(ROUTE_MODES)} or every:K (K >= 1), not '{route}'")
    return int(k)


def routed_fast(route: str, period: int | None, t: int) -> bool:
    """Whether frame t runs fast on a fixed route (not the arbitrator's)."""
    return route == "fast" or (period is not None and t % period == period - 1)


@dataclass
class StreamResult:
    logits: torch.Tensor     # (batch, time, vocab)
    p_fast: torch.Tensor     # (batch, time): the fast share of each frame (0/1 when hard)
    backlog_ms: torch.Tensor  # (batch, time): backlog seen before each frame (differentiable in the routes)
    mask: torch.Tensor       # (batch, time): 1 on real frames
    state_gap: torch.Tensor  # (batch, time): mean squared gap of the fast branch's next state from the slow
    #                          branch's, both from the same (routed) state; 0 where only one branch ran


def stream(model: BranchedEncoder, x: torch.Tensor, lengths: torch.Tensor, route: str,
           costs_ms: BranchCosts, tau: float | None = None, hard: bool = False) -> StreamResult:
    """x (batch, time, frame_dim). With `tau`, routes are Gumbel-softmax samples at that
    temperature (training): soft, or with `hard` one-hot forward and soft backward (straight
    through), so the branches see exactly the switches a device makes; without, the device's rule."""
    period = fast_period(route)
    config = model.config
    batch, steps, _ = x.shape
    frames = model.normalize(x)
    h, c = model.initial_state(batch)
    backlog = x.new_zeros(batch, 1)
    mask = (torch.arange(steps)[None, :] < lengths[:, None]).to(x.dtype)
    tops, shares, backlogs, gaps = [], [], [], []
    for t in range(steps):
        frame = frames[:, t]
        backlog = backlog * mask[:, t:t + 1]
        backlogs.append(backlog[:, 0])
        if route == "arbitrator":
            logits = model.arbitrator(frame, backlog.detach() / config.backlog_scale_ms, h)
            if tau is None:
                p = choose_fast(logits, config.route_threshold).to(x.dtype)[:, None]
            else:
                p = F.gumbel_softmax(logits, tau=tau, hard=hard)[:, 1:2]
        else:
            p = x.new_full((batch, 1), 1.0 if routed_fast(route, period, t) else 0.0)
        h, c, gap = _mix(model, frame, h, c, p)
        gaps.append(gap)
        tops.append(h[:, -config.hidden:])
        shares.append(p[:, 0])
        cost = (1 - p) * costs_ms.slow + p * costs_ms.fast      # differentiable in training: the
        # backlog (and so the latency loss) depends on every earlier route
        if route == "arbitrator":
            cost = cost + costs_ms.arbitrator
        backlog = advance_backlog(backlog, cost, config.features.frame_ms)
    logits = model.head(torch.stack(tops, dim=1))
    return StreamResult(logits, torch.stack(shares, dim=1), torch.stack(backlogs, dim=1), mask,
                        torch.stack(gaps, dim=1) * mask)


def routed_logits(model: BranchedEncoder, x: torch.Tensor, routes: torch.Tensor) -> torch.Tensor:
    """x (batch, time, frame_dim) through the branches on given routes (batch, time; 1 = fast):
    CTC logits (batch, time, vocab), no backlog."""
    frames = model.normalize(x)
    h, c = model.initial_state(x.shape[0])
    tops = []
    for t in range(x.shape[1]):
        h, c, _ = _mix(model, frames[:, t], h, c, routes[:, t:t + 1])
        tops.append(h[:, -model.config.hidden:])
    return model.head(torch.stack(tops, dim=1))


def _mix(model: BranchedEncoder, frame, h, c, p):
    """Run the branch(es) the routes need and mix their states by the fast share p; also the
    gap between the two branches' next states when both ran (the slow one as the target), which
    is what a switch of route costs the branch that takes over."""
    if not p.requires_grad and bool((p == 0).all()):
        return *model.slow.step(frame, h, c), frame.new_zeros(frame.shape[0])
    if not p.requires_grad and bool((p == 1).all()):
        return *model.fast.step(frame, h, c), frame.new_zeros(frame.shape[0])
    hs, cs = model.slow.step(frame, h, c)
    hf, cf = model.fast.step(frame, h, c)
    gap = ((hf - hs.detach()) ** 2).mean(-1) + ((cf - cs.detach()) ** 2).mean(-1)
    return (1 - p) * hs + p * hf, (1 - p) * cs + p * cf, gap
