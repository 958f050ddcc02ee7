"""What the OTA tests share: a device folder (bundle, keyring, counter, amc-ota's configuration),
blobs for it, a signing certificate for SWUpdate, and the real clients run on this host:
Debian's mender-client 3.4 (`mender install|commit|rollback`, standalone) and swupdate 2022.12
(`swupdate -i`), with their state in the test's folder.

Mender looks for Update Modules in /usr/share/mender/modules/v3 and for the current artifact name
in /etc/mender/artifact_info, paths its configuration cannot move; the test runs it in a mount
namespace of its own (unshare) where the test's folders are bind-mounted over those two, so the
host's files are never touched. SWUpdate takes everything from its command line and environment:
TMPDIR (its temporary files and sockets), LUA_PATH (where `require("swupdate_handlers")` finds the
handlers), -H (the board name and revision /etc/hwrevision would give), -k (the certificate)."""

from __future__ import annotations

import os
import shutil
import subprocess
from dataclasses import dataclass, field
from pathlib import Path

import pytest

from amc.ontarget.ota import BOARD, SWUPDATE_TRIES, swupdate_gave_up_early

REPO = Path(__file__).resolve().parent.parent
OTA = REPO / "device" / "ota"
MENDER_MODULES = Path("/usr/share/mender/modules/v3")


def host_patch() -> Path:
    """The host amc-patch, with the install/commit/rollback commands the OTA steps use."""
    from amc.runtime.apply import host_cli

    cli = host_cli()
    usage = subprocess.run([str(cli)], capture_output=True, text=True).stderr
    if "install" not in usage or "commit" not in usage:
        pytest.skip("this amc-patch has no install/commit yet (the runtime's two-phase install)")
    return cli


@dataclass
class Device:
    """A device's amc folders under `root`, and the environment that points amc-ota at them."""
    root: Path
    model: Path
    keyring: Path
    counter: Path
    env: dict = field(default_factory=dict)

    def files(self) -> dict[str, bytes]:
        """The bundle's files (not amc-patch's journal folder)."""
        return {p.name: p.read_bytes() for p in sorted(self.model.iterdir()) if p.is_file()}

    def counter_bytes(self) -> bytes | None:
        return self.counter.read_bytes() if self.counter.exists() else None


def make_device(root: Path, bundle: dict[str, bytes], public_keys: list[bytes], health_check: str,
                golden_dir: Path | None = None) -> Device:
    """The bundle's files in root/model, the keyring root/keys, amc-ota's configuration file (every
    path in root) and the environment (AMC_OTA, AMC_OTA_CONF) the clients pass on to it."""
    model, keyring = root / "model", root / "keys"
    model.mkdir(parents=True)
    keyring.mkdir()
    for name, data in bundle.items():
        (model / name).write_bytes(data)
    for index, public in enumerate(public_keys):
        (keyring / f"key{index}.pub").write_bytes(public)
    counter = root / "installed-version"
    conf = root / "ota.conf"
    conf.write_text(f"AMC_MODEL_DIR='{model}'\nAMC_KEYRING='{keyring}'\nAMC_COUNTER='{counter}'\n"
                    f"AMC_PATCH='{host_patch()}'\nAMC_HEALTH_CHECK='{health_check}'\n"
                    f"AMC_GOLDEN_DIR='{golden_dir or root / 'no-image-golden'}'\n")
    env = dict(os.environ, AMC_OTA=str(OTA / "amc-ota"), AMC_OTA_CONF=str(conf))
    return Device(root, model, keyring, counter, env)


def stub_health_check(root: Path) -> str:
    """A health-check command for bundles no runner can run: healthy when the expected text is
    `pass...`, after checking it was handed a bundle folder and a WAV file, as amc-runner check is."""
    root.mkdir(parents=True, exist_ok=True)
    script = root / "health-check"
    script.write_text('#!/bin/sh\n[ -d "$1" ] && [ -f "$2" ] && [ "$3" = --text ] && [ "$5" = --max-cer ] || exit 2\n'
                      'case "$4" in pass*) echo "cer=0.0000 max_cer=$6 text=$4"; exit 0 ;; esac\n'
                      'echo "cer=1.0000 max_cer=$6 text=(not $4)"; exit 1\n')
    script.chmod(0o755)
    return str(script)


