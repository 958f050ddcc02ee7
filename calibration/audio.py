"""The audio a compile calibrates and verifies on.

`--calib DIR` is either a corpus (DIR/train and DIR/test audio folders, as `amc data synth`
writes): calibrate on the first utterances of train, verify on the first of test; or one audio
folder: every fourth utterance is held out for verification. Without `--calib`, a small corpus
is synthesized reproducibly (fixed seed, a few dozen utterances) into the cache directory once
and reused."""

from __future__ import annotations

import os
from dataclasses import dataclass
from pathlib import Path

import torch

from amc.common.errors import InputError
from amc.model.config import FeatureConfig
from amc.model.features import LogMel

DEFAULT_SEED = 20211
DEFAULT_COUNTS = {"train": 48, "dev": 0, "test": 24}
MAX_CALIBRATION = 64
MAX_VERIFICATION = 32


@dataclass
class Audio:
    features: list[torch.Tensor]     # (frames, frame_dim) an utterance
    texts: list[str]
    files: list[str]


@dataclass
class CalibrationAudio:
    source: str
    calibration: Audio
    verification: Audio

    def summary(self) -> dict:
        return {"source": self.source, "calibration_utterances": len(self.calibration.texts),
                "verification_utterances": len(self.verification.texts),
                "calibration_seconds": round(_seconds(self.calibration), 1),
                "verification_seconds": round(_seconds(self.verification), 1)}


def _seconds(audio: Audio) -> float:
    return sum(len(f) for f in audio.features) * 0.03


def cache_dir() -> Path:
    return Path(os.environ.get("AMC_CACHE", Path.home() / ".cache" / "amc"))


def default_corpus(report=None) -> Path:
    """The reproducible calibration corpus, synthesized on first use."""
    from amc.model.corpus.synth import synthesize_corpus

    path = cache_dir() / f"calibration-seed{DEFAULT_SEED}-v1"
    if not (path / "corpus.json").is_file():
        synthesize_corpus(path, seed=DEFAULT_SEED, force=True, report=report or (lambda *a: None),
                          **DEFAULT_COUNTS)
    return path


def _load(utterances, features: FeatureConfig, report, label: str) -> Audio:
    from amc.model.corpus.audio_folder import load_wav

    log_mel = LogMel(features)
    out = Audio([], [], [])
    for index, utterance in enumerate(utterances):
        frames = log_mel(load_wav(utterance.path))
        if len(frames):
            out.features.append(frames)
            out.texts.append(utterance.text)
            out.files.append(str(utterance.path))
        if report:
            report(f"features ({label})", index + 1, len(utterances))
    return out


def load_calibration_audio(calib: Path | None, features: FeatureConfig, report=None) -> CalibrationAudio:
    from amc.model.corpus.audio_folder import read_audio_folder

    root = Path(calib) if calib is not None else default_corpus(report)
    if not root.is_dir():
        raise InputError(f"{root}: calibration folder does not exist")
    if (root / "train").is_dir() and (root / "test").is_dir():
        calibration = read_audio_folder(root / "train")[:MAX_CALIBRATION]
        verification = read_audio_folder(root / "test")[:MAX_VERIFICATION]
        source = f"{root} (train: calibration, test: verification)"
    else:
        utterances = read_audio_folder(root)
        calibration = [u for i, u in enumerate(utterances) if i % 4 != 3][:MAX_CALIBRATION]
        verification = [u for i, u in enumerate(utterances) if i % 4 == 3][:MAX_VERIFICATION]
        source = f"{root} (every fourth utterance held out for verification)"
    if not calibration:
        raise InputError(f"{root}: calibration folder holds no utterances")
    audio = CalibrationAudio(source, _load(calibration, features, report, "calibration"),
                             _load(verification, features, report, "verification"))
    if not audio.calibration.features:
        raise InputError(f"{root}: calibration utterances are all shorter than one frame")
    return audio
