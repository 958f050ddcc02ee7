"""Cross toolchains, sysroots and QEMU for the board presets: find them, say what to install when
one is missing, and run a cross-built Linux program on the emulated board's CPU.

A Linux preset runs its programs under qemu-user with Debian's cross sysroot
(`/usr/<triple>`, from the libc6-*-cross and libstdc++6-*-cross packages the cross compilers
pull in): the same glibc and libstdc++ ABI as a Raspberry Pi OS (Debian) image."""

from __future__ import annotations

import os
import shutil
import subprocess
from dataclasses import dataclass
from pathlib import Path

from amc.common.errors import AmcError, InputError, ToolMissingError
from amc.targets.presets import Target

QEMU_PACKAGES = {"qemu-aarch64": "qemu-user", "qemu-arm": "qemu-user", "qemu-system-arm": "qemu-system-arm"}
CXX_PACKAGES = {"aarch64-linux-gnu": "g++-aarch64-linux-gnu", "arm-linux-gnueabihf": "g++-arm-linux-gnueabihf"}


def need_tool(tool: str, package: str) -> str:
    path = shutil.which(tool)
    if path is None:
        raise ToolMissingError(f"'{tool}' not found: apt-get install {package}")
    return path


def require_linux(target: Target, what: str) -> None:
    if not target.linux or not target.triple:
        raise InputError(f"{what} needs a Linux board preset (rpi4, rpi3); '{target.name}' is "
                         f"{'a microcontroller' if not target.linux else 'this host'}")


@dataclass(frozen=True)
class CrossToolchain:
    triple: str
    cc: str
    cxx: str
    sysroot: Path
    cmake: str


def cross_toolchain(target: Target) -> CrossToolchain:
    """The C/C++ cross compilers and sysroot of a Linux preset, or a one-line install hint."""
    require_linux(target, "cross-compiling the device programs")
    package = CXX_PACKAGES[target.triple]
    cc = need_tool(f"{target.triple}-gcc", package.replace("g++", "gcc"))
    cxx = need_tool(f"{target.triple}-g++", package)
    sysroot = Path("/usr") / target.triple
    if not (sysroot / "lib" / "libc.so.6").exists() or not (sysroot / "lib" / "libstdc++.so.6").exists():
        raise ToolMissingError(f"{sysroot}: no glibc/libstdc++ for {target.triple}: apt-get install {package}")
    cmake = need_tool("cmake", "cmake")
    return CrossToolchain(target.triple, cc, cxx, sysroot, cmake)


QEMU_CPUS = {"cortex-a72": "cortex-a72", "cortex-a53": "cortex-a15"}
"""The CPU model qemu-user emulates for a preset's core. The default ('max') advertises ISA
extensions no Raspberry Pi has (SVE, i8mm, ...); XNNPACK then picks kernels for them, and under
QEMU 7.2 those gave wrong int8 results (up to 80 steps off), while with the board's own core the
outputs equal the host's. qemu-arm has no AArch32 Cortex-A53: the A15 is the same ARMv7-A +
NEON-VFPv4 instruction set the rpi3 preset compiles for."""


def qemu_user(target: Target, sysroot: Path | None = None) -> list[str]:
    """The command prefix that runs one of the preset's Linux programs here (with `sysroot`
    instead of Debian's cross sysroot: qemu looks every absolute path up in it first)."""
    require_linux(target, "running device programs under qemu-user")
    binary = target.qemu[0]
    path = need_tool(binary, QEMU_PACKAGES.get(binary, "qemu-user"))
    sysroot = sysroot or Path("/usr") / target.triple
    cpu = ["-cpu", QEMU_CPUS[target.cpu]] if target.cpu in QEMU_CPUS else []
    return [path, *cpu, "-L", str(sysroot)]


def run_on_board(target: Target, program: Path | str, args: list[str], library_path: list[Path] = (),
                 cwd: Path | None = None, timeout: float = 600, stdin: bytes | None = None,
                 environment: dict[str, str] | None = None, sysroot: Path | None = None) -> subprocess.CompletedProcess:
    """Run a cross-built program of `target` under qemu-user, with `environment` set for it;
    raises AmcError on a timeout."""
    cmd = qemu_user(target, sysroot)
    if library_path:
        cmd += ["-E", "LD_LIBRARY_PATH=" + os.pathsep.join(str(p) for p in library_path)]
    for name, value in (environment or {}).items():
        cmd += ["-E", f"{name}={value}"]
    cmd += [str(program), *map(str, args)]
    try:
        return subprocess.run(cmd, cwd=cwd, input=stdin, capture_output=True, timeout=timeout)
    except subprocess.TimeoutExpired:
        raise AmcError(f"{Path(program).name} under {cmd[0]} took more than {timeout:.0f} s") from None
