"""`amc release BLOB --mender|--swupdate -o OUT`: a signed `.amcp` patch blob packaged for the OTA
client a fleet already runs, with the golden utterance the device's health check transcribes
before it commits the patch (docs/on-target.md, "OTA updates").

* **Mender** (`OUT.mender`): written by `mender-artifact write module-image -T amc`, the payload
  type of the Update Module `device/ota/mender/amc`. Payload files: the blob
  (`amc-model-<version>.amcp`) and, with a golden utterance, `golden.wav` and `golden.check`. The
  artifact is named `amc-model-<version>` after the model version in the blob's header and
  provides `amc.model.version` = that version; it depends on the device type.
* **SWUpdate** (`OUT.swu`): a cpio archive in the `crc` format (`070702`, the per-file byte sum
  SWUpdate checks), `sw-description` first (libconfig syntax), then `sw-description.sig` when
  signed, then the images in the order they are installed: the golden files (type
  `amcp-golden`), then the blob (type `amcp`), each with its sha256. The images sit under the
  device type as board name, with the `hardware-compatibility` revisions a device's
  `/etc/hwrevision` must match. Signing is CMS (what Debian's swupdate verifies with `-k CERT`):
  a detached DER signature of sw-description by `sign_key` with `sign_cert`.

The blob keeps its own Ed25519 signature, which amc-patch checks on the device whatever the OTA
client checked; a blob that is not signed is refused here. The output is written beside its
destination and renamed: a failed release leaves nothing behind."""

from __future__ import annotations

import decimal
import hashlib
import os
import re
import shutil
import subprocess
import tempfile
from dataclasses import dataclass
from pathlib import Path

from amc.common.atomic import write_file
from amc.common.errors import AmcError, InputError, ToolMissingError
from amc.common.progress import quiet
from amc.patch import blob as pb

FORMATS = {"mender": ".mender", "swupdate": ".swu"}
MENDER_PAYLOAD_TYPE = "amc"
"""The Mender payload type: the name of the Update Module that installs it."""
SWUPDATE_TYPE, SWUPDATE_GOLDEN_TYPE = "amcp", "amcp-golden"
"""The image types the SWUpdate Lua handlers (device/ota/swupdate/amc_swupdate.lua) register."""
DEFAULT_MAX_CER = 0.25
ANY_REVISION = "#RE:.*"
"""SWUpdate's hardware-compatibility entry that matches every revision of the board."""
GOLDEN_WAV, GOLDEN_CHECK = "golden.wav", "golden.check"
_NAME = re.compile(r"[A-Za-z][A-Za-z0-9_-]*\Z")
_REVISION = re.compile(r"[\x21-\x7e]+\Z")


@dataclass(frozen=True)
class Golden:
    """The health check's utterance: a WAV file (16 kHz mono 16-bit), the text the patched model
    must transcribe it as, and the largest character error rate allowed (a fraction)."""
    wav: Path
    text: str
    max_cer: float = DEFAULT_MAX_CER


def golden_check(text: str, max_cer: float) -> bytes:
    """The golden.check file amc-ota reads: the expected text and the tolerance, one per line."""
    return (f"# amc health check: the patched model must transcribe golden.wav as this text\n"
            f"# with a character error rate of at most max_cer (a fraction)\n"
            f"text={text}\nmax_cer={decimal.Decimal(repr(max_cer)):f}\n").encode()


def checked_golden(golden: Golden) -> tuple[bytes, bytes]:
    """(golden.wav bytes, golden.check bytes) after checking the file, the text and the tolerance."""
    from amc.runtime.frontend import pcm_of

    wav = Path(golden.wav)
    if not wav.is_file():
        raise InputError(f"{wav}: no such golden WAV file")
    if len(pcm_of(wav)) < 480:
        raise InputError(f"{wav}: shorter than one 30 ms frame; a golden utterance needs speech")
    text = golden.text
    if not text.strip() or any(c in text for c in "\r\n\0"):
        raise InputError(f"--golden-text {text!r}: give the expected transcript, on one line")
    if not 0.0 <= golden.max_cer <= 1.0:
        raise InputError(f"--max-cer {golden.max_cer:g}: a character error rate is a fraction from 0 to 1 "
                         f"(0.25 is 25%)")
    return wav.read_bytes(), golden_check(text, golden.max_cer)


