"""`amc release`: a signed blob as a Mender artifact (read back by mender-artifact, its signature
checked) and as an SWUpdate image (the cpio crc layout with sw-description first, its
libconfig content, the CMS signature, all checked by swupdate -c itself), one-line refusals of
bad input, output that appears whole or not at all, and --json."""

from __future__ import annotations

import hashlib
import json
import shutil
import subprocess
import wave

import pytest

from amc.common.errors import InputError
from amc.compiler.release import Golden, build_release, cpio_crc, golden_check, swu_members
from amc.ontarget.ota import signing_pair, swupdate_reported_success
from amc.patch import blob as pb
from tests.conftest import run_cli
from tests.ota_fixtures import check_swu

needs_mender_artifact = pytest.mark.skipif(shutil.which("mender-artifact") is None,
                                           reason="apt-get install mender-artifact")
needs_swupdate = pytest.mark.skipif(shutil.which("swupdate") is None, reason="apt-get install swupdate")

BASE = {"fast.pte": bytes(range(256)) * 8, "slow.pte": bytes(reversed(range(256))) * 8}
VERSION = 7


@pytest.fixture
def release(tmp_path):
    """(folder, a signed blob of version 7, a golden WAV)."""
    blob, _ = pb.make_blob(BASE, [pb.RawRecord(1, 100, b"\x01\x02")], VERSION, pb.example_signing_key())
    (tmp_path / "update.amcp").write_bytes(blob)
    wav = tmp_path / "lights.wav"
    with wave.open(str(wav), "wb") as out:
        out.setnchannels(1), out.setsampwidth(2), out.setframerate(16000)
        out.writeframes(bytes(2 * 8000))
    return tmp_path, tmp_path / "update.amcp", wav


@needs_mender_artifact
def test_mender_artifact_carries_the_blob_and_the_golden_utterance(release):
    tmp, blob, wav = release
    result = build_release(blob, "mender", tmp / "out", golden=Golden(wav, "turn on the lights", 0.2))
    out = tmp / "out.mender"
    assert result["output"] == str(out) and result["artifact_name"] == "amc-model-7" and result["version"] == VERSION
    read = subprocess.run(["mender-artifact", "read", str(out)], capture_output=True, text=True, check=True).stdout
    assert "Name: amc-model-7" in read and "Compatible devices: '[rpi4]'" in read
    assert "Type:   amc" in read and "amc.model.version: 7" in read and "Signature: no signature" in read
    names = [line.split(":", 1)[1].strip() for line in read.splitlines() if line.strip().startswith("name:")]
    assert names == ["amc-model-7.amcp", "golden.wav", "golden.check"]
    assert hashlib.sha256(blob.read_bytes()).hexdigest() in read
    check = next(p for p in result["payload"] if p["name"] == "golden.check")
    assert check["sha256"] == hashlib.sha256(golden_check("turn on the lights", 0.2)).hexdigest()
    assert b"text=turn on the lights\nmax_cer=0.2\n" in golden_check("turn on the lights", 0.2)
    assert b"\nmax_cer=0.00005\n" in golden_check("x", 5e-05)     # a number amc-ota reads, never 5e-05


@needs_mender_artifact
def test_signed_mender_artifact_verifies_with_the_public_key(release):
    from cryptography.hazmat.primitives import serialization
    from cryptography.hazmat.primitives.asymmetric import ec

    tmp, blob, _ = release
    key = ec.generate_private_key(ec.SECP256R1())
    (tmp / "artifact.key").write_bytes(key.private_bytes(serialization.Encoding.PEM,
                                                         serialization.PrivateFormat.TraditionalOpenSSL,
                                                         serialization.NoEncryption()))
    (tmp / "artifact.pub").write_bytes(key.public_key().public_bytes(serialization.Encoding.PEM,
                                                                     serialization.PublicFormat.SubjectPublicKeyInfo))
    result = build_release(blob, "mender", tmp / "signed.mender", device_type="rpi4-lab", sign_key=tmp / "artifact.key")
    assert result["signed"] is True and result["golden"] is None
    read = subprocess.run(["mender-artifact", "read", "-k", str(tmp / "artifact.pub"), result["output"]],
                          capture_output=True, text=True, check=True).stdout
    assert "Signature: signed and verified correctly" in read and "'[rpi4-lab]'" in read


