"""`amc image`: the device-image overlay for rpi4 is reproducible, every file is in its sha256
manifest, its programs run under qemu-aarch64 from the overlay's own layout, and its boot script
resumes and applies a pending patch."""

from __future__ import annotations

import hashlib
import json
import os
import shutil
import subprocess
from pathlib import Path

import pytest

from amc.common.errors import InputError
from tests.ondevice_fixtures import fixture_bundle

REPO = Path(__file__).resolve().parent.parent
BOOT = REPO / "device" / "boot"


@pytest.fixture(scope="module")
def rpi4_bundle():
    return fixture_bundle()[0]


def _tree(root: Path) -> dict[str, tuple[bytes, int, int]]:
    return {p.relative_to(root).as_posix(): (p.read_bytes(), p.stat().st_mode & 0o777, int(p.stat().st_mtime))
            for p in sorted(root.rglob("*")) if p.is_file()}


@pytest.mark.cross
def test_rpi4_overlay_is_reproducible_and_runs_under_qemu(rpi4_bundle, tmp_path, monkeypatch):
    from amc.compiler.image import build_image

    monkeypatch.setenv("SOURCE_DATE_EPOCH", "1700000000")
    key = tmp_path / "patch.pub"
    key.write_bytes(bytes(range(32)))
    first = build_image("rpi4", rpi4_bundle, tmp_path / "a", key)
    build_image("rpi4", rpi4_bundle, tmp_path / "b", key)
    assert _tree(tmp_path / "a") == _tree(tmp_path / "b")
    build_image("rpi4", rpi4_bundle, tmp_path / "a.tar.gz", key)
    build_image("rpi4", rpi4_bundle, tmp_path / "b.tar.gz", key)
    assert (tmp_path / "a.tar.gz").read_bytes() == (tmp_path / "b.tar.gz").read_bytes()

    overlay = tmp_path / "a"
    manifest = json.loads((overlay / "amc-image.json").read_text())
    listed = {f["path"]: f for f in manifest["files"]}
    on_disk = {p for p in _tree(overlay) if p != "amc-image.json"}
    assert set(listed) == on_disk
    for path, entry in listed.items():
        assert hashlib.sha256((overlay / path).read_bytes()).hexdigest() == entry["sha256"], path
    for required in ("usr/bin/amc-runner", "usr/bin/amc-patch", "usr/lib/amc/libexecutorch.so",
                     "usr/lib/amc/libamc_patch.a", "usr/include/amc/amc_patch.h", "var/lib/amc/model/manifest.json",
                     "var/lib/amc/model/slow.pte", "lib/systemd/system/amc-patch.service",
                     "usr/libexec/amc/amc-apply-pending", "etc/init.d/S40amc-patch", "etc/amc/patch.pub"):
        assert required in listed, required
    assert listed["usr/bin/amc-runner"]["mode"] == "0755"
    assert first["target"] == "rpi4" and first["bundle"]["path"] == "var/lib/amc/model"

    # the overlay's own files run on the emulated board: the runner finds its libraries via RUNPATH
    from amc.targets.presets import get_target
    from amc.targets.qemu import qemu_user
    run = subprocess.run([*qemu_user(get_target("rpi4")), str(overlay / "usr/bin/amc-runner"), "info",
                          str(overlay / "var/lib/amc/model")], capture_output=True, text=True, timeout=300)
    assert run.returncode == 0, run.stderr[-500:]
    assert "target=rpi4 backend=executorch runner_target=rpi4" in run.stdout
    patch = subprocess.run([*qemu_user(get_target("rpi4")), str(overlay / "usr/bin/amc-patch"), "status", "--dir",
                            str(overlay / "var/lib/amc/model")], capture_output=True, text=True, timeout=300)
    assert patch.returncode == 0, patch.stderr
    _overlay_amc_patch_checks_signatures(overlay, tmp_path)


