"""The update scenario: five successive model updates u1..u5, each teaching the deployed model
words it has never heard (athletes' names, new commands, new places, new apps, new artists).

Each update has its own audio folders, made with the corpus generator's grammar, voices and
degradation (through their public functions):

* `UPDATE/train`: new-word utterances spoken by training voices (the update's training set is
  these plus a slice of the old training data, mixed at load time, see `update_training_set`);
* `UPDATE/test`: new-word utterances spoken only by the held-out test voices;
* `UPDATE/dev`: new-word utterances spoken by training voices, for tuning an update recipe
  without looking at the test set (`amc bench diff --split dev`).

The words of every update are absent from the v1 corpus (checked by `check_new_words`), so v1
gets them wrong: that is what an update has to fix.
"""

from __future__ import annotations

import json
import random
import re
import shutil
import tempfile
from collections.abc import Callable
from dataclasses import dataclass
from pathlib import Path

import numpy as np

from amc.common.errors import InputError
from amc.model.corpus.augmentation import degrade, draw_degradation
from amc.model.corpus.grammar import TEMPLATES, Grammar
from amc.model.corpus.synth import espeak, espeak_binary, write_wav
from amc.model.corpus.text import invalid_characters, normalize
from amc.model.corpus.vocabulary import build_vocabulary
from amc.model.corpus.voices import draw_prosody, training_voices, voices_for_split

Report = Callable[[str, int, int], None]

SCENARIO_VERSION = 1


@dataclass(frozen=True)
class Update:
    """One update: the words it teaches, the grammar slot they fill, and templates of its own."""

    name: str
    title: str
    slot: str                          # the grammar slot the new words stand in for
    words: tuple[str, ...]
    templates: tuple[str, ...] = ()    # extra templates with a {new} slot (new commands)

    def to_json(self) -> dict:
        return {"name": self.name, "title": self.title, "slot": self.slot, "words": list(self.words),
                "templates": list(self.templates)}


UPDATES: tuple[Update, ...] = (
    Update("u1", "athletes in the news", "last_name",
           ("ledecky", "kalisz", "biles", "mbappe", "djokovic", "kipchoge", "shiffrin", "haaland",
            "wembanyama", "sabalenka", "duplantis", "ohtani")),
    Update("u2", "new appliance commands", "device",
           ("sous vide", "air fryer", "bidet", "espresso machine", "thermomix", "dehydrator",
            "rice cooker", "heat pump"),
           ("preheat the {new} to {temperature}", "descale the {new}", "clean the {new}",
            "start the {new} in {minutes}", "is the {new} finished", "pause the {new}",
            "set the {new} to {percent}", "turn on the {new} in the {room}")),
    Update("u3", "new places", "city",
           ("thimphu", "reykjavik", "ouagadougou", "tbilisi", "wroclaw", "kyoto", "yerevan",
            "nuuk", "tromso", "bydgoszcz", "ljubljana", "kaunas")),
    Update("u4", "new apps", "app",
           ("duolingo", "strava", "shazam", "tidal", "deezer", "waze", "zillow", "venmo",
            "citymapper", "komoot"),
           ("open {new} on my phone", "ask {new} for {word}", "sync {new} with my watch",
            "log a run in {new}", "show me {new} notifications")),
    Update("u5", "new artists", "artist",
           ("rosalia", "stromae", "odesza", "khruangbin", "bjork", "sigur ros", "tinariwen",
            "burna boy", "aurora", "caribou"),
           ("play the new {new} album", "shuffle songs by {new}", "is {new} touring {day_ref}",
            "add {new} to my {word} playlist", "play {new} in the {room}")),
)


def get_update(name: str) -> Update:
    for update in UPDATES:
        if update.name == name:
            return update
    raise InputError(f"unknown update '{name}' (known: {', '.join(u.name for u in UPDATES)})")


_SLOT = re.compile(r"\{(\w+)\}")


def update_templates(update: Update) -> list[str]:
    """The corpus templates that use the update's slot (the slot turned into {new}), plus the
    update's own templates."""
    own = list(update.templates)
    reused = [t.replace("{" + update.slot + "}", "{new}", 1)
              for templates in TEMPLATES.values() for t in templates if "{" + update.slot + "}" in t]
    if update.slot == "last_name":   # names also enter as "first last" wherever a person goes
        reused += [t.replace("{person}", "{first_name} {new}", 1)
                   for templates in TEMPLATES.values() for t in templates if "{person}" in t]
    return own + reused


class UpdateGrammar:
    """Draws transcripts holding one of the update's new words, the other slots filled by the
    corpus grammar's fillers."""

    def __init__(self, update: Update, grammar: Grammar, first_names: list[str]):
        self.update = update
        self.templates = update_templates(update)
        self.fillers = dict(grammar.fillers)
        self.fillers["first_name"] = lambda rng: rng.choice(first_names)

    def _fill(self, template: str, rng: random.Random, depth: int = 0) -> str:
        def one(match: re.Match) -> str:
            value = self.fillers[match.group(1)](rng)
            return self._fill(value, rng, depth + 1) if depth < 2 and "{" in value else value
        return _SLOT.sub(one, template)

    def sentence(self, rng: random.Random) -> tuple[str, str]:
        """(new word, text)."""
        word = rng.choice(self.update.words)
        template = rng.choice(self.templates)
        text = normalize(self._fill(template.replace("{new}", word), rng))
        assert not invalid_characters(text), text
        return word, text