def pick_golden(bundle: Path, folder: Path, limit: int = 24) -> tuple[Golden, float]:
    """The golden utterance an image ships when none is given: of the first `limit` utterances of
    the audio folder, the one the bundle transcribes best (as `amc transcribe` does, which is what
    amc-runner does on the board; ties: the shorter file), with its reference text and a tolerance
    of its own CER plus DEFAULT_MAX_CER, at most 1. Returns (golden, its CER with this bundle)."""
    from amc.compiler.scoring import transcribe_path
    from amc.model.corpus.audio_folder import read_audio_folder
    from amc.model.decoding import edit_distance

    utterances = [u for u in read_audio_folder(folder)[:limit]
                  if u.text.strip() and not any(c in u.text for c in "\r\n\0")]
    if not utterances:
        raise InputError(f"{folder}: no utterance with a one-line text to pick a golden utterance from")
    results = transcribe_path(bundle, [u.path for u in utterances])["results"]
    scored = sorted(((edit_distance(u.text, r["text"]) / max(1, len(u.text)), Path(u.path).stat().st_size, i)
                     for i, (u, r) in enumerate(zip(utterances, results))))
    cer, _, best = scored[0]
    chosen = utterances[best]
    return Golden(Path(chosen.path), chosen.text, round(min(1.0, cer + DEFAULT_MAX_CER), 4)), round(cer, 4)


def read_release_blob(path: Path) -> tuple[bytes, pb.PatchBlob]:
    """The blob's bytes and parsed form; one-line errors naming the file."""
    path = Path(path)
    if not path.is_file():
        raise InputError(f"{path}: no such blob")
    data = path.read_bytes()
    try:
        blob = pb.read_blob(data)
    except InputError as error:
        raise InputError(f"{path}: {error}") from None
    if not pb.is_signed(data):
        raise InputError(f"{path}: the blob is not signed, and devices refuse it: "
                         f"`amc sign {path.name} --key KEY` first")
    return data, blob


def output_path(output: Path, kind: str) -> Path:
    """OUT with the format's suffix (.mender, .swu) unless it already has it."""
    output = Path(output)
    suffix = FORMATS[kind]
    return output if output.name.endswith(suffix) else output.with_name(output.name + suffix)


def build_release(blob_path: Path | str, kind: str, output: Path | str, device_type: str = "rpi4",
                  golden: Golden | None = None, hw_revisions=(ANY_REVISION,), sign_key: Path | None = None,
                  sign_cert: Path | None = None, report=quiet) -> dict:
    """Write the release of the blob for the OTA client `kind` ("mender" or "swupdate") to
    `output` (its suffix added when missing). Returns what was written."""
    if kind not in FORMATS:
        raise InputError(f"unknown release format '{kind}': {', '.join(FORMATS)}")
    if not _NAME.match(device_type):
        raise InputError(f"--device-type {device_type!r}: a device type is a letter, then letters, digits, "
                         f"'-' or '_'")
    hw_revisions = list(hw_revisions) or [ANY_REVISION]
    for revision in hw_revisions:
        if not _REVISION.match(revision) or '"' in revision or "\\" in revision:
            raise InputError(f"--hw-revision {revision!r}: a revision is printable ASCII without blanks or quotes")
    data, blob = read_release_blob(Path(blob_path))
    payload = {f"amc-model-{blob.version}.amcp": data}
    if golden is not None:
        payload[GOLDEN_WAV], payload[GOLDEN_CHECK] = checked_golden(golden)
    if kind == "mender" and sign_cert is not None:
        raise InputError("--sign-cert is for SWUpdate's CMS signature; a Mender artifact is signed with --sign-key alone")
    if kind == "swupdate" and (sign_key is None) != (sign_cert is None):
        raise InputError("an SWUpdate release is signed with both --sign-key KEY.pem and --sign-cert CERT.pem")
    output = output_path(Path(output), kind)
    name = f"amc-model-{blob.version}"
    report(f"write {kind} release", 0, 1)
    if kind == "mender":
        write_mender(output, name, device_type, payload, blob.version, sign_key)
    else:
        write_swu(output, name, device_type, hw_revisions, payload, blob.version, sign_key, sign_cert)
    report(f"write {kind} release", 1, 1)
    return {
        "output": str(output), "format": kind, "artifact_name": name, "version": blob.version,
        "device_type": device_type, "signed": sign_key is not None,
        "hw_revisions": hw_revisions if kind == "swupdate" else None,
        "blob": {"file": str(blob_path), "sha256": hashlib.sha256(data).hexdigest(), "bytes": len(data),
                 "targets": [f.name for f in blob.files]},
        "golden": None if golden is None else {"file": str(golden.wav), "text": golden.text,
                                               "max_cer": golden.max_cer},
        "payload": [{"name": n, "sha256": hashlib.sha256(d).hexdigest(), "bytes": len(d)}
                    for n, d in payload.items()],
        "bytes": output.stat().st_size,
    }


