"""The emulated Raspberry Pi 4-class system: a Debian arm64 root file system built from Debian's
packages, Debian's arm64 kernel, and a small initramfs, booted with
`qemu-system-aarch64 -M virt -cpu cortex-a72` with systemd as init (ontarget/system.py boots it).

How it is built, once, and cached under `build/cache/system/<key>/` (`key`: the suite, the
package list and this module's configuration, so a change rebuilds it):

1. `debootstrap --foreign --arch=arm64 --variant=minbase --include=PACKAGES`: Debian's own
   packages, from the archive apt already uses (the first Debian source in /etc/apt), unpacked;
2. `debootstrap --second-stage` in a chroot of that folder: every package's maintainer scripts
   run on the arm64 CPU under qemu-user, through qemu-user-static's binfmt_misc entry (registered
   here when missing, with the `F` flag so the interpreter is found inside the chroot);
3. the configuration a device image has: hostname, fstab, the test rig's control channel
   (`amc-console.service`, a shell on the virtio port `amc.ctl`), no daemons that wait for a
   network (the OTA clients are used in standalone mode);
4. Debian's arm64 kernel (KERNEL, fetched with `apt-get download`): its modules unpacked into
   the folder and indexed by its `depmod`, its image beside; a root file system image of the
   folder (`mke2fs -t ext4 -d`, no loop device needed);
5. an initramfs written here (a `newc` cpio): BusyBox from Debian's `busybox-static` and the
   kernel modules the root disk needs (virtio-mmio, virtio-blk, ext4 and their dependencies, read
   from each module's `depends=`), whose /init mounts /dev/vda and switches to it. The rest of
   the kernel's modules are in the root file system, where udev loads them.

Tests copy the image and write the `amc image` overlay into the copy with `debugfs`
(`install_overlay`): no mount, no loop device."""

from __future__ import annotations

import hashlib
import io
import json
import re
import shutil
import stat
import subprocess
import tempfile
import time
from dataclasses import dataclass
from pathlib import Path

from amc.common.errors import AmcError, InputError, ToolMissingError
from amc.common.progress import quiet
from amc.targets.device_libs import cache_root
from amc.targets.presets import Target
from amc.targets.qemu import need_tool

SUITE = "bookworm"
PACKAGES = (
    "systemd-sysv", "udev", "kmod", "procps", "busybox-static",
    "dbus",                                 # the system bus: systemd-run --wait, as a device has it
    "libsodium23", "libstdc++6",            # amc-patch, amc-runner
    "mender-client", "swupdate",            # the OTA clients a fleet runs (Debian 12: 3.4, 2022.12)
)
KERNEL = "linux-image-arm64"
"""Debian's arm64 kernel: unpacked into the root file system beside the packages (its modules,
then `depmod`), not installed through dpkg, whose hooks would build an initramfs nobody boots."""
ROOT_SIZE = "2G"
INITRD_MODULES = ("virtio_mmio", "virtio_blk", "crc32c_generic", "ext4")
"""Kernel modules the initramfs loads, in this order after their dependencies: Debian's arm64
kernel builds the virtio transports, the block driver and ext4 as modules."""
CONTROL_PORT = "amc.ctl"
BINFMT = Path("/proc/sys/fs/binfmt_misc")
BINFMT_CONF = Path("/usr/lib/binfmt.d/qemu-aarch64.conf")

