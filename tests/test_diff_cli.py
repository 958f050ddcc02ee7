"""CLI: `amc diff` and `amc train-diff` exit codes, JSON keys, one-line errors."""

from __future__ import annotations

import json

import pytest
import torch

from amc.compiler.bundle_diff import grids_from_bundle, read_base
from amc.model.branched import BranchedEncoder
from amc.model.checkpoint import save_checkpoint
from amc.model.neural_diff import NeuralDiff, RegionDiff, grids_sha256
from tests.conftest import run_cli as _run
from tests.conftest import tiny_config
from tests.test_diff_emit import fake_bundle


@pytest.fixture
def setup(tmp_path):
    torch.manual_seed(0)
    model = BranchedEncoder(tiny_config()).eval()
    base = fake_bundle(model, tmp_path / "base")
    grids = grids_from_bundle(read_base(base))
    grid = grids[0]
    NeuralDiff("sparse", [RegionDiff(grid.key, torch.arange(0, 60, 3).numpy(), torch.full((20,), 4).numpy())],
               grids_sha256(grids), 2000).save(tmp_path / "u.amcd")
    save_checkpoint(model, tmp_path / "ckpt")
    save_checkpoint(BranchedEncoder(tiny_config(hidden=16)), tmp_path / "other")
    return tmp_path, base


def test_diff_json(setup, capsys):
    tmp, base = setup
    code, out, _ = _run(["diff", str(base), str(tmp / "u.amcd"), "-o", str(tmp / "u.amcp"), "--budget", "20%",
                         "--unsigned", "--json"], capsys)
    assert code == 0
    result = json.loads(out)
    assert {"blob", "blob_bytes", "bundle_bytes", "bundle"} <= set(result)
    assert result["blob_bytes"] == (tmp / "u.amcp").stat().st_size <= 0.2 * result["bundle_bytes"]


@pytest.mark.parametrize("argv,message,exit_code", [
    (["{other}"], "architecture", 2),
    (["{ckpt}", "--budget", "50"], "cannot hold anything", 4),
])
def test_diff_errors_are_one_line(setup, capsys, argv, message, exit_code):
    tmp, base = setup
    argv = [a.format(other=tmp / "other", ckpt=tmp / "ckpt") for a in argv]
    code, out, err = _run(["diff", str(base), argv[0], "-o", str(tmp / "x.amcp"), "--unsigned", *argv[1:]], capsys)
    assert code == exit_code and message in err and len(err.strip().splitlines()) == 1
    assert not (tmp / "x.amcp").exists() and not (tmp / "x.bundle").exists()


def test_train_diff_rejects_unknown_method(setup, capsys):
    tmp, base = setup
    (tmp / "data" / "train").mkdir(parents=True)
    code, _, err = _run(["train-diff", str(base), "--data", str(tmp / "data"), "-o", str(tmp / "t.amcd"),
                         "--model", str(tmp / "ckpt"), "--method", "dense"], capsys)
    assert code != 0 and "amc: error" in err


def test_bench_diff_hands_the_cortex_m7_bundle_to_the_api(tmp_path, capsys, monkeypatch):
    from amc.bench import diff as bench_diff

    seen = {}

    def fake(updates, **options):
        seen.update(options)
        return {"rows": [], "cortex_m7": {"rows": []}}

    monkeypatch.setattr(bench_diff, "bench_diff", fake)
    (tmp_path / "m7").mkdir()
    code, out, _ = _run(["bench", "diff", "--updates", str(tmp_path), "--cortex-m7", str(tmp_path / "m7"), "--json"],
                        capsys)
    assert code == 0 and json.loads(out)["cortex_m7"] == {"rows": []}
    assert seen["cortex_m7"] == tmp_path / "m7"
    assert seen["rpi4_board"] is False
    assert seen["split"] == "test" and seen["only"] == ()
    code, _, _ = _run(["bench", "diff", "--updates", str(tmp_path), "--rpi4-board", "--split", "dev",
                       "--only", "sparse-10%", "--only", "hash-2%", "--json"], capsys)
    assert code == 0 and seen["rpi4_board"] is True
    assert seen["split"] == "dev" and seen["only"] == ("sparse-10%", "hash-2%")


def test_bench_diff_refuses_an_unknown_chain_or_split_before_any_work(tmp_path):
    from amc.bench.diff import bench_diff
    from amc.common.errors import InputError

    (tmp_path / "scenario.json").write_text(json.dumps({"budgets": {"10%": 0.1}}))
    with pytest.raises(InputError, match="unknown chain 'dense-10%' \\(use sparse-10%, hash-10%, largest-10%\\)"):
        bench_diff(tmp_path, only=("dense-10%",), work=tmp_path / "work")
    with pytest.raises(InputError, match="unknown split 'train'"):
        bench_diff(tmp_path, split="train", work=tmp_path / "work")
    assert not (tmp_path / "work").exists()
