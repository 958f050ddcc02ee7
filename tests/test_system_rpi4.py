"""The booted emulated Pi 4 (Debian arm64, systemd as init, under qemu-system-aarch64): the pieces
the image is made of, and `amc test --target rpi4 --system` on the tiny bundle: graph outputs,
front-end frames, transcripts and routes through the image's own amc-runner under systemd equal
to the host's, the boot unit's patch after a reboot, Mender's and SWUpdate's installs of further
updates (a tampered one refused), and power cuts during the boot unit's apply."""

from __future__ import annotations

import re
import stat

import pytest

from amc.common.errors import ToolMissingError
from amc.targets import system


def test_mirror_comes_from_apt_sources_deb822_and_one_line(tmp_path):
    lists = tmp_path / "sources.list.d"
    lists.mkdir()
    (lists / "other.sources").write_text("Types: deb\nURIs: http://example.invalid/other\nSuites: nodistro\n")
    (lists / "debian.sources").write_text(
        "Types: deb-src\nURIs: http://example.invalid/src\nSuites: bookworm\n\n"
        "# a comment: http://example.invalid/comment\nTypes: deb\nURIs: http://example.invalid/debian\n"
        "Suites: bookworm bookworm-updates\nComponents: main\n")
    assert system.debian_mirror(tmp_path) == "http://example.invalid/debian"
    (lists / "debian.sources").unlink()
    (tmp_path / "sources.list").write_text("deb [arch=amd64 signed-by=/k.gpg] http://example.invalid/one bookworm main\n")
    assert system.debian_mirror(tmp_path) == "http://example.invalid/one"
    (tmp_path / "sources.list").write_text("deb http://example.invalid/one bullseye main\n")
    with pytest.raises(ToolMissingError, match="no Debian bookworm source"):
        system.debian_mirror(tmp_path)


def _module(path, depends: str) -> None:
    path.parent.mkdir(parents=True, exist_ok=True)
    path.write_bytes(b"\x7fELF....\x00license=GPL\x00depends=" + depends.encode() + b"\x00vermagic=6.1\x00")


def _cpio(data: bytes) -> dict[str, tuple[int, bytes]]:
    """name -> (mode, content) of a newc archive, read as the kernel reads it."""
    entries, at = {}, 0
    while True:
        assert data[at:at + 6] == b"070701"
        fields = [int(data[at + 6 + 8 * i:at + 14 + 8 * i], 16) for i in range(13)]
        size, name_size = fields[6], fields[11]
        name = data[at + 110:at + 110 + name_size - 1].decode()
        at += 110 + name_size
        at += -at % 4
        if name == "TRAILER!!!":
            return entries
        entries[name] = (fields[1], data[at:at + size])
        at += size + (-size % 4)


def test_initramfs_loads_the_root_disk_modules_after_their_dependencies(tmp_path):
    kernel = tmp_path / "6.1.0-test-arm64" / "kernel"
    _module(kernel / "fs/ext4/ext4.ko", "mbcache,jbd2,crc16")
    _module(kernel / "fs/jbd2/jbd2.ko", "")
    _module(kernel / "fs/mbcache.ko", "")
    _module(kernel / "lib/crc16.ko", "")
    _module(kernel / "crypto/crc32c_generic.ko", "")
    _module(kernel / "drivers/virtio/virtio_mmio.ko", "")
    _module(kernel / "drivers/block/virtio_blk.ko", "")
    _module(kernel / "drivers/unused.ko", "")
    order = [p.stem for p in system.module_order(tmp_path / "6.1.0-test-arm64")]
    assert set(order) == {"ext4", "jbd2", "mbcache", "crc16", "crc32c_generic", "virtio_mmio", "virtio_blk"}
    assert all(order.index(d) < order.index("ext4") for d in ("jbd2", "mbcache", "crc16"))
    entries = _cpio(system.initramfs(b"busybox-bytes", tmp_path / "6.1.0-test-arm64"))
    assert entries["bin/busybox"] == (stat.S_IFREG | 0o755, b"busybox-bytes")
    assert entries["init"][0] == stat.S_IFREG | 0o755 and b"switch_root /root" in entries["init"][1]
    assert entries["modules"][1].decode().split() == order
    assert entries["lib/ext4.ko"][1] == (kernel / "fs/ext4/ext4.ko").read_bytes()
    assert "lib/unused.ko" not in entries
    _module(kernel / "fs/ext4/ext4.ko", "mbcache,jbd2,crc16,missing_one")
    with pytest.raises(Exception, match="kernel module 'missing_one' not found"):
        system.module_order(tmp_path / "6.1.0-test-arm64")