# ---- Mender ----------------------------------------------------------------------------------------

def write_mender(output: Path, name: str, device_type: str, payload: dict[str, bytes], version: int,
                  sign_key: Path | None) -> None:
    """The Mender artifact of `payload` (file name -> bytes, as build_release checked them)."""
    tool = shutil.which("mender-artifact")
    if tool is None:
        raise ToolMissingError("mender-artifact not found: apt-get install mender-artifact")
    if sign_key is not None and not Path(sign_key).is_file():
        raise InputError(f"{sign_key}: no such signing key")
    output.parent.mkdir(parents=True, exist_ok=True)
    with tempfile.TemporaryDirectory(prefix=".amc-release-", dir=output.parent) as tmp:
        files = []
        for file_name, content in payload.items():
            (Path(tmp) / file_name).write_bytes(content)
            files += ["-f", str(Path(tmp) / file_name)]
        staging = Path(tmp) / output.name
        command = [tool, "write", "module-image", "-T", MENDER_PAYLOAD_TYPE, "-n", name, "-t", device_type,
                   "-o", str(staging), *files, "--software-filesystem", "amc", "--software-name", "model",
                   "--software-version", str(version)]
        if sign_key is not None:
            command += ["-k", str(sign_key)]
        result = subprocess.run(command, capture_output=True, text=True, timeout=300)
        if result.returncode or not staging.is_file():
            lines = (result.stderr.strip() or result.stdout.strip() or f"exit status {result.returncode}").splitlines()
            raise AmcError(f"mender-artifact write module-image failed: {lines[-1]}")
        os.replace(staging, output)


# ---- SWUpdate --------------------------------------------------------------------------------------

def sw_description(name: str, version: int, device_type: str, hw_revisions: list[str],
                   payload: dict[str, bytes]) -> bytes:
    """sw-description in libconfig syntax: the images under the device type (SWUpdate's board
    name), golden files first, each with its sha256."""
    images = []
    for file_name, content in payload.items():
        kind = SWUPDATE_TYPE if file_name.endswith(".amcp") else SWUPDATE_GOLDEN_TYPE
        fields = [f'filename = "{file_name}";', f'type = "{kind}";',
                  f'sha256 = "{hashlib.sha256(content).hexdigest()}";']
        if kind == SWUPDATE_TYPE:
            fields += ['name = "amc-model";', f'version = "{version}";']
        images.append((0 if kind == SWUPDATE_GOLDEN_TYPE else 1, fields))
    images.sort(key=lambda entry: entry[0])             # golden files are installed before the blob
    body = ",\n".join("\t\t\t{\n" + "".join(f"\t\t\t\t{f}\n" for f in fields) + "\t\t\t}"
                      for _, fields in images)
    revisions = ", ".join(f'"{r}"' for r in hw_revisions)
    return (f"software =\n{{\n\tversion = \"{version}\";\n"
            f"\tdescription = \"{name}: amc model patch for {device_type}\";\n"
            f"\t{device_type} =\n\t{{\n\t\thardware-compatibility = [ {revisions} ];\n"
            f"\t\timages: (\n{body}\n\t\t);\n\t}};\n}};\n").encode()