@needs_swupdate
def test_swu_layout_and_swupdate_checks_it(release):
    tmp, blob, wav = release
    key, cert = signing_pair(tmp / "signer")
    result = build_release(blob, "swupdate", tmp / "out", golden=Golden(wav, "turn on the lights", 0.2),
                           hw_revisions=["1.0", "1.1"], sign_key=key, sign_cert=cert)
    out = tmp / "out.swu"
    assert result["output"] == str(out) and result["hw_revisions"] == ["1.0", "1.1"]
    data = out.read_bytes()
    assert data[:6] == b"070702"                       # the crc format
    members = swu_members(data)
    assert [name for name, _ in members] == ["sw-description", "sw-description.sig", "golden.wav", "golden.check",
                                             "amc-model-7.amcp"]
    description = members[0][1].decode()
    assert "\trpi4 =\n" in description and 'hardware-compatibility = [ "1.0", "1.1" ];' in description
    for name, content in members[2:]:
        assert f'filename = "{name}";' in description
        assert f'sha256 = "{hashlib.sha256(content).hexdigest()}";' in description
    assert 'type = "amcp";' in description and 'type = "amcp-golden";' in description
    assert 'version = "7";' in description
    assert members[4][1] == blob.read_bytes()

    checked = check_swu(tmp, out, cert, "rpi4:1.1")
    assert swupdate_reported_success(checked.returncode, checked.stdout + checked.stderr), checked.stdout[-2000:]
    refused = check_swu(tmp, out, cert, "rpi4:2.0")             # a revision not listed
    assert refused.returncode != 0 and "SW not compatible with hardware" in refused.stdout + refused.stderr
    refused = check_swu(tmp, out, cert, "rpi3:1.0")                   # another board: no images for it
    assert refused.returncode != 0 and "Found nothing to install" in refused.stdout + refused.stderr
    flipped = bytearray(members[4][1])
    flipped[40] ^= 1                                  # the blob's bytes: its sha256 in sw-description no longer holds
    (tmp / "tampered.swu").write_bytes(cpio_crc(members[:4] + [(members[4][0], bytes(flipped))]))
    refused = check_swu(tmp, tmp / "tampered.swu", cert)
    assert refused.returncode != 0 and "HASH mismatch" in refused.stdout + refused.stderr


@needs_swupdate
def test_debian_swupdate_refuses_an_unsigned_swu(release):
    """Debian builds swupdate with CONFIG_SIGNED_IMAGES: -k is mandatory and sw-description.sig must
    verify with it, so an unsigned .swu never installs there."""
    tmp, blob, _ = release
    _, cert = signing_pair(tmp / "signer")
    result = build_release(blob, "swupdate", tmp / "unsigned")
    assert result["signed"] is False
    assert [name for name, _ in swu_members((tmp / "unsigned.swu").read_bytes())][:2] == ["sw-description",
                                                                                          "amc-model-7.amcp"]
    unsigned = check_swu(tmp, tmp / "unsigned.swu", cert)
    assert unsigned.returncode != 0 and "sw-description.sig" in unsigned.stdout + unsigned.stderr
    no_key = subprocess.run(["swupdate", "-c", "-i", str(tmp / "unsigned.swu")], capture_output=True, text=True)
    assert no_key.returncode != 0 and "built for signed images, provide a public key file" in no_key.stderr


def test_cms_signature_refuses_a_certificate_of_another_key(release):
    tmp, blob, _ = release
    key, _ = signing_pair(tmp / "one")
    _, other_cert = signing_pair(tmp / "two")
    with pytest.raises(InputError, match="the certificate is not for the key"):
        build_release(blob, "swupdate", tmp / "x", sign_key=key, sign_cert=other_cert)
    assert not (tmp / "x.swu").exists()


