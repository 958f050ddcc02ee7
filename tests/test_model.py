"""The branched encoder: step graphs agree with whole-sequence training, branches share state,
compression inits, costs, checkpoints and their errors."""

from __future__ import annotations

import json

import pytest
import torch

from amc.common.atomic import current_umask
from amc.common.errors import InputError
from amc.model.branched import BranchedEncoder
from amc.model.checkpoint import load_checkpoint, save_checkpoint
from amc.model.routing import branch_costs
from amc.model.train import TrainSettings, distillation, init_fast_from_slow, prune_to, random_routes, train
from tests.conftest import random_features, tiny_config


@pytest.mark.parametrize("variant", ["factorized", "sparse"])
@pytest.mark.parametrize("route", ["slow", "fast"])
@pytest.mark.parametrize("cell_clip", [None, 0.5])
def test_step_graph_matches_fused_sequence(variant, route, cell_clip):
    torch.manual_seed(1)
    model = BranchedEncoder(tiny_config(fast_variant=variant, cell_clip=cell_clip)).eval()
    x = 3 * torch.randn(3, 12, 120)
    whole = model.sequence_logits(route, x)
    step = model.step_module(route)
    h, c = model.initial_state(3)
    frames = []
    for t in range(12):
        logits, h, c = step(x[:, t], h, c)
        frames.append(logits)
    assert torch.allclose(torch.stack(frames, dim=1), whole, atol=1e-5)


def test_cell_clip_bounds_the_cell_state():
    torch.manual_seed(1)
    free = BranchedEncoder(tiny_config()).eval()
    clipped = BranchedEncoder(tiny_config(cell_clip=0.1)).eval()
    clipped.load_state_dict(free.state_dict())
    x = 3 * torch.randn(2, 120)
    h, c = free.initial_state(2)
    _, _, c_free = free.branch_step("slow", x, h, c)
    _, _, c_clipped = clipped.branch_step("slow", x, h, c)
    assert c_free.abs().max() > 0.1                      # the clip is active on this input
    assert c_clipped.abs().max() <= 0.1
    first = slice(0, clipped.config.hidden)             # the first layer's cell: the same sum, clamped
    assert torch.equal(c_clipped[:, first], c_free[:, first].clamp(-0.1, 0.1))


def test_branches_share_state_layout(tiny_model):
    x = torch.randn(1, 120)
    h, c = tiny_model.initial_state()
    _, hs, cs = tiny_model.step_module("slow")(x, h, c)
    _, hf, cf = tiny_model.step_module("fast")(x, hs, cs)     # switching branch mid-stream is legal
    assert hs.shape == hf.shape == (1, tiny_model.config.state_dim)
    assert not torch.allclose(hs, hf)


def test_full_rank_factorization_reproduces_slow_branch():
    torch.manual_seed(2)
    config = tiny_config(fast_rank=64)          # full rank min(4H, in + H) of the second layer only
    model = BranchedEncoder(config).eval()
    init_fast_from_slow(model)
    slow_w = model.slow.projections[1].effective_weight()
    fast_w = model.fast.projections[1].effective_weight()
    assert torch.allclose(slow_w, fast_w, atol=1e-4)
    first_error = (model.slow.projections[0].effective_weight() - model.fast.projections[0].effective_weight()).norm()
    assert first_error > 1e-3                    # the first layer (in + H = 152 > 64) really is truncated


def test_pruning_reaches_density_and_keeps_largest():
    torch.manual_seed(3)
    model = BranchedEncoder(tiny_config(fast_variant="sparse")).eval()
    init_fast_from_slow(model)
    prune_to(model, 0.25)
    for projection in model.fast.projections:
        assert abs(projection.density() - 0.25) < 0.01
        kept = projection.linear.weight.abs()[projection.mask.bool()]
        dropped = projection.linear.weight.abs()[~projection.mask.bool()]
        assert kept.min() >= dropped.max()


def test_fast_branch_costs_less_and_sparse_counts_kept_weights():
    factorized = branch_costs(BranchedEncoder(tiny_config(hidden=64, fast_rank=8)))
    assert factorized.fast < 0.5 * factorized.slow
    assert 0 < factorized.arbitrator < factorized.fast
    sparse_model = BranchedEncoder(tiny_config(hidden=64, fast_variant="sparse"))
    dense = branch_costs(sparse_model)
    prune_to(sparse_model, 0.2)
    pruned = branch_costs(sparse_model)
    assert dense.fast == pytest.approx(dense.slow)
    assert pruned.fast < 0.35 * pruned.slow


def test_checkpoint_round_trip(tmp_path, tiny_model):
    save_checkpoint(tiny_model, tmp_path / "ckpt", extra={"note": "test"})
    loaded = load_checkpoint(tmp_path / "ckpt")
    assert loaded.config == tiny_model.config
    for name, tensor in tiny_model.state_dict().items():
        assert torch.equal(tensor, loaded.state_dict()[name])
    umask = current_umask()     # written atomically, yet with the permissions of a plain write
    assert (tmp_path / "ckpt").stat().st_mode & 0o777 == 0o777 & ~umask
    assert (tmp_path / "ckpt" / "model.safetensors").stat().st_mode & 0o777 == 0o666 & ~umask


