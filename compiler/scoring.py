"""`amc eval` and `amc simulate` on a path: a float checkpoint or a compiled bundle."""

from __future__ import annotations

from pathlib import Path

import numpy as np
import torch

from amc.common.errors import InputError
from amc.model.evaluate import backlog_trace, evaluate_bundle, evaluate_model
from amc.model.feature_set import FeatureSet, load_features
from amc.model.streaming import fast_period


def load_model(path: Path | str | None):
    """A checkpoint directory, or a compiled bundle (a directory with manifest.json)."""
    if path is not None and (Path(path) / "manifest.json").exists():
        from amc.compiler.bundle import load_bundle
        return load_bundle(Path(path))
    from amc.model.checkpoint import load_checkpoint
    return load_checkpoint(path)


def _check_options(route: str, mflops: float | None) -> None:
    try:
        fast_period(route)
    except ValueError as error:
        raise InputError(f"--{error}") from None
    if mflops is not None and mflops <= 0:
        raise InputError(f"--mflops must be positive, not {mflops}")


def _evaluate(model, data: FeatureSet, route: str, mflops: float | None, keep_traces: bool, report) -> dict:
    if hasattr(model, "slow_step"):
        return evaluate_bundle(model, data, route, mflops, keep_traces, report)
    return evaluate_model(model, data, route, mflops, keep_traces=keep_traces, report=report)


def evaluate_path(model_path, data_dir, route: str = "arbitrator", mflops: float | None = None,
                  keep_traces: bool = False, report=None) -> dict:
    _check_options(route, mflops)
    model = load_model(model_path)
    data = load_features(data_dir, model.config.features, report)
    if not len(data):
        raise InputError(f"{data_dir}: no utterances")
    result = _evaluate(model, data, route, mflops, keep_traces, report)
    result["model"] = str(model_path) if model_path else "reference"
    return result


def _front_end(model):
    """PCM -> frames as the model's device computes them: a bundle's own front end (the C, on its
    tables), a checkpoint's training features (LogMel)."""
    from amc.runtime.frontend import CFrontEnd

    if hasattr(model, "slow_step") and "frontend" in model.manifest:
        front = CFrontEnd.from_tables((model.path / model.manifest["frontend"]["file"]).read_bytes())
        return front.frames
    from amc.model.features import LogMel
    log_mel = LogMel(model.config.features)
    return lambda pcm: log_mel(pcm.astype(np.float32) / 32768.0).numpy()


def transcribe_path(model_path, files: list[Path], route: str = "arbitrator", mflops: float | None = None,
                    report=None) -> dict:
    """Text of each WAV file (16 kHz mono 16-bit PCM), streamed frame by frame as on a device,
    with its share of fast frames and its end-of-utterance latency at `mflops`."""
    from amc.runtime.frontend import pcm_of

    _check_options(route, mflops)
    files = [Path(f) for f in files]
    if not files:
        raise InputError("give at least one WAV file to transcribe")
    recordings = [pcm_of(path) for path in files]           # every file checked before any work
    model = load_model(model_path)
    frames_of = _front_end(model)
    results = []
    for index, (path, pcm) in enumerate(zip(files, recordings)):
        data = FeatureSet([torch.from_numpy(frames_of(pcm))], [""], [path.name])
        trace = _evaluate(model, data, route, mflops, keep_traces=True, report=None)["traces"][0]
        frames = max(1, len(trace["fast"]))
        results.append({"file": str(path), "text": trace["hypothesis"],
                        "fast_fraction": round(float(trace["fast"].sum()) / frames, 4),
                        "latency_ms": round(float(trace["backlog_ms"][-1]) if len(trace["fast"]) else 0.0, 2)})
        if report:
            report("transcribe", index + 1, len(files))
    return {"model": str(model_path) if model_path else "reference", "route": route, "results": results}


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

