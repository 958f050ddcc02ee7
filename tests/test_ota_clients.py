"""The OTA clients fleets run, on this host, delivering .amcp blobs through amc-ota and the host
amc-patch: Debian's mender-client 3.4 (standalone `mender install`, then `mender commit` or
`mender rollback`) with the Update Module device/ota/mender/amc, and swupdate 2022.12
(`swupdate -i`, signed images as Debian's build requires) with the Lua handlers of
device/ota/swupdate.

A good artifact installs, passes the health check and commits (the bundle is the new one, the
counter the blob's version); a bad blob (tampered, signed with a key the device does not trust,
made for another base) fails the client with the bundle byte for byte as it was and the counter
untouched; a failing health check rolls back. The small-bundle tests use a stub health check (the
bundle is two files no runner can run); the end-to-end tests run a real weight update of the
small rpi4 bundle with `amc-runner check`, built for this host, as the health check."""

from __future__ import annotations

import subprocess
import wave
from pathlib import Path

import pytest

from amc.compiler.release import ANY_REVISION, write_mender, write_swu
from amc.ontarget.ota import client_succeeded, signing_pair
from amc.patch import blob as pb
from tests.ota_fixtures import (Device, make_device, mender_unavailable, run_mender, run_swupdate, runner_health_check,
                                stub_health_check, swupdate_unavailable, write_golden)

BASE = {"fast.pte": bytes(range(256)) * 8, "slow.pte": bytes(reversed(range(256))) * 8}
RECORDS = [pb.SparseRecord(0, 0, 512, 1, (3, 9), (5, -7)), pb.RawRecord(1, 100, b"\x01\x02")]
VERSION = 3
CLIENTS = ["mender", "swupdate"]


def _skip_without(client: str) -> None:
    reason = mender_unavailable() if client == "mender" else swupdate_unavailable()
    if reason:
        pytest.skip(reason)


def _wav(path: Path) -> Path:
    with wave.open(str(path), "wb") as out:
        out.setnchannels(1), out.setsampwidth(2), out.setframerate(16000)
        out.writeframes(bytes(2 * 16000))
    return path


def _counter(version: int) -> bytes:
    return b"AMCV" + version.to_bytes(8, "little")


def _payload(blob: bytes, tmp: Path, golden_text: str | None, version: int = VERSION) -> dict[str, bytes]:
    payload = {f"amc-model-{version}.amcp": blob}
    if golden_text is not None:
        folder = write_golden(tmp / "golden", _wav(tmp / "speech.wav"), golden_text, 0.25)
        payload["golden.wav"] = (folder / "golden.wav").read_bytes()
        payload["golden.check"] = (folder / "golden.check").read_bytes()
    return payload


def _artifact(client: str, tmp: Path, payload: dict[str, bytes], name: str = "update",
              version: int = VERSION) -> Path:
    """The artifact of `payload` as amc release writes it, whatever the blob holds (amc release
    itself refuses a blob it cannot read)."""
    if client == "mender":
        out = tmp / f"{name}.mender"
        write_mender(out, f"amc-model-{version}", "rpi4", payload, version, None)
    else:
        out = tmp / f"{name}.swu"
        key, cert = signing_pair(tmp / "signer")
        write_swu(out, f"amc-model-{version}", "rpi4", [ANY_REVISION], payload, version, key, cert)
    return out


def _install(client: str, device: Device, artifact: Path) -> tuple[int, str]:
    """Install with the client: Mender's install (the states up to ArtifactInstall, then it waits
    for commit or rollback), SWUpdate's whole update. (exit status, output)."""
    if client == "mender":
        run = run_mender(device, "install", str(artifact))
    else:
        run = run_swupdate(device, artifact, artifact.parent / "signer" / "swupdate-signer.crt")
    return run.returncode, run.stdout + run.stderr


def _device(tmp: Path, golden_dir: Path | None = None) -> tuple[Device, bytes]:
    key = pb.example_signing_key()
    return make_device(tmp / "device", BASE, [pb.public_key(key)], stub_health_check(tmp), golden_dir), key


