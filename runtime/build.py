"""Build the C patch runtime (device/runtime) for a board preset with CMake: natively for the host,
with Debian's cross compilers for the Raspberry Pi presets, bare-metal for the Cortex-M presets.
`amc runtime build --target T` calls `build_runtime`. Build outputs go under build/runtime/<target>/."""

from __future__ import annotations

from dataclasses import asdict, dataclass, field
from pathlib import Path

from amc.common.errors import AmcError, InputError, ToolMissingError
from amc.common.paths import build_root, device_sources
from amc.common.progress import Report, quiet
from amc.runtime.sizes import runtime_sizes
from amc.runtime.tools import first_error, last_line, run_tool
from amc.targets.cross_libs import cross_library
from amc.targets.presets import Target, get_target
from amc.targets.qemu import need_tool

RUNTIME_DIR = device_sources("runtime")
BUILD_ROOT = build_root() / "runtime"
TOOLCHAIN_FILES = {
    "aarch64-linux-gnu": "toolchain-aarch64-linux-gnu.cmake",
    "arm-linux-gnueabihf": "toolchain-arm-linux-gnueabihf.cmake",
    "arm-none-eabi": "toolchain-arm-none-eabi.cmake",
}
APT_HINT = {
    "": "gcc",
    "aarch64-linux-gnu": "gcc-aarch64-linux-gnu",
    "arm-linux-gnueabihf": "gcc-arm-linux-gnueabihf",
    "arm-none-eabi": "gcc-arm-none-eabi libnewlib-arm-none-eabi",
}


@dataclass
class RuntimeBuild:
    target: str
    build_dir: Path
    library: Path
    tests: Path
    cli: Path | None
    sizes: dict = field(default_factory=dict)
    signature: str = ""              # how the C tests and amc-patch check signatures
    cli_missing: str = ""            # why amc-patch was not built, when it was not

    def to_json(self) -> dict:
        out = asdict(self)
        return {k: str(v) if isinstance(v, Path) else v for k, v in out.items()}


def build_dir(target: Target, variant: str = "") -> Path:
    return BUILD_ROOT / (target.name + (f"-{variant}" if variant else ""))


def configure_and_build(configure: list[str], out: Path, what: str) -> None:
    """cmake configure into `out` (again only when the command changed) and build; `what` names
    the build in errors."""
    configured = out / "amc-configure.txt"
    if not (out / "CMakeCache.txt").exists() or not configured.exists() or \
            configured.read_text() != "\n".join(configure):
        result = run_tool(configure)
        if result.returncode:
            raise AmcError(f"cmake configure of {what} failed: {last_line(result)}")
        configured.write_text("\n".join(configure))
    result = run_tool(["cmake", "--build", str(out), "-j2"])
    if result.returncode:
        raise AmcError(f"build of {what} failed: {first_error(result)}")


def build_runtime(target_name: str, variant: str = "", report: Report = quiet) -> RuntimeBuild:
    """Configure and build device/runtime for a preset (variant: '' | 'asan' | 'fuzz' | 'large'); sizes
    too. 'large': the bare-metal test program with room for a whole bundle (1.5 MiB of files, a
    256 KiB blob and as much bucket buffer), its buffers in the mps2-an500 board's PSRAM (cortex-m7)."""
    target = get_target(target_name)
    if variant == "large" and (target.linux or target.qemu[2] != "mps2-an500"):
        raise InputError(f"the large runtime build needs the mps2-an500 board's PSRAM (cortex-m7), "
                         f"not {target.name}'s")
    need_tool("cmake", "cmake")
    compiler = f"{target.triple}-gcc" if target.triple else "cc"
    if variant == "fuzz":
        compiler = "clang"
        need_tool("clang", "clang libclang-rt-14-dev")
    else:
        need_tool(compiler, APT_HINT[target.triple])
    out = build_dir(target, variant)
    report(f"build runtime for {target.name}", 0, 2)
    cmd = ["cmake", "-S", str(RUNTIME_DIR), "-B", str(out), "-DCMAKE_BUILD_TYPE=Release",
           f"-DAMC_TARGET_CFLAGS={' '.join(target.cflags)}"]
    if target.triple:
        cmd.append(f"-DCMAKE_TOOLCHAIN_FILE={RUNTIME_DIR / 'cmake' / TOOLCHAIN_FILES[target.triple]}")
    if not target.linux:
        cmd.append(f"-DAMC_QEMU_MACHINE={target.qemu[2]}")
    if variant == "asan":
        cmd.append("-DAMC_SANITIZE=ON")
    if variant == "large":
        cmd.append("-DAMC_TEST_LARGE=ON")
    if variant == "fuzz":
        cmd += ["-DAMC_FUZZ=ON", "-DCMAKE_C_COMPILER=clang"]
    sodium_missing = ""
    if target.linux and target.triple and variant == "":
        try:        # Debian's libsodium for the board, linked statically into amc-patch
            sodium = cross_library("libsodium", target.triple)
            cmd += [f"-DAMC_SODIUM_LIB={sodium.static_library}", f"-DAMC_SODIUM_INCLUDE={sodium.include_dir}"]
        except ToolMissingError as missing:
            sodium_missing = str(missing)
            cmd += ["-DAMC_SODIUM_LIB=AMC_SODIUM_LIB-NOTFOUND", "-DAMC_SODIUM_INCLUDE=AMC_SODIUM_INCLUDE-NOTFOUND"]
    configure_and_build(cmd, out, f"the runtime for {target.name}")
    report(f"build runtime for {target.name}", 2, 2)
    suffix = ".elf" if not target.linux else ""
    cli = out / "amc-patch"
    build = RuntimeBuild(target.name, out, out / "libamc_patch.a", out / f"amc_patch_tests{suffix}",
                         cli if cli.exists() else None)
    # amc-patch is built exactly when libsodium is linked; the C tests then check Ed25519 with it too,
    # else they accept the (digest, signature) pairs the Python side signed (device/runtime/tests/test_patch.c)
    build.signature = "ed25519-libsodium" if build.cli else "trusted-fixture"
    if build.cli is None:
        build.cli_missing = sodium_missing or ("amc-patch is a Linux program: bare-metal firmware links "
                                               "libamc_patch.a with its own verifier" if not target.linux
                                               else "libsodium not found: apt-get install libsodium-dev")
    if variant == "":
        build.sizes = runtime_sizes(target, out)
    return build
