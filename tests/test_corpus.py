"""The synthetic speech corpus: text rules, grammar, voice split, mixing SNR, and a tiny
synthesized corpus (determinism, format, split disjointness, unheard test voices)."""

from __future__ import annotations

import json
import os
import random
import shutil
import subprocess
import sys
from pathlib import Path

import numpy as np
import pytest

from amc.common.errors import InputError, ToolMissingError
from amc.model.corpus import synth, voices
from amc.model.corpus.audio_folder import load_wav, read_audio_folder, wav_info
from amc.model.corpus.augmentation import (
    NOISE_KINDS,
    SAMPLE_RATE,
    babble,
    colored_noise,
    hum,
    measured_snr_db,
    mix_at_snr,
)
from amc.model.corpus.grammar import Grammar
from amc.model.corpus.text import (
    ALPHABET,
    clock_words,
    invalid_characters,
    normalize,
    number_words,
    ordinal_words,
    year_words,
)
from amc.model.corpus.vocabulary import build_vocabulary
from amc.model.corpus.voices import ACCENTS, TEST_ACCENTS, TEST_VARIANTS, VARIANTS, training_voices, voices_for_split

needs_espeak = pytest.mark.skipif(shutil.which("espeak-ng") is None, reason="espeak-ng not installed")
TINY = {"train": 4, "dev": 1, "test": 1}


# --- text ------------------------------------------------------------------------------------

def test_alphabet_is_space_apostrophe_and_lowercase_letters():
    assert ALPHABET == " '" + "abcdefghijklmnopqrstuvwxyz"
    assert len(set(ALPHABET)) == len(ALPHABET)


@pytest.mark.parametrize("n, words", [
    (0, "zero"), (13, "thirteen"), (25, "twenty five"), (100, "one hundred"),
    (2405, "two thousand four hundred five"), (1_000_001, "one million one")])
def test_number_words(n, words):
    assert number_words(n) == words


def test_ordinals_years_and_clock_times():
    assert [ordinal_words(n) for n in (1, 2, 3, 12, 20, 23)] == [
        "first", "second", "third", "twelfth", "twentieth", "twenty third"]
    assert year_words(1987) == "nineteen eighty seven"
    assert year_words(2005) == "two thousand five"
    assert year_words(1905) == "nineteen oh five"
    assert clock_words(7, 30) == "seven thirty a m"
    assert clock_words(19, 5) == "seven oh five p m"
    assert clock_words(18, 45, style=1) == "quarter to seven"
    assert clock_words(12, 0, style=2) == "noon"


def test_normalize_folds_free_text_into_the_alphabet():
    assert normalize("Zoë O'Brien-Müller & Sons, 42 St.") == "zoe o'brien muller and sons forty two st"
    assert normalize("'quoted' words’") == "quoted words"
    assert invalid_characters("Set 5 timers!") == "S5!"


# --- grammar and vocabulary -----------------------------------------------------------------

@pytest.fixture(scope="module")
def grammar():
    return Grammar(build_vocabulary(0))


def test_sentences_use_only_the_alphabet_and_an_open_vocabulary(grammar):
    rng = random.Random(7)
    sentences = [grammar.sentence(rng) for _ in range(3000)]
    texts = [text for _, text in sentences]
    assert all(not invalid_characters(t) and t == " ".join(t.split()) for t in texts)
    assert {domain for domain, _ in sentences} >= {"timers", "alarms", "music", "weather", "home",
                                                   "calling", "navigation", "shopping", "numbers"}
    words = {w for t in texts for w in t.split()}
    assert len(words) > 2000  # open vocabulary, not a handful of slot values
    assert len(set(texts)) > 0.9 * len(texts)
    mean_words = sum(len(t.split()) for t in texts) / len(texts)
    assert 6 <= mean_words <= 12


def test_vocabulary_is_reproducible_across_processes():
    code = ("import hashlib; from amc.model.corpus.vocabulary import build_vocabulary; "
            "print(hashlib.sha256(repr(build_vocabulary(3)).encode()).hexdigest())")
    digests = {subprocess.run([sys.executable, "-c", code], capture_output=True, text=True, check=True,
                              env={**os.environ, "PYTHONHASHSEED": str(h)}).stdout for h in (1, 2)}
    assert len(digests) == 1


