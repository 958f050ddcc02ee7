"""`amc image --target T -o DIR|FILE.tar.gz`: the device-image overlay a firmware team copies
into a Yocto or Buildroot root filesystem (or unpacks from the tarball).

Linux boards (rpi4):

    usr/bin/amc-runner                  streaming runner (device/runner), cross-compiled
    usr/bin/amc-patch                   the patch runtime's CLI, cross-compiled
    usr/lib/amc/lib*.so                 the ExecuTorch runtime libraries amc-runner links
    usr/lib/amc/libamc_patch.a ...      the patch runtime libraries, for firmware that links them
    usr/include/amc/amc_patch.h ...     their headers
    usr/libexec/amc/amc-apply-pending   boot step: resume a half-applied patch, apply a pending one
    lib/systemd/system/amc-patch.service   oneshot unit running it before amc-runner users start
    lib/systemd/system/amc-listen.service  transcribes the microphone (arecord | amc-runner listen); not enabled
    etc/init.d/S40amc-patch             the same for SysV-init / BusyBox images
    etc/amc/keys/<fingerprint>.pub      the keyring: the Ed25519 public keys patches may be signed with
    var/lib/amc/model/                  the bundle (writable: patches apply to it in place)
    var/lib/amc/pending/                where a downloaded .amcp waits for the next boot
    usr/libexec/amc/amc-ota             OTA steps: install + health check, commit, rollback (device/ota)
    usr/share/mender/modules/v3/amc     the Mender Update Module for `amc release --mender` artifacts
    usr/share/lua/5.3/amc_swupdate.lua  the SWUpdate Lua handlers (amcp, amcp-golden) for `--swupdate`
    usr/share/lua/5.3/swupdate_handlers.lua   what SWUpdate requires at start-up: loads amc_swupdate
    etc/amc/ota.conf                    amc-ota's settings (paths, health-check command), all defaults
    usr/share/amc/golden/golden.wav     the image's golden utterance, for updates that carry none
    usr/share/amc/golden/golden.check   its expected text and tolerance (text=..., max_cer=...)
    amc-image.json                      every file's sha256, size and mode; target and versions

Microcontrollers (cortex-m4, cortex-m7): the C sources and headers of the model data (the
bundle's TFLite Micro arrays), the runtime sources and headers, and `amc.cmake`, a snippet a
firmware project's CMakeLists.txt includes; the keyring as C arrays, `keys/amc_keys.h` (and
`keys/amc_keys.c`, which `amc.cmake` compiles into the library).

The golden utterance is the one given (`golden`); else, of the calibration corpus's test split
(or the audio folder `golden_data`), the utterance the bundle transcribes best, with a tolerance of
its CER plus 0.25 (compiler/release.py, `pick_golden`); amc-image.json records which.

An image trusts only the public keys it is given (`public_keys`, several for a rotation; a key
left out is revoked): there is no default. The development key goes in only when asked for
(`dev_key=True`), and the image manifest then says `"development_key": true`.

The output is reproducible: files are written in sorted order with fixed modes and a fixed
mtime (SOURCE_DATE_EPOCH, default 0), and the tarball has sorted members, uid/gid 0, no user
names and a zero gzip timestamp. The same inputs give the same bytes."""

from __future__ import annotations

import gzip
import hashlib
import io
import json
import os
import shutil
import tarfile
import tempfile
from pathlib import Path

from amc.common.errors import InputError, ToolMissingError
from amc.common.paths import device_sources
from amc.common.progress import quiet
from amc.compiler.manifest import read_manifest
from amc.compiler.release import GOLDEN_CHECK, GOLDEN_WAV, Golden, checked_golden, pick_golden
from amc.patch import keys

IMAGE_MANIFEST = "amc-image.json"
IMAGE_SCHEMA = "amc-image"
EXECUTABLE = 0o755
REGULAR = 0o644
RUNNER_LIBRARIES = ("libexecutorch.so", "libexecutorch_threadpool.so", "libexecutorch_kernels_optimized.so",
                    "libexecutorch_kernels_quantized.so", "libexecutorch_backend_xnnpack.so")
"""What amc-runner needs of the executorch wheel's lib/ (its NEEDED entries)."""
BUNDLE_DIR = "var/lib/amc/model"
KEYRING_DIR = "etc/amc/keys"
GOLDEN_DIR = "usr/share/amc/golden"
NO_KEY = ("amc image needs the public keys devices will trust: --key KEY.pub (repeat for a keyring) "
          "or --dev-key for a development image")


