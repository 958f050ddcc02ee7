"""`amc diff`: turn an update of a deployed model into a signed `.amcp` patch blob and the new
bundle it produces, and prove `apply(base, blob) == new bundle` byte for byte with the C runtime.

Steps, in order:
1. read the base bundle: manifest, graph files (each must match its manifest sha256), and the
   int8 regions an update may change (`grids_from_bundle`, from the weight map);
2. the update in the base's frozen int8 domain: a trained neural diff (sparse or hash) applies
   to the regions as it is; a full checkpoint is requantized with the frozen scales of every
   weight-map entry, and the best diff under the budget is made from it (sparse: the largest
   changes; hash: least-squares bucket values; auto: the one closer to the checkpoint);
3. records, sorted by file and offset, and the blob, signed; its size against the budget;
4. the new bundle: the base copied, the C runtime (`amc-patch apply`) run on its graph files,
   every file compared with the Python reference result; manifest sha256s refreshed;
5. blob and bundle moved into place only when all of that held (nothing written otherwise).
"""

from __future__ import annotations

import hashlib
import json
import os
import re
import shutil
import tempfile
from dataclasses import dataclass
from pathlib import Path
from typing import Callable

import numpy as np

from amc.common.errors import AmcError, BudgetError, InputError
from amc.common.progress import Report, quiet
from amc.compiler.manifest import MANIFEST, read_manifest
from amc.patch import blob as pb

GRAPHS = ("fast", "slow", "arbitrator")
_COLUMNS = re.compile(r"^columns (\d+):(\d+)$")
_FOLDED = re.compile(r"^fold_normalization columns (\d+):(\d+) ")
_ELEMENT = {"int8": 1, "int16": 2, "int32": 4}


# ---- the base bundle ------------------------------------------------------------------------

@dataclass
class BaseBundle:
    path: Path
    manifest: dict
    files: dict[str, bytes]          # graph file name -> bytes, in graph order

    @property
    def bundle_bytes(self) -> int:
        """The deployed int8 bundle: its graph files, what an update rewrites."""
        return sum(len(data) for data in self.files.values())

    @property
    def config(self):
        from amc.model.config import ModelConfig
        return ModelConfig.from_json(self.manifest["model"]["config"], f"{self.path}/{MANIFEST}")


def read_base(path: Path | str) -> BaseBundle:
    """The bundle's manifest and graph files; every file must match its manifest sha256, and
    every weight-map entry its bytes."""
    from amc.compiler import weight_map

    path = Path(path)
    manifest = read_manifest(path)
    files = {}
    for graph in GRAPHS:
        entry = manifest["graphs"][graph]
        file = path / entry["file"]
        if not file.is_file():
            raise InputError(f"{path}: graph file '{entry['file']}' named by the manifest is missing")
        data = file.read_bytes()
        if hashlib.sha256(data).hexdigest() != entry.get("sha256"):
            raise InputError(f"{path}: '{entry['file']}' does not match its manifest (sha256 differs)")
        files[entry["file"]] = data
    problems = weight_map.check(manifest.get("weight_map", []), files)
    if problems:
        raise InputError(f"{path}: weight map does not match the files: {problems[0]}")
    return BaseBundle(path, manifest, files)


def _span(entry: dict) -> tuple[int, int] | None:
    """The column span of the model parameter an entry holds, or None if the tensor is more than
    a column slice of it (products, masks, or columns the feature normalization was folded into)."""
    transforms = entry.get("transform") or []
    if not transforms:
        return (0, _model_shape(entry)[1]) if len(entry["shape"]) == 2 else None
    match = _COLUMNS.match(transforms[-1])
    if not match:
        return None
    span = (int(match.group(1)), int(match.group(2)))
    for step in transforms[:-1]:
        folded = _FOLDED.match(step)
        if not folded or not (span[1] <= int(folded.group(1)) or span[0] >= int(folded.group(2))):
            return None     # only a normalization folded into other columns leaves these alone
    return span


