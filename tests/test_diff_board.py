"""Neural-diff blobs applied in place on the boards under QEMU: two successive updates, by the
rpi4 build of amc-patch under qemu-aarch64, and by the bare-metal Cortex-M7 runtime (its test
program, on fixture packs holding the bundle's files) under qemu-system-arm, in the default build
and in the large one that holds a whole bundle (`check_on_mcu`)."""

from __future__ import annotations

import shutil
from pathlib import Path

import numpy as np
import pytest
import torch

from amc.compiler.bundle_diff import grids_from_bundle, make_diff, read_base
from amc.model.branched import BranchedEncoder
from amc.model.neural_diff import NeuralDiff, RegionDiff, grids_sha256
from amc.patch import blob as pb
from tests.conftest import tiny_config
from tests.test_diff_emit import fake_bundle


def _chain(tmp_path: Path, padding: int = 0, target: str = "rpi4") -> tuple[Path, list[tuple[Path, Path]]]:
    """A base bundle and two successive updates (sparse, then hash) made by `amc diff`."""
    torch.manual_seed(0)
    base = fake_bundle(BranchedEncoder(tiny_config()).eval(), tmp_path / "base", padding=padding, target=target)
    current, chain = base, []
    rng = np.random.default_rng(4)
    for step, method in enumerate(("sparse", "hash")):
        grids = grids_from_bundle(read_base(current))
        if method == "sparse":
            regions = [RegionDiff(g.key, np.sort(rng.choice(g.values.size, 30, replace=False)),
                                  rng.choice([-4, -1, 2, 6], 30)) for g in grids[:3]]
        else:
            regions = [RegionDiff(g.key, seed=step * 10 + i, buckets=rng.integers(-3, 4, 9)) for i, g in enumerate(grids[:2])]
        diff_path = tmp_path / f"u{step + 1}.amcd"
        NeuralDiff(method, regions, grids_sha256(grids), 10_000).save(diff_path)
        result = make_diff(current, diff_path, tmp_path / f"u{step + 1}.amcp", budget="30%",
                           signing_key=pb.example_signing_key())
        chain.append((result.blob, result.bundle))
        current = result.bundle
    return base, chain


@pytest.mark.cross
def test_blobs_apply_in_place_on_rpi4(tmp_path):
    from amc.ontarget.linux_board import patch_tool
    from amc.targets.presets import get_target
    from amc.targets.qemu import run_on_board

    base, chain = _chain(tmp_path)
    target = get_target("rpi4")
    tool = patch_tool(target)
    device = tmp_path / "device"
    shutil.copytree(base, device)
    key = tmp_path / "update.pub"
    key.write_bytes(pb.public_key(pb.example_signing_key()))
    for blob, new_bundle in chain:
        result = run_on_board(target, tool, ["apply", "--dir", device, "--key", key, blob])
        assert result.returncode == 0, result.stderr.decode()
        for name in ("fast.pte", "slow.pte", "arbitrator.pte"):
            assert (device / name).read_bytes() == (new_bundle / name).read_bytes()
    # the first blob again is refused (anti-rollback), storage untouched
    again = run_on_board(target, tool, ["apply", "--dir", device, "--key", key, chain[0][0]])
    assert again.returncode != 0


@pytest.mark.cross
def test_blobs_apply_bare_metal_on_cortex_m7(tmp_path):
    from amc.runtime.build import build_runtime
    from amc.runtime.c_tests import runner_command
    from amc.runtime.fixtures import F_SIG_TRUSTED, FixtureCase, write_pack
    from amc.targets.presets import get_target

    base, chain = _chain(tmp_path)
    names = ("fast.pte", "slow.pte", "arbitrator.pte")
    cases, current = [], base
    for blob, new_bundle in chain:
        data = blob.read_bytes()
        targeted = [f.name for f in pb.read_blob(data).files]
        assert targeted == list(names)
        cases.append(FixtureCase([(current / n).read_bytes() for n in names],
                                 [(new_bundle / n).read_bytes() for n in names], data, page_size=1024,
                                 backup_pages=2, flags=F_SIG_TRUSTED))
        current = new_bundle
    pack = write_pack(tmp_path / "diff.pack", cases, pb.public_key(pb.example_signing_key()))
    target = get_target("cortex-m7")
    build = build_runtime("cortex-m7")
    import subprocess
    result = subprocess.run(runner_command(target, build.tests, [str(pack)]), capture_output=True, text=True,
                            timeout=600)
    output = result.stdout + result.stderr
    assert "crosscheck cases=2 failed=0" in output, output[-2000:]


@pytest.mark.cross
def test_bundle_sized_blobs_apply_bare_metal_in_psram(tmp_path):
    """The large bare-metal build (buffers in the mps2-an500 PSRAM) applies a chain to files
    larger than the default build's 96 KiB and writes them back; a blob for another base is
    refused, and a new bundle that is not what the blob makes is caught."""
    from amc.bench.diff import check_on_mcu

    base, chain = _chain(tmp_path, padding=100_000, target="cortex-m7")
    assert sum((base / n).stat().st_size for n in ("fast.pte", "slow.pte", "arbitrator.pte")) > 3 * 96 * 1024
    rows = check_on_mcu(chain, base, utterances=0, work=tmp_path / "m7")
    assert [(r["applied"], r["files_equal"], r["dumped_files_equal"]) for r in rows] == [(True, True, True)] * 2
    # the second update on v1's files: refused (AMC_E_BASE), nothing written back
    wrong = check_on_mcu(chain[1:], base, utterances=0, work=tmp_path / "m7")
    assert [(r["applied"], r["rc"], r["files_equal"]) for r in wrong] == [(False, -7, False)]
    # a "new bundle" one byte away from what the first blob makes
    tampered = tmp_path / "tampered"
    shutil.copytree(chain[0][1], tampered)
    data = bytearray((tampered / "slow.pte").read_bytes())
    data[-1] ^= 1
    (tampered / "slow.pte").write_bytes(bytes(data))
    caught = check_on_mcu([(chain[0][0], tampered)], base, utterances=0, work=tmp_path / "m7")
    assert [(r["applied"], r["files_equal"], r["dumped_files_equal"]) for r in caught] == [(True, False, False)]
