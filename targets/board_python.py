"""The aarch64 CPython that runs the board side of `amc test` for TFLite bundles
(device/board/tflite_board.py) under qemu-user, with the aarch64 wheels of numpy and ai-edge-litert.

Why a Python on the board: the ai-edge-litert aarch64 wheel ships `libLiteRt.so` with only the
LiteRT CompiledModel C API and no headers (docs/on-target.md), but also the interpreter's Python
binding, which runs the .tflite graphs with the same kernels as the host's `ai_edge_litert`.

Where it comes from, all cached under `build/cache` (or `$AMC_DEVICE_CACHE`) and reused:

* CPython 3.11 from Debian's arm64 packages (the same release as the cross sysroot), fetched with
  `apt-get download` into `cache/debs/` and unpacked together with `dpkg-deb -x` into
  `cache/aarch64-linux-gnu/python3.11-<version>/`: the interpreter, its standard library, and the
  few shared libraries the interpreter and the modules the script imports load (`PYTHON_DEBS`);
  glibc and libstdc++ come from the cross sysroot (`/usr/aarch64-linux-gnu`);
* the aarch64 wheels of numpy and ai-edge-litert, of the versions installed on the host (the board
  quantizes and runs exactly as the host does), fetched with `pip download` into `cache/wheels/`
  and unpacked into `cache/aarch64-linux-gnu/site-<numpy>-<litert>/`.

`make device-libs` fetches and unpacks all of it (`python -m amc.targets.board_python`). Then:

    qemu-aarch64 -cpu cortex-a72 -L /usr/aarch64-linux-gnu \
        -E LD_LIBRARY_PATH=<root>/lib/aarch64-linux-gnu:<root>/usr/lib/aarch64-linux-gnu \
        -E PYTHONHOME=<root>/usr -E PYTHONPATH=<site> <root>/usr/bin/python3.11 -S -B script.py ...

armhf (rpi3) has no ai-edge-litert wheel on PyPI, so only aarch64 boards run TFLite bundles."""

from __future__ import annotations

import hashlib
import json
import shutil
import subprocess
import tempfile
import zipfile
from dataclasses import dataclass
from pathlib import Path

from amc.common.errors import AmcError, InputError, ToolMissingError
from amc.common.paths import device_sources
from amc.targets.cross_libs import DEB_ARCH, deb_path, download_deb
from amc.targets.device_libs import cache_root, download_wheel, pinned_version, wheel_path
from amc.targets.presets import Target
from amc.targets.qemu import qemu_user, require_linux, run_on_board

PYTHON_VERSION = "3.11"
PYTHON_DEBS = (
    "python3.11-minimal",        # the interpreter (needs libexpat1, zlib1g)
    "libpython3.11-minimal",     # the core of the standard library
    "libpython3.11-stdlib",      # the rest of it and lib-dynload (ctypes, which ai_edge_litert imports)
    "libexpat1", "zlib1g",       # loaded by the interpreter itself
    "libffi8",                   # by _ctypes
    "libbz2-1.0", "liblzma5",    # by _bz2 and _lzma (zipfile, tarfile and shutil import them)
)
"""Debian arm64 packages unpacked into the board's Python root. The others libpython3.11-stdlib
depends on (readline, ncurses, sqlite, db, nsl, tirpc, ...) serve modules the script never imports."""

WHEELS = ("numpy", "ai-edge-litert")
"""aarch64 wheels unpacked into the board's site folder, at the host's installed versions."""

SCRIPTS = device_sources("board")
TRIPLES = ("aarch64-linux-gnu",)
"""Cross triples with ai-edge-litert wheels (manylinux aarch64)."""


@dataclass(frozen=True)
class BoardPython:
    target: Target
    root: Path                  # the unpacked Debian packages (usr/bin/python3.11, usr/lib/python3.11, ...)
    site: Path                  # numpy and ai_edge_litert
    sysroot: Path               # the board's root for qemu -L (board_root)
    versions: dict[str, str]    # package -> version (python, numpy, ai-edge-litert)

    @property
    def program(self) -> Path:
        return self.root / "usr" / "bin" / f"python{PYTHON_VERSION}"

    @property
    def library_path(self) -> list[Path]:
        triple = self.target.triple
        return [self.root / "lib" / triple, self.root / "usr" / "lib" / triple]

    @property
    def environment(self) -> dict[str, str]:
        return {"PYTHONHOME": str(self.root / "usr"), "PYTHONPATH": str(self.site),
                "OPENBLAS_NUM_THREADS": "1", "PYTHONIOENCODING": "utf-8"}

    @property
    def description(self) -> str:
        return (f"ai-edge-litert {self.versions['ai-edge-litert']} (aarch64 wheel) under CPython "
                f"{self.versions['python']} aarch64, numpy {self.versions['numpy']}")

    def run(self, script: str, args: list, timeout: float = 600, stdin: bytes | None = None) -> subprocess.CompletedProcess:
        """`python3.11 -S -B SCRIPTS/<script> ARGS` on the emulated board (`stdin` fed to it);
        raises AmcError on a timeout."""
        return run_on_board(self.target, self.program, ["-S", "-B", SCRIPTS / script, *map(str, args)],
                            self.library_path, timeout=timeout, stdin=stdin, environment=self.environment,
                            sysroot=self.sysroot)


