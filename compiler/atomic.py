"""Outputs appear whole or not at all: a directory is built beside its destination, then renamed."""

from __future__ import annotations

import os
import shutil
import tempfile
from pathlib import Path


def staging_directory(output: Path) -> Path:
    """A fresh temporary directory on the same file system as `output` (so rename is atomic)."""
    output.parent.mkdir(parents=True, exist_ok=True)
    return Path(tempfile.mkdtemp(prefix=f".{output.name}.", dir=output.parent))


def replace_directory(staging: Path, output: Path) -> None:
    """Move the finished staging dir to `output`, setting any old content aside first."""
    if output.exists():
        old = Path(tempfile.mkdtemp(prefix=f".{output.name}.old.", dir=output.parent))
        os.rename(output, old / "content")
        os.rename(staging, output)
        shutil.rmtree(old, ignore_errors=True)
    else:
        os.rename(staging, output)