@pytest.mark.parametrize("case, expected", [
    ("junk", "junk.amcp: not an amc patch blob (bad magic)"),
    ("unsigned", "unsigned.amcp: the blob is not signed, and devices refuse it: `amc sign unsigned.amcp --key KEY` first"),
    ("missing", "missing.amcp: no such blob"),
    ("both", "give one of --mender or --swupdate"),
    ("neither", "give one of --mender or --swupdate"),
    ("text-only", "a golden utterance is --golden FILE.wav with --golden-text TEXT"),
    ("max-cer", "--max-cer 5: a character error rate is a fraction from 0 to 1 (0.25 is 25%)"),
    ("device-type", "--device-type 'rpi 4': a device type is a letter"),
    ("not-wav", "notes.wav"),
    ("cert-only", "an SWUpdate release is signed with both --sign-key KEY.pem and --sign-cert CERT.pem"),
    ("mender-revision", "--hw-revision is SWUpdate's hardware compatibility"),
])
def test_bad_input_is_one_line_naming_it(release, capsys, case, expected):
    tmp, blob, wav = release
    (tmp / "junk.amcp").write_bytes(b"not a blob at all" * 10)
    unsigned, _ = pb.make_blob(BASE, [pb.RawRecord(0, 0, b"\x09")], 3, None)
    (tmp / "unsigned.amcp").write_bytes(unsigned)
    (tmp / "notes.wav").write_text("shopping list\n")
    (tmp / "cert.pem").write_text("x")
    args = {
        "junk": [str(tmp / "junk.amcp"), "--mender"], "unsigned": [str(tmp / "unsigned.amcp"), "--swupdate"],
        "missing": [str(tmp / "missing.amcp"), "--mender"], "both": [str(blob), "--mender", "--swupdate"],
        "neither": [str(blob)], "text-only": [str(blob), "--swupdate", "--golden-text", "hello"],
        "max-cer": [str(blob), "--swupdate", "--golden", str(wav), "--golden-text", "hi", "--max-cer", "5"],
        "device-type": [str(blob), "--swupdate", "--device-type", "rpi 4"],
        "not-wav": [str(blob), "--swupdate", "--golden", str(tmp / "notes.wav"), "--golden-text", "hi"],
        "cert-only": [str(blob), "--swupdate", "--sign-cert", str(tmp / "cert.pem")],
        "mender-revision": [str(blob), "--mender", "--hw-revision", "1.0"],
    }[case]
    code, out, err = run_cli(["release", *args, "-o", str(tmp / "out")], capsys)
    assert code == InputError.exit_code, err
    assert len(err.strip().splitlines()) == 1 and expected in err, err
    assert not any(p.name.startswith("out") or p.name.startswith(".out") for p in tmp.iterdir())


def test_missing_mender_artifact_says_what_to_install(release, capsys, monkeypatch):
    tmp, blob, _ = release
    (tmp / "bin").mkdir()
    monkeypatch.setenv("PATH", str(tmp / "bin"))
    code, _, err = run_cli(["release", str(blob), "--mender", "-o", str(tmp / "out")], capsys)
    assert code == 3 and err.strip() == "amc: error: mender-artifact not found: apt-get install mender-artifact"
    assert not (tmp / "out.mender").exists()


@needs_mender_artifact
def test_a_failed_mender_artifact_leaves_nothing(release, capsys):
    tmp, blob, _ = release
    (tmp / "bad.key").write_text("not a key\n")
    code, _, err = run_cli(["release", str(blob), "--mender", "--sign-key", str(tmp / "bad.key"), "-o",
                            str(tmp / "out")], capsys)
    assert code == 1 and err.startswith("amc: error: mender-artifact write module-image failed:")
    assert len(err.strip().splitlines()) == 1
    assert sorted(p.name for p in tmp.iterdir()) == ["bad.key", "lights.wav", "update.amcp"]


@needs_swupdate
def test_release_json(release, capsys):
    tmp, blob, wav = release
    key, cert = signing_pair(tmp / "signer")
    code, out, err = run_cli(["release", str(blob), "--swupdate", "-o", str(tmp / "u.swu"), "--golden", str(wav),
                              "--golden-text", "turn on the lights", "--sign-key", str(key), "--sign-cert", str(cert),
                              "--json"], capsys)
    assert code == 0, err
    result = json.loads(out)
    assert result["format"] == "swupdate" and result["output"] == str(tmp / "u.swu") and result["signed"] is True
    assert result["golden"] == {"file": str(wav), "text": "turn on the lights", "max_cer": 0.25}
    assert result["blob"]["sha256"] == hashlib.sha256(blob.read_bytes()).hexdigest()
    assert [p["name"] for p in result["payload"]] == ["amc-model-7.amcp", "golden.wav", "golden.check"]
    assert result["bytes"] == (tmp / "u.swu").stat().st_size
