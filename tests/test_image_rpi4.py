"""`amc image`: the device-image overlay for rpi4 is reproducible, every file is in its sha256
manifest, its programs run under qemu-aarch64 from the overlay's own layout, it trusts the keyring
it is given (and no key without one), and its boot script resumes and applies a pending patch,
and refuses to with no trusted key."""

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
    release, pem, raw = _release_keys(tmp_path)
    ring = [pem, raw]
    first = build_image("rpi4", rpi4_bundle, tmp_path / "a", ring)
    build_image("rpi4", rpi4_bundle, tmp_path / "b", ring)
    assert _tree(tmp_path / "a") == _tree(tmp_path / "b")
    build_image("rpi4", rpi4_bundle, tmp_path / "a.tar.gz", ring)
    build_image("rpi4", rpi4_bundle, tmp_path / "b.tar.gz", ring)
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
                     "usr/libexec/amc/amc-apply-pending", "etc/init.d/S40amc-patch",
                     "var/lib/amc/model/frontend.bin", "lib/systemd/system/amc-listen.service"):
        assert required in listed, required
    listen = (overlay / "lib/systemd/system/amc-listen.service").read_text()
    assert "arecord -q -D \"$AMC_MIC\" -f S16_LE -r 16000 -c 1 -t raw | exec /usr/bin/amc-runner listen" in listen
    _check_keyring(overlay, first, {release.public, raw.read_bytes()})
    assert listed["usr/bin/amc-runner"]["mode"] == "0755"
    assert first["target"] == "rpi4" and first["bundle"]["path"] == "var/lib/amc/model"

    # the overlay's own files run on the emulated board: the runner finds its libraries via RUNPATH
    from amc.targets.presets import get_target
    from amc.targets.qemu import qemu_user
    run = subprocess.run([*qemu_user(get_target("rpi4")), str(overlay / "usr/bin/amc-runner"), "info",
                          str(overlay / "var/lib/amc/model")], capture_output=True, text=True, timeout=300)
    assert run.returncode == 0, run.stderr[-500:]
    assert "target=rpi4 backend=executorch runner_target=rpi4" in run.stdout
    # and the overlay's runner hears the overlay's bundle: PCM on stdin, as the listen unit pipes it
    heard = subprocess.run([*qemu_user(get_target("rpi4")), str(overlay / "usr/bin/amc-runner"), "listen",
                            str(overlay / "var/lib/amc/model"), "-"], input=bytes(2 * 16000), capture_output=True,
                           timeout=300)
    assert heard.returncode == 0 and b"listen frames=" in heard.stdout, heard.stderr[-500:]
    patch = subprocess.run([*qemu_user(get_target("rpi4")), str(overlay / "usr/bin/amc-patch"), "status", "--dir",
                            str(overlay / "var/lib/amc/model")], capture_output=True, text=True, timeout=300)
    assert patch.returncode == 0, patch.stderr
    _overlay_amc_patch_checks_signatures(overlay, tmp_path, release.seed)


def _release_keys(tmp_path: Path):
    """A release key (its public half as SubjectPublicKeyInfo PEM) and a second public key as 32 raw bytes."""
    from amc.patch import keys

    keys.generate_key(tmp_path / "release.pem")
    release = keys.load_signing_key(tmp_path / "release.pem")
    pem = tmp_path / "release.pub.pem"
    pem.write_bytes(keys.public_key_text(release.public, "pem"))
    keys.generate_key(tmp_path / "next.pem")
    raw = tmp_path / "next.pub"
    raw.write_bytes(keys.load_signing_key(tmp_path / "next.pem").public)
    return release, pem, raw


def _check_keyring(overlay: Path, image: dict, publics: set[bytes]) -> None:
    from amc.patch import keys

    ring = sorted((overlay / "etc/amc/keys").iterdir())
    assert {p.read_bytes() for p in ring} == publics
    assert {p.name for p in ring} == {f"{keys.fingerprint(k)[:16]}.pub" for k in publics}
    assert image["keyring"] == sorted(keys.fingerprint(k) for k in publics)
    assert image["development_key"] is False
    assert not (overlay / "etc/amc/patch.pub").exists()


