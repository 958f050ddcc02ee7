"""Outputs appear whole or not at all: a directory is built beside its destination, then renamed."""

from __future__ import annotations

import os
import shutil
import tempfile
from pathlib import Path


def staging_directory(output: Path) -> Path:
    """A fresh temporary directory on the same file system as `output` (so rename is atomic),
    with the permissions a plain mkdir would give (a temporary directory is private)."""
    output.parent.mkdir(parents=True, exist_ok=True)
    staging = Path(tempfile.mkdtemp(prefix=f".{output.name}.", dir=output.parent))
    staging.chmod(0o777 & ~current_umask())
    return staging


def current_umask() -> int:
    mask = os.umask(0)
    os.umask(mask)
    return mask


def replace_directory(staging: Path, output: Path) -> None:
    """Move the finished staging dir to `output`, setting any old content aside first."""
    if output.exists():
        old = Path(tempfile.mkdtemp(prefix=f".{output.name}.old.", dir=output.parent))
        os.rename(output, old / "content")
        os.rename(staging, output)
        shutil.rmtree(old, ignore_errors=True)
    else:
        os.rename(staging, output)


def write_file(output: Path, data: bytes) -> None:
    """`output` holds `data` whole or keeps what it held: written beside it, synced, renamed."""
    output = Path(output)
    output.parent.mkdir(parents=True, exist_ok=True)
    descriptor, staging = tempfile.mkstemp(prefix=f".{output.name}.", dir=output.parent)
    try:
        with os.fdopen(descriptor, "wb") as out:
            out.write(data)
            out.flush()
            os.fsync(out.fileno())
        os.chmod(staging, 0o666 & ~current_umask())
        os.replace(staging, output)
    except BaseException:
        Path(staging).unlink(missing_ok=True)
        raise
