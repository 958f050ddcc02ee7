"""The release side from the command line: `amc key`, `amc diff` with a named key or none,
signing away from the blob with openssl as the external signer, `amc sign`, `amc inspect BLOB`."""

from __future__ import annotations

import json
import shutil
import subprocess

import pytest
import torch

from amc.compiler.bundle_diff import grids_from_bundle, read_base
from amc.model.branched import BranchedEncoder
from amc.model.neural_diff import NeuralDiff, RegionDiff, grids_sha256
from amc.patch import blob as pb
from amc.patch import keys
from tests.conftest import run_cli as _run
from tests.conftest import tiny_config
from tests.test_diff_emit import fake_bundle

needs_openssl = pytest.mark.skipif(shutil.which("openssl") is None, reason="openssl command line not installed")


@pytest.fixture
def release(tmp_path):
    torch.manual_seed(0)
    base = fake_bundle(BranchedEncoder(tiny_config()).eval(), tmp_path / "base")
    grids = grids_from_bundle(read_base(base))
    NeuralDiff("sparse", [RegionDiff(grids[0].key, torch.arange(0, 60, 3).numpy(), torch.full((20,), 4).numpy())],
               grids_sha256(grids), 2000).save(tmp_path / "u.amcd")
    keys.generate_key(tmp_path / "release.pem")
    (tmp_path / "release.pub.pem").write_bytes(keys.public_key_text(keys.load_public_key(tmp_path / "release.pem"), "pem"))
    return tmp_path, base


def _diff(tmp, base, *flags, capsys, out="u.amcp"):
    return _run(["diff", str(base), str(tmp / "u.amcd"), "-o", str(tmp / out), "--budget", "20%", *flags], capsys)


def test_key_commands(tmp_path, capsys):
    key = tmp_path / "k.pem"
    code, out, _ = _run(["key", "generate", "-o", str(key), "--json"], capsys)
    assert code == 0 and json.loads(out)["format"] == "pkcs8-pem"
    code, out, err = _run(["key", "generate", "-o", str(key)], capsys)
    assert code == 2 and "exists; amc does not overwrite a key" in err and len(err.strip().splitlines()) == 1
    code, out, _ = _run(["key", "public", str(key), "--format", "c"], capsys)
    assert code == 0 and "const uint8_t amc_patch_public_key[32]" in out
    assert _run(["key", "public", str(key), "--format", "raw", "-o", str(tmp_path / "k.raw")], capsys)[0] == 0
    assert (tmp_path / "k.raw").read_bytes() == keys.load_public_key(key)
    code, out, _ = _run(["key", "info", str(tmp_path / "k.raw"), "--json"], capsys)
    info = json.loads(out)
    assert info["kind"] == "public" and info["fingerprint"] == keys.fingerprint(keys.load_public_key(key))
    code, _, err = _run(["key", "public", str(key), "--format", "der"], capsys)
    assert code == 2 and "unknown key format 'der'" in err


def test_encrypted_key_from_the_command_line(tmp_path, capsys, monkeypatch):
    passphrase = tmp_path / "pass.txt"
    passphrase.write_text("s3cret\n")
    key = tmp_path / "enc.pem"
    assert _run(["key", "generate", "-o", str(key), "--passphrase-file", str(passphrase)], capsys)[0] == 0
    code, _, err = _run(["key", "public", str(key)], capsys)
    assert code == 2 and "the key is encrypted: give its passphrase" in err
    monkeypatch.setenv(keys.PASSPHRASE_ENV, "s3cret")
    code, out, _ = _run(["key", "public", str(key)], capsys)
    assert code == 0 and out.startswith("-----BEGIN PUBLIC KEY-----")


def test_diff_needs_a_named_key(release, capsys):
    tmp, base = release
    code, _, err = _diff(tmp, base, capsys=capsys)
    assert code == 2 and "signs only with a key you name" in err and len(err.strip().splitlines()) == 1
    assert not (tmp / "u.amcp").exists()
    code, _, err = _diff(tmp, base, "--key", str(tmp / "release.pub.pem"), capsys=capsys)
    assert code == 2 and "holds a public key; signing needs the private key" in err


def test_release_key_signs_and_inspect_checks_it(release, capsys):
    tmp, base = release
    code, _, err = _diff(tmp, base, "--key", str(tmp / "release.pem"), capsys=capsys)
    assert code == 0 and "warning" not in err
    code, out, _ = _run(["inspect", str(tmp / "u.amcp"), "--key", str(tmp / "release.pub.pem"), "--json"], capsys)
    summary = json.loads(out)
    assert summary["signature"] == {"signed": True, "development_key": False, "valid": True,
                                    "verified_by": [{"key": str(tmp / "release.pub.pem"),
                                                     "fingerprint": keys.fingerprint(keys.load_public_key(tmp / "release.pem"))}]}
    assert summary["model_version"] == 2 and summary["records"]["sparse"]["records"] >= 1
    assert [f["name"] for f in summary["files"]] == ["fast.pte", "slow.pte", "arbitrator.pte"][:len(summary["files"])]
    assert 0 < summary["payload_share"] < 1
    keys.generate_key(tmp / "other.pem")
    code, out, _ = _run(["inspect", str(tmp / "u.amcp"), "--key", str(tmp / "other.pem")], capsys)
    assert code == 0 and "DOES NOT VERIFY" in out