HOSTNAME = "amc-rpi4"
FILES = {
    "etc/hostname": HOSTNAME + "\n",
    "etc/hosts": f"127.0.0.1 localhost\n127.0.1.1 {HOSTNAME}\n",
    "etc/fstab": "/dev/vda / ext4 rw,errors=remount-ro 0 1\n",
    # the test rig's control channel: a shell reading commands from the virtio port (ontarget/system.py)
    "etc/systemd/system/amc-console.service": f"""\
[Unit]
Description=amc test console on the virtio port {CONTROL_PORT}
DefaultDependencies=no
BindsTo=dev-virtio\\x2dports-{CONTROL_PORT}.device
After=dev-virtio\\x2dports-{CONTROL_PORT}.device local-fs.target

[Service]
ExecStart=/bin/sh -c 'exec /bin/bash --noprofile --norc <>/dev/virtio-ports/{CONTROL_PORT} >&0 2>&0'
Restart=always
RestartSec=1

[Install]
WantedBy=multi-user.target
""",
    "etc/systemd/journald.conf.d/amc.conf": "[Journal]\nStorage=persistent\n",
}
"""Files written into the root file system after the second stage (path -> text)."""
ENABLE = ("amc-console.service",)
DISABLE = ("mender-client.service", "swupdate.service", "swupdate.socket", "swupdate-progress.service",
           "apt-daily.timer", "apt-daily-upgrade.timer", "e2scrub_all.timer", "getty@tty1.service")
"""Units switched on and off in the image: the OTA clients run standalone (`mender install`,
`swupdate -i`), and nothing waits for a network the emulated board does not have."""


@dataclass(frozen=True)
class SystemImage:
    folder: Path
    rootfs: Path            # ext4, configured: copy it before booting (boots write to it)
    kernel: Path
    initrd: Path
    packages: dict          # package -> version, of every package installed

    def describe(self) -> str:
        return (f"Debian {SUITE} arm64, linux {self.packages.get('kernel', '?')}, "
                f"systemd {self.packages.get('systemd', '?')}")


def system_key() -> str:
    recipe = json.dumps({"suite": SUITE, "packages": PACKAGES, "files": FILES, "modules": INITRD_MODULES,
                         "size": ROOT_SIZE, "init": INIT, "kernel": KERNEL,
                         "units": [ENABLE, DISABLE]}, sort_keys=True)
    return hashlib.sha256(recipe.encode()).hexdigest()[:12]


def system_image(target: Target, report=quiet, timeout: float = 3600) -> SystemImage:
    """The cached system for `target` (rpi4), built first when missing (minutes)."""
    if target.triple != "aarch64-linux-gnu":
        raise InputError(f"the booted system is an arm64 Debian (rpi4); '{target.name}' is not an arm64 board")
    folder = cache_root() / "system" / f"{SUITE}-arm64-{system_key()}"
    image = _cached(folder)
    if image is None:
        _build(folder, report, timeout)
        image = _cached(folder)
        if image is None:
            raise AmcError(f"{folder}: the system build finished without its files")
    return image


def _cached(folder: Path) -> SystemImage | None:
    info = folder / "system.json"
    if not info.is_file():
        return None
    return SystemImage(folder, folder / "rootfs.ext4", folder / "vmlinuz", folder / "initrd.cpio",
                       json.loads(info.read_text())["packages"])


