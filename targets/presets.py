"""Board presets: one entry a board. Adding a board is adding one `Target` to `PRESETS`."""

from __future__ import annotations

from dataclasses import asdict, dataclass, field

from amc.common.errors import InputError


@dataclass(frozen=True)
class Target:
    name: str
    description: str
    cpu: str
    isa: str
    triple: str                      # toolchain triple; "" for the host compiler
    cflags: tuple[str, ...]
    backends: tuple[str, ...]        # first is the default
    qemu: tuple[str, ...]            # how a built program runs here: () native, ("qemu-aarch64", ...) user, ("qemu-system-arm", ...) bare metal
    mflops: float                    # nominal single-thread speed for latency estimates
    flash_bytes: int | None = None   # MCU budgets; None on Linux boards
    ram_bytes: int | None = None
    linux: bool = True
    extra: dict = field(default_factory=dict)

    @property
    def default_backend(self) -> str:
        return self.backends[0]

    def to_json(self) -> dict:
        return asdict(self)


PRESETS: dict[str, Target] = {
    target.name: target
    for target in (
        Target(
            name="host",
            description="x86-64 Linux (this machine)",
            cpu="x86-64", isa="x86_64", triple="", cflags=("-O2",),
            backends=("executorch", "tflite", "onnx"), qemu=(), mflops=5000.0,
        ),
        Target(
            name="rpi4",
            description="Raspberry Pi 4: Cortex-A72, aarch64 Linux",
            cpu="cortex-a72", isa="armv8-a", triple="aarch64-linux-gnu",
            cflags=("-O2", "-mcpu=cortex-a72"),
            backends=("executorch", "tflite", "onnx"),
            qemu=("qemu-aarch64", "-L", "/usr/aarch64-linux-gnu"), mflops=650.0,
        ),
        Target(
            name="rpi3",
            description="Raspberry Pi 3: Cortex-A53 in 32-bit armhf Linux",
            cpu="cortex-a53", isa="armv7-a+neon-vfpv4", triple="arm-linux-gnueabihf",
            cflags=("-O2", "-mcpu=cortex-a53", "-mfpu=neon-vfpv4", "-mfloat-abi=hard"),
            backends=("tflite", "executorch", "onnx"),
            qemu=("qemu-arm", "-L", "/usr/arm-linux-gnueabihf"), mflops=400.0,
        ),
        Target(
            name="cortex-m7",
            description="Cortex-M7 microcontroller (MPS2 AN500 under QEMU), TFLite Micro",
            cpu="cortex-m7", isa="armv7e-m", triple="arm-none-eabi",
            cflags=("-Os", "-mcpu=cortex-m7", "-mthumb", "-mfloat-abi=hard", "-mfpu=fpv5-d16"),
            backends=("tflite",),
            qemu=("qemu-system-arm", "-M", "mps2-an500"), mflops=200.0,
            flash_bytes=2 * 1024 * 1024, ram_bytes=512 * 1024, linux=False,
        ),
        Target(
            name="cortex-m4",
            description="Cortex-M4F microcontroller (MPS2 AN386 under QEMU), TFLite Micro",
            cpu="cortex-m4", isa="armv7e-m", triple="arm-none-eabi",
            cflags=("-Os", "-mcpu=cortex-m4", "-mthumb", "-mfloat-abi=hard", "-mfpu=fpv4-sp-d16"),
            backends=("tflite",),
            qemu=("qemu-system-arm", "-M", "mps2-an386"), mflops=80.0,
            flash_bytes=1024 * 1024, ram_bytes=256 * 1024, linux=False,
        ),
    )
}


def get_target(name: str) -> Target:
    try:
        return PRESETS[name]
    except KeyError:
        known = ", ".join(PRESETS)
        raise InputError(f"unknown target '{name}': choose one of {known} (see `amc targets`)") from None


def check_backend(target: Target, backend: str | None) -> str:
    """The backend to use on `target`: the one asked for, or the preset's default."""
    if backend is None:
        return target.default_backend
    if backend not in target.backends:
        raise InputError(
            f"backend '{backend}' is not available for target '{target.name}': "
            f"use one of {', '.join(target.backends)}"
        )
    return backend