def board_python(target: Target, download: bool = True) -> BoardPython:
    """The board's Python with numpy and ai-edge-litert for a Linux preset, fetched and unpacked
    once; a ToolMissingError that says what to run when a piece cannot be had."""
    require_linux(target, "running the board's Python under qemu-user")
    qemu_user(target)
    if target.triple not in TRIPLES:
        raise InputError(f"no ai-edge-litert wheel is published for {target.triple} ({target.name}): TFLite "
                         f"bundles run on aarch64 boards (rpi4); compile for {target.name} with "
                         f"`--backend executorch`")
    arch = DEB_ARCH[target.triple]
    debs = []
    for package in PYTHON_DEBS:
        deb = deb_path(package, arch)
        if deb is None:
            if not download:
                raise ToolMissingError(f"{package}:{arch} is not in {cache_root() / 'debs'}: run `make device-libs`")
            deb = download_deb(package, arch)
        debs.append(deb)
    python_version = debs[0].name.split("_")[1]
    root = _unpacked(cache_root() / target.triple / f"python{PYTHON_VERSION}-{python_version}", debs, _unpack_debs)
    versions = {package: pinned_version(package) for package in WHEELS}
    wheels = []
    for package in WHEELS:
        wheel = wheel_path(package, versions[package], target.triple)
        if wheel is None:
            if not download:
                raise ToolMissingError(f"the {target.triple} wheel of {package}=={versions[package]} is not in "
                                       f"{cache_root() / 'wheels'}: run `make device-libs`")
            wheel = download_wheel(package, versions[package], target.triple)
        wheels.append(wheel)
    site = _unpacked(cache_root() / target.triple / ("site-" + "-".join(f"{p}-{versions[p]}" for p in WHEELS)),
                     wheels, _unpack_wheels)
    python = BoardPython(target, root, site, board_root(target), {"python": python_version.split("-")[0], **versions})
    if not python.program.is_file():
        raise InputError(f"{debs[0].name} holds no usr/bin/python{PYTHON_VERSION} (remove it to download it again)")
    return python


# ---- the board's root: the cross sysroot and the board's CPU as Linux describes it -----------------

BOARD_CPUS = {
    "cortex-a72": {"cores": 4, "implementer": "0x41", "part": "0xd08", "variant": "0x0", "revision": "3",
                   "features": "fp asimd evtstrm crc32 cpuid", "max_khz": 1500000, "min_khz": 600000,
                   "caches": (("Data", 1, "32K", "{cpu}"), ("Instruction", 1, "48K", "{cpu}"),
                              ("Unified", 2, "1024K", "0-3")),
                   "model": "Raspberry Pi 4 Model B Rev 1.1", "hardware": "BCM2835"},
}
"""The board's CPU as its kernel lists it in /proc/cpuinfo and /sys/devices/system/cpu."""


def board_root(target: Target) -> Path:
    """The root qemu-user runs the board's Python in (`-L`): Debian's cross sysroot (glibc,
    libstdc++), linked entry by entry, and the board's `/proc/cpuinfo` and
    `/sys/devices/system/cpu`. qemu-user looks an absolute path up in its root first and falls back
    to this machine's files, so without them a program reads the x86 host's CPU description; the
    CPU detection LiteRT's kernels run at interpreter creation finds no ARM core in it and
    crashes (a null pointer, SIGSEGV). With the Pi's own description it finds four Cortex-A72s."""
    cpu = BOARD_CPUS.get(target.cpu)
    if cpu is None:
        raise InputError(f"no CPU description for {target.name}'s {target.cpu}: the board's Python runs on "
                         f"{', '.join(BOARD_CPUS)}")
    files = _cpu_files(cpu)
    sysroot = Path("/usr") / target.triple
    digest = hashlib.sha256(json.dumps([str(sysroot), sorted(files.items())]).encode()).hexdigest()
    into = cache_root() / target.triple / f"board-root-{target.name}"
    stamp = into / ".made"
    if stamp.is_file() and stamp.read_text().strip() == digest:
        return into
    into.parent.mkdir(parents=True, exist_ok=True)
    fresh = Path(tempfile.mkdtemp(prefix=into.name + ".", dir=into.parent))
    for entry in sorted(sysroot.iterdir()):
        (fresh / entry.name).symlink_to(entry)
    for name, text in files.items():
        (fresh / name).parent.mkdir(parents=True, exist_ok=True)
        (fresh / name).write_text(text)
    (fresh / ".made").write_text(digest + "\n")
    fresh.chmod(0o755)
    if into.exists():
        shutil.rmtree(into)
    fresh.rename(into)
    return into


