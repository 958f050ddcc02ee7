"""Verification of a compiled bundle against the float model, with the real runtimes:
per-graph SNR for one frame, SNR along a 10-second stream (drift), CER and routing of the
streamed int8 bundle vs float on held-out audio, and per-frame wall-time ratios: from Python
through the runtime's bindings (dispatch included), and, for ExecuTorch, natively, the runtime's
execute call timed in C++ by the host's amc-runner."""

from __future__ import annotations

import time
from pathlib import Path

import numpy as np
import torch

from amc.calibration.audio import Audio
from amc.common.errors import AmcError
from amc.model.branched import BranchedEncoder
from amc.targets.backends import get_backend

STREAM_SECONDS = 10.0
ONE_FRAME_SAMPLES = 64
TIMING_CALLS = 300


def snr_db(reference: np.ndarray, actual: np.ndarray) -> float:
    reference, actual = np.asarray(reference, np.float64), np.asarray(actual, np.float64)
    noise = float(np.sum((reference - actual) ** 2))
    signal = float(np.sum(reference ** 2))
    if noise == 0:
        return float("inf")
    return round(10.0 * np.log10(max(signal, 1e-30) / noise), 2)


def _float_outputs(module, arrays) -> list[np.ndarray]:
    with torch.no_grad():
        out = module(*(torch.from_numpy(a) for a in arrays))
    out = out if isinstance(out, tuple) else (out,)
    return [o.numpy() for o in out]


def one_frame_snr(model: BranchedEncoder, bundle, samples: dict[str, list[tuple]]) -> dict:
    """Each graph on the same single-frame inputs as the float step module: SNR per output."""
    result = {}
    for graph, inputs in samples.items():
        module = model.step_module(graph).eval()
        refs, outs = [], []
        for arrays in inputs[:ONE_FRAME_SAMPLES]:
            refs.append(_float_outputs(module, arrays))
            outs.append(bundle.step(graph, *arrays))
        names = ["route_logits"] if graph == "arbitrator" else ["logits", "h_next", "c_next"]
        per_output = {name: snr_db(np.stack([r[i] for r in refs]), np.stack([o[i] for o in outs]))
                      for i, name in enumerate(names)}
        result[graph] = {"snr_db": min(per_output.values()), "outputs": per_output, "frames": len(refs)}
    return result


def stream_snr(model: BranchedEncoder, bundle, audio: Audio) -> dict:
    """Slow-only and fast-only streams over STREAM_SECONDS of held-out audio, float and int8 each
    carrying its own state: logits SNR over the first and the last second, state SNR at the end."""
    frame_s = model.config.features.frame_ms / 1000.0
    frames = torch.cat(audio.features)[: int(round(STREAM_SECONDS / frame_s))].numpy()
    window = max(1, int(round(1.0 / frame_s)))
    result = {"seconds": round(len(frames) * frame_s, 2)}
    for graph in ("slow", "fast"):
        module = model.step_module(graph).eval()
        h = np.zeros((1, model.config.state_dim), np.float32)
        c = h.copy()
        hq, cq = h.copy(), c.copy()
        ref_logits, q_logits = [], []
        for frame in frames:
            x = frame[None, :].astype(np.float32)
            logits, h, c = _float_outputs(module, (x, h, c))
            lq, hq, cq = bundle.step(graph, x, hq, cq)
            ref_logits.append(logits[0])
            q_logits.append(lq[0])
        ref_logits, q_logits = np.stack(ref_logits), np.stack(q_logits)
        result[graph] = {
            "first_second_snr_db": snr_db(ref_logits[:window], q_logits[:window]),
            "last_second_snr_db": snr_db(ref_logits[-window:], q_logits[-window:]),
            "end_state_snr_db": {"h": snr_db(h, hq), "c": snr_db(c, cq)},
        }
    return result


def accuracy(model: BranchedEncoder, bundle, audio: Audio, mflops: float) -> dict:
    """CER and routing of float vs int8, each streaming with its own arbitrator at the target's speed."""
    from amc.model.evaluate import evaluate_bundle, evaluate_model
    from amc.model.feature_set import FeatureSet

    data = FeatureSet(list(audio.features), list(audio.texts), list(audio.files))
    if not len(data):
        return {"utterances": 0}
    float_result = evaluate_model(model, data, route="arbitrator", mflops=mflops)
    int8_result = evaluate_bundle(bundle, data, route="arbitrator", mflops=mflops)
    keys = ("cer", "wer", "fast_fraction", "mflops_per_frame")
    return {"utterances": len(data), "mflops": mflops,
            "float": {k: float_result[k] for k in keys} | {"latency_ms": float_result["latency_ms"]},
            "int8": {k: int8_result[k] for k in keys} | {"latency_ms": int8_result["latency_ms"]},
            "cer_delta": round(int8_result["cer"] - float_result["cer"], 3),
            "fast_fraction_delta": round(int8_result["fast_fraction"] - float_result["fast_fraction"], 4)}


