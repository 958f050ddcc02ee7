"""`amc eval` and `amc simulate` on a path: a float checkpoint or a compiled bundle."""

from __future__ import annotations

from pathlib import Path

import numpy as np

from amc.common.errors import InputError
from amc.model.evaluate import backlog_trace, evaluate_bundle, evaluate_model
from amc.model.feature_set import load_features
from amc.model.streaming import fast_period


def load_model(path: Path | str | None):
    """A checkpoint directory, or a compiled bundle (a directory with manifest.json)."""
    if path is not None and (Path(path) / "manifest.json").exists():
        from amc.compiler.bundle import load_bundle
        return load_bundle(Path(path))
    from amc.model.checkpoint import load_checkpoint
    return load_checkpoint(path)


def evaluate_path(model_path, data_dir, route: str = "arbitrator", mflops: float | None = None,
                  keep_traces: bool = False, report=None) -> dict:
    try:
        fast_period(route)
    except ValueError as error:
        raise InputError(f"--{error}") from None
    if mflops is not None and mflops <= 0:
        raise InputError(f"--mflops must be positive, not {mflops}")
    model = load_model(model_path)
    data = load_features(data_dir, model.config.features, report)
    if not len(data):
        raise InputError(f"{data_dir}: no utterances")
    if hasattr(model, "slow_step"):
        result = evaluate_bundle(model, data, route, mflops, keep_traces, report)
    else:
        result = evaluate_model(model, data, route, mflops, keep_traces=keep_traces, report=report)
    result["model"] = str(model_path) if model_path else "reference"
    return result


def simulate_path(model_path, data_dir, mflops: float, route: str = "arbitrator", plot: Path | None = None,
                  report=None) -> dict:
    """Real-time streaming at `mflops`: latency percentiles, real-time factor and, with `plot`, the
    timeline of the longest utterance against the slow branch alone."""
    result = evaluate_path(model_path, data_dir, route, mflops, keep_traces=True, report=report)
    traces = result.pop("traces")
    if plot is not None:
        from amc.model.routing import BranchCosts
        from amc.model.timeline import plot_timeline
        trace = max(traces, key=lambda t: len(t["fast"]))
        costs_ms = BranchCosts(**result["branch_mflops"]).ms(mflops)
        frame_ms = result["frame_ms"]
        slow_only = backlog_trace(np.zeros(len(trace["fast"]), bool), costs_ms, frame_ms, arbitrated=False)
        plot_timeline(plot, trace["text"], trace["fast"], trace["backlog_ms"], slow_only, frame_ms, mflops)
        result["plot"] = str(plot)
    return result