def _model_shape(entry: dict) -> tuple[int, ...]:
    shape = tuple(entry["shape"])
    return shape[::-1] if entry.get("layout") == "transposed" else shape


def region_entries(base: BaseBundle) -> dict[str, list[dict]]:
    """Grid key -> the weight-map entries holding that region (the head lives in two graphs)."""
    from amc.model.branched import BranchedEncoder
    from amc.model.neural_diff import region_spans

    spans = region_spans(BranchedEncoder(base.config))
    out: dict[str, list[dict]] = {}
    for entry in base.manifest.get("weight_map", []):
        if entry.get("dtype") != "int8" or entry.get("parameter") not in spans:
            continue
        span = _span(entry)
        quant = entry.get("quantization") or {}
        axis = quant.get("axis")
        model_axis = (1 - axis) if entry.get("layout") == "transposed" and axis is not None else axis
        if span not in spans[entry["parameter"]] or quant.get("zero_points") is None or \
                (len(quant.get("scales", [])) > 1 and model_axis != 0):
            continue
        if any(z != 0 for z in quant["zero_points"]):
            continue
        out.setdefault(f"{entry['parameter']}[:,{span[0]}:{span[1]}]", []).append(entry)
    return out


def grids_from_bundle(base: BaseBundle):
    """The int8 regions of the bundle as the model sees them (one grid per region, located at
    every place the bundle holds it)."""
    from amc.model.neural_diff import Grid

    grids = []
    for key, entries in region_entries(base).items():
        first = entries[0]
        transposed = first.get("layout") == "transposed"
        values = None
        for entry in entries:
            data = base.files[entry["file"]][entry["offset"]:entry["offset"] + entry["length"]]
            stored = np.frombuffer(data, np.int8).reshape(entry["shape"]).astype(np.int64)
            here = stored.T if transposed else stored
            if values is None:
                values = here
            elif not np.array_equal(values, here) or entry.get("layout") != first.get("layout"):
                raise InputError(f"{base.path}: '{key}' is held twice with different values; cannot patch it")
        quant = first["quantization"]
        rows = values.shape[0]
        scales = np.asarray(quant["scales"], np.float32)
        scales = np.full(rows, scales[0], np.float32) if scales.size == 1 else scales
        span = _span(first)
        grid = Grid(first["parameter"], span[0], span[1], scales, values, int(quant["quant_min"]),
                    int(quant["quant_max"]), transposed,
                    tuple((e["file"], int(e["offset"]), int(e["length"])) for e in entries))
        grids.append(grid)
    grids.sort(key=lambda g: g.key)
    return grids


# ---- records -------------------------------------------------------------------------------

@dataclass
class Update:
    """New bytes for some weight-map regions: file -> list of (offset, elem_size, base, new)."""
    method: str
    records: list                    # pb records, file index by the base's graph order
    changed_elements: int
    notes: list[str]


def _file_index(base: BaseBundle) -> dict[str, int]:
    return {name: i for i, name in enumerate(base.files)}


def records_from_diff(base: BaseBundle, grids, diff) -> Update:
    """Records for a trained neural diff (hash records stay hash records: no expansion)."""
    from amc.model.neural_diff import grids_sha256

    if diff.base_sha256 != grids_sha256(grids):
        raise InputError("the diff was trained on other deployed weights than this base bundle's "
                         "(apply the updates in order, on the bundle the diff was trained for)")
    by_key = {g.key: g for g in grids}
    index = _file_index(base)
    records, changed = [], 0
    new_grids = {g.key: g for g in diff.apply(grids)}
    for region in diff.regions:
        grid = by_key.get(region.key)
        if grid is None:
            raise InputError(f"the diff changes '{region.key}', which the base bundle does not hold "
                             f"(it does not match the base architecture)")
        for file, offset, length in grid.locations:
            if diff.method == "hash":
                if region.buckets.size and np.abs(region.buckets).max() > 127:
                    raise InputError(f"'{region.key}': hash bucket values must fit int8")
                records.append(pb.HashRecord(index[file], offset, length, 1, int(region.seed),
                                             tuple(int(v) for v in region.buckets), True))
            else:
                old = grid.file_order(grid.values)
                new = new_grids[region.key].file_order(new_grids[region.key].values)
                positions = np.flatnonzero(old != new)
                if len(positions):
                    records.append(pb.SparseRecord(index[file], offset, length, 1,
                                                   tuple(int(i) for i in positions),
                                                   tuple(int(v) for v in new[positions])))
        changed += len(region.indices) if diff.method == "sparse" else grid.values.size
    return Update(diff.method, records, changed, [])


