"""Where amc finds its own files and where it builds.

The device-side sources (the C runtime, amc-runner, board Python, boot units) are package data of
`amc.device`, so they are found the same way in a source checkout and in an installed wheel.
Builds and caches go under `build/` of the source checkout when amc runs from one, else under
`~/.cache/amc`; `$AMC_BUILD_DIR` overrides both."""

from __future__ import annotations

import os
from importlib import resources
from pathlib import Path

SOURCE_CHECKOUT = Path(__file__).resolve().parent.parent
"""The project's root when amc runs from a source checkout (an editable install)."""


def device_sources(part: str) -> Path:
    """A folder of the device side: "runtime", "runner", "boot", "ota" or "board"."""
    return Path(str(resources.files("amc.device") / part))


def is_source_checkout() -> bool:
    return (SOURCE_CHECKOUT / "pyproject.toml").is_file() and (SOURCE_CHECKOUT / "device").is_dir()


def build_root() -> Path:
    if "AMC_BUILD_DIR" in os.environ:
        return Path(os.environ["AMC_BUILD_DIR"])
    if is_source_checkout():
        return SOURCE_CHECKOUT / "build"
    return Path.home() / ".cache" / "amc"
