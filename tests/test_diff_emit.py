"""amc diff: trained diffs and checkpoints -> blob + new bundle, proven with the C runtime.

The base bundle here is made directly from the weight-map contract (docs/manifest.md): three
graph files holding the int8 regions of a tiny model among filler bytes, and a manifest naming
each region's file, offset, shape and per-channel scales. That keeps these tests free of the
export toolchains; tests/test_diff_bundle.py runs the same path on a compiled bundle."""

from __future__ import annotations

import hashlib
import json
from pathlib import Path

import numpy as np
import pytest
import torch

from amc.common.atomic import current_umask
from amc.common.errors import BudgetError, InputError
from amc.compiler.bundle_diff import grids_from_bundle, make_diff, parse_budget, read_base
from amc.model.branched import BranchedEncoder
from amc.model.checkpoint import save_checkpoint
from amc.model.neural_diff import (
    DiffSettings,
    NeuralDiff,
    RegionDiff,
    estimate_grids,
    grids_sha256,
    is_diff_file,
    load_diff,
    record_budget,
    train_diff,
)
from amc.patch import blob as pb
from tests.conftest import random_features, tiny_config


def fake_bundle(model: BranchedEncoder, path: Path, seed: int = 0, padding: int = 0, target: str = "rpi4") -> Path:
    """Graph files with the model's int8 regions at known offsets (then `padding` more bytes each),
    and their manifest."""
    rng = np.random.default_rng(seed)
    grids = estimate_grids(model)
    graphs = {"fast": [g for g in grids if not g.parameter.startswith("slow.")],
              "slow": [g for g in grids if not g.parameter.startswith("fast.")],
              "arbitrator": []}
    path.mkdir(parents=True)
    manifest = {"schema": "amc-bundle", "schema_version": 1, "target": target, "backend": "executorch",
                "model": {"config": model.config.to_json()}, "passes": [], "graphs": {}, "weight_map": []}
    for graph, held in graphs.items():
        data = bytearray(rng.bytes(200))
        for grid in held:
            offset = len(data)
            values = grid.values.astype(np.int8)
            data += values.tobytes() + rng.bytes(int(rng.integers(8, 64)))
            manifest["weight_map"].append({
                "graph": graph, "file": f"{graph}.pte", "attr": grid.key, "parameter": grid.parameter,
                "transform": [f"columns {grid.start}:{grid.stop}"], "offset": offset, "length": values.size,
                "dtype": "int8", "shape": list(values.shape), "layout": "row-major",
                "sha256": hashlib.sha256(values.tobytes()).hexdigest(),
                "quantization": {"scheme": "per_channel", "axis": 0, "quant_min": -127, "quant_max": 127,
                                 "rounding": "round_half_even(float * (1 / scale)) + zero_point",
                                 "scales": [float(s) for s in grid.scales],
                                 "zero_points": [0] * len(grid.scales)}})
        if padding:
            data += rng.bytes(padding)
        (path / f"{graph}.pte").write_bytes(bytes(data))
        manifest["graphs"][graph] = {"file": f"{graph}.pte", "sha256": hashlib.sha256(bytes(data)).hexdigest()}
    (path / "manifest.json").write_text(json.dumps(manifest))
    return path


@pytest.fixture
def base(tmp_path, tiny_model) -> Path:
    return fake_bundle(tiny_model, tmp_path / "base")


def test_grids_read_back_from_the_bundle(base, tiny_model):
    grids = grids_from_bundle(read_base(base))
    expected = {g.key: g for g in estimate_grids(tiny_model)}
    assert {g.key for g in grids} == set(expected)
    for grid in grids:
        assert np.array_equal(grid.values, expected[grid.key].values)
    head = next(g for g in grids if g.parameter == "head.weight")
    assert {loc[0] for loc in head.locations} == {"fast.pte", "slow.pte"}


def test_parse_budget():
    assert parse_budget("10%", 50_000) == 5000
    assert parse_budget("2k", 1) == 2000
    assert parse_budget("300", 1) == 300
    with pytest.raises(InputError):
        parse_budget("ten", 1)


def _sparse_diff(grids, count=40, seed=0) -> NeuralDiff:
    rng = np.random.default_rng(seed)
    regions = []
    for grid in grids[:3]:
        positions = np.sort(rng.choice(grid.values.size, size=count, replace=False))
        regions.append(RegionDiff(grid.key, positions, rng.choice([-3, -2, 2, 3, 5], size=count)))
    return NeuralDiff("sparse", regions, grids_sha256(grids), 10_000)