def _targets_from_checkpoint(base: BaseBundle, model, report: Report) -> list[tuple[dict, np.ndarray, np.ndarray]]:
    """(entry, base values, new values) in file order for every weight-map entry, the new
    values requantized from the checkpoint with the entry's frozen quantization."""
    from amc.compiler import weight_map

    params = dict(model.named_parameters())
    out = []
    exported: dict[str, dict] = {}
    entries = base.manifest.get("weight_map", [])
    for done, entry in enumerate(entries):
        dtype = np.dtype(entry["dtype"]).newbyteorder("<")
        base_values = np.frombuffer(base.files[entry["file"]][entry["offset"]:entry["offset"] + entry["length"]],
                                    dtype).astype(np.int64)
        span = _span(entry)
        if entry.get("parameter") in params and span is not None and params[entry["parameter"]].dim() == 2:
            values = params[entry["parameter"]].detach()[:, span[0]:span[1]].float().numpy()
        else:
            if entry["graph"] not in exported:
                from amc.compiler.split import graph_weights
                passes = tuple(base.manifest.get("passes", ()))
                exported[entry["graph"]] = graph_weights(model, entry["graph"], passes)
            source = exported[entry["graph"]].get(entry["attr"])
            if source is None:
                raise InputError(f"the checkpoint's '{entry['graph']}' graph has no constant '{entry['attr']}' "
                                 f"(it does not match the base architecture)")
            values = source.numpy()
        new = np.frombuffer(weight_map.requantize(entry, values), dtype).astype(np.int64)
        out.append((entry, base_values, new))
        report("requantize", done + 1, len(entries))
    return out


def _channel_scales(entry: dict, count: int) -> np.ndarray:
    """Float size of one integer step of each element, in file order."""
    quant = entry.get("quantization")
    if quant is None:
        return np.ones(count)
    scales = np.abs(np.asarray(quant["scales"], np.float64))
    if scales.size == 1:
        return np.full(count, scales[0])
    shape = entry["shape"]
    axis = quant["axis"] or 0
    grid = np.indices(shape)[axis].reshape(-1)
    return scales[grid]


def records_from_checkpoint(base: BaseBundle, model, record_budget: int | None, method: str,
                            report: Report = quiet) -> Update:
    """The best diff of the requantized checkpoint under the record budget."""
    targets = _targets_from_checkpoint(base, model, report)
    index = _file_index(base)
    sparse = _sparse_under_budget(targets, index, record_budget)
    if method == "sparse" or record_budget is None:
        return sparse
    hashed = _hash_fit(base, targets, index, record_budget)
    if method == "hash":
        return hashed
    error = {u.method: _residual(targets, index, u.records) for u in (sparse, hashed)}
    chosen = sparse if error["sparse"] <= error["hash"] else hashed
    chosen.notes.append(f"auto: squared error sparse {error['sparse']:.4g}, hash {error['hash']:.4g}")
    return chosen


def _cost(positions: np.ndarray, elem_size: int) -> int:
    from amc.model.neural_diff import sparse_record_bytes
    return sparse_record_bytes(positions, elem_size)


