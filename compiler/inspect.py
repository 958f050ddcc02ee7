"""`amc inspect`: what a bundle or a single graph file holds: graphs, I/O with quantization,
operators, sizes, and the weight map (checked against the file bytes)."""

from __future__ import annotations

from pathlib import Path

from amc.common.errors import InputError
from amc.patch.summary import summarize_blob
from amc.targets.backends import backend_of_file

BLOB_SUFFIX = ".amcp"


def inspect_path(path: Path | str, keyring: dict[str, bytes] | None = None) -> dict:
    """A bundle directory, a graph file, or a patch blob (its signature checked against `keyring`,
    name -> raw Ed25519 public key)."""
    path = Path(path)
    if path.is_dir():
        return inspect_bundle(path)
    if not path.is_file():
        raise InputError(f"{path}: no such bundle, graph file or patch blob")
    if path.suffix == BLOB_SUFFIX:
        return {"path": str(path)} | summarize_blob(path.read_bytes(), keyring)
    return backend_of_file(path).module.inspect_file(path)


def inspect_bundle(path: Path) -> dict:
    from amc.compiler import weight_map
    from amc.compiler.manifest import read_manifest, sha256_file

    manifest = read_manifest(path)
    files = {}
    graphs = {}
    for name, graph in manifest["graphs"].items():
        file = path / graph["file"]
        if not file.is_file():
            raise InputError(f"{path}: graph file {graph['file']} is missing")
        files[graph["file"]] = file.read_bytes()
        entries = [e for e in manifest["weight_map"] if e["graph"] == name]
        graphs[name] = {
            "file": graph["file"], "bytes": len(files[graph["file"]]),
            "sha256_ok": sha256_file(file) == graph["sha256"],
            "inputs": graph["inputs"], "outputs": graph["outputs"],
            "macs_per_frame": graph["macs_per_frame"], "ops": graph.get("ops", {}),
            "memory": graph.get("memory", {}),
            "weights": {"tensors": len(entries), "bytes": sum(e["length"] for e in entries),
                        "dtypes": sorted({e["dtype"] for e in entries}),
                        "per_channel": sum(1 for e in entries if e["quantization"] and
                                           e["quantization"]["scheme"] == "per_channel")},
        }
    problems = weight_map.check(manifest["weight_map"], files)
    return {
        "path": str(path), "kind": "bundle", "target": manifest["target"], "backend": manifest["backend"],
        "variant": manifest.get("variant"), "schema_version": manifest["schema_version"],
        "float_bytes": manifest["model"]["float_bytes"], "state": manifest["state"], "passes": manifest["passes"],
        "graphs": graphs, "mcu": manifest.get("mcu"),
        "weight_map": {"entries": len(manifest["weight_map"]), "checked_against_files": not problems,
                       "problems": problems[:5],
                       "tensors": [{k: e[k] for k in ("graph", "parameter", "offset", "length", "dtype", "shape")}
                                   | {"transform": e["transform"]} for e in manifest["weight_map"]]},
        "tools": manifest["tools"],
    }


