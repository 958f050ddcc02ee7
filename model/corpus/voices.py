"""espeak-ng voices: English accents times voice variants, split so that the test set is spoken
only by voices the training never heard (two whole accents and several whole variants are held
out), and the prosody (speed, pitch, word gap) drawn for each utterance."""

from __future__ import annotations

import random
from dataclasses import dataclass

ACCENTS = ["en-us", "en-gb", "en-gb-scotland", "en-gb-x-gbclan", "en-gb-x-rp", "en-us-nyc",
           "en-029", "en-gb-x-gbcwmd"]
VARIANTS = ["m1", "m2", "m3", "m4", "m5", "m6", "m7", "m8", "f1", "f2", "f3", "f4", "f5",
            "klatt", "klatt2", "klatt4", "Andy", "Annie", "aunty", "boris", "david", "ed",
            "edward", "iven2", "linda", "max", "michel", "pablo", "paul", "quincy", "robert",
            "steph", "travis", "zac", "norbert", "grandma", "shelby", "victor"]

TEST_ACCENTS = frozenset({"en-029", "en-gb-x-gbcwmd"})
"""Accents only the test split speaks."""
TEST_VARIANTS = frozenset({"m7", "f4", "klatt4", "linda", "travis", "victor"})
"""Variants only the test split speaks."""


@dataclass(frozen=True)
class Voice:
    accent: str
    variant: str

    @property
    def name(self) -> str:
        """The espeak-ng `-v` argument, e.g. 'en-gb-x-rp+m3'."""
        return f"{self.accent}+{self.variant}"


def _all_voices() -> list[Voice]:
    return [Voice(a, v) for a in ACCENTS for v in VARIANTS]


def training_voices() -> list[Voice]:
    """Voices of the train and dev splits: no held-out accent, no held-out variant."""
    return [v for v in _all_voices() if v.accent not in TEST_ACCENTS and v.variant not in TEST_VARIANTS]


def test_voices() -> list[Voice]:
    """Voices of the test split: every one has a held-out accent or a held-out variant."""
    return [v for v in _all_voices() if v.accent in TEST_ACCENTS or v.variant in TEST_VARIANTS]


def voices_for_split(split: str) -> list[Voice]:
    return test_voices() if split == "test" else training_voices()


@dataclass(frozen=True)
class Prosody:
    words_per_minute: int
    pitch: int        # espeak-ng -p, 0..99
    word_gap: int     # espeak-ng -g, in units of 10 ms

    def espeak_args(self) -> list[str]:
        return ["-s", str(self.words_per_minute), "-p", str(self.pitch), "-g", str(self.word_gap)]


def draw_prosody(rng: random.Random) -> Prosody:
    """Speaking rate 120-260 words a minute (a few very fast), pitch 15-85, mostly no pauses."""
    wpm = int(rng.triangular(120, 260, 175))
    return Prosody(words_per_minute=wpm, pitch=rng.randint(15, 85),
                   word_gap=rng.choice([0, 0, 0, 0, 1, 2, 4]))