def epoch() -> int:
    value = os.environ.get("SOURCE_DATE_EPOCH", "0")
    try:
        return int(value)
    except ValueError:
        raise InputError(f"SOURCE_DATE_EPOCH must be an integer, not '{value}'") from None


def build_image(target_name: str, bundle: Path | str, output: Path | str, public_keys=(), dev_key: bool = False,
                report=quiet, golden: Golden | None = None, golden_data: Path | str | None = None) -> dict:
    """Write the overlay for `target_name` from `bundle` to `output` (a directory, or a
    .tar.gz / .tgz file), trusting the keys in the files `public_keys` (PEM, DER or 32 raw bytes)
    and, with `dev_key`, the development key; on Linux boards with the golden utterance `golden`
    (else one picked from `golden_data`, default the calibration corpus's test split). Returns the
    image manifest."""
    from amc.targets.presets import get_target

    target = get_target(target_name)
    bundle, output = Path(bundle), Path(output)
    manifest = read_manifest(bundle)
    if manifest.get("target") != target.name:
        raise InputError(f"{bundle}: bundle is for target '{manifest.get('target')}', not '{target.name}': "
                         f"compile one with `amc compile --target {target.name}`")
    if not target.triple:
        raise InputError("`amc image` makes overlays for board presets (rpi4, cortex-m4, cortex-m7), not the host")
    keyring = trusted_keys(public_keys, dev_key)
    health = None
    if target.linux:
        health = _golden(bundle, manifest, golden, golden_data, report)
        files = _linux_files(target, bundle, manifest, keyring, report)
        files.update(_ota_files(health))
    else:
        files = _mcu_files(target, bundle, manifest, keyring, report)
    image = {
        "schema": IMAGE_SCHEMA, "schema_version": 1, "target": target.name, "backend": manifest["backend"],
        "bundle": {"path": BUNDLE_DIR if target.linux else "model", "graphs": {
            g: {"file": manifest["graphs"][g]["file"], "sha256": manifest["graphs"][g]["sha256"]}
            for g in ("fast", "slow", "arbitrator")}},
        "tools": {k: v for k, v in manifest.get("tools", {}).items() if v is not None},
        "keyring": sorted(keyring), "development_key": dev_key,
        **({"golden": health["summary"]} if health else {}),
        "files": [{"path": path, "sha256": hashlib.sha256(data).hexdigest(), "bytes": len(data),
                   "mode": f"{mode:04o}"} for path, (data, mode) in sorted(files.items())],
    }
    files[IMAGE_MANIFEST] = ((json.dumps(image, indent=1, sort_keys=True) + "\n").encode(), REGULAR)
    report("write image", 0, 1)
    if output.name.endswith((".tar.gz", ".tgz")):
        _write_tarball(output, files)
    else:
        _write_directory(output, files)
    report("write image", 1, 1)
    return image | {"output": str(output), "file_count": len(files)}


# ---- the keyring ---------------------------------------------------------------------------------

def trusted_keys(public_keys, dev_key: bool) -> dict[str, bytes]:
    """fingerprint -> raw 32-byte public key of every key the image trusts. Refuses none at all, a
    key given twice, and the development key given as a file (it goes in only with `dev_key`)."""
    ring: dict[str, tuple[bytes, str]] = {}
    if isinstance(public_keys, (str, Path)):
        public_keys = [public_keys]
    sources = [(Path(path), keys.load_public_key(path)) for path in public_keys]
    for path, public in sources:
        if keys.is_development_public(public):
            raise InputError(f"{path}: the development key's public half; devices trust it only in a "
                             f"development image: pass --dev-key instead")
    if dev_key:
        sources.append(("the development key", keys.development_key().public))
    if not sources:
        raise InputError(NO_KEY)
    for source, public in sources:
        fingerprint = keys.fingerprint(public)
        if fingerprint in ring:
            raise InputError(f"{source}: the same key as {ring[fingerprint][1]} (sha256 {fingerprint[:16]}); "
                             f"give each key once")
        ring[fingerprint] = (public, str(source))
    return {fingerprint: public for fingerprint, (public, _) in ring.items()}


def keyring_file(fingerprint: str) -> str:
    return f"{KEYRING_DIR}/{fingerprint[:16]}.pub"


# ---- Linux boards ---------------------------------------------------------------------------------