def test_splits_share_no_sentences(grammar):
    drawn = synth.draw_sentences(grammar, seed=0, counts={"train": 3000, "dev": 300, "test": 500})
    texts = {split: [t for _, t in rows] for split, rows in drawn.items()}
    assert {s: len(t) for s, t in texts.items()} == {"train": 3000, "dev": 300, "test": 500}
    for split in texts:
        assert len(set(texts[split])) == len(texts[split])
    assert not set(texts["train"]) & set(texts["test"])
    assert not set(texts["train"]) & set(texts["dev"])
    assert not set(texts["dev"]) & set(texts["test"])
    # test and dev sentences do not depend on how many training sentences are drawn
    fewer = synth.draw_sentences(grammar, seed=0, counts={"train": 10, "dev": 300, "test": 500})
    assert fewer["test"] == drawn["test"] and fewer["dev"] == drawn["dev"]


# --- voices ----------------------------------------------------------------------------------

def test_test_voices_are_never_heard_in_training():
    train, test = set(training_voices()), set(voices.test_voices())
    assert not train & test
    assert train | test == {voices.Voice(a, v) for a in ACCENTS for v in VARIANTS}
    assert len(TEST_ACCENTS) >= 2 and len(TEST_VARIANTS) >= 3
    assert TEST_ACCENTS < set(ACCENTS) and TEST_VARIANTS < set(VARIANTS)
    assert all(v.accent not in TEST_ACCENTS and v.variant not in TEST_VARIANTS for v in train)
    assert voices_for_split("dev") == training_voices()
    assert len(train) >= 100 and len(test) >= 50


# --- mixing ----------------------------------------------------------------------------------

