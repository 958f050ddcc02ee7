"""`amc inspect`: what a bundle or a single graph file holds: graphs, I/O with quantization,
operators, sizes, and the weight map (checked against the file bytes)."""

from __future__ import annotations

from pathlib import Path

from amc.common.errors import InputError


def inspect_path(path: Path | str) -> dict:
    path = Path(path)
    if path.is_dir():
        return inspect_bundle(path)
    if not path.is_file():
        raise InputError(f"{path}: no such bundle or graph file")
    suffix = path.suffix
    if suffix == ".tflite":
        return _inspect_tflite(path)
    if suffix == ".pte":
        return _inspect_pte(path)
    if suffix == ".onnx":
        return _inspect_onnx(path)
    raise InputError(f"{path}: not a bundle directory or a .pte/.tflite/.onnx file")


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


def _inspect_tflite(path: Path) -> dict:
    from amc.targets.backends.tflite import read_flatbuffer

    model = read_flatbuffer(path.read_bytes())
    by_name = {t["name"]: t for t in model["tensors"]}

    def describe(name):
        t = by_name[name]
        return {"name": name, "shape": t["shape"], "dtype": t["dtype"],
                "scale": float(t["scales"][0]) if t["scales"] is not None and t["scales"].size == 1 else None,
                "zero_point": int(t["zero_points"][0]) if t["zero_points"] is not None and t["zero_points"].size == 1 else None}

    constants = [t for t in model["tensors"] if t["offset"] is not None]
    return {"path": str(path), "kind": "tflite", "bytes": path.stat().st_size, "ops": model["ops"],
            "inputs": [describe(n) for n in model["inputs"]], "outputs": [describe(n) for n in model["outputs"]],
            "weights": [{"name": t["name"], "dtype": t["dtype"], "shape": t["shape"], "offset": t["offset"],
                         "length": t["length"], "per_channel": t["scales"] is not None and t["scales"].size > 1}
                        for t in constants]}


def _inspect_pte(path: Path) -> dict:
    from amc.targets.backends.executorch import executorch_runtime

    program = executorch_runtime().load_program(str(path))
    meta = program.metadata("forward")
    return {"path": str(path), "kind": "pte", "bytes": path.stat().st_size,
            "inputs": [str(meta.input_tensor_meta(i)) for i in range(meta.num_inputs())],
            "outputs": [str(meta.output_tensor_meta(i)) for i in range(meta.num_outputs())],
            "methods": sorted(program.method_names)}


def _inspect_onnx(path: Path) -> dict:
    import onnx

    model = onnx.load(str(path))
    ops: dict[str, int] = {}
    for node in model.graph.node:
        ops[node.op_type] = ops.get(node.op_type, 0) + 1
    return {"path": str(path), "kind": "onnx", "bytes": path.stat().st_size, "ops": ops,
            "inputs": [i.name for i in model.graph.input], "outputs": [o.name for o in model.graph.output],
            "initializers": [{"name": t.name, "dtype": onnx.TensorProto.DataType.Name(t.data_type), "shape": list(t.dims)}
                             for t in model.graph.initializer]}