def _sparse_under_budget(targets, index, record_budget: int | None) -> Update:
    changes = []
    for entry, old, new in targets:
        positions = np.flatnonzero(old != new)
        if len(positions):
            weight = np.abs(new[positions] - old[positions]) * _channel_scales(entry, old.size)[positions]
            changes.append((entry, old, new, positions, weight))
    if not changes:
        return Update("sparse", [], 0, ["the checkpoint's requantized weights equal the base's"])
    chosen_counts = {id(c[0]): len(c[3]) for c in changes}
    if record_budget is not None:
        weights = np.concatenate([c[4] for c in changes])
        owner = np.concatenate([np.full(len(c[3]), i) for i, c in enumerate(changes)])
        ranking = np.argsort(-weights, kind="stable")

        def cost(count: int) -> int:
            picked = np.zeros(len(weights), bool)
            picked[ranking[:count]] = True
            total, at = 0, 0
            for i, c in enumerate(changes):
                mine = picked[at:at + len(c[3])]
                total += _cost(c[3][mine], _ELEMENT[c[0]["dtype"]])
                at += len(c[3])
            return total

        lo, hi = 0, len(weights)
        while lo < hi:
            mid = (lo + hi + 1) // 2
            if cost(mid) <= record_budget:
                lo = mid
            else:
                hi = mid - 1
        picked = np.zeros(len(weights), bool)
        picked[ranking[:lo]] = True
    else:
        picked = np.ones(sum(len(c[3]) for c in changes), bool)
    records, at, changed = [], 0, 0
    for entry, old, new, positions, _ in changes:
        mine = positions[picked[at:at + len(positions)]]
        at += len(positions)
        if len(mine):
            size = _ELEMENT[entry["dtype"]]
            raw_cost = RAW_OVERHEAD + (int(mine[-1]) - int(mine[0]) + 1) * size
            if raw_cost < _cost(mine, size):
                values = old.copy()
                values[mine] = new[mine]
                dtype = np.dtype(entry["dtype"]).newbyteorder("<")
                data = values[mine[0]:mine[-1] + 1].astype(dtype).tobytes()
                records.append(pb.RawRecord(index[entry["file"]], entry["offset"] + int(mine[0]) * size, data))
            else:
                records.append(pb.SparseRecord(index[entry["file"]], entry["offset"], entry["length"], size,
                                               tuple(int(i) for i in mine), tuple(int(v) for v in new[mine])))
            changed += len(mine)
    return Update("sparse", records, changed, [])


RAW_OVERHEAD = pb.RECORD_HEADER_SIZE


def _hash_fit(base: BaseBundle, targets, index, record_budget: int) -> Update:
    """Least-squares signed bucket values per int8 region (buckets in proportion to its size)."""
    from amc.model.neural_diff import hash_record_bytes

    regions = [(e, o, n) for e, o, n in targets if e["dtype"] == "int8" and (o != n).any()]
    if not regions:
        return Update("hash", [], 0, ["nothing to hash"])
    available = record_budget - len(regions) * hash_record_bytes(0)
    if available < len(regions):
        raise BudgetError(f"a record budget of {record_budget} bytes cannot hold one hash bucket per changed tensor")
    total = sum(o.size for _, o, _ in regions)
    records, changed = [], 0
    for i, (entry, old, new) in enumerate(regions):
        count = max(1, min(old.size, int(available * old.size / total)))
        seed = (0x9E3779B1 * (i + 1)) & 0xFFFFFFFF
        bucket, sign = pb.hash_buckets(old.size, seed, count)
        target = (new - old) * sign
        sums = np.bincount(bucket, weights=target, minlength=count)
        counts = np.bincount(bucket, minlength=count)
        values = np.clip(np.rint(sums / np.maximum(counts, 1)), -127, 127).astype(np.int64)
        if values.any():
            records.append(pb.HashRecord(index[entry["file"]], entry["offset"], entry["length"], 1, seed,
                                         tuple(int(v) for v in values), True))
            changed += old.size
    return Update("hash", records, changed, [])


