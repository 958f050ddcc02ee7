"""Per-graph calibration inputs, gathered by streaming the float model over representative audio.

Every graph is calibrated on the inputs it really sees on a device: frame by frame, the
arbitrator routes each frame (at the backlog a processor of the target's speed would build up),
the chosen branch advances the state, and the (features, h, c) of every frame are kept for both
branches (the route can switch to either one at any frame, so both see the same state
distribution). The arbitrator's inputs are kept at the simulated backlog; because a fast board
rarely builds a backlog, half of its samples also get a backlog drawn over
[0, 3 * backlog_scale_ms] so the quantized backlog input keeps the range the device may need.

The state ranges (h and c) are taken jointly over both branches' inputs and outputs: fast and
slow pin the same int8 scale and zero point on their state tensors. A model with a cell clip
gets c's range from the clip instead: int8 saturation then is the clip itself."""

from __future__ import annotations

from dataclasses import dataclass, field

import numpy as np
import torch

from amc.model.branched import BranchedEncoder
from amc.model.routing import advance_backlog, branch_costs, choose_fast

BACKLOG_SWEEP_SCALES = 3.0


@dataclass
class CalibrationSet:
    inputs: dict[str, list[tuple[np.ndarray, ...]]]     # graph -> calibration input tuples
    state_ranges: dict[str, tuple[float, float]]        # "h" / "c" -> (min, max) over both branches
    frames: int
    fast_fraction: float
    mflops: float
    notes: list[str] = field(default_factory=list)

    def summary(self) -> dict:
        return {"frames": self.frames, "fast_fraction": round(self.fast_fraction, 4), "mflops": self.mflops,
                "samples": {g: len(v) for g, v in self.inputs.items()},
                "state_ranges": {k: [float(a), float(b)] for k, (a, b) in self.state_ranges.items()},
                "notes": self.notes}


def gather(model: BranchedEncoder, utterances: list[torch.Tensor], mflops: float,
           max_samples: int = 400, seed: int = 0, report=None) -> CalibrationSet:
    """Stream `utterances` ((frames, frame_dim) each) and keep up to `max_samples` inputs a graph."""
    config = model.config
    costs = branch_costs(model).ms(mflops)
    rng = np.random.default_rng(seed)
    slow_step, fast_step = model.step_module("slow"), model.step_module("fast")
    arbitrator = model.step_module("arbitrator")
    branch_inputs, arbitrator_inputs = [], []
    low = {"h": np.inf, "c": np.inf}
    high = {"h": -np.inf, "c": -np.inf}
    fast_frames = frames = 0

    def widen(name: str, *tensors: torch.Tensor) -> None:
        for t in tensors:
            low[name] = min(low[name], float(t.min()))
            high[name] = max(high[name], float(t.max()))

    with torch.no_grad():
        for index, frames_of in enumerate(utterances):
            h, c = model.initial_state()
            backlog = 0.0
            for x in frames_of:
                x = x[None, :].to(torch.float32)
                b = torch.tensor([[backlog]], dtype=torch.float32)
                route_logits = arbitrator(x, b, h)
                go_fast = bool(choose_fast(route_logits, config.route_threshold)[0])
                arbitrator_inputs.append((x.numpy().copy(), b.numpy().copy(), h.numpy().copy()))
                branch_inputs.append((x.numpy().copy(), h.numpy().copy(), c.numpy().copy()))
                _, hs, cs = slow_step(x, h, c)
                _, hf, cf = fast_step(x, h, c)
                widen("h", h, hs, hf)
                widen("c", c, cs, cf)
                h, c = (hf, cf) if go_fast else (hs, cs)
                fast_frames += go_fast
                frames += 1
                backlog = advance_backlog(backlog, costs.arbitrator + (costs.fast if go_fast else costs.slow),
                                          config.features.frame_ms)
            if report:
                report("calibration stream", index + 1, len(utterances))
    if frames == 0:
        raise ValueError("no frames to calibrate on")

    def pick(items: list) -> list:
        if len(items) <= max_samples:
            return list(items)
        chosen = np.sort(rng.choice(len(items), max_samples, replace=False))
        return [items[i] for i in chosen]

    arbitrator_samples = pick(arbitrator_inputs)
    sweep = BACKLOG_SWEEP_SCALES * config.backlog_scale_ms
    for i in range(0, len(arbitrator_samples), 2):
        x, _, h = arbitrator_samples[i]
        arbitrator_samples[i] = (x, np.array([[rng.uniform(0.0, sweep)]], np.float32), h)
    branch_samples = pick(branch_inputs)
    notes = [f"backlog simulated at {mflops:g} MFLOP/s; half of the arbitrator samples swept over "
             f"[0, {sweep:g}] ms"]
    if config.cell_clip is not None:     # the clip bounds c: its int8 range is the clip, whatever was seen
        low["c"], high["c"] = -config.cell_clip, config.cell_clip
        notes.append(f"cell state range pinned to the model's cell clip +-{config.cell_clip:g}")
    return CalibrationSet(
        inputs={"slow": branch_samples, "fast": branch_samples, "arbitrator": arbitrator_samples},
        state_ranges={k: (low[k], high[k]) for k in ("h", "c")},
        frames=frames, fast_fraction=fast_frames / frames, mflops=mflops, notes=notes)