def _build(folder: Path, report, timeout: float) -> None:
    debootstrap = need_tool("debootstrap", "debootstrap")
    mke2fs = need_tool("mke2fs", "e2fsprogs")
    arm64_binfmt()
    folder.parent.mkdir(parents=True, exist_ok=True)
    staging = Path(tempfile.mkdtemp(prefix=f".{folder.name}.", dir=folder.parent))
    try:
        tree, steps = staging / "tree", 4
        report("system: debootstrap, first stage (unpack Debian arm64)", 0, steps)
        _run([debootstrap, "--arch=arm64", "--foreign", "--variant=minbase", "--include=" + ",".join(PACKAGES),
              SUITE, str(tree), debian_mirror()], "debootstrap", timeout)
        report("system: debootstrap, second stage (maintainer scripts on the arm64 CPU)", 1, steps)
        _run(["chroot", str(tree), "/debootstrap/debootstrap", "--second-stage"], "debootstrap --second-stage", timeout)
        report("system: configuration, kernel and initramfs", 2, steps)
        for path, text in FILES.items():
            (tree / path).parent.mkdir(parents=True, exist_ok=True)
            (tree / path).write_text(text)
        _run(["chroot", str(tree), "systemctl", "enable", *ENABLE], "systemctl enable", 600)
        _run(["chroot", str(tree), "systemctl", "disable", *DISABLE], "systemctl disable", 600)
        _run(["chroot", str(tree), "passwd", "-d", "root"], "passwd", 600)
        for deb in (tree / "var" / "cache" / "apt" / "archives").glob("*.deb"):
            deb.unlink()
        kernel_version = _install_kernel(tree, staging)
        busybox = (tree / "bin" / "busybox").read_bytes()
        (staging / "initrd.cpio").write_bytes(initramfs(busybox, tree / "lib" / "modules" / kernel_version))
        packages = installed_packages((tree / "var" / "lib" / "dpkg" / "status").read_text())
        packages["kernel"] = kernel_version
        report("system: root file system image", 3, steps)
        _run([mke2fs, "-q", "-t", "ext4", "-L", "amc-root", "-d", str(tree), str(staging / "rootfs.ext4"), ROOT_SIZE],
             "mke2fs", 600)
        shutil.rmtree(tree)
        (staging / "system.json").write_text(json.dumps({"suite": SUITE, "packages": packages}, indent=1) + "\n")
        report("system: done", 4, steps)
        if folder.exists():
            shutil.rmtree(folder)
        staging.rename(folder)
    except BaseException:
        shutil.rmtree(staging, ignore_errors=True)
        raise


def _install_kernel(tree: Path, staging: Path) -> str:
    """Debian's arm64 kernel (the package KERNEL depends on, fetched with apt-get download):
    vmlinuz beside the image, its modules in the tree's /lib/modules, indexed by the tree's depmod.
    Returns the kernel's version (`uname -r`)."""
    from amc.targets.cross_libs import download_deb

    meta = download_deb(KERNEL, "arm64")
    depends = subprocess.run(["dpkg-deb", "-f", str(meta), "Depends"], capture_output=True, text=True).stdout
    match = re.search(r"(linux-image-[0-9][^\s,(]*)", depends)
    if match is None:
        raise AmcError(f"{meta.name}: no linux-image-<version> in its Depends ('{depends.strip()}')")
    unpacked = staging / "kernel"
    _run(["dpkg-deb", "-x", str(download_deb(match.group(1), "arm64")), str(unpacked)], "dpkg-deb -x", 600)
    modules = _one(unpacked / "lib" / "modules", "*")
    shutil.copytree(modules, tree / "usr" / "lib" / "modules" / modules.name)
    shutil.copyfile(_one(unpacked / "boot", "vmlinuz-*"), staging / "vmlinuz")
    shutil.rmtree(unpacked)
    _run(["chroot", str(tree), "depmod", "-a", modules.name], "depmod", 600)
    return modules.name


def arm64_binfmt() -> None:
    """Let this machine run arm64 programs in a chroot: qemu-user-static's binfmt_misc entry,
    registered (as root) when missing. It needs the `F` flag (the interpreter is opened when
    registered, so a chroot without it still finds it)."""
    entry = BINFMT / "qemu-aarch64"
    if not entry.exists():
        if not BINFMT_CONF.is_file():
            raise ToolMissingError(f"{BINFMT_CONF} missing: apt-get install qemu-user-static")
        try:
            if not (BINFMT / "register").exists():
                subprocess.run(["mount", "-t", "binfmt_misc", "binfmt_misc", str(BINFMT)], check=True,
                               capture_output=True)
            (BINFMT / "register").write_text(BINFMT_CONF.read_text().strip() + "\n")
        except (OSError, subprocess.CalledProcessError) as error:
            raise ToolMissingError(f"cannot register arm64 programs with binfmt_misc ({error}): the system build "
                                   f"runs as root, with {BINFMT} mountable") from None
    flags = re.search(r"^flags: (\S*)", entry.read_text(), re.M)
    if "enabled" not in entry.read_text() or not flags or "F" not in flags.group(1):
        raise ToolMissingError(f"{entry} is registered without the F flag (or disabled): remove it "
                               f"(echo -1 > {entry}) and let amc register qemu-user-static's")


