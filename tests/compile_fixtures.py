"""What the compiler tests share: a tiny checkpoint and a tiny audio corpus (espeak-ng speech)."""

from __future__ import annotations

import json
import wave
from pathlib import Path

import numpy as np
import torch

from amc.model.branched import BranchedEncoder
from amc.model.checkpoint import save_checkpoint
from amc.model.config import ModelConfig

VOCABULARY = ("_",) + tuple(" abcdefghijklmnopqrstuvwxyz'")


def tiny_checkpoint(path: Path, variant: str = "factorized", hidden: int = 32, cell_clip: float | None = None) -> Path:
    torch.manual_seed(0)
    model = BranchedEncoder(ModelConfig(vocabulary=VOCABULARY, hidden=hidden, fast_rank=4, fast_variant=variant,
                                        cell_clip=cell_clip))
    with torch.no_grad():
        model.feature_mean.fill_(-6.0)
        model.feature_std.fill_(3.0)
        if variant == "sparse":
            for projection in model.fast.projections:
                projection.mask.copy_((torch.rand_like(projection.mask) < 0.3).float())
    return save_checkpoint(model.eval(), path)


def tiny_corpus(path: Path, train: int = 4, test: int = 2) -> Path:
    from amc.model.corpus.synth import synthesize_corpus

    synthesize_corpus(path, seed=3, train=train, dev=0, test=test, workers=1, force=True)
    return path


def write_wav(path: Path, samples: np.ndarray, rate: int = 16000) -> None:
    with wave.open(str(path), "wb") as w:
        w.setnchannels(1)
        w.setsampwidth(2)
        w.setframerate(rate)
        w.writeframes((np.clip(samples, -1, 1) * 32767).astype("<i2").tobytes())


def audio_folder(path: Path, rate: int = 16000, count: int = 2) -> Path:
    path.mkdir(parents=True, exist_ok=True)
    rng = np.random.default_rng(0)
    with open(path / "metadata.jsonl", "w") as f:
        for i in range(count):
            write_wav(path / f"{i}.wav", rng.standard_normal(rate) * 0.1, rate)
            f.write(json.dumps({"file_name": f"{i}.wav", "text": "hello there"}) + "\n")
    return path
