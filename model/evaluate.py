"""Streaming evaluation: error rates, routing, compute per frame and end-of-utterance latency,
for a float checkpoint (batched, in torch) or a compiled bundle (frame by frame, in its runtime)."""

from __future__ import annotations

import statistics

import numpy as np
import torch

from amc.model.decoding import error_rates, greedy_decode
from amc.model.feature_set import FeatureSet, batches
from amc.model.routing import BranchCosts, advance_backlog, branch_costs
from amc.model.streaming import fast_period, routed_fast, stream

LONG_UTTERANCE_MS = 3000.0
"""Latency is also reported over utterances at least this long, where a backlog has time to build."""


def evaluate_model(model, data: FeatureSet, route: str = "arbitrator", mflops: float | None = None,
                   batch_size: int = 64, keep_traces: bool = False, report=None) -> dict:
    """Stream `data` through a float checkpoint; the backlog is simulated at `mflops` MFLOP/s
    (default: the speed the model was trained for)."""
    config = model.config
    mflops = mflops or config.nominal_mflops
    costs = branch_costs(model)
    traces = []
    with torch.no_grad():
        for done, batch in enumerate(batches(data, batch_size, config)):
            result = stream(model, batch.x, batch.lengths, route, costs.ms(mflops))
            for row, length in enumerate(batch.lengths.tolist()):
                traces.append({
                    "text": batch.texts[row],
                    "hypothesis": greedy_decode(result.logits[row, :length], config.vocabulary),
                    "fast": result.p_fast[row, :length].numpy().astype(bool),
                    "backlog_ms": result.backlog_ms[row, :length].numpy().astype(np.float64),
                })
            if report:
                report(f"eval ({route})", min(len(data), (done + 1) * batch_size), len(data))
    return summarize(traces, costs, route, mflops, config.features.frame_ms, keep_traces)


def evaluate_bundle(bundle, data: FeatureSet, route: str = "arbitrator", mflops: float | None = None,
                    keep_traces: bool = False, report=None) -> dict:
    """Stream `data` frame by frame through a compiled bundle's graphs in their runtime."""
    config = bundle.config
    mflops = mflops or config.nominal_mflops
    costs = BranchCosts(**{graph: 2 * bundle.macs[graph] / 1e6 for graph in ("slow", "fast", "arbitrator")})
    costs_ms = costs.ms(mflops)
    period = fast_period(route)
    traces = []
    for index, (frames, text) in enumerate(zip(data.features, data.texts)):
        h = np.zeros((1, config.state_dim), np.float32)
        c = np.zeros((1, config.state_dim), np.float32)
        backlog, logits, fast, backlogs = 0.0, [], [], []
        for t, frame in enumerate(frames.numpy()):
            backlogs.append(backlog)
            x = frame[None, :].astype(np.float32)
            go_fast = routed_fast(route, period, t)
            cost = 0.0
            if route == "arbitrator":
                route_logits = bundle.route_logits(x, np.array([[backlog]], np.float32), h)
                go_fast = bool(_softmax(route_logits)[0, 1] > config.route_threshold)
                cost += costs_ms.arbitrator
            step = bundle.fast_step if go_fast else bundle.slow_step
            out, h, c = step(x, h, c)
            logits.append(out[0])
            fast.append(go_fast)
            backlog = advance_backlog(backlog, cost + (costs_ms.fast if go_fast else costs_ms.slow),
                                      config.features.frame_ms)
        hypothesis = greedy_decode(torch.from_numpy(np.stack(logits)), config.vocabulary) if logits else ""
        traces.append({"text": text, "hypothesis": hypothesis, "fast": np.array(fast, bool),
                       "backlog_ms": np.array(backlogs)})
        if report:
            report(f"eval ({route})", index + 1, len(data))
    return summarize(traces, costs, route, mflops, config.features.frame_ms, keep_traces)


def _softmax(z: np.ndarray) -> np.ndarray:
    e = np.exp(z - z.max(axis=-1, keepdims=True))
    return e / e.sum(axis=-1, keepdims=True)


def backlog_trace(fast: np.ndarray, costs_ms: BranchCosts, frame_ms: float, arbitrated: bool) -> np.ndarray:
    """Backlog (ms) seen before each frame, given which frames ran fast."""
    backlog, out = 0.0, np.zeros(len(fast))
    for t, go_fast in enumerate(fast):
        out[t] = backlog
        cost = (costs_ms.fast if go_fast else costs_ms.slow) + (costs_ms.arbitrator if arbitrated else 0.0)
        backlog = advance_backlog(backlog, cost, frame_ms)
    return out


def summarize(traces: list[dict], costs: BranchCosts, route: str, mflops: float, frame_ms: float,
              keep_traces: bool = False) -> dict:
    """Each trace holds its text, hypothesis, which frames ran fast and the backlog before each
    (the route was checked by the stream that made them)."""
    cer, wer = error_rates([t["text"] for t in traces], [t["hypothesis"] for t in traces])
    arbitrated = route == "arbitrator"
    total_frames = sum(len(t["fast"]) for t in traces)
    fast_frames = sum(int(t["fast"].sum()) for t in traces)
    mflops_total = sum(t["fast"].sum() * costs.fast + (~t["fast"]).sum() * costs.slow
                       + (len(t["fast"]) * costs.arbitrator if arbitrated else 0.0) for t in traces)
    latencies = [float(t["backlog_ms"][-1]) if len(t["backlog_ms"]) else 0.0 for t in traces]
    frames = max(1, total_frames)
    result = {
        "route": route,
        "utterances": len(traces),
        "frames": total_frames,
        "cer": round(cer, 3),
        "wer": round(wer, 3),
        "fast_fraction": round(fast_frames / frames, 4),
        "mflops_per_frame": round(float(mflops_total) / frames, 4),
        "branch_mflops": {k: round(v, 4) for k, v in costs.to_json().items()},
        "mflops": mflops,
        "frame_ms": frame_ms,
        "latency_ms": _percentiles(latencies),
        "latency_ms_3s_or_more": _percentiles([latency for latency, t in zip(latencies, traces)
                                               if len(t["fast"]) * frame_ms >= LONG_UTTERANCE_MS]),
        "realtime_factor": round(float(mflops_total) / mflops * 1000.0 / (frames * frame_ms), 4),
    }
    if keep_traces:
        result["traces"] = traces
    return result


def _percentiles(values: list[float]) -> dict:
    if not values:
        return {"p50": 0.0, "p90": 0.0, "max": 0.0}
    array = np.array(values)
    return {"p50": round(float(np.percentile(array, 50)), 2), "p90": round(float(np.percentile(array, 90)), 2),
            "max": round(float(array.max()), 2), "mean": round(statistics.fmean(values), 2)}