def _overlay_amc_patch_checks_signatures(overlay: Path, tmp_path: Path) -> None:
    """The overlay's (stripped, libsodium-static) amc-patch under qemu-aarch64: a blob signed with
    another key is refused with the model untouched, the one signed with the device's key applies."""
    from amc.patch import blob as pb
    from amc.targets.presets import get_target
    from amc.targets.qemu import qemu_user

    model = tmp_path / "device-model"
    shutil.copytree(overlay / "var/lib/amc/model", model)
    base = {name: (model / name).read_bytes() for name in ("fast.pte", "slow.pte")}
    records = [pb.RawRecord(0, 64, b"\x01\x02\x03"), pb.RawRecord(1, 128, b"\x7f")]
    key, other = pb.example_signing_key(), hashlib.sha256(b"not the device's key").digest()
    (tmp_path / "device.pub").write_bytes(pb.public_key(key))
    tool = [*qemu_user(get_target("rpi4")), str(overlay / "usr/bin/amc-patch")]
    forged, _ = pb.make_blob(base, records, 7, other)
    (tmp_path / "forged.amcp").write_bytes(forged)
    refused = subprocess.run([*tool, "apply", "--dir", str(model), "--key", str(tmp_path / "device.pub"),
                              str(tmp_path / "forged.amcp")], capture_output=True, text=True, timeout=300)
    assert refused.returncode == 6, refused.stderr                   # AMC_E_SIGNATURE
    assert all((model / name).read_bytes() == data for name, data in base.items())
    blob, new = pb.make_blob(base, records, 7, key)
    (tmp_path / "update.amcp").write_bytes(blob)
    applied = subprocess.run([*tool, "apply", "--dir", str(model), "--key", str(tmp_path / "device.pub"),
                              str(tmp_path / "update.amcp")], capture_output=True, text=True, timeout=300)
    assert applied.returncode == 0, applied.stderr
    assert all((model / name).read_bytes() == data for name, data in new.items())


def test_overlay_refuses_a_bundle_of_another_target(tmp_path):
    from amc.compiler.image import build_image

    bundle = tmp_path / "b"
    bundle.mkdir()
    graphs = {g: {"file": f"{g}.pte"} for g in ("fast", "slow", "arbitrator")}
    (bundle / "manifest.json").write_text(json.dumps({"schema": "amc-bundle", "schema_version": 1,
                                                      "target": "cortex-m4", "backend": "tflite", "graphs": graphs}))
    with pytest.raises(InputError, match="for target 'cortex-m4', not 'rpi4'"):
        build_image("rpi4", bundle, tmp_path / "out")


def test_boot_script_resumes_then_applies_the_pending_patch(tmp_path):
    """amc-apply-pending with the host build of amc-patch: the pending blob is applied to the model
    folder and moves to applied/; a blob for another base moves to rejected/, the model unchanged."""
    from amc.patch import blob as pb
    from amc.runtime.apply import host_cli

    if shutil.which("sh") is None:
        pytest.skip("no POSIX shell")
    cli = host_cli()
    model, pending = tmp_path / "model", tmp_path / "pending"
    model.mkdir(), pending.mkdir()
    base = {"fast.pte": bytes(range(256)) * 8, "slow.pte": bytes(reversed(range(256))) * 8}
    for name, data in base.items():
        (model / name).write_bytes(data)
    key = pb.example_signing_key()
    blob, new = pb.make_blob(base, [pb.SparseRecord(0, 0, 512, 1, (3, 9), (5, -7)),
                                    pb.RawRecord(1, 100, b"\x01\x02")], 3, key)
    (pending / "0001-update.amcp").write_bytes(blob)
    other = {"fast.pte": bytes(2048), "slow.pte": bytes(2048)}
    stray, _ = pb.make_blob(other, [pb.RawRecord(0, 0, b"\x09")], 4, key)
    (pending / "0002-other.amcp").write_bytes(stray)
    (tmp_path / "patch.pub").write_bytes(pb.public_key(key))
    env = dict(os.environ, AMC_MODEL_DIR=str(model), AMC_PENDING_DIR=str(pending),
               AMC_PUBLIC_KEY=str(tmp_path / "patch.pub"), AMC_PATCH=str(cli))
    run = subprocess.run(["sh", str(BOOT / "amc-apply-pending")], env=env, capture_output=True, text=True, timeout=120)
    assert run.returncode == 1, run.stderr          # one blob refused
    assert (pending / "applied" / "0001-update.amcp").exists()
    assert (pending / "rejected" / "0002-other.amcp").exists()
    assert not list(pending.glob("*.amcp"))
    for name, data in new.items():
        assert (model / name).read_bytes() == data
    again = subprocess.run(["sh", str(BOOT / "amc-apply-pending")], env=env, capture_output=True, text=True, timeout=120)
    assert again.returncode == 0                    # nothing pending: a quiet boot
