"""Checkpoints: a directory with config.json and model.safetensors. Never unpickled."""

from __future__ import annotations

import json
import shutil
from pathlib import Path

import torch
from safetensors import SafetensorError
from safetensors.torch import load_file, save_file

from amc.common.atomic import current_umask, replace_directory, staging_directory
from amc.common.errors import InputError
from amc.model.branched import BranchedEncoder
from amc.model.config import ModelConfig, load_config

REFERENCE = Path(__file__).resolve().parent / "reference"
"""The shipped reference checkpoint, the default model of every amc command."""


def load_checkpoint(path: Path | str | None = None) -> BranchedEncoder:
    path = Path(path) if path is not None else REFERENCE
    if not path.is_dir():
        raise InputError(f"{path}: not a checkpoint directory (expected config.json and model.safetensors)")
    config = load_config(path / "config.json")
    weights_path = path / "model.safetensors"
    try:
        tensors = load_file(str(weights_path))
    except FileNotFoundError:
        raise InputError(f"{weights_path}: missing") from None
    except (SafetensorError, OSError) as error:
        raise InputError(f"{weights_path}: not a readable safetensors file ({error})") from None
    model = BranchedEncoder(config)
    expected = model.state_dict()
    missing = sorted(set(expected) - set(tensors))
    if missing:
        raise InputError(f"{weights_path}: tensor '{missing[0]}' that config.json implies is missing")
    unexpected = sorted(set(tensors) - set(expected))
    if unexpected:
        raise InputError(f"{weights_path}: tensor '{unexpected[0]}' does not belong to the architecture in config.json")
    for name, tensor in tensors.items():
        if tuple(tensor.shape) != tuple(expected[name].shape):
            raise InputError(f"{weights_path}: tensor '{name}' has shape {tuple(tensor.shape)}, "
                             f"config.json implies {tuple(expected[name].shape)}")
    model.load_state_dict(tensors)
    return model.eval()


def save_checkpoint(model: BranchedEncoder, path: Path | str, extra: dict | None = None) -> Path:
    """Write atomically: a temp directory beside `path`, then rename."""
    path = Path(path)
    staging = staging_directory(path)
    try:
        body = model.config.to_json()
        if extra:
            body["training"] = extra
        (staging / "config.json").write_text(json.dumps(body, indent=2) + "\n")
        tensors = {name: tensor.detach().contiguous().clone() for name, tensor in model.state_dict().items()}
        save_file(tensors, str(staging / "model.safetensors"))
        (staging / "model.safetensors").chmod(0o666 & ~current_umask())     # safetensors creates it private
        replace_directory(staging, path)
    except BaseException:
        shutil.rmtree(staging, ignore_errors=True)
        raise
    return path