def test_development_key_is_loud(release, capsys):
    tmp, base = release
    code, _, err = _diff(tmp, base, "--dev-key", capsys=capsys)
    assert code == 0 and "warning: signing with the DEVELOPMENT key" in err
    code, out, err = _run(["inspect", str(tmp / "u.amcp"), "--json"], capsys)
    assert json.loads(out)["signature"]["development_key"] is True and "DEVELOPMENT key" in err


def test_sign_in_one_step_refuses_a_signed_blob(release, capsys):
    tmp, base = release
    assert _diff(tmp, base, "--unsigned", capsys=capsys)[0] == 0
    unsigned = (tmp / "u.amcp").read_bytes()
    assert not pb.is_signed(unsigned)
    assert _run(["sign", str(tmp / "u.amcp"), "--key", str(tmp / "release.pem")], capsys)[0] == 0
    signed = (tmp / "u.amcp").read_bytes()
    assert pb.read_blob(signed, keys.load_public_key(tmp / "release.pem")).version == 2
    code, _, err = _run(["sign", str(tmp / "u.amcp"), "--key", str(tmp / "release.pem")], capsys)
    assert code == 2 and "already signed; pass --resign" in err
    assert (tmp / "u.amcp").read_bytes() == signed
    code, _, err = _run(["sign", str(tmp / "u.amcp"), "--dev-key"], capsys)
    assert code == 2
    keys.generate_key(tmp / "next.pem")
    assert _run(["sign", str(tmp / "u.amcp"), "--key", str(tmp / "next.pem"), "--resign"], capsys)[0] == 0
    assert pb.read_blob((tmp / "u.amcp").read_bytes(), keys.load_public_key(tmp / "next.pem"))


@needs_openssl
def test_offline_signer_then_the_c_runtime_applies_it(release, capsys):
    """Digest out, openssl signs it (the external signer), the signature in, the C runtime applies."""
    tmp, base = release
    code, out, _ = _diff(tmp, base, "--unsigned", "--digest-out", str(tmp / "u.digest"), "--json", capsys=capsys)
    assert code == 0 and json.loads(out)["signed"] is False
    assert (tmp / "u.digest").read_bytes() == pb.signing_digest((tmp / "u.amcp").read_bytes())
    signature = subprocess.run(["openssl", "pkeyutl", "-sign", "-rawin", "-inkey", str(tmp / "release.pem"),
                                "-in", str(tmp / "u.digest")], capture_output=True, check=True).stdout
    (tmp / "u.sig").write_bytes(signature)
    unsigned = (tmp / "u.amcp").read_bytes()
    keys.generate_key(tmp / "wrong.pem")
    code, _, err = _run(["sign", str(tmp / "u.amcp"), "--signature", str(tmp / "u.sig"), "--key",
                         str(tmp / "wrong.pem")], capsys)
    assert code == 2 and "does not verify with the given public key" in err
    assert (tmp / "u.amcp").read_bytes() == unsigned                  # refused: the blob untouched
    code, _, _ = _run(["sign", str(tmp / "u.amcp"), "--signature", str(tmp / "u.sig"), "--key",
                       str(tmp / "release.pub.pem")], capsys)
    assert code == 0
    device = tmp / "device"
    shutil.copytree(base, device)
    code, out, _ = _run(["patch", str(device), str(tmp / "u.amcp"), "--key", str(tmp / "release.pub.pem"), "--json"],
                        capsys)
    assert code == 0 and json.loads(out)["version"] == 2
    for name in ("fast.pte", "slow.pte", "arbitrator.pte"):
        assert (device / name).read_bytes() == (tmp / "u.bundle" / name).read_bytes()


@needs_openssl
@pytest.mark.cross
def test_offline_signed_blob_applies_on_the_emulated_pi(release, capsys):
    from amc.ontarget.linux_board import patch_tool
    from amc.targets.presets import get_target
    from amc.targets.qemu import run_on_board

    tmp, base = release
    assert _diff(tmp, base, "--unsigned", "--digest-out", str(tmp / "u.digest"), capsys=capsys)[0] == 0
    signature = subprocess.run(["openssl", "pkeyutl", "-sign", "-rawin", "-inkey", str(tmp / "release.pem"),
                                "-in", str(tmp / "u.digest")], capture_output=True, check=True).stdout
    (tmp / "u.sig").write_bytes(signature)
    assert _run(["sign", str(tmp / "u.amcp"), "--signature", str(tmp / "u.sig"), "--key",
                 str(tmp / "release.pub.pem")], capsys)[0] == 0
    assert _run(["key", "public", str(tmp / "release.pem"), "--format", "raw", "-o", str(tmp / "device.pub")],
                capsys)[0] == 0
    target = get_target("rpi4")
    device = tmp / "device"
    shutil.copytree(base, device)
    applied = run_on_board(target, patch_tool(target), ["apply", "--dir", device, "--key", tmp / "device.pub",
                                                        tmp / "u.amcp"])
    assert applied.returncode == 0, applied.stderr
    for name in ("fast.pte", "slow.pte", "arbitrator.pte"):
        assert (device / name).read_bytes() == (tmp / "u.bundle" / name).read_bytes()