@pytest.mark.parametrize("client", CLIENTS)
def test_good_artifact_installs_checks_and_commits(client, tmp_path):
    _skip_without(client)
    device, key = _device(tmp_path)
    blob, new = pb.make_blob(BASE, RECORDS, VERSION, key)
    artifact = _artifact(client, tmp_path, _payload(blob, tmp_path, "pass: the expected text"))
    code, log = _install(client, device, artifact)
    assert client_succeeded(client, code, log), log[-3000:]
    assert device.files() == new
    assert "health check passed" in log
    if client == "mender":                     # installed, not committed: the counter waits for commit
        assert device.counter_bytes() is None
        commit = run_mender(device, "commit")
        assert commit.returncode == 0, commit.stderr[-2000:]
        assert "status=committed version=3" in commit.stdout + commit.stderr
        shown = run_mender(device, "show-artifact")
        assert shown.stdout.strip() == f"amc-model-{VERSION}"
    assert device.counter_bytes()[:12] == _counter(VERSION)
    assert device.files() == new
    # the same version again: not newer than the installed one, refused, nothing changes
    code, log = _install(client, device, artifact)
    assert code != 0
    assert device.files() == new and device.counter_bytes()[:12] == _counter(VERSION)


def _refused_blobs(key: bytes) -> dict[str, bytes]:
    good, _ = pb.make_blob(BASE, RECORDS, VERSION, key)
    tampered = bytearray(good)
    tampered[len(good) // 2] ^= 0x40
    other_key, _ = pb.make_blob(BASE, RECORDS, VERSION, bytes(range(32)))
    other = {"fast.pte": bytes(2048), "slow.pte": bytes(2048)}
    other_base, _ = pb.make_blob(other, RECORDS, VERSION, key)
    return {"tampered": bytes(tampered), "wrong-key": other_key, "wrong-base": other_base}


@pytest.mark.parametrize("client", CLIENTS)
@pytest.mark.parametrize("kind", ["tampered", "wrong-key", "wrong-base"])
def test_refused_blob_fails_the_client_and_leaves_the_bundle(client, kind, tmp_path):
    _skip_without(client)
    device, key = _device(tmp_path)
    artifact = _artifact(client, tmp_path, _payload(_refused_blobs(key)[kind], tmp_path, "pass"))
    code, log = _install(client, device, artifact)
    assert code != 0, log[-3000:]
    assert "amc-patch refused" in log
    assert device.files() == BASE                 # byte for byte
    assert device.counter_bytes() is None
    if client == "mender":                         # nothing left for commit: Mender failed the update
        assert run_mender(device, "commit").returncode != 0
        assert device.files() == BASE


@pytest.mark.parametrize("client", CLIENTS)
def test_failing_health_check_rolls_back(client, tmp_path):
    _skip_without(client)
    device, key = _device(tmp_path)
    blob, _ = pb.make_blob(BASE, RECORDS, VERSION, key)
    artifact = _artifact(client, tmp_path, _payload(blob, tmp_path, "a text the model does not say"))
    code, log = _install(client, device, artifact)
    assert code != 0, log[-3000:]
    assert "status=installed" in log and "health check failed" in log and "status=rolled-back" in log
    assert device.files() == BASE
    assert device.counter_bytes() is None


def test_update_while_another_waits_for_its_commit_changes_nothing(tmp_path):
    device, key = _device(tmp_path)
    first, new = pb.make_blob(BASE, RECORDS, VERSION, key)
    second, _ = pb.make_blob(BASE, RECORDS, VERSION + 1, key)
    (tmp_path / "first.amcp").write_bytes(first)
    (tmp_path / "second.amcp").write_bytes(second)
    golden = str(write_golden(tmp_path / "golden", _wav(tmp_path / "speech.wav"), "pass", 0.25))
    amc_ota = [device.env["AMC_OTA"]]
    run = subprocess.run(amc_ota + ["install", str(tmp_path / "first.amcp"), golden], env=device.env,
                         capture_output=True, text=True)
    assert run.returncode == 0, run.stderr
    run = subprocess.run(amc_ota + ["update", str(tmp_path / "second.amcp"), golden], env=device.env,
                         capture_output=True, text=True)
    assert run.returncode == 1
    assert "changed nothing" in run.stderr and "half patched" not in run.stderr
    assert device.files() == new and device.counter_bytes() is None     # the first one still waits
    run = subprocess.run(amc_ota + ["commit"], env=device.env, capture_output=True, text=True)
    assert run.returncode == 0 and device.counter_bytes()[:12] == _counter(VERSION)


def test_mender_rollback_after_install_restores_the_base(tmp_path):
    _skip_without("mender")
    device, key = _device(tmp_path)
    blob, new = pb.make_blob(BASE, RECORDS, VERSION, key)
    code, log = _install("mender", device, _artifact("mender", tmp_path, _payload(blob, tmp_path, "pass")))
    assert code == 0 and device.files() == new, log[-3000:]
    rollback = run_mender(device, "rollback")
    assert rollback.returncode == 0, rollback.stderr[-2000:]
    assert device.files() == BASE and device.counter_bytes() is None


@pytest.mark.parametrize("client", CLIENTS)
def test_the_image_golden_utterance_checks_an_update_that_carries_none(client, tmp_path):
    """No golden utterance in the artifact: the image's (AMC_GOLDEN_DIR) decides; with none there
    either, the check fails and the patch is rolled back (never committed unchecked)."""
    _skip_without(client)
    image_golden = write_golden(tmp_path / "image-golden", _wav(tmp_path / "image.wav"), "pass: image", 0.1)
    device, key = _device(tmp_path, image_golden)
    blob, new = pb.make_blob(BASE, RECORDS, VERSION, key)
    code, log = _install(client, device, _artifact(client, tmp_path, _payload(blob, tmp_path, None)))
    assert client_succeeded(client, code, log), log[-3000:]
    assert f"{image_golden}/golden.wav within max_cer 0.1" in log and device.files() == new

    bare, key = _device(tmp_path / "bare")
    blob, _ = pb.make_blob(BASE, RECORDS, VERSION, key)
    code, log = _install(client, bare, _artifact(client, tmp_path / "bare", _payload(blob, tmp_path / "bare", None)))
    assert code != 0 and "no golden utterance" in log
    assert bare.files() == BASE


def test_mender_module_refuses_payload_files_it_does_not_know(tmp_path):
    _skip_without("mender")
    device, key = _device(tmp_path)
    blob, _ = pb.make_blob(BASE, RECORDS, VERSION, key)
    payload = _payload(blob, tmp_path, "pass") | {"install.sh": b"#!/bin/sh\n"}
    code, log = _install("mender", device, _artifact("mender", tmp_path, payload))
    assert code != 0 and "payload files an amc artifact does not carry: install.sh" in log
    assert device.files() == BASE


# ---- end to end: a real weight update, amc-runner check as the health check ---------------------------

@pytest.fixture(scope="module")
def weight_update(tmp_path_factory):
    """The small rpi4 bundle, a signed weight update of it, the new bundle, a golden WAV and the
    text the new bundle transcribes it as (on this host; the board gives the same)."""
    from amc.compiler.scoring import transcribe_path
    from amc.ontarget.recording import make_weight_update
    from tests.ondevice_fixtures import fixture_bundle

    bundle, audio = fixture_bundle()
    work = tmp_path_factory.mktemp("weight-update")
    new_bundle, blob, public = make_weight_update(bundle, work)
    wav = sorted(audio.glob("*.wav"))[0]
    text = transcribe_path(new_bundle, [wav])["results"][0]["text"]
    return bundle, new_bundle, blob, public, wav, text


def _graph_files(bundle: Path) -> dict[str, bytes]:
    """What amc-patch changes on the device: the graphs and the front end (the device's manifest.json
    keeps the base's sha256 entries; the runner does not read them)."""
    return {p.name: p.read_bytes() for p in sorted(bundle.iterdir()) if p.suffix in (".pte", ".bin")}


@pytest.mark.toolchain
@pytest.mark.parametrize("client", CLIENTS)
def test_real_update_checked_by_amc_runner(client, weight_update, tmp_path):
    _skip_without(client)
    bundle, new_bundle, blob, public, wav, text = weight_update
    assert text, "the new bundle transcribes the golden utterance as nothing: no check to make"
    check = runner_health_check(tmp_path)
    files = {p.name: p.read_bytes() for p in bundle.iterdir() if p.is_file()}
    for name, expected, succeeds in (("good", text, True), ("bad", text + " and more words", False)):
        device = make_device(tmp_path / name, files, [public], check)
        golden = write_golden(tmp_path / f"golden-{name}", wav, expected, 0.0)
        payload = {"amc-model-2.amcp": blob.read_bytes(), "golden.wav": (golden / "golden.wav").read_bytes(),
                   "golden.check": (golden / "golden.check").read_bytes()}
        artifact = _artifact(client, tmp_path, payload, name, version=2)
        code, log = _install(client, device, artifact)
        assert client_succeeded(client, code, log) if succeeds else code != 0, log[-3000:]
        assert "cer=0.0000 max_cer=0.0000" in log if succeeds else "health check failed" in log
        if succeeds and client == "mender":
            assert run_mender(device, "commit").returncode == 0
        assert _graph_files(device.model) == _graph_files(new_bundle if succeeds else bundle)
        assert device.counter_bytes()[:12] == _counter(2) if succeeds else device.counter_bytes() is None