def timing(bundle, samples: dict[str, list[tuple]], calls: int = TIMING_CALLS) -> dict:
    """Median wall time per frame of each graph in its runtime called from Python (numpy in and
    out, the bindings' dispatch included), as ratios to the slow graph."""
    medians = {}
    for graph, inputs in samples.items():
        arrays = inputs[0]
        for _ in range(10):
            bundle.step(graph, *arrays)
        times = []
        for i in range(calls):
            started = time.perf_counter()
            bundle.step(graph, *arrays)
            times.append(time.perf_counter() - started)
        medians[graph] = float(np.median(times))
    slow = medians["slow"] or 1e-12
    return {"fast_over_slow": round(medians["fast"] / slow, 3),
            "arbitrator_over_slow": round(medians["arbitrator"] / slow, 3),
            "calls": calls, "median_us": {g: round(t * 1e6, 1) for g, t in medians.items()},
            "timed": "from Python: one bundle step, numpy in and out (time.perf_counter)"}


def native_timing(bundle_dir: Path, backend: str) -> dict:
    """Median and p90 wall time per frame of each graph, the runtime's own execute call timed in
    C++ by amc-runner built for this host, graphs interleaved call by call, on the calling thread
    only; as ratios to the slow graph. {"unavailable": why} where the backend has no native runner
    here or the runner cannot be built (no cmake or C++ compiler): the Python timing then stands alone."""
    backend = get_backend(backend)
    if not backend.native_runtime:
        return {"unavailable": backend.no_native_runtime}
    from amc.targets.amc_runner import bench_bundle

    try:
        bench = bench_bundle(bundle_dir)
    except (AmcError, OSError, ValueError) as error:      # the bundle is fine; only this timing is missing
        return {"unavailable": str(error)}
    graphs = bench["graphs"]
    slow = graphs["slow"]["median_us"] or 1e-6
    return {"runtime": backend.native_runtime,
            "fast_over_slow": round(graphs["fast"]["median_us"] / slow, 3),
            "arbitrator_over_slow": round(graphs["arbitrator"]["median_us"] / slow, 3),
            "calls": bench["frames"], "threads": bench["threads"],
            "median_us": {g: round(v["median_us"], 2) for g, v in graphs.items()},
            "p90_us": {g: round(v["p90_us"], 2) for g, v in graphs.items()},
            "timed": "in C++: the runtime's execute call alone (std::chrono::steady_clock)"}


def verification_samples(model: BranchedEncoder, audio: Audio, calibration_inputs: dict, mflops: float) -> dict:
    """Held-out single-frame inputs a graph: streamed states from the verification audio when
    there is any, otherwise the calibration inputs."""
    if not audio.features:
        return calibration_inputs
    from amc.calibration.step_inputs import gather

    held_out = gather(model, audio.features[:8], mflops=mflops, max_samples=ONE_FRAME_SAMPLES, seed=1)
    return held_out.inputs


def frontend(bundle_dir: Path, bundle, audio: Audio, mflops: float, host_cer: float | None) -> dict:
    """The bundle's front end (the C every device runs, on its table file) against the host's
    training features, on the verification audio: the int8 `features` input of each graph
    identical or how many steps apart, and the int8 CER from PCM against `host_cer`, the int8
    CER from host features."""
    from amc.model.evaluate import evaluate_bundle
    from amc.model.feature_set import FeatureSet
    from amc.runtime.frontend import CFrontEnd, against_graph_inputs, pcm_of

    front = CFrontEnd.from_tables((Path(bundle_dir) / bundle.manifest["frontend"]["file"]).read_bytes())
    device = [front.frames(pcm_of(path)) for path in audio.files]
    out = against_graph_inputs(bundle.manifest, device, [np.asarray(f) for f in audio.features])
    if audio.files and host_cer is not None:
        from_pcm = evaluate_bundle(bundle, FeatureSet([torch.from_numpy(d) for d in device], list(audio.texts),
                                                      list(audio.files)), route="arbitrator", mflops=mflops)
        out |= {"cer_from_pcm": from_pcm["cer"], "cer_from_host_features": host_cer,
                "cer_delta": round(from_pcm["cer"] - host_cer, 3)}
    return out
