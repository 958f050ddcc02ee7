"""manifest.json: the contract between a bundle and everything that reads it (eval, simulate,
inspect, diff, the device). docs/manifest.md specifies every field."""

from __future__ import annotations

import hashlib
import json
from importlib import metadata
from pathlib import Path

from amc.common.errors import InputError

SCHEMA = "amc-bundle"
SCHEMA_VERSION = 1
MANIFEST = "manifest.json"

_TOOLS = ("amc", "torch", "executorch", "torchao", "litert-torch", "ai-edge-quantizer", "ai-edge-litert",
          "tflite-micro", "onnx", "onnxruntime", "numpy")


def tool_versions() -> dict[str, str | None]:
    versions = {}
    for name in _TOOLS:
        try:
            versions[name] = metadata.version(name)
        except metadata.PackageNotFoundError:
            versions[name] = None
    return versions


def sha256_file(path: Path) -> str:
    return hashlib.sha256(Path(path).read_bytes()).hexdigest()


def write_manifest(directory: Path, manifest: dict) -> Path:
    path = Path(directory) / MANIFEST
    path.write_text(json.dumps(manifest, indent=1) + "\n")
    return path


def read_manifest(directory: Path | str) -> dict:
    directory = Path(directory)
    path = directory / MANIFEST
    try:
        manifest = json.loads(path.read_text())
    except FileNotFoundError:
        raise InputError(f"{path}: missing; a bundle is a directory written by `amc compile`") from None
    except json.JSONDecodeError as error:
        raise InputError(f"{path}:{error.lineno}: invalid JSON ({error.msg})") from None
    if not isinstance(manifest, dict) or manifest.get("schema") != SCHEMA:
        raise InputError(f"{path}: not an amc bundle manifest (schema must be '{SCHEMA}')")
    if manifest.get("schema_version") != SCHEMA_VERSION:
        raise InputError(f"{path}: schema_version {manifest.get('schema_version')} is not supported "
                         f"(expected {SCHEMA_VERSION})")
    for graph in ("fast", "slow", "arbitrator"):
        if graph not in manifest.get("graphs", {}):
            raise InputError(f"{path}: graph '{graph}' missing")
    return manifest
