"""Neural-diff training and the update scenario, on tiny models."""

from __future__ import annotations

import json
import random
import re
import shutil
from pathlib import Path

import numpy as np
import pytest

from amc.model.neural_diff import (
    DiffSettings,
    NeuralDiff,
    RegionDiff,
    deployed_model,
    estimate_grids,
    grids_sha256,
    hash_allocation,
    largest_changes,
    quantize_on,
    record_budget,
    sparse_record_bytes,
    train_diff,
)
from amc.patch import blob as pb
from tests.conftest import random_features

NAMES = ("fast.pte", "slow.pte", "arbitrator.pte")


def test_regions_skip_feature_columns_and_arbitrator(tiny_model):
    keys = [g.key for g in estimate_grids(tiny_model)]
    assert "slow.projections.0.linear.weight[:,120:152]" in keys
    assert not any(k.startswith("arbitrator") or ":,0:120]" in k for k in keys)


def test_estimated_grid_round_trips(tiny_model):
    grids = estimate_grids(tiny_model)
    assert all(np.abs(g.values).max() <= 127 for g in grids)
    again = quantize_on(grids, deployed_model(tiny_model, grids))
    assert all(np.array_equal(a.values, b.values) for a, b in zip(grids, again))


def test_hash_diff_apply_matches_the_patch_format(tiny_model):
    grid = estimate_grids(tiny_model)[0]
    buckets = np.array([3, -5, 0, 7, 127, -127])
    diff = NeuralDiff("hash", [RegionDiff(grid.key, seed=99, buckets=buckets)], grids_sha256([grid]), 1)
    new = diff.apply([grid])[0]
    region = bytearray(grid.file_order(grid.values).astype(np.int8).tobytes())
    pb.apply_records([region], [pb.HashRecord(0, 0, len(region), 1, 99, tuple(int(b) for b in buckets), True)])
    expected = np.clip(np.frombuffer(bytes(region), np.int8), -127, 127)
    assert np.array_equal(grid.file_order(new.values), expected)


def test_sparse_record_bytes_matches_the_writer():
    positions = np.array([0, 5, 300, 301, 20000])
    record = pb.SparseRecord(0, 0, 30000, 1, tuple(positions.tolist()), (1, 2, 3, 4, 5))
    files = [pb.PatchFile("a", 30000, b"\0" * 32, b"\0" * 32)]
    assert sparse_record_bytes(positions) == len(pb.encode_record(record, files))


def test_sparse_and_hash_training_meet_the_budget(tiny_model):
    grids = estimate_grids(tiny_model)
    data = random_features(16, seed=5)
    budget = 1200
    records_fit = record_budget(budget, list(NAMES))
    for method in ("sparse", "hash"):
        settings = DiffSettings(method, budget, epochs=2, batch_size=4, learning_rate=0.5, file_names=NAMES)
        diff = train_diff(tiny_model, grids, data, settings)
        assert 0 < diff.info["record_bytes"] <= records_fit
        assert diff.base_sha256 == grids_sha256(grids)
    assert sum(hash_allocation(grids, records_fit).values()) <= records_fit


def test_sparse_training_cuts_to_the_budget_before_its_fine_tuning_epochs(tiny_model):
    grids = estimate_grids(tiny_model)
    entries = []
    settings = DiffSettings("sparse", 1200, epochs=5, finetune_epochs=2, batch_size=4, learning_rate=0.5,
                            file_names=NAMES)
    diff = train_diff(tiny_model, grids, random_features(16, seed=5), settings, log=entries.append)
    cuts = [e for e in entries if "target_bytes" in e]
    assert [e["epoch"] for e in entries] == [1, 2, 3, 4, 5] and [e["epoch"] for e in cuts] == [1, 2, 3]
    assert cuts[-1]["target_bytes"] == record_budget(1200, list(NAMES))
    assert 0 < diff.info["record_bytes"] <= cuts[-1]["target_bytes"]


def test_largest_changes_keeps_the_biggest(tiny_model):
    grids = estimate_grids(tiny_model)
    target = [g.with_values(np.clip(g.values + np.random.default_rng(0).integers(-3, 4, g.values.shape), -127, 127))
              for g in grids]
    small = largest_changes(grids, target, 800, NAMES)
    large = largest_changes(grids, target, 4000, NAMES)
    assert 0 < small.changed_elements() < large.changed_elements()


def test_update_sentences_hold_their_new_words():
    pytest.importorskip("faker")
    from amc.model.corpus.grammar import Grammar
    from amc.model.corpus.updates import UPDATES, UpdateGrammar
    from amc.model.corpus.vocabulary import build_vocabulary

    vocab = build_vocabulary(0, per_locale=20)
    grammar = Grammar(vocab)
    for update in UPDATES:
        drawer = UpdateGrammar(update, grammar, vocab.first_names)
        rng = random.Random(1)
        for _ in range(20):
            word, text = drawer.sentence(rng)
            assert re.search(rf"(^| ){word}($| |')", text) and word in update.words


def test_new_words_are_new_to_the_corpus(tmp_path):
    """The reference model's corpus (seed 0, 20,000 training utterances), drawn without
    synthesizing audio, holds none of the update words."""
    from amc.model.corpus.grammar import Grammar
    from amc.model.corpus.synth import draw_sentences
    from amc.model.corpus.updates import UPDATES, check_new_words
    from amc.model.corpus.vocabulary import build_vocabulary

    sentences = draw_sentences(Grammar(build_vocabulary(0)), 0, {"train": 20000, "dev": 300, "test": 500})
    for split, drawn in sentences.items():
        (tmp_path / split).mkdir()
        lines = [json.dumps({"file_name": f"{i}.wav", "text": text}) for i, (_, text) in enumerate(drawn)]
        (tmp_path / split / "metadata.jsonl").write_text("\n".join(lines) + "\n")
    assert check_new_words(tmp_path) == {f"u{i}": [] for i in range(1, 6)}
    words = next(u.words for u in UPDATES)
    (tmp_path / "test" / "metadata.jsonl").write_text(json.dumps({"file_name": "x.wav", "text": f"call {words[0]} now"}))
    assert check_new_words(tmp_path)["u1"] == [words[0]]


@pytest.mark.skipif(shutil.which("espeak-ng") is None, reason="espeak-ng not installed")
def test_update_dev_split_leaves_train_and_test_bytes_alone(tmp_path):
    """Adding dev utterances to an update changes none of its train or test files, and no dev
    sentence repeats one of theirs."""
    pytest.importorskip("faker")
    from amc.model.corpus.updates import UPDATES, synthesize_update

    update = UPDATES[2]
    synthesize_update(update, tmp_path / "without", seed=3, train=3, test=2, dev=0)
    synthesize_update(update, tmp_path / "with", seed=3, train=3, test=2, dev=3)
    for split in ("train", "test"):
        names = sorted(p.name for p in (tmp_path / "without" / split).iterdir())
        assert names == sorted(p.name for p in (tmp_path / "with" / split).iterdir())
        for name in names:
            assert (tmp_path / "without" / split / name).read_bytes() == (tmp_path / "with" / split / name).read_bytes()

    def texts(split: str) -> set[str]:
        lines = (tmp_path / "with" / split / "metadata.jsonl").read_text().splitlines()
        return {json.loads(line)["text"] for line in lines}

    assert len(texts("dev")) == 3 and not texts("dev") & (texts("train") | texts("test"))