def _edit_config(path, **changes):
    body = json.loads((path / "config.json").read_text())
    body.update(changes)
    (path / "config.json").write_text(json.dumps(body))


@pytest.mark.parametrize("change, message", [
    ({"hidden": 48}, "has shape"),
    ({"architecture": "transformer"}, "unknown architecture"),
    ({"dropout": 0.1}, "unknown key 'dropout'"),
    ({"fast_variant": "pruned"}, "fast_variant"),
    ({"cell_clip": -1}, "cell_clip"),
])
def test_bad_checkpoints_are_named(tmp_path, tiny_model, change, message):
    save_checkpoint(tiny_model, tmp_path / "ckpt")
    _edit_config(tmp_path / "ckpt", **change)
    with pytest.raises(InputError, match=message):
        load_checkpoint(tmp_path / "ckpt")


def test_missing_weights_file(tmp_path, tiny_model):
    save_checkpoint(tiny_model, tmp_path / "ckpt")
    (tmp_path / "ckpt" / "model.safetensors").unlink()
    with pytest.raises(InputError, match="model.safetensors: missing"):
        load_checkpoint(tmp_path / "ckpt")


def test_distillation_counts_only_real_frames_and_vanishes_on_agreement():
    torch.manual_seed(0)
    teacher, student = torch.randn(2, 6, 5), torch.randn(2, 6, 5)
    lengths = torch.tensor([6, 3])
    assert distillation(teacher, teacher, lengths).item() == pytest.approx(0.0, abs=1e-6)
    kl = distillation(student, teacher, lengths).item()
    assert kl > 0.05
    padded = student.clone()
    padded[1, 3:] = 100.0          # frames past the second utterance's end do not count
    assert distillation(padded, teacher, lengths).item() == pytest.approx(kl)


def test_random_routes_mix_slow_only_fast_only_and_switching_utterances():
    routes = random_routes(300, 200, torch.Generator().manual_seed(0))
    assert set(routes.unique().tolist()) == {0.0, 1.0}
    share = routes.mean(1)
    slow_only, fast_only = int((share == 0).sum()), int((share == 1).sum())
    assert 70 < slow_only < 130 and 70 < fast_only < 130
    mixed = share[(share > 0) & (share < 1)]
    assert len(mixed) == 300 - slow_only - fast_only
    assert mixed.min() > 0.1 and mixed.max() < 0.9
    assert torch.equal(routes, random_routes(300, 200, torch.Generator().manual_seed(0)))


def test_mixed_phase_trains_both_branches_and_reports_the_switching_route():
    torch.manual_seed(0)
    data = random_features(4)
    init = BranchedEncoder(tiny_config()).eval()
    model, history = train(tiny_config(), data, data, TrainSettings(mixed_epochs=1, slow_epochs=0, fast_epochs=0,
                                                                    joint_epochs=0), init=init)
    assert [e["phase"] for e in history["epochs"]] == ["mixed"]
    assert 0 < history["epochs"][0]["fast_fraction"] < 1       # dev scored with a switch every other frame
    for branch in ("slow", "fast"):
        before, after = getattr(init, branch).state_dict(), getattr(model, branch).state_dict()
        assert all(not torch.equal(before[k], after[k]) for k in before)


@pytest.mark.parametrize("rank, kept", [(4, True), (2, False)])
def test_init_keeps_the_fast_branch_only_when_it_fits(rank, kept):
    torch.manual_seed(0)
    init = BranchedEncoder(tiny_config()).eval()
    data = random_features(4)
    model, _ = train(tiny_config(fast_rank=rank), data, data, TrainSettings(fast_epochs=0, joint_epochs=0), init=init)
    assert torch.equal(model.slow.projections[0].linear.weight, init.slow.projections[0].linear.weight)
    assert torch.equal(model.arbitrator.output.weight, init.arbitrator.output.weight)   # no joint phase
    same = [torch.equal(a, b) for a, b in zip(model.fast.state_dict().values(), init.fast.state_dict().values())]
    assert all(same) if kept else not any(same)


def test_a_kept_arbitrator_keeps_the_backlog_scale_it_was_trained_with(tmp_path, monkeypatch):
    from amc.model import feature_set as dataset
    from amc.model.train import train_checkpoint

    torch.manual_seed(0)
    save_checkpoint(BranchedEncoder(tiny_config(backlog_scale_ms=7.0)).eval(), tmp_path / "init")
    monkeypatch.setattr(dataset, "load_features", lambda path, features, report=None: random_features(4))
    for joint_epochs, scale in ((0, 7.0), (1, 100.0)):
        out = tmp_path / f"joint{joint_epochs}"
        train_checkpoint(tmp_path / "data", out, settings=TrainSettings(fast_epochs=0, joint_epochs=joint_epochs),
                         rank=4, backlog_scale_ms=100.0, init=tmp_path / "init")
        assert load_checkpoint(out).config.backlog_scale_ms == scale