@pytest.mark.parametrize("kind", NOISE_KINDS)
@pytest.mark.parametrize("snr_db", [0.0, 7.5, 20.0])
def test_mixing_hits_the_requested_snr(kind, snr_db):
    rng = np.random.default_rng(1)
    n = 3 * SAMPLE_RATE
    t = np.arange(n) / SAMPLE_RATE
    speech = (0.1 * np.sin(2 * np.pi * 220 * t) * (1 + np.sin(2 * np.pi * 3 * t))).astype(np.float32)
    speech[: SAMPLE_RATE // 4] = 0  # leading padding, outside the speech region
    region = slice(SAMPLE_RATE // 4, n)
    bank = [colored_noise("white", SAMPLE_RATE, rng) for _ in range(4)]
    noise = {"hum": lambda: hum(n, rng), "babble": lambda: babble(n, bank, rng)}.get(
        kind, lambda: colored_noise(kind, n, rng))()
    assert abs(np.mean(noise.astype(np.float64) ** 2) - 1.0) < 1e-3  # unit power
    mixture = mix_at_snr(speech, noise, snr_db, region)
    assert abs(measured_snr_db(speech, mixture, region) - snr_db) < 0.05


def test_pink_and_brown_noise_tilt_down():
    rng = np.random.default_rng(0)
    def low_high_ratio(x):
        power = np.abs(np.fft.rfft(x)) ** 2
        f = np.fft.rfftfreq(len(x), 1 / SAMPLE_RATE)
        return power[(f > 100) & (f < 400)].mean() / power[(f > 3000) & (f < 6000)].mean()
    white, pink, brown = (low_high_ratio(colored_noise(k, SAMPLE_RATE * 2, rng)) for k in ("white", "pink", "brown"))
    assert white < 2 < pink < 40 < brown


# --- a tiny synthesized corpus ---------------------------------------------------------------

def _synthesize(out: Path, **kwargs) -> dict:
    return synth.synthesize_corpus(out, seed=5, **TINY, **kwargs)


def _files(root: Path) -> dict[str, bytes]:
    return {str(p.relative_to(root)): p.read_bytes() for p in sorted(root.rglob("*")) if p.is_file()}


@pytest.fixture(scope="module")
def tiny_corpus(tmp_path_factory) -> Path:
    if shutil.which("espeak-ng") is None:
        pytest.skip("espeak-ng not installed")
    out = tmp_path_factory.mktemp("corpus") / "tiny"
    _synthesize(out, workers=2)
    return out


@needs_espeak
def test_same_seed_gives_the_same_bytes(tiny_corpus, tmp_path):
    # another process, another hash seed, one worker: still the same bytes
    again = tmp_path / "again"
    code = ("import sys; from amc.model.corpus.synth import synthesize_corpus; "
            f"synthesize_corpus(sys.argv[1], seed=5, train={TINY['train']}, dev={TINY['dev']}, "
            f"test={TINY['test']}, workers=1)")
    subprocess.run([sys.executable, "-c", code, str(again)], check=True,
                   env={**os.environ, "PYTHONHASHSEED": "123"})
    assert _files(again) == _files(tiny_corpus)
    other = tmp_path / "other"
    synth.synthesize_corpus(other, seed=6, **TINY, workers=1)
    assert _files(other)["train/train_00000.wav"] != _files(tiny_corpus)["train/train_00000.wav"]


@needs_espeak
def test_corpus_layout_format_and_metadata(tiny_corpus):
    assert sorted(p.name for p in tiny_corpus.iterdir()) == ["corpus.json", "dev", "test", "train"]
    assert not [p for p in tiny_corpus.parent.iterdir() if p.name.startswith(".")]  # no staging left
    for split, count in TINY.items():
        utterances = read_audio_folder(tiny_corpus / split)
        assert len(utterances) == count
        for u in utterances:
            info = wav_info(u.path)
            assert (info.sample_rate, info.channels, info.sample_width) == (16000, 1, 2)
            assert 1.0 < info.seconds < 15.0
            assert u.metadata["split"] == split and u.metadata["duration_s"] == round(info.seconds, 3)
            samples = load_wav(u.path)
            assert samples.dtype == np.float32 and 0 < np.abs(samples).max() <= 1.0
            lead = int(0.09 * SAMPLE_RATE)  # the padding is quieter than the speech
            assert np.sqrt(np.mean(samples[:lead] ** 2)) < np.sqrt(np.mean(samples ** 2))
    summary = json.loads((tiny_corpus / "corpus.json").read_text())
    assert summary["seed"] == 5 and summary["splits"]["train"]["utterances"] == TINY["train"]


@needs_espeak
def test_synthesized_test_split_uses_unheard_voices(tiny_corpus):
    heard = {v.name for v in training_voices()}
    for split in ("train", "dev"):
        assert all(u.metadata["voice"] in heard for u in read_audio_folder(tiny_corpus / split))
    assert all(u.metadata["voice"] not in heard for u in read_audio_folder(tiny_corpus / "test"))


@needs_espeak
def test_existing_output_is_kept_unless_forced(tiny_corpus, tmp_path):
    out = tmp_path / "c"
    out.mkdir()
    (out / "keep.txt").write_text("mine")
    with pytest.raises(InputError, match="already exists"):
        synth.synthesize_corpus(out, train=1, dev=0, test=0, workers=1)
    assert (out / "keep.txt").exists()
    synth.synthesize_corpus(out, train=1, dev=0, test=0, workers=1, force=True)
    assert not (out / "keep.txt").exists() and (out / "train" / "metadata.jsonl").exists()
    assert sorted(p.name for p in tmp_path.iterdir()) == ["c"]


@needs_espeak
def test_a_failed_synthesis_leaves_nothing(tmp_path, monkeypatch):
    def broken(job):
        raise RuntimeError("disk full")
    monkeypatch.setattr(synth, "_utterance", broken)
    with pytest.raises(RuntimeError):
        synth.synthesize_corpus(tmp_path / "c", train=2, dev=0, test=0, workers=1)
    assert list(tmp_path.iterdir()) == []


def test_missing_espeak_is_a_one_line_tool_error(tmp_path, monkeypatch):
    monkeypatch.setattr(synth.shutil, "which", lambda name: None)
    with pytest.raises(ToolMissingError, match="apt-get install espeak-ng") as error:
        synth.synthesize_corpus(tmp_path / "c", train=1, dev=0, test=0)
    assert "\n" not in str(error.value)


def test_cli_synth_hands_options_to_the_api(tmp_path, monkeypatch):
    from typer.testing import CliRunner

    from amc.cli import data
    seen = {}
    def fake(output, **kwargs):
        seen.update(kwargs, output=output)
        return {"output": str(output), "splits": {}, "wall_s": 0.0}
    monkeypatch.setattr(synth, "synthesize_corpus", fake)
    result = CliRunner().invoke(data.app, ["synth", "-o", str(tmp_path / "c"), "--seed", "3",
                                           "--train", "7", "--dev", "2", "--test", "1", "--json"])
    assert result.exit_code == 0, result.output
    assert (seen["seed"], seen["train"], seen["dev"], seen["test"]) == (3, 7, 2, 1)
    assert json.loads(result.stdout)["output"] == str(tmp_path / "c")