def runner_health_check(root: Path) -> str:
    """`amc-runner check` built for this host, on bundles compiled for rpi4 (--any-target): the
    health check the image runs, with the same runner code."""
    from amc.targets.amc_runner import build_runner

    runner = build_runner("host")
    script = root / "runner-check"
    libraries = ":".join(str(p) for p in runner.library_path)
    script.write_text(f'#!/bin/sh\nLD_LIBRARY_PATH="{libraries}" exec "{runner.program}" check "$@" --any-target\n')
    script.chmod(0o755)
    return str(script)


def write_golden(folder: Path, wav: Path, text: str, max_cer: float) -> Path:
    from amc.compiler.release import golden_check

    folder.mkdir(parents=True, exist_ok=True)
    shutil.copyfile(wav, folder / "golden.wav")
    (folder / "golden.check").write_bytes(golden_check(text, max_cer))
    return folder


# ---- Mender ------------------------------------------------------------------------------------------

def mender_unavailable() -> str | None:
    if shutil.which("mender") is None:
        return "mender-client not installed (apt-get install mender-client)"
    if shutil.which("unshare") is None or not MENDER_MODULES.is_dir() or not Path("/etc/mender").is_dir():
        return "no unshare, or no /usr/share/mender/modules/v3 and /etc/mender to mount over"
    probe = subprocess.run([*_unshare(), "true"], capture_output=True, text=True)
    if probe.returncode:
        return f"cannot make a mount namespace here: {probe.stderr.strip()}"
    return None


def _unshare() -> list[str]:
    return ["unshare", "--mount"] if os.geteuid() == 0 else ["unshare", "--mount", "--map-root-user"]


def run_mender(device: Device, *args: str, timeout: int = 300) -> subprocess.CompletedProcess:
    """`mender ARGS` in standalone mode: its data folder, configuration, Update Modules
    (device/ota/mender/amc alone) and artifact_info in the device's folder."""
    state = device.root / "mender"
    modules, etc, data = state / "modules", state / "etc", state / "data"
    if not state.exists():
        for folder in (modules, etc, data):
            folder.mkdir(parents=True)
        shutil.copy2(OTA / "mender" / "amc", modules / "amc")
        (etc / "artifact_info").write_text("artifact_name=factory\n")
        (data / "device_type").write_text("device_type=rpi4\n")
        (state / "mender.conf").write_text("{}\n")
    script = ('mount --bind "$1" "$3" && mount --bind "$2" /etc/mender && shift 3 && exec mender "$@"')
    command = [*_unshare(), "sh", "-c", script, "mender-in-namespace", str(modules), str(etc), str(MENDER_MODULES),
               "--no-syslog", "--config", str(state / "mender.conf"), "--fallback-config", str(state / "mender.conf"),
               "--data", str(data), *args]
    return subprocess.run(command, env=device.env, capture_output=True, text=True, timeout=timeout)


# ---- SWUpdate ----------------------------------------------------------------------------------------

def swupdate_unavailable() -> str | None:
    if shutil.which("swupdate") is None:
        return "swupdate not installed (apt-get install swupdate)"
    return None


def run_swupdate(device: Device, swu: Path, cert: Path, *extra: str, board: str = BOARD,
                 timeout: int = 300) -> subprocess.CompletedProcess:
    """`swupdate -i SWU`: the Lua handlers of device/ota/swupdate, TMPDIR in the device's folder
    (a second try when swupdate gave up before any handler ran: see swupdate_gave_up_early)."""
    tmp = device.root / "swupdate-tmp"
    tmp.mkdir(exist_ok=True)
    env = dict(device.env, TMPDIR=str(tmp), LUA_PATH=f"{OTA / 'swupdate'}/?.lua;;")
    return _swupdate(["swupdate", "-k", str(cert), "-H", board, "-l", "4", *extra, "-i", str(swu)], env, timeout)


def check_swu(folder: Path, swu: Path, cert: Path, board: str = BOARD) -> subprocess.CompletedProcess:
    """`swupdate -c -i SWU`: the image checked (signature, hardware, every sha256), nothing installed."""
    tmp = folder / "swupdate-check-tmp"
    tmp.mkdir(exist_ok=True)
    env = dict(os.environ, TMPDIR=str(tmp), LUA_PATH=f"{OTA / 'swupdate'}/?.lua;;")
    return _swupdate(["swupdate", "-k", str(cert), "-H", board, "-l", "4", "-c", "-i", str(swu)], env, 120)


def _swupdate(command: list[str], env: dict, timeout: int) -> subprocess.CompletedProcess:
    for _ in range(SWUPDATE_TRIES):
        run = subprocess.run(command, env=env, capture_output=True, text=True, timeout=timeout)
        if not swupdate_gave_up_early(run.returncode, run.stdout + run.stderr):
            break
    return run
