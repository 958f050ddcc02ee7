"""The backlog recurrence, error rates and the streaming evaluator's bookkeeping."""

from __future__ import annotations

import numpy as np
import pytest
import torch

from amc.model.decoding import edit_distance, error_rates, greedy_decode
from amc.model.evaluate import backlog_trace, evaluate_model
from amc.model.routing import BranchCosts, advance_backlog
from amc.model.streaming import routed_logits, stream
from tests.conftest import random_features, tiny_config


def test_backlog_grows_by_the_overrun_and_never_goes_negative():
    costs = BranchCosts(slow=40.0, fast=10.0, arbitrator=0.0)      # already in ms
    trace = backlog_trace(np.array([False, False, False, True, True, True]), costs, 30.0, arbitrated=False)
    assert trace.tolist() == [0.0, 10.0, 20.0, 30.0, 10.0, 0.0]
    assert advance_backlog(torch.tensor([5.0]), torch.tensor([10.0]), 30.0).item() == 0.0


def test_costs_convert_to_milliseconds():
    assert BranchCosts(2.0, 0.5, 0.1).ms(40.0) == BranchCosts(50.0, 12.5, 2.5)


def test_error_rates():
    assert edit_distance("kitten", "sitting") == 3
    cer, wer = error_rates(["set a timer", "call anna"], ["set a timer", "call ana"])
    assert cer == pytest.approx(100 * 1 / 20)
    assert wer == pytest.approx(100 * 1 / 5)


def test_greedy_decode_merges_repeats_and_drops_blanks():
    vocabulary = ("_", "a", "b")
    labels = [1, 1, 0, 1, 2, 2, 0]
    logits = torch.nn.functional.one_hot(torch.tensor(labels), 3).float()
    assert greedy_decode(logits, vocabulary) == "aab"


@pytest.mark.parametrize("route, fast_fraction", [("slow", 0.0), ("fast", 1.0)])
def test_forced_routes_cost_what_their_branch_costs(tiny_model, route, fast_fraction):
    data = random_features(6)
    result = evaluate_model(tiny_model, data, route=route, mflops=0.05)
    costs = result["branch_mflops"]
    assert result["fast_fraction"] == fast_fraction
    assert result["mflops_per_frame"] == pytest.approx(costs[route], rel=1e-3)
    # so slow a processor that every frame takes longer than 30 ms: the last frame waits for all the others
    longest = max(len(f) for f in data.features)
    per_frame_ms = 1000 * costs[route] / 0.05
    assert per_frame_ms > 30.0
    assert result["latency_ms"]["max"] == pytest.approx((longest - 1) * (per_frame_ms - 30.0), rel=1e-2)


def test_every_k_routes_run_the_fast_branch_on_every_kth_frame_only(tiny_model):
    data = random_features(3, seed=2)
    x = torch.nn.utils.rnn.pad_sequence(data.features, batch_first=True)
    lengths = torch.tensor([len(f) for f in data.features])
    costs = BranchCosts(1.0, 0.5, 0.1)
    result = stream(tiny_model, x, lengths, "every:3", costs)
    steps = x.shape[1]
    assert result.p_fast[0].tolist() == [1.0 if t % 3 == 2 else 0.0 for t in range(steps)]
    assert torch.equal(stream(tiny_model, x, lengths, "every:1", costs).logits,
                       stream(tiny_model, x, lengths, "fast", costs).logits)
    assert torch.equal(stream(tiny_model, x, lengths, f"every:{steps + 1}", costs).logits,
                       stream(tiny_model, x, lengths, "slow", costs).logits)
    mixed = stream(tiny_model, x, lengths, "every:2", costs).logits
    assert not torch.allclose(mixed, stream(tiny_model, x, lengths, "slow", costs).logits)
    for bad in ("every:0", "every:", "sometimes"):
        with pytest.raises(ValueError, match="every:K"):
            stream(tiny_model, x, lengths, bad, costs)


def test_given_routes_run_what_the_stream_runs_on_the_same_pattern(tiny_model):
    data = random_features(3, seed=4)
    x = torch.nn.utils.rnn.pad_sequence(data.features, batch_first=True)
    lengths = torch.tensor([len(f) for f in data.features])
    costs = BranchCosts(1.0, 0.5, 0.1)
    every_second = (torch.arange(x.shape[1]) % 2 == 1).float().expand(3, -1)
    assert torch.allclose(routed_logits(tiny_model, x, every_second),
                          stream(tiny_model, x, lengths, "every:2", costs).logits, atol=1e-6)
    assert torch.allclose(routed_logits(tiny_model, x, torch.zeros(3, x.shape[1])),
                          tiny_model.sequence_logits("slow", x), atol=1e-5)


def test_arbitrated_stream_matches_its_own_backlog_bookkeeping(tiny_model):
    data = random_features(4, seed=5)
    result = evaluate_model(tiny_model, data, route="arbitrator", mflops=20.0, keep_traces=True)
    costs_ms = BranchCosts(**result["branch_mflops"]).ms(20.0)
    for trace in result["traces"]:
        assert np.allclose(trace["backlog_ms"], backlog_trace(trace["fast"], costs_ms, 30.0, arbitrated=True))
    assert 0.0 <= result["fast_fraction"] <= 1.0


def test_state_gap_measures_how_far_the_fast_branch_lands_from_the_slow_one():
    from amc.model.branched import BranchedEncoder
    from amc.model.train import init_fast_from_slow

    torch.manual_seed(5)
    model = BranchedEncoder(tiny_config(fast_variant="sparse")).eval()
    init_fast_from_slow(model)                   # an unpruned copy: both branches step alike
    x, lengths = torch.randn(2, 12, 120), torch.tensor([12, 7])
    costs = BranchCosts(1.0, 0.1, 0.01).ms(1.0)
    with torch.no_grad():
        same = stream(model, x, lengths, "arbitrator", costs, tau=1.0).state_gap
        model.fast.projections[0].linear.weight.add_(0.05 * torch.randn_like(model.fast.projections[0].linear.weight))
        apart = stream(model, x, lengths, "arbitrator", costs, tau=1.0)
        hard = stream(model, x, lengths, "slow", costs).state_gap
    assert same.abs().max() < 1e-10
    assert (apart.state_gap[0] > 0).all() and (apart.state_gap[1, 7:] == 0).all()   # padding counts nothing
    assert (hard == 0).all()                     # one branch ran: nothing to compare


def test_hard_training_routes_are_one_hot_and_still_carry_gradients(tiny_model):
    x, lengths = torch.randn(2, 10, 120), torch.tensor([10, 10])
    costs = BranchCosts(1.0, 0.1, 0.01).ms(1.0)
    soft = stream(tiny_model, x, lengths, "arbitrator", costs, tau=1.0)
    hard = stream(tiny_model, x, lengths, "arbitrator", costs, tau=1.0, hard=True)
    assert not ((soft.p_fast == 0) | (soft.p_fast == 1)).all()
    assert ((hard.p_fast == 0) | (hard.p_fast == 1)).all()
    hard.logits.sum().backward()
    assert tiny_model.arbitrator.output.weight.grad.abs().sum() > 0