def _linux_files(target, bundle: Path, manifest: dict, keyring: dict[str, bytes],
                 report) -> dict[str, tuple[bytes, int]]:
    from amc.runtime.build import RUNTIME_DIR, build_runtime
    from amc.targets.amc_runner import build_runner

    if manifest["backend"] != "executorch":
        raise InputError(f"{bundle}: the {target.name} overlay carries amc-runner, which runs ExecuTorch bundles; "
                         f"this one is '{manifest['backend']}' (amc compile --target {target.name} --backend executorch)")
    runner = build_runner(target.name, report)
    runtime = build_runtime(target.name, report=report)
    if runtime.cli is None:
        raise ToolMissingError(f"amc-patch for {target.name} did not build: {runtime.cli_missing}")
    files: dict[str, tuple[bytes, int]] = {
        "usr/bin/amc-runner": (_stripped(runner.program, target.triple), EXECUTABLE),
        "usr/bin/amc-patch": (_stripped(runtime.cli, target.triple), EXECUTABLE),
    }
    for name in RUNNER_LIBRARIES:
        library = runner.executorch.lib_dir / name
        if not library.is_file():
            raise ToolMissingError(f"{library} missing from the executorch wheel: `make device-libs`")
        files[f"usr/lib/amc/{name}"] = (library.read_bytes(), REGULAR)
    for library in sorted(runtime.build_dir.glob("libamc_*.a")):
        files[f"usr/lib/amc/{library.name}"] = (library.read_bytes(), REGULAR)
    for header in sorted((RUNTIME_DIR / "include").glob("*.h")) + [RUNTIME_DIR / "ports" / "amc_posix.h"]:
        files[f"usr/include/amc/{header.name}"] = (header.read_bytes(), REGULAR)
    for name in _bundle_files(bundle, manifest):
        files[f"{BUNDLE_DIR}/{name}"] = ((bundle / name).read_bytes(), REGULAR)
    files["var/lib/amc/pending/.keep"] = (b"", REGULAR)
    for fingerprint, public in keyring.items():
        files[keyring_file(fingerprint)] = (public, REGULAR)
    boot = device_sources("boot")
    files["usr/libexec/amc/amc-apply-pending"] = ((boot / "amc-apply-pending").read_bytes(), EXECUTABLE)
    files["lib/systemd/system/amc-patch.service"] = ((boot / "amc-patch.service").read_bytes(), REGULAR)
    files["lib/systemd/system/amc-listen.service"] = ((boot / "amc-listen.service").read_bytes(), REGULAR)
    files["etc/init.d/S40amc-patch"] = ((boot / "S40amc-patch").read_bytes(), EXECUTABLE)
    return files


def _golden(bundle: Path, manifest: dict, golden: Golden | None, golden_data, report) -> dict:
    """The health check's utterance of the image: golden.wav and golden.check, and what they are."""
    if golden is None:
        from amc.calibration.audio import default_corpus

        if manifest["backend"] != "executorch":
            raise InputError(f"{bundle}: a golden utterance is picked with the ExecuTorch bundle amc-runner runs; "
                             f"this one is '{manifest['backend']}'")
        folder = Path(golden_data) if golden_data is not None else default_corpus(report) / "test"
        report("pick the golden utterance", 0, 1)
        golden, cer = pick_golden(bundle, folder)
        report("pick the golden utterance", 1, 1)
        source = {"picked_from": str(folder), "bundle_cer": cer}
    else:
        source = {"given": True}
    wav, check = checked_golden(golden)
    return {"wav": wav, "check": check,
            "summary": {"file": Path(golden.wav).name, "text": golden.text, "max_cer": golden.max_cer, **source}}


def _ota_files(health: dict) -> dict[str, tuple[bytes, int]]:
    """What the OTA clients run (device/ota): amc-ota, the Mender Update Module, the SWUpdate Lua
    handlers, their settings, and the image's golden utterance."""
    ota = device_sources("ota")
    return {
        "usr/libexec/amc/amc-ota": ((ota / "amc-ota").read_bytes(), EXECUTABLE),
        "usr/share/mender/modules/v3/amc": ((ota / "mender" / "amc").read_bytes(), EXECUTABLE),
        "usr/share/lua/5.3/amc_swupdate.lua": ((ota / "swupdate" / "amc_swupdate.lua").read_bytes(), REGULAR),
        "usr/share/lua/5.3/swupdate_handlers.lua": ((ota / "swupdate" / "swupdate_handlers.lua").read_bytes(),
                                                    REGULAR),
        "etc/amc/ota.conf": ((ota / "ota.conf").read_bytes(), REGULAR),
        f"{GOLDEN_DIR}/{GOLDEN_WAV}": (health["wav"], REGULAR),
        f"{GOLDEN_DIR}/{GOLDEN_CHECK}": (health["check"], REGULAR),
    }