def _residual(targets, index, records) -> float:
    """Squared float distance between what the records produce and the requantized target."""
    by_file: dict[int, list] = {}
    for record in records:
        by_file.setdefault(record.file, []).append(record)
    total = 0.0
    for entry, old, new in targets:
        dtype = np.dtype(entry["dtype"]).newbyteorder("<")
        region = bytearray(old.astype(dtype).tobytes())
        start, stop = entry["offset"], entry["offset"] + entry["length"]
        local = [_shift(r, start) for r in by_file.get(index[entry["file"]], [])
                 if r.offset >= start and r.offset + r.length <= stop]
        if local:
            pb.apply_records([region], local)
        result = np.frombuffer(bytes(region), dtype).astype(np.int64)
        total += float((((result - new) * _channel_scales(entry, old.size)) ** 2).sum())
    return total


def _shift(record, offset: int):
    from dataclasses import replace
    return replace(record, file=0, offset=record.offset - offset)


# ---- budget --------------------------------------------------------------------------------

def parse_budget(text: str, bundle_bytes: int) -> int:
    """'10%' of the bundle, or a byte count ('20000', '20k', '1.5M')."""
    text = str(text).strip()
    match = re.fullmatch(r"(\d+(?:\.\d+)?)\s*(%|[kKmM]i?[bB]?|[bB])?", text)
    if not match:
        raise InputError(f"budget '{text}' is neither a percentage ('10%') nor a byte count ('20000', '20k')")
    number, unit = float(match.group(1)), (match.group(2) or "").lower()
    if unit == "%":
        if not 0 < number <= 100:
            raise InputError(f"budget {text} must be in (0%, 100%]")
        return int(bundle_bytes * number / 100)
    factor = {"": 1, "b": 1, "k": 1000, "kb": 1000, "kib": 1024, "ki": 1024, "m": 10**6, "mb": 10**6,
              "mib": 2**20, "mi": 2**20}[unit]
    return int(number * factor)


# ---- the command ---------------------------------------------------------------------------

@dataclass
class DiffResult:
    blob: Path
    blob_bytes: int
    bundle: Path
    bundle_bytes: int
    budget_bytes: int
    method: str
    version: int
    records: dict
    changed_elements: int
    files: list[str]
    notes: list[str]

    def to_json(self) -> dict:
        return {"blob": str(self.blob), "blob_bytes": self.blob_bytes, "bundle": str(self.bundle),
                "bundle_bytes": self.bundle_bytes, "budget_bytes": self.budget_bytes,
                "blob_fraction": round(self.blob_bytes / self.bundle_bytes, 5),
                "method": self.method, "version": self.version, "records": self.records,
                "changed_elements": self.changed_elements, "files": self.files,
                "applied_with": "C runtime (amc-patch apply), byte-identical", "notes": self.notes}


def default_bundle_out(out: Path) -> Path:
    out = Path(out)
    return out.with_name(out.stem + ".bundle")


