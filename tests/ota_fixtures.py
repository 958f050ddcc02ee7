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

REPO = Path(__file__).resolve().parent.parent
OTA = REPO / "device" / "ota"
MENDER_MODULES = Path("/usr/share/mender/modules/v3")
BOARD = "rpi4:1.0"


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


def signing_pair(folder: Path) -> tuple[Path, Path]:
    """An RSA key and its self-signed certificate (PEM): what signs sw-description and what
    `swupdate -k` verifies it with."""
    import datetime

    from cryptography import x509
    from cryptography.hazmat.primitives import hashes, serialization
    from cryptography.hazmat.primitives.asymmetric import rsa
    from cryptography.x509.oid import NameOID

    folder.mkdir(parents=True, exist_ok=True)
    key = rsa.generate_private_key(public_exponent=65537, key_size=2048)
    name = x509.Name([x509.NameAttribute(NameOID.COMMON_NAME, "amc release test")])
    now = datetime.datetime(2024, 1, 1, tzinfo=datetime.timezone.utc)
    cert = (x509.CertificateBuilder().subject_name(name).issuer_name(name).public_key(key.public_key())
            .serial_number(1).not_valid_before(now).not_valid_after(now + datetime.timedelta(days=36500))
            .add_extension(x509.BasicConstraints(ca=True, path_length=None), critical=True)
            .sign(key, hashes.SHA256()))
    key_path, cert_path = folder / "swupdate-signer.key", folder / "swupdate-signer.crt"
    key_path.write_bytes(key.private_bytes(serialization.Encoding.PEM, serialization.PrivateFormat.PKCS8,
                                           serialization.NoEncryption()))
    cert_path.write_bytes(cert.public_bytes(serialization.Encoding.PEM))
    return key_path, cert_path


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


SWUPDATE_TRIES = 3


def _swupdate(command: list[str], env: dict, timeout: int) -> subprocess.CompletedProcess:
    for _ in range(SWUPDATE_TRIES):
        run = subprocess.run(command, env=env, capture_output=True, text=True, timeout=timeout)
        if not swupdate_gave_up_early(run.returncode, run.stdout + run.stderr):
            break
    return run


def swupdate_gave_up_early(code: int, log: str) -> bool:
    """Debian's swupdate 2022.12 now and then fails an update of its own accord before any handler
    ran, so with the device untouched, and the same .swu goes through on the next try: the
    signature it just extracted "cannot be parsed as DER-encoded CMS signature blob", or its -i
    client quit early (the race of swupdate_reported_success). Such a run is tried again."""
    if "Found installer for stream" in log or "amc: installing" in log:
        return False
    return "cannot be parsed as DER-encoded CMS signature blob" in log or \
        (code != 0 and "SWUpdate was successful !" in log)


def swupdate_reported_success(code: int, log: str) -> bool:
    """Whether `swupdate -i` reported success: exit status 0, or a success in its log when it hit
    a race of Debian's swupdate 2022.12. Its -i client stops polling when a queued status reads
    IDLE, takes that (neither SUCCESS nor FAILURE) as the end, prints "SWUpdate was successful !",
    exits 1 and ends the process while the installer may still run (the client race fixed
    upstream in 2024 by swupdate commit e6b2081b, "swupdate_async_start: fix race condition";
    docs/on-target.md, "OTA updates"). A failed update always exits non-zero. The amc handler's amc-ota runs on to the
    end either way (run() returns once it closes the output it shares), so the device's state is
    the answer, and the callers check it."""
    succeeded = "SWUpdate was successful !" in log or "SWUPDATE successful !" in log
    return code == 0 or (succeeded and "Installation failed" not in log and "*failed*" not in log)
