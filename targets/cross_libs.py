"""C libraries that the board's own programs link, taken from Debian's packages of the board's
architecture: today libsodium (Ed25519 for `amc-patch`, device/runtime/ports/amc_ed25519_sodium.c).

Debian publishes the same libsodium-dev for arm64 (rpi4) and armhf (rpi3) as for the host. Its
`.deb` is fetched once with `apt-get download` (which needs the architecture known to apt:
`dpkg --add-architecture arm64 armhf && apt-get update`, done by `make device-libs`) into
`build/cache/debs/` (or `$AMC_DEVICE_CACHE/debs`) and unpacked with `dpkg-deb -x` beside the
wheels of targets/device_libs.py, under `build/cache/<triple>/<package>-<version>/`. Nothing is
installed into the system: the cross build is handed the header folder and the static library,
so `amc-patch` carries libsodium inside it and a device image needs no extra shared library."""

from __future__ import annotations

import hashlib
import shutil
import subprocess
import tempfile
from dataclasses import dataclass
from pathlib import Path

from amc.common.errors import InputError, ToolMissingError
from amc.targets.device_libs import cache_root

DEB_ARCH = {"aarch64-linux-gnu": "arm64", "arm-linux-gnueabihf": "armhf"}
"""Debian architecture of each cross triple (the Raspberry Pi presets)."""

LIBRARIES = {"libsodium": ("libsodium-dev", "libsodium.a")}
"""Library -> (Debian package that holds its headers and static archive, archive file name)."""


@dataclass(frozen=True)
class CrossLibrary:
    name: str
    triple: str
    deb: Path
    include_dir: Path
    static_library: Path


def deb_path(package: str, arch: str) -> Path | None:
    """The newest downloaded .deb of `package` for `arch` in the cache, if any."""
    debs = cache_root() / "debs"
    found = sorted(debs.glob(f"{package}_*_{arch}.deb"), key=lambda p: p.stat().st_mtime) if debs.is_dir() else []
    return found[-1] if found else None


def download_deb(package: str, arch: str) -> Path:
    """`apt-get download PACKAGE:ARCH` into the cache (no dependencies: the static archive and
    the headers are all the cross build needs)."""
    apt = shutil.which("apt-get")
    if apt is None:
        raise ToolMissingError(f"apt-get not found: {package}:{arch} comes from Debian's archive")
    debs = cache_root() / "debs"
    debs.mkdir(parents=True, exist_ok=True)
    result = subprocess.run([apt, "download", "-q", "-o", "APT::Sandbox::User=root", f"{package}:{arch}"],
                            cwd=debs, capture_output=True, text=True, timeout=600)
    path = deb_path(package, arch)
    if result.returncode or path is None:
        errors = [line for line in (result.stderr + result.stdout).splitlines() if line.startswith("E:")]
        reason = errors[-1].removeprefix("E: ") if errors else f"apt-get exit status {result.returncode}"
        raise ToolMissingError(f"cannot download {package}:{arch} ({reason}): run `dpkg --add-architecture {arch} "
                               f"&& apt-get update` (or `make device-libs`) with access to the Debian archive")
    return path


def cross_library(name: str, triple: str, download: bool = True) -> CrossLibrary:
    """Headers and static archive of library `name` for `triple`, downloading and unpacking once."""
    if name not in LIBRARIES:
        raise InputError(f"unknown cross library '{name}'")
    if triple not in DEB_ARCH:
        raise InputError(f"no Debian architecture for {triple}: {name} is fetched for {', '.join(DEB_ARCH)}")
    package, archive = LIBRARIES[name]
    arch = DEB_ARCH[triple]
    deb = deb_path(package, arch)
    if deb is None:
        if not download:
            raise ToolMissingError(f"{package}:{arch} is not in {cache_root() / 'debs'}: run `make device-libs`")
        deb = download_deb(package, arch)
    version = deb.name.split("_")[1]
    unpacked = cache_root() / triple / f"{package}-{version}"
    stamp = unpacked / ".unpacked"
    digest = hashlib.sha256(deb.read_bytes()).hexdigest()
    if not stamp.exists() or stamp.read_text().strip() != digest:
        _unpack(deb, unpacked)
        stamp.write_text(digest + "\n")
    library = CrossLibrary(name, triple, deb, unpacked / "usr" / "include",
                           unpacked / "usr" / "lib" / triple / archive)
    if not library.static_library.is_file() or not (library.include_dir / f"{name.removeprefix('lib')}.h").is_file():
        raise InputError(f"{deb.name} holds no {archive} for {triple} (remove it to download it again)")
    return library


def _unpack(deb: Path, into: Path) -> None:
    """dpkg-deb -x into a fresh folder beside `into`, then swap it in (no half-unpacked cache)."""
    dpkg_deb = shutil.which("dpkg-deb")
    if dpkg_deb is None:
        raise ToolMissingError("dpkg-deb not found: apt-get install dpkg")
    into.parent.mkdir(parents=True, exist_ok=True)
    fresh = Path(tempfile.mkdtemp(prefix=into.name + ".", dir=into.parent))
    result = subprocess.run([dpkg_deb, "-x", str(deb), str(fresh)], capture_output=True, text=True)
    if result.returncode:
        shutil.rmtree(fresh, ignore_errors=True)
        deb.unlink(missing_ok=True)
        raise InputError(f"{deb}: not a readable .deb (removed; the next run downloads it again)")
    if into.exists():
        shutil.rmtree(into)
    fresh.rename(into)


def fetch_all() -> list[CrossLibrary]:
    """Every library for every Pi triple (what `make device-libs` asks for)."""
    return [cross_library(name, triple) for name in LIBRARIES for triple in DEB_ARCH]


if __name__ == "__main__":          # python -m amc.targets.cross_libs (make device-libs)
    import sys

    try:
        for found in fetch_all():
            print(f"{found.name} {found.triple}: {found.static_library}")
    except (ToolMissingError, InputError) as error:
        print(f"amc: {error}", file=sys.stderr)
        sys.exit(error.exit_code)