def _bundle_files(bundle: Path, manifest: dict) -> list[str]:
    """The graph files, the front end's tables and manifest.json (not reports, not a patch journal)."""
    names = sorted({manifest["graphs"][g]["file"] for g in ("fast", "slow", "arbitrator")} | {"manifest.json"}
                   | ({manifest["frontend"]["file"]} if "frontend" in manifest else set()))
    for name in names:
        if not (bundle / name).is_file():
            raise InputError(f"{bundle}: '{name}' named by the manifest is missing")
    return names


def _stripped(program: Path, triple: str) -> bytes:
    """The program without its symbol table (as an image ships it); the build keeps the original."""
    strip = shutil.which(f"{triple}-strip")
    if strip is None:
        raise ToolMissingError(f"'{triple}-strip' not found: apt-get install binutils-{triple}")
    import subprocess

    with tempfile.TemporaryDirectory() as tmp:
        copy = Path(tmp) / program.name
        shutil.copyfile(program, copy)
        subprocess.run([strip, "--strip-unneeded", str(copy)], check=True, capture_output=True)
        return copy.read_bytes()


# ---- microcontrollers ------------------------------------------------------------------------------

def _mcu_files(target, bundle: Path, manifest: dict, keyring: dict[str, bytes],
               report) -> dict[str, tuple[bytes, int]]:
    from amc.runtime.build import RUNTIME_DIR

    files: dict[str, tuple[bytes, int]] = {}
    sources = sorted(p for p in bundle.rglob("*") if p.is_file() and p.suffix in (".c", ".h", ".cc", ".hpp"))
    if not sources:
        raise InputError(f"{bundle}: no C sources of the model data; an MCU bundle is written by "
                         f"`amc compile --target {target.name}` (TFLite Micro)")
    for path in sources:
        files[f"model/{path.relative_to(bundle).as_posix()}"] = (path.read_bytes(), REGULAR)
    for name in _bundle_files(bundle, manifest):
        files[f"model/{name}"] = ((bundle / name).read_bytes(), REGULAR)
    for folder in ("include", "src", "ports"):
        for path in sorted((RUNTIME_DIR / folder).glob("*.[ch]")):
            files[f"runtime/{folder}/{path.name}"] = (path.read_bytes(), REGULAR)
    files["keys/amc_keys.h"], files["keys/amc_keys.c"] = _keys_c(keyring)
    model_sources = " ".join(f"${{AMC_DIR}}/model/{p.relative_to(bundle).as_posix()}" for p in sources
                             if p.suffix in (".c", ".cc"))
    files["amc.cmake"] = (MCU_CMAKE.format(target=target.name, cflags=" ".join(target.cflags),
                                           model_sources=model_sources).encode(), REGULAR)
    return files


MCU_CMAKE = """\
# amc for {target}: include() this file from the firmware's CMakeLists.txt, then link `amc`.
#   include(path/to/overlay/amc.cmake)
#   target_link_libraries(firmware PRIVATE amc)
# The model data are const arrays (flash); the patch runtime is C99 with no malloc and no stdio.
# Storage goes through the callbacks of runtime/ports/amc_simflash.h or the firmware's own port.
# The board's code generation flags ({cflags}) come from the firmware's toolchain.
# keys/amc_keys.h: the public keys the firmware's verifier must accept a blob's signature from.
set(AMC_DIR "${{CMAKE_CURRENT_LIST_DIR}}")
add_library(amc STATIC
    ${{AMC_DIR}}/runtime/src/amc_patch.c
    ${{AMC_DIR}}/runtime/src/amc_sha256.c
    ${{AMC_DIR}}/runtime/src/amc_info.c
    ${{AMC_DIR}}/keys/amc_keys.c
    {model_sources})
target_include_directories(amc PUBLIC ${{AMC_DIR}}/runtime/include ${{AMC_DIR}}/runtime/ports ${{AMC_DIR}}/model
                           ${{AMC_DIR}}/keys
                           PRIVATE ${{AMC_DIR}}/runtime/src)
set_target_properties(amc PROPERTIES C_STANDARD 99 C_STANDARD_REQUIRED ON)
"""


