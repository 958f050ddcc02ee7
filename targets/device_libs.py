"""The runtime libraries a Linux board runs the graphs with, taken from the aarch64 wheels of the
same packages (and versions) the host compiles and verifies with:

* `executorch`: `executorch/lib/*.so` (the runtime, the XNNPACK delegate, the optimized and
  quantized kernels, the thread pool) and `executorch/include/` (enough to compile against);
* `ai-edge-litert`: `ai_edge_litert/libLiteRt.so`.

The host preset (x86-64, this machine) takes the same files from the installed packages instead.

The wheels are downloaded once with pip into `build/cache/wheels/` (or `$AMC_DEVICE_CACHE/wheels`)
and unpacked beside them; later runs and `make test` reuse them. `make device-libs` does the same
from the Makefile."""

from __future__ import annotations

import hashlib
import importlib.util
import os
import subprocess
import sys
import zipfile
from dataclasses import dataclass
from importlib import metadata
from pathlib import Path

from amc.common.errors import InputError, ToolMissingError
from amc.common.paths import build_root

PLATFORMS = {"aarch64-linux-gnu": ("manylinux_2_28_aarch64", "manylinux_2_27_aarch64", "manylinux2014_aarch64")}
"""Wheel platform tags per cross triple. armhf (rpi3) has no executorch/LiteRT wheels on PyPI."""

PACKAGES = {"executorch": ("executorch/lib/", "executorch/include/"),
            "ai-edge-litert": ("ai_edge_litert/libLiteRt.so",)}
"""What of each wheel a device needs (path prefixes inside the wheel)."""


def cache_root() -> Path:
    return Path(os.environ.get("AMC_DEVICE_CACHE", build_root() / "cache"))


def pinned_version(package: str) -> str:
    """The host's installed version: the device runs the same runtime the bundle was verified with."""
    try:
        return metadata.version(package)
    except metadata.PackageNotFoundError:
        raise ToolMissingError(f"{package} is not installed on the host: pip install -e . (it pins the version)") from None


@dataclass(frozen=True)
class DeviceLibs:
    package: str
    version: str
    wheel: Path | None  # None for the host: the installed package itself
    root: Path          # the unpacked package folder (e.g. .../executorch)

    @property
    def lib_dir(self) -> Path:
        return self.root / "lib" if self.package == "executorch" else self.root

    def shared_libraries(self) -> list[Path]:
        return sorted(self.lib_dir.glob("*.so"))


def wheel_path(package: str, version: str, triple: str) -> Path | None:
    wheels = cache_root() / "wheels"
    stem = package.replace("-", "_")
    arch = triple.split("-")[0]
    found = sorted(wheels.glob(f"{stem}-{version}-*{arch}.whl")) if wheels.is_dir() else []
    return found[0] if found else None


def download_wheel(package: str, version: str, triple: str) -> Path:
    """pip download of the board's wheel into the cache (no dependencies, binary only)."""
    if triple not in PLATFORMS:
        raise InputError(f"no {package} wheels are published for {triple}; the on-target runtime needs aarch64")
    wheels = cache_root() / "wheels"
    wheels.mkdir(parents=True, exist_ok=True)
    python = f"{sys.version_info.major}{sys.version_info.minor}"
    cmd = [sys.executable, "-m", "pip", "download", "--quiet", "--no-deps", "--only-binary=:all:",
           "--python-version", python, "--implementation", "cp", "-d", str(wheels)]
    for platform in PLATFORMS[triple]:
        cmd += ["--platform", platform]
    cmd.append(f"{package}=={version}")
    result = subprocess.run(cmd, capture_output=True, text=True)
    path = wheel_path(package, version, triple)
    if result.returncode or path is None:
        last = (result.stderr or result.stdout).strip().splitlines()
        raise ToolMissingError(f"cannot download the {triple} wheel of {package}=={version} "
                               f"({last[-1] if last else 'pip failed'}): run `make device-libs` with access to PyPI")
    return path


def device_libs(package: str, triple: str = "aarch64-linux-gnu", download: bool = True) -> DeviceLibs:
    """The unpacked runtime files of `package` for `triple`, downloading and unpacking once."""
    if package not in PACKAGES:
        raise InputError(f"unknown device runtime package '{package}'")
    version = pinned_version(package)
    wheel = wheel_path(package, version, triple)
    if wheel is None:
        if not download:
            raise ToolMissingError(f"the {triple} wheel of {package}=={version} is not in {cache_root() / 'wheels'}: "
                                   f"run `make device-libs`")
        wheel = download_wheel(package, version, triple)
    top = PACKAGES[package][0].split("/")[0]
    unpacked = cache_root() / triple / f"{package}-{version}"
    root = unpacked / top
    stamp = unpacked / ".unpacked"
    digest = _sha256(wheel)
    if not stamp.exists() or stamp.read_text().strip() != digest:
        _unpack(wheel, unpacked, PACKAGES[package])
        stamp.write_text(digest + "\n")
    return DeviceLibs(package, version, wheel, root)


def installed_libs(package: str) -> DeviceLibs:
    """The runtime files of `package` as installed on the host (the host preset runs them natively)."""
    if package not in PACKAGES:
        raise InputError(f"unknown device runtime package '{package}'")
    version = pinned_version(package)
    top = PACKAGES[package][0].split("/")[0]
    spec = importlib.util.find_spec(top)
    if spec is None or not spec.submodule_search_locations:
        raise ToolMissingError(f"{package} is installed but its package folder '{top}' is not importable")
    root = Path(spec.submodule_search_locations[0])
    missing = [prefix for prefix in PACKAGES[package] if not (root.parent / prefix).exists()]
    if missing:
        raise ToolMissingError(f"the installed {package}=={version} has no {', '.join(missing)}")
    return DeviceLibs(package, version, None, root)


def _sha256(path: Path) -> str:
    digest = hashlib.sha256()
    with open(path, "rb") as handle:
        for block in iter(lambda: handle.read(1 << 20), b""):
            digest.update(block)
    return digest.hexdigest()


def _unpack(wheel: Path, into: Path, prefixes: tuple[str, ...]) -> None:
    try:
        with zipfile.ZipFile(wheel) as archive:
            for member in archive.infolist():
                name = member.filename
                if member.is_dir() or not name.startswith(prefixes):
                    continue
                if name.startswith("/") or ".." in Path(name).parts:
                    raise InputError(f"{wheel.name}: unsafe member path {name}")
                target = into / name
                target.parent.mkdir(parents=True, exist_ok=True)
                target.write_bytes(archive.read(member))
    except zipfile.BadZipFile:
        wheel.unlink(missing_ok=True)
        raise InputError(f"{wheel}: not a readable wheel (removed; the next run downloads it again)") from None