def machine_options(memory_mb: int = 1024, cpus: int = 2) -> list[str]:
    """A Raspberry Pi 4-class machine: Cortex-A72 cores on QEMU's `virt` board, no network, no screen."""
    return ["-M", "virt", "-cpu", "cortex-a72", "-smp", str(cpus), "-m", str(memory_mb),
            "-accel", "tcg,thread=multi", "-nic", "none", "-display", "none", "-monitor", "none"]


def disk_options(image: Path, name: str = "root") -> list[str]:
    return ["-drive", f"file={image},format=raw,if=none,id={name},cache=writeback",
            "-device", f"virtio-blk-device,drive={name}"]


def debian_mirror(apt: Path = Path("/etc/apt")) -> str:
    """The Debian archive apt is configured with here (deb822 or one-line sources)."""
    sources = sorted((apt / "sources.list.d").glob("*.sources")) + [apt / "sources.list"] \
        + sorted((apt / "sources.list.d").glob("*.list"))
    for path in sources:
        text = path.read_text(errors="replace") if path.is_file() else ""
        for stanza in re.split(r"\n\s*\n", text):
            fields = dict(re.findall(r"^(\w[\w-]*):\s*(.*)$", stanza, re.M))
            if ("deb" in fields.get("Types", "").split() and SUITE in fields.get("Suites", "").split()
                    and fields.get("Enabled", "yes") == "yes" and fields.get("URIs")):
                return fields["URIs"].split()[0]
        for line in text.splitlines():
            parts = re.sub(r"\[[^]]*\]", "", line).split()
            if len(parts) >= 3 and parts[0] == "deb" and parts[2] == SUITE:
                return parts[1]
    raise ToolMissingError(f"no Debian {SUITE} source in /etc/apt: the system is built from the archive apt uses")


# ---- the initramfs ---------------------------------------------------------------------------------

INIT = """\
#!/bin/busybox sh
/bin/busybox --install -s /bin
mount -t proc proc /proc
mount -t sysfs sys /sys
mount -t devtmpfs dev /dev
for m in $(cat /modules); do insmod /lib/$m.ko || echo "initramfs: insmod $m failed"; done
i=0; while [ ! -b /dev/vda ] && [ $i -lt 50 ]; do sleep 0.1; i=$((i + 1)); done
init=/sbin/init
for a in $(cat /proc/cmdline); do case $a in init=*) init=${a#init=} ;; esac; done
mount -o rw /dev/vda /root || { echo "initramfs: cannot mount /dev/vda"; exec sh; }
umount /proc /sys
mount --move /dev /root/dev
exec switch_root /root "$init"
"""


def module_order(modules: Path, wanted=INITRD_MODULES) -> list[Path]:
    """`wanted` and what they depend on (each module's `depends=` field), dependencies first."""
    found = {p.name.removesuffix(".ko").replace("-", "_"): p for p in modules.rglob("*.ko")}
    order: list[Path] = []

    def visit(name: str) -> None:
        name = name.replace("-", "_")
        if name not in found:
            raise AmcError(f"{modules}: kernel module '{name}' not found")
        if found[name] in order:
            return
        match = re.search(rb"\x00depends=([^\x00]*)\x00", b"\x00" + found[name].read_bytes())
        for dependency in (match.group(1).decode().split(",") if match else []):
            if dependency:
                visit(dependency)
        order.append(found[name])

    for name in wanted:
        visit(name)
    return order


