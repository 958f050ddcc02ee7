"""The picture of one utterance streaming on a slow processor: which branch ran each frame and
how the backlog evolved, against the slow branch alone."""

from __future__ import annotations

from pathlib import Path

import numpy as np


def plot_timeline(path: Path, text: str, fast: np.ndarray, backlog_ms: np.ndarray, slow_backlog_ms: np.ndarray,
                  frame_ms: float, mflops: float) -> Path:
    import matplotlib
    matplotlib.use("Agg")
    from matplotlib import pyplot as plt

    seconds = np.arange(len(fast)) * frame_ms / 1000.0
    figure, (routes, backlog) = plt.subplots(2, 1, figsize=(10, 4.5), sharex=True,
                                             gridspec_kw={"height_ratios": [1, 3]})
    routes.bar(seconds, np.ones(len(fast)), width=frame_ms / 1000.0, align="edge",
               color=np.where(fast, "#f28e2b", "#4e79a7"), linewidth=0)
    routes.set_yticks([])
    routes.set_title(f'"{text}"  ({mflops:g} MFLOP/s)', fontsize=9)
    routes.legend(handles=[plt.Rectangle((0, 0), 1, 1, color="#4e79a7"), plt.Rectangle((0, 0), 1, 1, color="#f28e2b")],
                  labels=["slow", "fast"], loc="upper right", fontsize=8, ncol=2)
    backlog.plot(seconds, slow_backlog_ms, color="#e15759", label="slow branch only")
    backlog.plot(seconds, backlog_ms, color="#59a14f", label="amortized (arbitrator)")
    backlog.set_xlabel("audio time (s)")
    backlog.set_ylabel("backlog (ms, log above 50)")
    backlog.set_yscale("symlog", linthresh=50)
    backlog.legend(loc="upper left", fontsize=8)
    backlog.grid(alpha=0.3)
    figure.tight_layout()
    path = Path(path)
    staging = path.with_name(f".{path.name}.tmp.png")
    figure.savefig(staging, dpi=110)
    plt.close(figure)
    staging.replace(path)
    return path