def make_diff(base_path: Path | str, new: Path | str, out: Path | str, budget: str | int | None = "10%",
              method: str = "auto", signing_key: bytes | None = None, bundle_out: Path | str | None = None,
              version: int | None = None, chunk_size: int = pb.DEFAULT_CHUNK,
              report: Report = quiet) -> DiffResult:
    """The blob that turns the bundle at `base_path` into the update `new` (a trained diff or a
    checkpoint), signed with `signing_key` (a 32-byte Ed25519 seed) or, with None, unsigned for a
    signer elsewhere, in chunks of `chunk_size` bytes; and the new bundle, proven equal to the
    reference by the C runtime."""
    from amc.model.neural_diff import blob_overhead, is_diff_file, load_diff, record_budget as records_fit

    if method not in ("sparse", "hash", "auto"):
        raise InputError(f"unknown method '{method}' (use sparse, hash or auto)")
    out = Path(out)
    bundle_out = Path(bundle_out) if bundle_out is not None else default_bundle_out(out)
    # 1. the base
    base = read_base(base_path)
    grids = grids_from_bundle(base)
    budget_bytes = None if budget is None else (budget if isinstance(budget, int)
                                                else parse_budget(budget, base.bundle_bytes))
    overhead = blob_overhead(list(base.files))
    if budget_bytes is not None and budget_bytes < overhead + pb.RECORD_HEADER_SIZE + 5:
        raise BudgetError(f"a budget of {budget_bytes} bytes cannot hold anything: a blob's header, file table "
                          f"and trailer alone take {overhead} bytes")
    record_budget = None if budget_bytes is None else records_fit(budget_bytes, list(base.files), chunk_size)
    # 2. the update, in the frozen int8 domain
    new = Path(new)
    if is_diff_file(new):
        diff = load_diff(new)
        if method not in ("auto", diff.method):
            raise InputError(f"{new} is a {diff.method} diff; --method {method} does not apply to it")
        update = records_from_diff(base, grids, diff)
        if diff.method == "sparse" and record_budget is not None:
            _check_record_budget(update, record_budget)
    elif new.is_dir():
        from amc.model.checkpoint import load_checkpoint
        model = load_checkpoint(new)
        _check_architecture(base, model, new)
        update = records_from_checkpoint(base, model, record_budget, method, report)
    else:
        raise InputError(f"{new}: neither a neural diff file (amc train diff) nor a checkpoint directory")
    if not update.records:
        raise InputError("the update changes no byte of the base bundle; nothing to ship")
    # 3. the blob
    update.records.sort(key=lambda r: (r.file, r.offset))
    previous = int(base.manifest.get("update", {}).get("version", 1))
    version = version or previous + 1
    blob, new_files = pb.make_blob(dict(base.files), update.records, version, signing_key, chunk_size)
    if budget_bytes is not None and len(blob) > budget_bytes:
        raise BudgetError(f"the blob takes {len(blob)} bytes, over the budget of {budget_bytes} "
                          f"({method} diff); retrain it for this budget")
    # 4. the new bundle, made by the C runtime, checked against the reference
    out.parent.mkdir(parents=True, exist_ok=True)
    bundle_out.parent.mkdir(parents=True, exist_ok=True)
    staging = Path(tempfile.mkdtemp(prefix=f".{bundle_out.name}.", dir=bundle_out.parent))
    try:
        blob_staging = staging / "update.amcp"
        bundle_staging = staging / "bundle"
        shutil.copytree(base.path, bundle_staging, ignore=shutil.ignore_patterns(".amc-patch", ".*"))
        # an unsigned blob is proven under a throwaway key: the signature changes no byte applied
        prover = signing_key if signing_key is not None else os.urandom(32)
        blob_staging.write_bytes(blob if signing_key is not None else
                                 blob[:-64] + pb.sign_digest(prover, pb.signing_digest(blob)))
        from amc.runtime.apply import apply_patch
        apply_patch(bundle_staging, blob_staging, pb.public_key(prover), report=report)
        blob_staging.write_bytes(blob)
        shutil.rmtree(bundle_staging / ".amc-patch", ignore_errors=True)
        for name, data in new_files.items():
            if (bundle_staging / name).read_bytes() != data:
                raise AmcError(f"the C runtime's result for '{name}' differs from the reference result")
        _refresh_manifest(bundle_staging, base, new_files, version, blob)
        # 5. into place
        if bundle_out.exists():
            shutil.rmtree(bundle_out)
        os.replace(bundle_staging, bundle_out)
        os.replace(blob_staging, out)
    finally:
        shutil.rmtree(staging, ignore_errors=True)
    kinds: dict[str, int] = {}
    for record in update.records:
        kind = type(record).__name__.removesuffix("Record").lower()
        kinds[kind] = kinds.get(kind, 0) + 1
    touched = sorted({list(base.files)[r.file] for r in update.records})
    return DiffResult(out, len(blob), bundle_out, base.bundle_bytes, budget_bytes or 0, update.method, version,
                      kinds, update.changed_elements, touched, update.notes)


def _check_record_budget(update: Update, record_budget: int) -> None:
    """A trained sparse diff is emitted as trained: refuse it if its records overrun the budget."""
    from amc.model.neural_diff import sparse_record_bytes

    total = sum(sparse_record_bytes(np.asarray(r.indices), r.elem_size) for r in update.records
                if isinstance(r, pb.SparseRecord))
    if total > record_budget:
        raise BudgetError(f"the trained sparse diff needs {total} bytes of records, over the budget's "
                          f"{record_budget}; retrain it for this budget")