def test_installed_packages_reads_the_dpkg_status():
    status = ("Package: systemd\nStatus: install ok installed\nVersion: 252.38-1~deb12u1\n\n"
              "Package: gone\nStatus: deinstall ok config-files\nVersion: 1\n\n"
              "Package: linux-image-6.1.0-50-arm64\nStatus: install ok installed\nVersion: 6.1.176-1\n")
    packages = system.installed_packages(status)
    assert packages["systemd"] == "252.38-1~deb12u1" and "gone" not in packages
    assert packages["linux-image-6.1.0-50-arm64"] == "6.1.176-1"


def test_overlay_written_into_an_ext4_image_without_mounting(tmp_path):
    import subprocess

    tree = tmp_path / "tree"
    (tree / "lib/systemd/system").mkdir(parents=True)
    (tree / "etc").mkdir()
    (tree / "etc/old").write_text("old\n")
    image = tmp_path / "root.ext4"
    subprocess.run(["mke2fs", "-q", "-t", "ext4", "-d", str(tree), str(image), "16M"], check=True)
    system.install_overlay(image, {"usr/bin/tool": (b"#!/bin/sh\n", 0o755), "etc/old": (b"new\n", 0o644),
                                   "lib/systemd/system/x.service": (b"[Unit]\n", 0o644)}, enable=("x.service",))

    def debugfs(command: str) -> str:
        return subprocess.run(["debugfs", "-R", command, str(image)], capture_output=True, text=True).stdout

    assert debugfs("cat /usr/bin/tool") == "#!/bin/sh\n" and debugfs("cat /etc/old") == "new\n"
    assert re.search(r"Mode:\s+0755", debugfs("stat /usr/bin/tool"))
    assert "/lib/systemd/system/x.service" in debugfs("stat /etc/systemd/system/multi-user.target.wants/x.service")


@pytest.mark.cross
def test_booted_system_runs_the_bundle_patches_at_boot_and_survives_power_cuts():
    from amc.ontarget.harness import test_on_target
    from amc.ontarget.recording import Settings
    from tests.ondevice_fixtures import fixture_bundle

    bundle, audio = fixture_bundle()
    result = test_on_target("rpi4", bundle, None, audio, Settings(utterances=2, records_per_graph=8),
                            system=True, power_cuts=2)
    assert result["booted"] and result["init"] == "systemd" and result["machine"] == "aarch64"
    assert result["boot_unit"] == "active"
    assert result["audio_in"] and result["frontend"]["board_equals_host_c"]
    assert result["transcripts_equal"] and result["routes_equal"] and result["max_int8_step_diff"] <= 1
    patch = result["patch"]
    assert patch["boot_unit"] == "active" and patch["moved_to_applied"] and patch["files_equal"]
    assert patch["patched_equal"]
    assert result["ota"]["mender"] == "ok" and result["ota"]["swupdate"] == "ok", result["ota"]
    mender = result["ota"]["details"]["mender"]
    assert mender["installed_version_before_commit"] == 2 and mender["installed_version"] == 3
    assert result["ota"]["details"]["swupdate"]["installed_version"] == 4
    cuts = result["power_cuts"]
    assert cuts["tried"] == 2 and cuts["corrupted"] == 0 and len(cuts["cuts"]) == 2
    assert result["ok"]


def test_console_is_read_without_systemd_colour_codes(tmp_path):
    from amc.ontarget.system import UNIT_STARTED
    from amc.targets.vm import BootedSystem

    vm = BootedSystem.__new__(BootedSystem)         # the console alone: nothing booted
    vm.console_log = tmp_path / "console-1.log"
    vm.console_log.write_bytes(b"         Starting \x1b[0;1;39mamc-patch.service\xe2\x80\xa6esume an interrupted one "
                               b"first)...\r\n\x1b[0;32m  OK  \x1b[0m] Finished \x1b[0;1;39mamc-patch.service\x1b[0m\r\n")
    assert re.search(UNIT_STARTED, vm.console())
    assert re.search(r"Finished amc-patch\.service", vm.console())