def cms_signature(content: bytes, sign_key: Path, sign_cert: Path) -> bytes:
    """A detached CMS (PKCS#7 signedData) signature of `content`, DER, SHA-256, no S/MIME
    capabilities: what `openssl cms -sign -outform DER -nosmimecap -binary` writes and SWUpdate's
    CMS verification reads."""
    from cryptography import x509
    from cryptography.hazmat.primitives import hashes, serialization
    from cryptography.hazmat.primitives.asymmetric import ec, rsa
    from cryptography.hazmat.primitives.serialization import pkcs7

    from amc.patch.keys import passphrase_from

    for path, what in ((sign_key, "signing key"), (sign_cert, "certificate")):
        if not Path(path).is_file():
            raise InputError(f"{path}: no such {what}")
    try:
        cert = x509.load_pem_x509_certificate(Path(sign_cert).read_bytes())
    except ValueError:
        raise InputError(f"{sign_cert}: not a PEM X.509 certificate") from None
    try:
        key = serialization.load_pem_private_key(Path(sign_key).read_bytes(), passphrase_from(None))
    except TypeError:
        raise InputError(f"{sign_key}: the key is encrypted: give its passphrase in $AMC_KEY_PASSPHRASE") from None
    except ValueError:
        raise InputError(f"{sign_key}: not a PEM private key (or a wrong passphrase)") from None
    if not isinstance(key, (rsa.RSAPrivateKey, ec.EllipticCurvePrivateKey)):
        raise InputError(f"{sign_key}: CMS signing takes an RSA or EC key")
    if cert.public_key().public_numbers() != key.public_key().public_numbers():
        raise InputError(f"{sign_cert}: the certificate is not for the key {sign_key}")
    options = [pkcs7.PKCS7Options.DetachedSignature, pkcs7.PKCS7Options.Binary, pkcs7.PKCS7Options.NoCapabilities]
    return (pkcs7.PKCS7SignatureBuilder().set_data(content).add_signer(cert, key, hashes.SHA256())
            .sign(serialization.Encoding.DER, options))


def cpio_crc(entries: list[tuple[str, bytes]]) -> bytes:
    """A cpio archive in the SVR4 `crc` format (magic 070702: newc with the sum of each file's
    bytes), regular files mode 0644, uid/gid 0, mtime 0, then the TRAILER!!! entry."""
    out = bytearray()
    for number, (name, data) in enumerate(entries + [("TRAILER!!!", b"")], 1):
        trailer = name == "TRAILER!!!"
        checksum = sum(data) & 0xFFFFFFFF
        fields = (0 if trailer else number, 0 if trailer else 0o100644, 0, 0, 1, 0, len(data),
                  0, 0, 0, 0, len(name) + 1, checksum)
        out += b"070702" + b"".join(f"{v:08X}".encode() for v in fields) + name.encode() + b"\0"
        out += bytes(-len(out) % 4)
        out += data
        out += bytes(-len(out) % 4)
    return bytes(out)


def write_swu(output: Path, name: str, device_type: str, hw_revisions: list[str], payload: dict[str, bytes],
               version: int, sign_key: Path | None, sign_cert: Path | None) -> None:
    """The .swu of `payload` (file name -> bytes, as build_release checked them)."""
    description = sw_description(name, version, device_type, hw_revisions, payload)
    entries = [("sw-description", description)]
    if sign_key is not None:
        entries.append(("sw-description.sig", cms_signature(description, sign_key, sign_cert)))
    golden_first = sorted(payload.items(), key=lambda item: item[0].endswith(".amcp"))
    write_file(output, cpio_crc(entries + golden_first))


def swu_members(data: bytes) -> list[tuple[str, bytes]]:
    """The (name, content) entries of a cpio `crc` or `newc` archive, checking each file's byte sum
    (crc) and stopping at TRAILER!!!: for inspecting a .swu."""
    members, pos = [], 0
    while True:
        header = data[pos:pos + 110]
        if len(header) < 110 or header[:6] not in (b"070701", b"070702"):
            raise InputError(f"not a cpio newc/crc archive at byte {pos}")
        values = [int(header[6 + 8 * i:14 + 8 * i], 16) for i in range(13)]
        size, name_size, checksum = values[6], values[11], values[12]
        name = data[pos + 110:pos + 110 + name_size - 1].decode()
        pos += 110 + name_size
        pos += -pos % 4
        content = data[pos:pos + size]
        pos += size
        pos += -pos % 4
        if name == "TRAILER!!!":
            return members
        if header[:6] == b"070702" and sum(content) & 0xFFFFFFFF != checksum:
            raise InputError(f"{name}: checksum mismatch in the cpio archive")
        members.append((name, content))