def _babble_bank(grammar: Grammar, seed: int, clips: int = 12) -> list[np.ndarray]:
    rng = random.Random(f"{seed}:update-babble")
    voices = training_voices()
    bank = []
    for _ in range(clips):
        parts = [espeak(grammar.sentence(rng)[1], rng.choice(voices), draw_prosody(rng).espeak_args())
                 for _ in range(3)]
        bank.append(np.concatenate(parts))
    return bank


_AUDIO_STREAM = {"train": 0, "test": 1, "dev": 2}    # per-split noise streams (train and test as before)


def synthesize_update(update: Update, output: Path, seed: int = 0, train: int = 240, test: int = 100,
                      dev: int = 100, report: Report = lambda description, done, total: None) -> dict:
    """Write output/{train,test,dev} audio folders for one update (and update.json). The same
    seed gives the same bytes; no sentence repeats across splits. Test sentences are drawn first,
    then train, then dev, so adding dev utterances changes no test or training byte."""
    espeak_binary()
    output = Path(output)
    vocab = build_vocabulary(seed)
    grammar = Grammar(vocab)
    drawer = UpdateGrammar(update, grammar, vocab.first_names)
    bank = _babble_bank(grammar, seed)
    seen: set[str] = set()
    output.parent.mkdir(parents=True, exist_ok=True)
    staging = Path(tempfile.mkdtemp(prefix=f".{output.name}.", dir=output.parent))
    summary = {"update": update.to_json(), "seed": seed, "scenario_version": SCENARIO_VERSION, "splits": {}}
    try:
        for split, count in (("test", test), ("train", train), ("dev", dev)):
            folder = staging / split
            folder.mkdir()
            rng = random.Random(f"{seed}:{update.name}:{split}")
            voices = voices_for_split(split)
            rows = []
            while len(rows) < count:
                word, text = drawer.sentence(rng)
                if text in seen:
                    continue
                seen.add(text)
                index = len(rows)
                audio_rng = np.random.default_rng([seed, ord(update.name[-1]), _AUDIO_STREAM[split], index])
                voice = voices[rng.randrange(len(voices))]
                speech = espeak(text, voice, draw_prosody(rng).espeak_args())
                degradation = draw_degradation(audio_rng)
                audio = degrade(speech, degradation, bank, audio_rng)
                file_name = f"{update.name}_{split}_{index:04d}.wav"
                write_wav(folder / file_name, audio)
                rows.append({"file_name": file_name, "text": text, "split": split, "domain": update.name,
                             "new_word": word, "voice": voice.name, "noise": degradation.noise,
                             "snr_db": None if degradation.snr_db is None else round(degradation.snr_db, 2),
                             "duration_s": round(len(audio) / 16000, 3)})
                if len(rows) % 10 == 0 or len(rows) == count:
                    report(f"synthesize {update.name} {split}", len(rows), count)
            with open(folder / "metadata.jsonl", "w", encoding="utf-8") as f:
                for row in rows:
                    f.write(json.dumps(row, ensure_ascii=True) + "\n")
            summary["splits"][split] = {"utterances": len(rows),
                                        "voices": len({r["voice"] for r in rows})}
        (staging / "update.json").write_text(json.dumps(summary, indent=2) + "\n")
        if output.exists():
            shutil.rmtree(output)
        staging.rename(output)
    except BaseException:
        shutil.rmtree(staging, ignore_errors=True)
        raise
    return summary


def synthesize_updates(output: Path, seed: int = 0, train: int = 240, test: int = 100, dev: int = 100,
                       names: tuple[str, ...] | None = None,
                       report: Report = lambda description, done, total: None) -> dict:
    """Every update of the scenario (or those named) under output/<name>/."""
    chosen = [get_update(n) for n in names] if names else list(UPDATES)
    return {u.name: synthesize_update(u, Path(output) / u.name, seed, train, test, dev, report) for u in chosen}


def check_new_words(corpus: Path, updates=UPDATES) -> dict[str, list[str]]:
    """For each update, the new words that do occur in the corpus transcripts (should be none)."""
    texts = []
    for split in ("train", "dev", "test"):
        path = Path(corpus) / split / "metadata.jsonl"
        if path.exists():
            texts += [json.loads(line)["text"] for line in path.read_text().splitlines() if line.strip()]
    padded = " " + " | ".join(texts) + " "
    return {u.name: [w for w in u.words if f" {w} " in padded] for u in updates}


def update_training_set(update_dir: Path | str, features, old_data: Path | str | None = None,
                        old_utterances: int = 240, seed: int = 0, report: Report | None = None):
    """An update's training set: its new-word utterances plus `old_utterances` drawn from the old
    training folder (so the model keeps what it knew)."""
    from amc.model.feature_set import FeatureSet, load_features

    new = load_features(Path(update_dir) / "train", features, report)
    if old_data is None or old_utterances <= 0:
        return new
    old = load_features(old_data, features, report)
    rng = random.Random(f"{seed}:old:{Path(update_dir).name}")
    picked = old.subset(sorted(rng.sample(range(len(old)), min(old_utterances, len(old)))))
    return FeatureSet(new.features + picked.features, new.texts + picked.texts, new.files + picked.files)