def _cpu_files(cpu: dict) -> dict[str, str]:
    cores = cpu["cores"]
    every = f"0-{cores - 1}"
    files = {"proc/cpuinfo": "".join(
        f"processor\t: {i}\nBogoMIPS\t: 108.00\nFeatures\t: {cpu['features']}\nCPU implementer\t: "
        f"{cpu['implementer']}\nCPU architecture: 8\nCPU variant\t: {cpu['variant']}\nCPU part\t: {cpu['part']}\n"
        f"CPU revision\t: {cpu['revision']}\n\n" for i in range(cores))
        + f"Hardware\t: {cpu['hardware']}\nModel\t\t: {cpu['model']}\n"}
    base = "sys/devices/system/cpu"
    for name in ("possible", "present", "online"):
        files[f"{base}/{name}"] = every + "\n"
    files[f"{base}/kernel_max"] = f"{cores - 1}\n"
    for i in range(cores):
        core = f"{base}/cpu{i}"
        files.update({f"{core}/online": "1\n", f"{core}/topology/physical_package_id": "0\n",
                      f"{core}/topology/core_id": f"{i}\n", f"{core}/topology/cluster_cpus_list": every + "\n",
                      f"{core}/topology/core_siblings_list": every + "\n",
                      f"{core}/topology/thread_siblings_list": f"{i}\n",
                      f"{core}/cpufreq/cpuinfo_max_freq": f"{cpu['max_khz']}\n",
                      f"{core}/cpufreq/cpuinfo_min_freq": f"{cpu['min_khz']}\n"})
        for index, (kind, level, size, shared) in enumerate(cpu["caches"]):
            cache = f"{core}/cache/index{index}"
            files.update({f"{cache}/type": kind + "\n", f"{cache}/level": f"{level}\n", f"{cache}/size": size + "\n",
                          f"{cache}/shared_cpu_list": shared.format(cpu=i) + "\n"})
    return files


# ---- unpacking ------------------------------------------------------------------------------------

def _unpacked(into: Path, archives: list[Path], unpack) -> Path:
    """`into`, unpacked from `archives` unless a stamp of their digests says it already is; unpacked
    into a fresh folder beside it, then swapped in (no half-unpacked cache)."""
    digest = hashlib.sha256()
    for archive in archives:
        digest.update(archive.name.encode() + hashlib.sha256(archive.read_bytes()).digest())
    stamp = into / ".unpacked"
    if stamp.is_file() and stamp.read_text().strip() == digest.hexdigest():
        return into
    into.parent.mkdir(parents=True, exist_ok=True)
    fresh = Path(tempfile.mkdtemp(prefix=into.name + ".", dir=into.parent))
    try:
        unpack(archives, fresh)
    except BaseException:
        shutil.rmtree(fresh, ignore_errors=True)
        raise
    (fresh / ".unpacked").write_text(digest.hexdigest() + "\n")
    fresh.chmod(0o755)
    if into.exists():
        shutil.rmtree(into)
    fresh.rename(into)
    return into


def _unpack_debs(debs: list[Path], into: Path) -> None:
    dpkg_deb = shutil.which("dpkg-deb")
    if dpkg_deb is None:
        raise ToolMissingError("dpkg-deb not found: apt-get install dpkg")
    for deb in debs:
        result = subprocess.run([dpkg_deb, "-x", str(deb), str(into)], capture_output=True, text=True)
        if result.returncode:
            deb.unlink(missing_ok=True)
            raise InputError(f"{deb}: not a readable .deb (removed; the next run downloads it again)")


def _unpack_wheels(wheels: list[Path], into: Path) -> None:
    for wheel in wheels:
        try:
            with zipfile.ZipFile(wheel) as archive:
                for member in archive.infolist():
                    name = member.filename
                    if name.startswith("/") or ".." in Path(name).parts:
                        raise InputError(f"{wheel.name}: unsafe member path {name}")
                archive.extractall(into)
        except zipfile.BadZipFile:
            wheel.unlink(missing_ok=True)
            raise InputError(f"{wheel}: not a readable wheel (removed; the next run downloads it again)") from None


def check(python: BoardPython) -> str:
    """The board's Python imports numpy and ai_edge_litert: `tflite_board.py info`'s line."""
    result = python.run("tflite_board.py", ["info"], timeout=300)
    output = result.stdout.decode(errors="replace").strip()
    if result.returncode or not output.startswith("runtime "):
        errors = result.stderr.decode(errors="replace").strip().splitlines()
        raise AmcError(f"the board's Python does not start under qemu (exit status {result.returncode}): "
                       f"{errors[-1] if errors else output}")
    return output


if __name__ == "__main__":          # python -m amc.targets.board_python (make device-libs)
    import sys

    from amc.targets.presets import get_target

    try:
        found = board_python(get_target("rpi4"))
        print(f"{found.description}: {found.program}")
    except (ToolMissingError, InputError) as error:
        print(f"amc: {error}", file=sys.stderr)
        sys.exit(error.exit_code)