def _keys_c(keyring: dict[str, bytes]) -> tuple[tuple[bytes, int], tuple[bytes, int]]:
    """The keyring for firmware: a header declaring `amc_trusted_keys[AMC_TRUSTED_KEYS][32]` and
    the source defining it (in flash)."""
    names = "".join(f" *   [{i}] sha256 {fingerprint}\n" for i, fingerprint in enumerate(sorted(keyring)))
    header = (f"/*\n * amc_keys.h - the Ed25519 public keys a blob's signature must verify with (any one of\n"
              f" * them); written by `amc image`. Removing a key revokes it.\n{names} */\n"
              f"#ifndef AMC_KEYS_H\n#define AMC_KEYS_H\n\n#include <stdint.h>\n\n"
              f"#define AMC_TRUSTED_KEYS {len(keyring)}u\n"
              f"extern const uint8_t amc_trusted_keys[AMC_TRUSTED_KEYS][32];\n\n#endif\n")
    rows = []
    for fingerprint in sorted(keyring):
        public = keyring[fingerprint]
        body = ",\n     ".join(", ".join(f"0x{b:02x}" for b in public[i:i + 8]) for i in range(0, 32, 8))
        rows.append(f"    /* sha256 {fingerprint} */\n    {{{body}}}")
    source = (f"/* The trusted keys of amc_keys.h; written by `amc image`. */\n#include \"amc_keys.h\"\n\n"
              f"const uint8_t amc_trusted_keys[AMC_TRUSTED_KEYS][32] = {{\n" + ",\n".join(rows) + "\n};\n")
    return (header.encode(), REGULAR), (source.encode(), REGULAR)


# ---- writing, reproducibly ---------------------------------------------------------------------------

def _write_directory(output: Path, files: dict[str, tuple[bytes, int]]) -> None:
    """Atomically: a staging directory beside `output`, then rename over it."""
    if output.exists() and not (output / IMAGE_MANIFEST).is_file() and any(output.iterdir()):
        raise InputError(f"{output} exists and is not an amc image; choose an empty or new directory")
    output.parent.mkdir(parents=True, exist_ok=True)
    staging = Path(tempfile.mkdtemp(prefix=f".{output.name}.", dir=output.parent))
    stamp = epoch()
    try:
        for path, (data, mode) in sorted(files.items()):
            target = staging / path
            target.parent.mkdir(parents=True, exist_ok=True)
            target.write_bytes(data)
            os.chmod(target, mode)
            os.utime(target, (stamp, stamp))
        for folder in sorted({p for path in files for p in Path(path).parents if str(p) != "."}, reverse=True):
            os.chmod(staging / folder, EXECUTABLE)
            os.utime(staging / folder, (stamp, stamp))
        os.chmod(staging, EXECUTABLE)
        if output.exists():
            shutil.rmtree(output)
        os.replace(staging, output)
        os.utime(output, (stamp, stamp))
    except BaseException:
        shutil.rmtree(staging, ignore_errors=True)
        raise


def _write_tarball(output: Path, files: dict[str, tuple[bytes, int]]) -> None:
    stamp = epoch()
    buffer = io.BytesIO()
    folders = sorted({str(p) for path in files for p in Path(path).parents if str(p) != "."})
    with tarfile.open(fileobj=buffer, mode="w", format=tarfile.GNU_FORMAT) as tar:
        entries = [(f, None) for f in folders] + sorted(files.items())
        for name, content in sorted(entries, key=lambda e: e[0]):
            info = tarfile.TarInfo(name)
            info.mtime, info.uid, info.gid, info.uname, info.gname = stamp, 0, 0, "", ""
            if content is None:
                info.type, info.mode = tarfile.DIRTYPE, EXECUTABLE
                tar.addfile(info)
            else:
                data, mode = content
                info.size, info.mode = len(data), mode
                tar.addfile(info, io.BytesIO(data))
    output.parent.mkdir(parents=True, exist_ok=True)
    staging = output.with_name(f".{output.name}.tmp")
    with open(staging, "wb") as raw, gzip.GzipFile(filename="", mode="wb", fileobj=raw, mtime=0) as gz:
        gz.write(buffer.getvalue())
    os.replace(staging, output)