def _check_architecture(base: BaseBundle, model, path: Path) -> None:
    mine, theirs = model.config.to_json(), base.manifest["model"]["config"]
    for key in ("hidden", "layers", "fast_variant", "fast_rank", "fast_density", "arbitrator_hidden",
                "vocabulary", "features"):
        if mine.get(key) != theirs.get(key):
            raise InputError(f"{path}: does not match the base bundle's architecture ({key}: "
                             f"{_short(mine.get(key))} vs {_short(theirs.get(key))})")


def _short(value) -> str:
    text = json.dumps(value)
    return text if len(text) < 40 else text[:37] + "..."


def _refresh_manifest(bundle: Path, base: BaseBundle, new_files: dict[str, bytes], version: int, blob: bytes) -> None:
    manifest = json.loads(json.dumps(base.manifest))
    for entry in manifest["graphs"].values():
        if entry["file"] in new_files:
            entry["sha256"] = hashlib.sha256(new_files[entry["file"]]).hexdigest()
    for entry in manifest.get("weight_map", []):
        data = new_files.get(entry["file"], base.files.get(entry["file"]))
        entry["sha256"] = hashlib.sha256(data[entry["offset"]:entry["offset"] + entry["length"]]).hexdigest()
    manifest["update"] = {"version": version, "blob_digest": pb.signing_digest(blob).hex(),
                          "base_sha256": {name: hashlib.sha256(data).hexdigest() for name, data in base.files.items()}}
    (bundle / MANIFEST).write_text(json.dumps(manifest, indent=1) + "\n")


# ---- against a bundle on disk (`amc train-diff`) ------------------------------------------------

def train_diff_for_bundle(base_bundle: Path | str, data: Path | str, out: Path | str,
                          model: Path | str | None = None, method: str = "sparse", budget: str | int = "10%",
                          epochs: int = 4, finetune_epochs: int = 1, learning_rate: float = 0.15,
                          old_data: Path | str | None = None, old_utterances: int = 240, seed: int = 0,
                          report: Report = quiet, log: Callable[[dict], None] | None = None) -> dict:
    """Train a diff of the model deployed as `base_bundle` on the update folder `data` (its
    train/ split, mixed with old utterances) whose blob will fit `budget` (bytes or '% of the
    bundle'), and save it to `out`. `model` is the float checkpoint the bundle was compiled from
    (default: the one its manifest names); the bundle's int8 values stand in for its weights."""
    from amc.model.checkpoint import load_checkpoint
    from amc.model.corpus.updates import update_training_set
    from amc.model.neural_diff import DiffSettings, train_diff

    base = read_base(base_bundle)
    grids = grids_from_bundle(base)
    if not grids:
        raise InputError(f"{base_bundle}: its weight map holds no int8 region a diff can change")
    float_model = load_checkpoint(model if model is not None else base.manifest["model"].get("checkpoint"))
    if float_model.config.to_json() != base.config.to_json():
        raise InputError(f"{model}: not the architecture of {base_bundle}")
    budget_bytes = budget if isinstance(budget, int) else parse_budget(budget, base.bundle_bytes)
    train_data = update_training_set(data, float_model.config.features, old_data, old_utterances, seed, report)
    settings = DiffSettings(method=method, budget_bytes=budget_bytes, epochs=epochs, finetune_epochs=finetune_epochs,
                            learning_rate=learning_rate, seed=seed, file_names=tuple(base.files))
    diff = train_diff(float_model, grids, train_data, settings, report=report, log=log)
    diff.info["bundle_bytes"] = base.bundle_bytes
    diff.save(out)
    return {"diff": str(out), "method": method, "budget_bytes": budget_bytes, "bundle_bytes": base.bundle_bytes,
            **{k: v for k, v in diff.info.items() if k != "settings"}}
