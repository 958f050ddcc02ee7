"""Apply a patch blob to a bundle directory with the C runtime itself (the host `amc-patch`).

`apply_patch(bundle, blob, public_key)` builds the host runtime with cmake when it is missing,
runs `amc-patch apply` on the bundle (the blob's file names are paths relative to it), and then
updates the sha256 entries of `manifest.json` when the manifest has a "graphs" map whose
entries name those files. The journal (backup pages, progress record with the installed
version) stays in BUNDLE/.amc-patch/; `counter=FILE`, outside the bundle, keeps the installed
version where wiping the journal cannot reset it (`amc-patch --counter`).
"""

from __future__ import annotations

import hashlib
import json
import os
import subprocess
import tempfile
from dataclasses import dataclass
from pathlib import Path

from amc.common.errors import AmcError, InputError
from amc.common.progress import Report, quiet
from amc.patch import blob as pb

# exit status of amc-patch -> meaning: the AMC_E_* codes of AMC_ERROR_LIST in
# device/runtime/include/amc_patch.h (tests/test_runtime_errors.py keeps the two in step)
RUNTIME_ERRORS = {
    1: "bad argument", 2: "malformed blob", 3: "length out of bounds", 4: "blob truncated",
    5: "integrity digest mismatch", 6: "signature rejected", 7: "not the base of this blob",
    8: "version not newer than the installed one", 9: "buffer too small", 10: "storage error",
    11: "result sha256 mismatch", 12: "another patch is half applied", 13: "rollback impossible",
    14: "no patch in progress", 15: "journal written with another page size or backup area",
    16: "backup area too small to roll an install back", 17: "no installed patch to commit",
}


@dataclass
class PatchResult:
    bundle: Path
    version: int
    files: list[str]
    manifest_updated: bool
    runtime_output: str

    def to_json(self) -> dict:
        return {"bundle": str(self.bundle), "version": self.version, "files": self.files,
                "manifest_updated": self.manifest_updated, "runtime": self.runtime_output}


_UP_TO_DATE: list[Path] = []
"""The host amc-patch once this process has brought it up to date."""


def host_cli(report: Report = quiet) -> Path:
    """The host build of `amc-patch`, brought up to date with cmake once a process (the sources
    do not change under a running amc; a stale build from an earlier checkout is rebuilt)."""
    from amc.runtime.build import build_runtime
    if not _UP_TO_DATE:
        build = build_runtime("host", report=report)
        if build.cli is None:
            raise AmcError("the host runtime built without amc-patch: install libsodium-dev "
                           "(apt-get install libsodium-dev) and rebuild")
        _UP_TO_DATE.append(build.cli)
    return _UP_TO_DATE[0]


def run_cli(command: str, bundle: Path, blob_path: Path | None, public_key: bytes | None,
            extra: list[str] | None = None, report: Report = quiet) -> str:
    """Run `amc-patch COMMAND` on a bundle; a runtime refusal becomes an AmcError."""
    cli = host_cli(report)
    with tempfile.TemporaryDirectory(prefix="amc-key-") as tmp:
        args = [str(cli), command, "--dir", str(bundle)]
        if public_key is not None:
            key_file = Path(tmp) / "key.pub"
            key_file.write_bytes(public_key)
            args += ["--key", str(key_file)]
        args += list(extra or [])
        if blob_path is not None:
            args.append(str(blob_path))
        result = subprocess.run(args, capture_output=True, text=True, timeout=600)
    if result.returncode:
        detail = result.stderr.strip().splitlines()[-1] if result.stderr.strip() else \
            RUNTIME_ERRORS.get(result.returncode, f"exit status {result.returncode}")
        error = InputError if result.returncode in (2, 3, 4, 5, 6, 7, 8, 12, 13, 14, 16, 17) else AmcError
        raise error(f"patch runtime refused: {detail.removeprefix('amc-patch: error: ')}")
    return result.stdout.strip()


def apply_patch(bundle: Path, blob_path: Path, public_key: bytes, report: Report = quiet,
                page_size: int = 4096, backup_pages: int = 4, counter: Path | None = None) -> PatchResult:
    """Apply (or resume) `blob_path` to the bundle directory with the C runtime, then refresh
    manifest.json's sha256 entries for the patched graphs. `counter`: the anti-rollback counter
    file, outside the bundle. The names are checked here for a clear message first; amc-patch
    checks them again (without following links) and is the authority."""
    bundle, blob_path = Path(bundle), Path(blob_path)
    if not bundle.is_dir():
        raise InputError(f"{bundle} is not a bundle directory")
    data = blob_path.read_bytes()
    blob = pb.read_blob(data, public_key)          # fail early, with a Python message
    names = [f.name for f in blob.files]
    for name in names:
        path = (bundle / name).resolve()
        if bundle.resolve() not in path.parents:
            raise InputError(f"blob names '{name}', which is outside the bundle")
        if not path.is_file():
            raise InputError(f"blob targets '{name}', which is not in {bundle}")
    report("apply patch", 0, 1)
    options = ["--page-size", str(page_size), "--backup-pages", str(backup_pages)]
    if counter is not None:
        options += ["--counter", str(counter)]
    output = run_cli("apply", bundle, blob_path, public_key, options, report)
    report("apply patch", 1, 1)
    updated = update_manifest(bundle, names)
    return PatchResult(bundle, blob.version, names, updated, output)


def update_manifest(bundle: Path, names: list[str]) -> bool:
    """Rewrite the sha256 of patched graphs in manifest.json's "graphs" map, atomically.
    A graph entry matches when its "file" equals a patched name. Returns whether it changed."""
    manifest_path = bundle / "manifest.json"
    if not manifest_path.exists():
        return False
    manifest = json.loads(manifest_path.read_text())
    graphs = manifest.get("graphs")
    if not isinstance(graphs, dict):
        return False
    changed = False
    for entry in graphs.values():
        if isinstance(entry, dict) and entry.get("file") in names:
            digest = hashlib.sha256((bundle / entry["file"]).read_bytes()).hexdigest()
            if entry.get("sha256") != digest:
                entry["sha256"] = digest
                changed = True
    if changed:
        fd, tmp = tempfile.mkstemp(dir=bundle, prefix=".manifest-", suffix=".json")
        with os.fdopen(fd, "w") as out:
            json.dump(manifest, out, indent=2)
            out.write("\n")
        os.replace(tmp, manifest_path)
    return changed
