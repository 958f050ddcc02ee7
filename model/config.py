"""The checkpoint's config.json: architecture, feature definition, vocabulary, routing costs.

Every later stage (training, compile, eval, the device runner) computes features and routes
frames from this one description."""

from __future__ import annotations

import json
from dataclasses import asdict, dataclass, field, fields
from pathlib import Path
from typing import Any

from amc.common.errors import InputError

ARCHITECTURE = "amc-branched-lstm"
CONFIG_VERSION = 1


@dataclass(frozen=True)
class FeatureConfig:
    """Log-mel filterbanks every `hop_ms`, `stack` of them concatenated into one encoder frame."""

    sample_rate: int = 16000
    window_ms: float = 25.0
    hop_ms: float = 10.0
    n_fft: int = 512
    n_mels: int = 40
    f_min: float = 20.0
    f_max: float = 7600.0
    log_floor: float = 1e-6
    stack: int = 3

    @property
    def frame_ms(self) -> float:
        return self.hop_ms * self.stack

    @property
    def frame_dim(self) -> int:
        return self.n_mels * self.stack


@dataclass(frozen=True)
class ModelConfig:
    features: FeatureConfig = field(default_factory=FeatureConfig)
    vocabulary: tuple[str, ...] = ()       # CTC labels; index 0 is the blank "_"
    hidden: int = 256                      # state width of every layer
    layers: int = 2
    fast_variant: str = "factorized"       # "factorized" (W ~ U V) or "sparse" (pruned W)
    fast_rank: int = 48                    # factorized: rank r of every matrix
    fast_density: float = 0.15             # sparse: fraction of weights kept
    arbitrator_hidden: int = 16
    backlog_scale_ms: float = 100.0        # arbitrator input is backlog_ms / backlog_scale_ms
    route_threshold: float = 0.5           # fast when P(fast) > threshold
    nominal_mflops: float = 40.0           # processor speed (MFLOP/s) the arbitrator was trained for
    cell_clip: float | None = None         # |c| clamped to this after every step (None: unclipped);
    # bounds the cell state so its int8 range is fixed and fine (see docs/model.md)

    @property
    def state_dim(self) -> int:
        return self.layers * self.hidden

    def to_json(self) -> dict[str, Any]:
        body = asdict(self)
        body["vocabulary"] = list(self.vocabulary)
        return {"architecture": ARCHITECTURE, "config_version": CONFIG_VERSION, **body}

    @classmethod
    def from_json(cls, body: dict[str, Any], source: str = "config.json") -> "ModelConfig":
        body = dict(body)
        architecture = body.pop("architecture", None)
        if architecture != ARCHITECTURE:
            raise InputError(f"{source}: unknown architecture '{architecture}', expected '{ARCHITECTURE}'")
        body.pop("training", None)                 # provenance, not architecture
        version = body.pop("config_version", None)
        if version != CONFIG_VERSION:
            raise InputError(f"{source}: config_version {version} is not supported (expected {CONFIG_VERSION})")
        _check_keys(cls, body, source)
        features = body.pop("features", {})
        if not isinstance(features, dict):
            raise InputError(f"{source}: 'features' must be an object")
        _check_keys(FeatureConfig, features, f"{source}: features")
        body["vocabulary"] = tuple(body.get("vocabulary", ()))
        config = cls(features=FeatureConfig(**features), **body)
        config.validate(source)
        return config

    def validate(self, source: str = "config") -> None:
        if self.fast_variant not in ("factorized", "sparse"):
            raise InputError(f"{source}: fast_variant must be 'factorized' or 'sparse', not '{self.fast_variant}'")
        if len(self.vocabulary) < 2 or self.vocabulary[0] != "_":
            raise InputError(f"{source}: vocabulary must start with the CTC blank '_' and hold the characters")
        if not 0 < self.fast_density <= 1:
            raise InputError(f"{source}: fast_density must be in (0, 1]")
        if self.cell_clip is not None and not self.cell_clip > 0:
            raise InputError(f"{source}: cell_clip must be a positive number or null")
        if self.hidden < 1 or self.layers < 1 or self.fast_rank < 1:
            raise InputError(f"{source}: hidden, layers and fast_rank must be positive")


def _check_keys(cls: type, body: dict[str, Any], source: str) -> None:
    known = {f.name for f in fields(cls)}
    unknown = sorted(set(body) - known)
    if unknown:
        raise InputError(f"{source}: unknown key '{unknown[0]}' (known: {', '.join(sorted(known))})")


def load_config(path: Path) -> ModelConfig:
    try:
        body = json.loads(path.read_text())
    except FileNotFoundError:
        raise InputError(f"{path}: missing; a checkpoint is a directory with config.json and model.safetensors") from None
    except json.JSONDecodeError as error:
        raise InputError(f"{path}:{error.lineno}: invalid JSON ({error.msg})") from None
    if not isinstance(body, dict):
        raise InputError(f"{path}: must hold a JSON object")
    return ModelConfig.from_json(body, str(path))