def _overlay_amc_patch_checks_signatures(overlay: Path, tmp_path: Path, seed: bytes) -> None:
    """The overlay's (stripped, libsodium-static) amc-patch under qemu-aarch64 with the overlay's
    keyring: a blob signed with another key is refused with the model untouched, the one signed
    with a key of the ring applies."""
    from amc.patch import blob as pb
    from amc.targets.presets import get_target
    from amc.targets.qemu import qemu_user

    model = tmp_path / "device-model"
    shutil.copytree(overlay / "var/lib/amc/model", model)
    base = {name: (model / name).read_bytes() for name in ("fast.pte", "slow.pte")}
    records = [pb.RawRecord(0, 64, b"\x01\x02\x03"), pb.RawRecord(1, 128, b"\x7f")]
    key, other = seed, hashlib.sha256(b"not the device's key").digest()
    ring = ["--keyring", str(overlay / "etc/amc/keys")]
    tool = [*qemu_user(get_target("rpi4")), str(overlay / "usr/bin/amc-patch")]
    forged, _ = pb.make_blob(base, records, 7, other)
    (tmp_path / "forged.amcp").write_bytes(forged)
    refused = subprocess.run([*tool, "apply", "--dir", str(model), *ring,
                              str(tmp_path / "forged.amcp")], capture_output=True, text=True, timeout=300)
    assert refused.returncode == 6, refused.stderr                   # AMC_E_SIGNATURE
    assert all((model / name).read_bytes() == data for name, data in base.items())
    blob, new = pb.make_blob(base, records, 7, key)
    (tmp_path / "update.amcp").write_bytes(blob)
    applied = subprocess.run([*tool, "apply", "--dir", str(model), *ring,
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
    (tmp_path / "keys").mkdir()
    (tmp_path / "keys" / "device.pub").write_bytes(pb.public_key(key))
    counter = tmp_path / "installed-version"
    env = dict(os.environ, AMC_MODEL_DIR=str(model), AMC_PENDING_DIR=str(pending),
               AMC_KEYRING=str(tmp_path / "keys"), AMC_COUNTER=str(counter), AMC_PATCH=str(cli))
    run = subprocess.run(["sh", str(BOOT / "amc-apply-pending")], env=env, capture_output=True, text=True, timeout=120)
    assert run.returncode == 1, run.stderr          # one blob refused
    assert (pending / "applied" / "0001-update.amcp").exists()
    assert (pending / "rejected" / "0002-other.amcp").exists()
    assert not list(pending.glob("*.amcp"))
    for name, data in new.items():
        assert (model / name).read_bytes() == data
    assert counter.read_bytes()[:12] == b"AMCV" + (3).to_bytes(8, "little")   # the version it installed
    again = subprocess.run(["sh", str(BOOT / "amc-apply-pending")], env=env, capture_output=True, text=True, timeout=120)
    assert again.returncode == 0                    # nothing pending: a quiet boot


def test_boot_script_refuses_with_no_trusted_key_and_leaves_the_blobs(tmp_path):
    """An empty keyring: amc-apply-pending says so, exits 2 (the boot unit fails) and neither
    applies nor moves a pending blob; a key file amc-patch refuses does the same."""
    from amc.patch import blob as pb
    from amc.runtime.apply import host_cli

    if shutil.which("sh") is None:
        pytest.skip("no POSIX shell")
    model, pending, ring = tmp_path / "model", tmp_path / "pending", tmp_path / "keys"
    for folder in (model, pending, ring):
        folder.mkdir()
    base = {"fast.pte": bytes(range(256)) * 8}
    (model / "fast.pte").write_bytes(base["fast.pte"])
    blob, _ = pb.make_blob(base, [pb.RawRecord(0, 0, b"\x01")], 3, pb.example_signing_key())
    (pending / "0001-update.amcp").write_bytes(blob)
    env = dict(os.environ, AMC_MODEL_DIR=str(model), AMC_PENDING_DIR=str(pending), AMC_KEYRING=str(ring),
               AMC_COUNTER=str(tmp_path / "installed-version"), AMC_PATCH=str(host_cli()))
    for attempt in ("empty", "bad key file"):
        run = subprocess.run(["sh", str(BOOT / "amc-apply-pending")], env=env, capture_output=True, text=True,
                             timeout=120)
        assert run.returncode == 2, (attempt, run.stderr)
        if attempt == "empty":
            assert f"no trusted keys in {ring}: refusing to apply patches" in run.stderr
        assert [p.name for p in pending.iterdir()] == ["0001-update.amcp"], attempt
        assert (model / "fast.pte").read_bytes() == base["fast.pte"]
        (ring / "device.pub").write_bytes(bytes(31))          # the next attempt: a truncated key


def _fake_bundle(path: Path, target: str, backend: str) -> Path:
    """A bundle's manifest and graph files (and a C source of model data), enough for the image's checks."""
    path.mkdir()
    graphs = {g: {"file": f"{g}.bin", "sha256": "0" * 64} for g in ("fast", "slow", "arbitrator")}
    for g in graphs:
        (path / f"{g}.bin").write_bytes(b"graph")
    (path / "model_data.c").write_text("const unsigned char amc_model_fast[1] = {0};\n")
    (path / "manifest.json").write_text(json.dumps({"schema": "amc-bundle", "schema_version": 1, "target": target,
                                                    "backend": backend, "graphs": graphs}))
    return path


def test_image_needs_an_explicit_key_and_refuses_duplicates(tmp_path):
    from amc.compiler.image import NO_KEY, build_image
    from amc.patch import keys

    bundle = _fake_bundle(tmp_path / "b", "rpi4", "executorch")
    with pytest.raises(InputError) as refused:
        build_image("rpi4", bundle, tmp_path / "out")                 # refused before anything is built
    assert str(refused.value) == NO_KEY
    _, pem, raw = _release_keys(tmp_path)
    copy = tmp_path / "copy.pub"
    copy.write_bytes(raw.read_bytes())
    with pytest.raises(InputError, match=f"{copy}: the same key as {raw}"):
        build_image("rpi4", bundle, tmp_path / "out", [pem, raw, copy])
    (tmp_path / "dev.pub").write_bytes(keys.development_key().public)
    with pytest.raises(InputError, match="development key.*--dev-key"):
        build_image("rpi4", bundle, tmp_path / "out", [tmp_path / "dev.pub"])
    (tmp_path / "junk.pub").write_text("not a key")
    with pytest.raises(InputError, match="junk.pub: not a key file"):
        build_image("rpi4", bundle, tmp_path / "out", [tmp_path / "junk.pub"])
    assert not (tmp_path / "out").exists()


def test_mcu_image_carries_the_keyring_as_c_and_marks_the_development_key(tmp_path):
    from amc.compiler.image import build_image
    from amc.patch import keys

    bundle = _fake_bundle(tmp_path / "b", "cortex-m4", "tflite")
    _, pem, _ = _release_keys(tmp_path)
    image = build_image("cortex-m4", bundle, tmp_path / "out", [pem], dev_key=True)
    dev, release = keys.development_key().public, keys.load_public_key(pem)
    assert image["development_key"] is True
    assert image["keyring"] == sorted(keys.fingerprint(k) for k in (dev, release))
    manifest = json.loads((tmp_path / "out" / "amc-image.json").read_text())
    assert manifest["development_key"] is True and manifest["keyring"] == image["keyring"]
    header = (tmp_path / "out" / "keys" / "amc_keys.h").read_text()
    source = (tmp_path / "out" / "keys" / "amc_keys.c").read_text()
    assert "#define AMC_TRUSTED_KEYS 2u" in header and keys.fingerprint(dev) in header
    for public in (dev, release):
        assert ", ".join(f"0x{b:02x}" for b in public[:8]) in source
    assert "keys/amc_keys.c" in (tmp_path / "out" / "amc.cmake").read_text()
    compiler = shutil.which("cc") or shutil.which("gcc")
    if compiler:                                                    # the firmware's flags of the runtime
        probe = tmp_path / "probe.c"
        probe.write_text('#include "amc_keys.h"\nint main(void) { return amc_trusted_keys[1][0] == 0 '
                         '&& AMC_TRUSTED_KEYS == 2u; }\n')
        subprocess.run([compiler, "-std=c99", "-Wall", "-Wextra", "-Wpedantic", "-Werror", "-I",
                        str(tmp_path / "out" / "keys"), str(probe), str(tmp_path / "out" / "keys" / "amc_keys.c"),
                        "-o", str(tmp_path / "probe")], check=True, capture_output=True)


def test_image_cli_takes_repeated_keys_and_warns_of_the_development_key(tmp_path, capsys, monkeypatch):
    import amc.compiler.image as image_module
    from amc.cli import main
    from amc.patch.keys import DEV_IMAGE_WARNING

    bundle = _fake_bundle(tmp_path / "b", "cortex-m4", "tflite")
    _, pem, raw = _release_keys(tmp_path)
    given = {}
    real = image_module.build_image

    def spy(target, bundle, output, public_keys=(), dev_key=False, report=None, **golden):
        given.update(public_keys=list(public_keys), dev_key=dev_key)
        return real(target, bundle, output, public_keys, dev_key, **golden)

    monkeypatch.setattr(image_module, "build_image", spy)
    with pytest.raises(SystemExit) as exit_info:
        main(["image", "--target", "cortex-m4", "--bundle", str(bundle), "-o", str(tmp_path / "none")])
    assert exit_info.value.code == InputError.exit_code
    assert "--key KEY.pub (repeat for a keyring) or --dev-key" in capsys.readouterr().err
    with pytest.raises(SystemExit) as exit_info:      # a golden utterance given and one to pick: which?
        main(["image", "--target", "rpi4", "--bundle", str(bundle), "-o", str(tmp_path / "both"), "--dev-key",
              "--golden", str(tmp_path / "g.wav"), "--golden-text", "hi", "--golden-data", str(tmp_path)])
    assert exit_info.value.code == InputError.exit_code
    assert "--golden-data is where a golden utterance is picked when --golden gives none" in capsys.readouterr().err
    assert not (tmp_path / "both").exists()
    try:
        main(["image", "--target", "cortex-m4", "--bundle", str(bundle), "-o", str(tmp_path / "ring"),
              "--key", str(pem), "--key", str(raw), "--json"])
    except SystemExit as exit:
        assert not exit.code
    assert given == {"public_keys": [pem, raw], "dev_key": False}
    captured = capsys.readouterr()
    assert json.loads(captured.out)["development_key"] is False and "DEVELOPMENT" not in captured.err
    try:
        main(["image", "--target", "cortex-m4", "--bundle", str(bundle), "-o", str(tmp_path / "dev"),
              "--dev-key", "--json"])
    except SystemExit as exit:
        assert not exit.code
    captured = capsys.readouterr()
    assert given == {"public_keys": [], "dev_key": True}
    assert json.loads(captured.out)["development_key"] is True
    assert f"amc: warning: {DEV_IMAGE_WARNING}" in " ".join(captured.err.split())
