"""The OTA clients on the booted system (step 5 of amc.ontarget.system): Debian's mender-client
3.4 (`mender install`, then `mender commit`) with the image's Update Module, and swupdate 2022.12
(`swupdate -i`, signed, as Debian's build requires) with the image's Lua handlers, each delivering
a weight update of the model the device holds, as `amc release` writes it.

For each client, first a tampered blob: the client must report failure and the model stay byte
for byte as it was; then the good one: installed, the image's health check (`amc-runner check` on
its golden utterance) passed, committed, the model equal to the update's bundle and the
anti-rollback counter at the blob's version, which it reaches only on the commit (Mender: read
between install and commit).

Also here, what reading swupdate's output needs (shared with the host tests of tests/ota_fixtures)."""

from __future__ import annotations

import re
import shlex
from pathlib import Path

from amc.common.progress import quiet

BOARD = "rpi4:1.0"
"""The board name and revision SWUpdate checks hardware-compatibility against (`-H`)."""
RIG_FILES = {
    # what an integrator's image provides (docs/on-target.md, "Integrating with a Yocto or Debian
    # image"): Mender's artifact_info, its configuration (standalone: nothing to set) and the
    # device type, in Debian's /var/lib/mender, which is a link to /data/mender
    "etc/mender/artifact_info": "artifact_name=factory\n",
    "etc/mender/mender.conf": "{}\n",
    "data/mender/device_type": "device_type=rpi4\n",
}
CLIENTS = ("mender", "swupdate")
SWUPDATE_TRIES = 3


# ---- reading swupdate's output ----------------------------------------------------------------------

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
    docs/on-target.md, "OTA updates"). A failed update always exits non-zero. The amc handler's
    amc-ota runs on to the end either way (run() returns once it closes the output it shares), so
    the device's state is the answer, and the callers check it."""
    succeeded = "SWUpdate was successful !" in log or "SWUPDATE successful !" in log
    return code == 0 or (succeeded and "Installation failed" not in log and "*failed*" not in log)


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


# ---- the installs on the booted system -----------------------------------------------------------------

def ota_installs(vm, bundle: Path, signing_key: bytes, version: int, work: Path, report=quiet) -> dict:
    """Step 5: each client delivers a tampered blob (refused, model untouched), then a weight
    update of `bundle` (the model the device holds, at installed version `version - 1`) signed with
    `signing_key`. Returns {client: "ok" or what failed, ..., "details": {client: figures}}."""
    from amc.compiler.release import write_mender, write_swu
    from amc.ontarget.recording import make_weight_update
    from amc.ontarget.system import COUNTER, MODEL, device_hashes, model_hashes

    cert_key, cert = signing_pair(work / "swupdate-signer")
    result, details = {}, {}
    for step, client in enumerate(CLIENTS):
        report("system: OTA installs", step, len(CLIENTS))
        folder = work / f"ota-{client}"
        folder.mkdir()
        new_bundle, blob, _ = make_weight_update(bundle, folder, seed=10 + step, version=version, key=signing_key)
        good = blob.read_bytes()
        tampered = bytearray(good)
        tampered[len(good) // 2] ^= 0x40
        artifacts = {}
        for kind, data in (("tampered", bytes(tampered)), ("good", good)):
            payload, name = {f"amc-model-{version}.amcp": data}, f"amc-model-{version}"
            if client == "mender":
                artifacts[kind] = folder / f"{kind}.mender"
                write_mender(artifacts[kind], name, "rpi4", payload, version, None)
            else:
                artifacts[kind] = folder / f"{kind}.swu"
                write_swu(artifacts[kind], name, "rpi4", [BOARD.split(":")[1]], payload, version, cert_key, cert)
        before = device_hashes(vm, model_hashes(bundle))
        code, log = _install(vm, client, artifacts["tampered"], cert)
        refused = not client_succeeded(client, code, log) and "amc-patch refused" in log
        untouched = device_hashes(vm, before) == before
        code, log = _install(vm, client, artifacts["good"], cert)
        installed = client_succeeded(client, code, log) and "health check passed" in log
        counter_at_install = _installed_version(vm, MODEL, COUNTER)
        if client == "mender":
            status, commit_log = vm.run("mender --no-syslog commit", 300)
            log += commit_log
            installed = installed and status == 0
        expected = model_hashes(new_bundle)
        equal = device_hashes(vm, expected) == expected
        counter = _installed_version(vm, MODEL, COUNTER)
        details[client] = {"version": version, "bad_blob_refused": refused, "bad_blob_left_model": untouched,
                           "installed": installed, "model_equals_update": equal,
                           "installed_version_before_commit": counter_at_install if client == "mender" else None,
                           "installed_version": counter, "log": _ota_lines(log)}
        failed = [what for what, ok in (("bad blob not refused", refused), ("bad blob changed the model", untouched),
                                        ("install failed", installed), ("model differs from the update", equal),
                                        ("counter not at the version", counter == version),
                                        ("counter advanced before commit",
                                         client != "mender" or counter_at_install == version - 1)) if not ok]
        result[client] = "ok" if not failed else "; ".join(failed)
        bundle, version = new_bundle, version + 1
    report("system: OTA installs", len(CLIENTS), len(CLIENTS))
    return {**result, "details": details}


def _install(vm, client: str, artifact: Path, cert: Path) -> tuple[int, str]:
    """The client's install on the guest: (exit status, output)."""
    if client == "mender":
        return vm.run(f"mender --no-syslog install {shlex.quote(str(artifact))}", 600)
    command = f"swupdate -k {shlex.quote(str(cert))} -H {BOARD} -l 4 -i {shlex.quote(str(artifact))}"
    for _ in range(SWUPDATE_TRIES):
        code, log = vm.run(command, 600)
        if not swupdate_gave_up_early(code, log):
            break
    return code, log


def client_succeeded(client: str, code: int, log: str) -> bool:
    """Whether the client reported a successful install (SWUpdate's exit status is not always the answer)."""
    return code == 0 if client == "mender" else swupdate_reported_success(code, log)


def _installed_version(vm, model: str, counter: str) -> int | None:
    status = vm.sh(f"amc-patch status --dir {model} --counter {counter}", check=False)
    found = re.search(r"installed_version=(\d+)", status)
    return int(found.group(1)) if found else None


def _ota_lines(log: str) -> list[str]:
    """amc-ota's and amc-patch's lines of a client's output: what decided the install."""
    return [line.strip() for line in log.splitlines() if "amc-ota:" in line or "status=" in line][-8:]