def test_sparse_diff_blob_reproduces_the_new_bundle(base, tmp_path):
    grids = grids_from_bundle(read_base(base))
    diff = _sparse_diff(grids)
    diff.save(tmp_path / "u.amcd")
    assert is_diff_file(tmp_path / "u.amcd") and not is_diff_file(base / "manifest.json")
    result = make_diff(base, tmp_path / "u.amcd", tmp_path / "u.amcp", budget="50%",
                       signing_key=pb.example_signing_key())
    blob = result.blob.read_bytes()
    assert result.blob_bytes == len(blob) <= result.budget_bytes
    base_files = {n: (base / n).read_bytes() for n in ("fast.pte", "slow.pte", "arbitrator.pte")}
    applied = pb.apply_blob(blob, base_files, pb.public_key(pb.example_signing_key()))
    for name, data in applied.items():
        assert (result.bundle / name).read_bytes() == data
    # untouched bytes stay identical; the new bundle reads back as the diff's new weights
    new_grids = {g.key: g for g in grids_from_bundle(read_base(result.bundle))}
    for grid in diff.apply(grids):
        assert np.array_equal(new_grids[grid.key].values, grid.values)
    manifest = json.loads((result.bundle / "manifest.json").read_text())
    assert manifest["update"]["version"] == 2
    # the next update chains on the new bundle
    diff2 = _sparse_diff(list(new_grids.values()), seed=1)
    diff2.save(tmp_path / "u2.amcd")
    second = make_diff(result.bundle, tmp_path / "u2.amcd", tmp_path / "u2.amcp", budget="50%")
    assert second.version == 3
    unsigned = second.blob.read_bytes()          # no key named: the blob waits for a signer elsewhere
    assert not pb.is_signed(unsigned) and pb.read_blob(unsigned).version == 3
    assert json.loads((second.bundle / "manifest.json").read_text())["update"]["blob_digest"] == \
        pb.signing_digest(unsigned).hex()
    # ... but not on the old one
    with pytest.raises(InputError, match="other deployed weights"):
        make_diff(base, tmp_path / "u2.amcd", tmp_path / "x.amcp", budget="50%")


def test_hash_diff_emits_hash_records(base, tmp_path):
    grids = grids_from_bundle(read_base(base))
    regions = [RegionDiff(g.key, seed=11 + i, buckets=np.array([1, -2, 3, 0, 4])) for i, g in enumerate(grids[:2])]
    NeuralDiff("hash", regions, grids_sha256(grids), 10_000).save(tmp_path / "h.amcd")
    result = make_diff(base, tmp_path / "h.amcd", tmp_path / "h.amcp", budget="20%", method="auto")
    parsed = pb.read_blob(result.blob.read_bytes())
    assert {type(r) for r in parsed.records} == {pb.HashRecord}
    assert result.method == "hash" and result.blob_bytes < 1000


def test_checkpoint_update_under_budget(base, tmp_path, tiny_model):
    new = BranchedEncoder(tiny_model.config)
    new.load_state_dict(tiny_model.state_dict())
    with torch.no_grad():
        for name, p in new.named_parameters():
            if name.endswith("weight") and not name.startswith("arbitrator"):
                p.add_(0.05 * torch.randn_like(p))
    save_checkpoint(new, tmp_path / "new")
    full = make_diff(base, tmp_path / "new", tmp_path / "full.amcp", budget=None)
    budget = full.blob_bytes // 4
    for method in ("sparse", "hash", "auto"):
        result = make_diff(base, tmp_path / "new", tmp_path / f"{method}.amcp", budget=budget, method=method)
        assert result.blob_bytes <= budget
    assert make_diff(base, tmp_path / "new", tmp_path / "s.amcp", budget=budget, method="sparse").changed_elements \
        < full.changed_elements


def test_bad_inputs_write_nothing(base, tmp_path, tiny_model):
    other = BranchedEncoder(tiny_config(hidden=16))
    save_checkpoint(other, tmp_path / "other")
    out = tmp_path / "out" / "u.amcp"
    with pytest.raises(InputError, match="architecture"):
        make_diff(base, tmp_path / "other", out)
    save_checkpoint(tiny_model, tmp_path / "same")
    with pytest.raises(BudgetError, match="cannot hold anything"):
        make_diff(base, tmp_path / "same", out, budget="100")
    broken = tmp_path / "broken"
    fake_bundle(tiny_model, broken)
    data = bytearray((broken / "slow.pte").read_bytes())
    data[5] ^= 1
    (broken / "slow.pte").write_bytes(bytes(data))
    with pytest.raises(InputError, match="does not match its manifest"):
        make_diff(broken, tmp_path / "same", out)
    assert not out.exists() and not (tmp_path / "out" / "u.bundle").exists()


def test_trained_sparse_diff_fits_its_budget(base, tmp_path, tiny_model):
    grids = grids_from_bundle(read_base(base))
    data = random_features(24, seed=3)
    budget = 1500
    names = ("fast.pte", "slow.pte", "arbitrator.pte")
    diff = train_diff(tiny_model, grids, data, DiffSettings("sparse", budget, epochs=3, batch_size=12,
                                                            learning_rate=0.5, file_names=names))
    assert diff.info["record_bytes"] <= record_budget(budget, list(names))
    diff.save(tmp_path / "t.amcd")
    assert load_diff(tmp_path / "t.amcd").changed_elements() == diff.changed_elements() > 0
    assert (tmp_path / "t.amcd").stat().st_mode & 0o777 == 0o666 & ~current_umask()
    result = make_diff(base, tmp_path / "t.amcd", tmp_path / "t.amcp", budget=budget)
    assert result.blob_bytes <= budget