def initramfs(busybox: bytes, modules: Path) -> bytes:
    """A `newc` cpio: BusyBox, the modules of `module_order` and /init (INIT)."""
    order = module_order(modules)
    out = io.BytesIO()
    inode = iter(range(1, 1 << 20))

    def entry(name: str, mode: int, data: bytes = b"") -> None:
        fields = (next(inode), mode, 0, 0, 1, 0, len(data), 0, 0, 0, 0, len(name) + 1, 0)
        out.write(b"070701" + "".join(f"{v:08X}" for v in fields).encode() + name.encode() + b"\0")
        out.write(b"\0" * (-out.tell() % 4))
        out.write(data)
        out.write(b"\0" * (-out.tell() % 4))

    for folder in ("bin", "dev", "lib", "proc", "root", "sys"):
        entry(folder, stat.S_IFDIR | 0o755)
    entry("bin/busybox", stat.S_IFREG | 0o755, busybox)
    entry("init", stat.S_IFREG | 0o755, INIT.encode())
    entry("modules", stat.S_IFREG | 0o644, "".join(p.name.removesuffix(".ko") + "\n" for p in order).encode())
    for path in order:
        entry(f"lib/{path.name}", stat.S_IFREG | 0o644, path.read_bytes())
    entry("TRAILER!!!", 0)
    return out.getvalue()


# ---- images: read and write without mounting -------------------------------------------------------

def installed_packages(status: str) -> dict:
    """package -> version of the installed packages in a dpkg status file."""
    versions = {}
    for stanza in status.split("\n\n"):
        fields = dict(re.findall(r"^(Package|Version|Status): (.*)$", stanza, re.M))
        if fields.get("Status", "").endswith(" installed") and "Package" in fields:
            versions[fields["Package"]] = fields["Version"]
    return versions


def install_overlay(rootfs: Path, files: dict[str, tuple[bytes, int]], enable: tuple[str, ...] = ()) -> None:
    """Write `files` (path -> (bytes, mode), as `amc image` makes them) into the ext4 image
    `rootfs` with debugfs, creating folders, and enable the systemd `units` (multi-user.target)."""
    debugfs = need_tool("debugfs", "e2fsprogs")
    with tempfile.TemporaryDirectory() as tmp:
        commands = []
        wants = "etc/systemd/system/multi-user.target.wants/unit"
        folders = sorted({str(p) for path in [*files, wants] for p in Path(path).parents if str(p) != "."})
        commands += [f"mkdir /{folder}" for folder in folders]
        for index, (path, (data, mode)) in enumerate(sorted(files.items())):
            source = Path(tmp) / str(index)
            source.write_bytes(data)
            commands += [f"rm /{path}", f"write {source} /{path}", f"sif /{path} mode 0{stat.S_IFREG | mode:o}",
                         f"sif /{path} uid 0", f"sif /{path} gid 0"]
        for unit in enable:
            link = f"/etc/systemd/system/multi-user.target.wants/{unit}"
            commands += [f"rm {link}", f"symlink {link} /lib/systemd/system/{unit}"]
        script = Path(tmp) / "commands"
        script.write_text("\n".join(commands) + "\n")
        result = subprocess.run([debugfs, "-w", "-f", str(script), str(rootfs)], capture_output=True, text=True,
                                timeout=600)
        if result.returncode:
            raise AmcError(f"debugfs could not write the overlay into {rootfs}: {result.stderr.strip()[-200:]}")


def _run(cmd: list[str], what: str, timeout: float) -> None:
    try:
        result = subprocess.run(cmd, capture_output=True, text=True, timeout=timeout)
    except subprocess.TimeoutExpired:
        raise AmcError(f"{what} took more than {timeout:.0f} s") from None
    if result.returncode:
        lines = (result.stderr.strip() or result.stdout.strip()).splitlines()
        raise AmcError(f"{what} failed (exit status {result.returncode}): {lines[-1] if lines else ''}")


def _one(folder: Path, pattern: str) -> Path:
    found = sorted(folder.glob(pattern))
    if len(found) != 1:
        raise AmcError(f"{folder}: expected one {pattern}, found {len(found)}")
    return found[0]


if __name__ == "__main__":          # `python -m amc.targets.system`: build the system ahead of a test
    from amc.targets.presets import get_target

    start = time.monotonic()
    built = system_image(get_target("rpi4"), report=lambda d, i, n: print(f"[{i}/{n}] {d}", flush=True))
    print(f"{built.folder}: {built.describe()} ({time.monotonic() - start:.0f} s)")
