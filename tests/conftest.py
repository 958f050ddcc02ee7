"""Shared fixtures: tiny models and feature sets that make tests fast on 2 cores."""

from __future__ import annotations

import random

import pytest
import torch

from amc.model.branched import BranchedEncoder
from amc.model.config import ModelConfig
from amc.model.feature_set import FeatureSet

ALPHABET = " abcdefghijklmnopqrstuvwxyz'"


def tiny_config(**overrides) -> ModelConfig:
    values = dict(vocabulary=("_",) + tuple(ALPHABET), hidden=32, fast_rank=4)
    values.update(overrides)
    return ModelConfig(**values)


@pytest.fixture
def tiny_model() -> BranchedEncoder:
    torch.manual_seed(0)
    return BranchedEncoder(tiny_config()).eval()


def random_features(count: int, seed: int = 0, frames=(20, 40)) -> FeatureSet:
    rng = random.Random(seed)
    generator = torch.Generator().manual_seed(seed)
    features = [torch.randn(rng.randint(*frames), 120, generator=generator) for _ in range(count)]
    texts = ["".join(rng.choice(ALPHABET[1:27]) for _ in range(rng.randint(3, 8))) for _ in range(count)]
    return FeatureSet(features, texts, [f"{i}.wav" for i in range(count)])


def run_cli(argv, capsys) -> tuple[int, str, str]:
    """Run `amc ARGV` in process: (exit code, stdout, stderr)."""
    from amc.cli import main

    try:
        main(argv)
        code = 0
    except SystemExit as exit:
        code = exit.code
    captured = capsys.readouterr()
    return code, captured.out, captured.err
