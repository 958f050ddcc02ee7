"""Features of an audio folder, computed once per feature definition and cached beside the data."""

from __future__ import annotations

import hashlib
import json
import random
from dataclasses import dataclass
from pathlib import Path

import numpy as np
import torch

from amc.model.config import FeatureConfig, ModelConfig
from amc.model.decoding import encode
from amc.model.features import LogMel

CACHE_DIR = ".amc-cache"


@dataclass
class FeatureSet:
    features: list[torch.Tensor]    # one (frames, frame_dim) tensor an utterance
    texts: list[str]
    files: list[str]

    def __len__(self) -> int:
        return len(self.texts)

    def subset(self, indices) -> "FeatureSet":
        return FeatureSet([self.features[i] for i in indices], [self.texts[i] for i in indices],
                          [self.files[i] for i in indices])


def load_features(data_dir: Path | str, features: FeatureConfig, report=None) -> FeatureSet:
    from amc.model.corpus.audio_folder import load_wav, read_audio_folder

    data_dir = Path(data_dir)
    utterances = read_audio_folder(data_dir)
    key = hashlib.sha256((data_dir / "metadata.jsonl").read_bytes()
                         + json.dumps(features.__dict__, sort_keys=True).encode()).hexdigest()[:16]
    cache = data_dir / CACHE_DIR / f"features-{key}.npz"
    texts = [u.text for u in utterances]
    files = [Path(u.path).name for u in utterances]
    if cache.exists():
        with np.load(cache, allow_pickle=False) as stored:
            frames, offsets = stored["frames"], stored["offsets"]
        return FeatureSet([torch.from_numpy(frames[a:b]) for a, b in zip(offsets[:-1], offsets[1:])], texts, files)
    log_mel = LogMel(features)
    computed = []
    for index, utterance in enumerate(utterances):
        computed.append(log_mel(load_wav(utterance.path)))
        if report:
            report("features", index + 1, len(utterances))
    offsets = np.cumsum([0] + [len(f) for f in computed])
    try:
        cache.parent.mkdir(exist_ok=True)
        staging = cache.with_suffix(".tmp.npz")
        np.savez(staging, frames=torch.cat(computed).numpy(), offsets=offsets)
        staging.replace(cache)
    except OSError:
        pass    # a read-only data folder is fine: no cache
    return FeatureSet(computed, texts, files)


@dataclass
class Batch:
    x: torch.Tensor          # (batch, time, frame_dim), zero padded
    lengths: torch.Tensor    # (batch,)
    targets: torch.Tensor    # concatenated label ids
    target_lengths: torch.Tensor
    texts: list[str]


def make_batch(data: FeatureSet, indices, config: ModelConfig) -> Batch:
    features = [data.features[i] for i in indices]
    lengths = torch.tensor([len(f) for f in features])
    x = torch.zeros(len(features), int(lengths.max()), config.features.frame_dim)
    for row, f in enumerate(features):
        x[row, :len(f)] = f
    labels = [encode(data.texts[i], config.vocabulary) for i in indices]
    return Batch(x, lengths, torch.tensor([l for seq in labels for l in seq]),
                 torch.tensor([len(seq) for seq in labels]), [data.texts[i] for i in indices])


def batches(data: FeatureSet, batch_size: int, config: ModelConfig, rng: random.Random | None = None):
    """Length-sorted batches (little padding); shuffled batch order when `rng` is given."""
    order = sorted(range(len(data)), key=lambda i: len(data.features[i]))
    groups = [order[i:i + batch_size] for i in range(0, len(order), batch_size)]
    if rng is not None:
        rng.shuffle(groups)
    for group in groups:
        yield make_batch(data, group, config)
