"""`synthesize_corpus`: the reproducible synthetic speech corpus (train/dev/test audio folders).

Steps, in order:
1. build the open vocabulary and the grammar from the seed;
2. draw the sentences, test first, then dev, then train, each one new (no sentence is in two
   splits, none repeats inside a split);
3. synthesize a bank of babble clips (other speech, training voices) for the babble noise;
4. synthesize every utterance: espeak-ng (a voice of its split, drawn prosody) -> 16 kHz ->
   reverb, padding, noise, band limit, gain -> 16-bit WAV; each utterance draws from its own
   generator seeded by (seed, split, index), so worker count and scheduling change no byte;
5. write metadata.jsonl per split and corpus.json, into a temp dir beside the output that is
   renamed into place only when everything is written.
"""

from __future__ import annotations

import json
import multiprocessing
import os
import random
import shutil
import subprocess
import time
import wave
from collections.abc import Callable
from concurrent.futures import ProcessPoolExecutor
from pathlib import Path

import numpy as np

from amc.common.atomic import replace_directory, staging_directory
from amc.common.errors import AmcError, InputError, ToolMissingError
from amc.model.corpus.augmentation import SAMPLE_RATE, degrade, draw_degradation
from amc.model.corpus.grammar import Grammar
from amc.model.corpus.vocabulary import build_vocabulary
from amc.model.corpus.voices import Voice, draw_prosody, training_voices, voices_for_split

Report = Callable[[str, int, int], None]

SPLITS = ("train", "dev", "test")
CORPUS_VERSION = 1
_ESPEAK_RATE = 22_050
_BABBLE_CLIPS = 32


def espeak_binary() -> str:
    path = shutil.which("espeak-ng")
    if path is None:
        raise ToolMissingError("espeak-ng is not installed; install it with `apt-get install espeak-ng`")
    return path


def espeak(text: str, voice: Voice, args: list[str], binary: str = "espeak-ng") -> np.ndarray:
    """Speak `text` with espeak-ng (WAV on its stdout) and return float32 samples at 16 kHz."""
    done = subprocess.run([binary, "-v", voice.name, *args, "--stdout", text],
                          capture_output=True, check=False)
    data = done.stdout
    at = data.find(b"data", 12)
    if done.returncode != 0 or at < 0:
        raise AmcError(f"espeak-ng failed for voice {voice.name}: {done.stderr.decode(errors='replace').strip()}")
    pcm = data[at + 8:]
    samples = np.frombuffer(pcm[: len(pcm) // 2 * 2], dtype="<i2").astype(np.float32) / 32768.0
    return resample_to_16k(samples, _ESPEAK_RATE)


def resample_to_16k(x: np.ndarray, rate: int) -> np.ndarray:
    """Band-limited resampling by FFT (espeak-ng output starts and ends in silence, so the
    circular edges do not matter)."""
    if rate == SAMPLE_RATE or len(x) == 0:
        return x.astype(np.float32)
    m = int(round(len(x) * SAMPLE_RATE / rate))
    spectrum = np.fft.rfft(x)[: m // 2 + 1]
    return (np.fft.irfft(spectrum, m) * (m / len(x))).astype(np.float32)


def write_wav(path: Path, samples: np.ndarray) -> None:
    """16-bit PCM, 16 kHz, mono."""
    pcm = np.clip(np.round(samples * 32767.0), -32768, 32767).astype("<i2")
    with wave.open(str(path), "wb") as w:
        w.setnchannels(1)
        w.setsampwidth(2)
        w.setframerate(SAMPLE_RATE)
        w.writeframes(pcm.tobytes())


# --- work done in the worker processes -----------------------------------------------------

_babble_bank: list[np.ndarray] = []
_binary = "espeak-ng"


def _init_worker(bank: list[np.ndarray], binary: str) -> None:
    global _babble_bank, _binary
    _babble_bank, _binary = bank, binary


def _babble_clip(job: tuple[int, int, list[str]]) -> np.ndarray:
    seed, index, texts = job
    rng = random.Random(f"{seed}:babble:{index}")
    voices = training_voices()
    parts = [espeak(text, rng.choice(voices), draw_prosody(rng).espeak_args(), _binary) for text in texts]
    return np.concatenate(parts)


def _utterance(job: tuple[int, str, int, str, str, str]) -> dict:
    seed, split, index, text, domain, folder = job
    split_id = SPLITS.index(split)
    choices = random.Random(f"{seed}:{split}:{index}")
    rng = np.random.default_rng([seed, split_id, index])
    voices = voices_for_split(split)
    voice = voices[choices.randrange(len(voices))]
    prosody = draw_prosody(choices)
    speech = espeak(text, voice, prosody.espeak_args(), _binary)
    degradation = draw_degradation(rng)
    audio = degrade(speech, degradation, _babble_bank, rng)
    file_name = f"{split}_{index:05d}.wav"
    write_wav(Path(folder) / file_name, audio)
    return {
        "file_name": file_name, "text": text, "split": split, "domain": domain,
        "voice": voice.name, "accent": voice.accent, "variant": voice.variant,
        "words_per_minute": prosody.words_per_minute, "pitch": prosody.pitch,
        "noise": degradation.noise,
        "snr_db": None if degradation.snr_db is None else round(degradation.snr_db, 2),
        "rt60_s": None if degradation.rt60_s is None else round(degradation.rt60_s, 3),
        "band_limit_hz": degradation.band_limit_hz,
        "duration_s": round(len(audio) / SAMPLE_RATE, 3),
    }


# --- the orchestration -----------------------------------------------------------------------

def draw_sentences(grammar: Grammar, seed: int, counts: dict[str, int]) -> dict[str, list[tuple[str, str]]]:
    """(domain, text) per split; test first, then dev, then train, no text drawn twice."""
    seen: set[str] = set()
    out: dict[str, list[tuple[str, str]]] = {}
    for split in ("test", "dev", "train"):
        rng = random.Random(f"{seed}:sentences:{split}")
        drawn: list[tuple[str, str]] = []
        attempts = 0
        while len(drawn) < counts[split]:
            attempts += 1
            if attempts > 50 * counts[split] + 1000:
                raise InputError(f"cannot draw {counts[split]} distinct {split} sentences")
            domain, text = grammar.sentence(rng)
            if text not in seen:
                seen.add(text)
                drawn.append((domain, text))
        out[split] = drawn
    return out


def _run(pool: ProcessPoolExecutor | None, fn, jobs: list, report: Report, description: str) -> list:
    results = []
    mapped = pool.map(fn, jobs, chunksize=8) if pool is not None else map(fn, jobs)
    for done, result in enumerate(mapped, 1):
        results.append(result)
        if done % 10 == 0 or done == len(jobs):
            report(description, done, len(jobs))
    return results


def synthesize_corpus(output: Path, seed: int = 0, train: int = 6000, dev: int = 300,
                      test: int = 500, workers: int | None = None, force: bool = False,
                      report: Report = lambda description, done, total: None) -> dict:
    """Write output/{train,dev,test}, each an audio folder (WAVs + metadata.jsonl), plus
    output/corpus.json. The same seed and counts give the same bytes. Returns a summary."""
    started = time.monotonic()
    binary = espeak_binary()
    counts = {"train": train, "dev": dev, "test": test}
    if any(n < 0 for n in counts.values()):
        raise InputError(f"utterance counts must be >= 0, got {counts}")
    output = Path(output)
    if output.exists() and not force and (not output.is_dir() or any(output.iterdir())):
        raise InputError(f"{output} already exists; pass --force to replace it")
    output.parent.mkdir(parents=True, exist_ok=True)
    workers = workers or os.cpu_count() or 1

    grammar = Grammar(build_vocabulary(seed))
    sentences = draw_sentences(grammar, seed, counts)
    babble_rng = random.Random(f"{seed}:babble")
    babble_jobs = [(seed, i, [grammar.sentence(babble_rng)[1] for _ in range(3)]) for i in range(_BABBLE_CLIPS)]

    staging = staging_directory(output)
    try:
        context = multiprocessing.get_context("fork")

        def pool_with(bank: list[np.ndarray]) -> ProcessPoolExecutor | None:
            _init_worker(bank, binary)  # for the in-process path (workers == 1)
            return ProcessPoolExecutor(workers, mp_context=context, initializer=_init_worker,
                                       initargs=(bank, binary)) if workers > 1 else None

        pool = pool_with([])
        try:
            bank = _run(pool, _babble_clip, babble_jobs, report, "babble")
        finally:
            if pool is not None:
                pool.shutdown()
        pool = pool_with(bank)
        summary: dict = {"output": str(output), "seed": seed, "corpus_version": CORPUS_VERSION, "splits": {}}
        try:
            for split in SPLITS:
                folder = staging / split
                folder.mkdir()
                jobs = [(seed, split, i, text, domain, str(folder)) for i, (domain, text) in enumerate(sentences[split])]
                rows = _run(pool, _utterance, jobs, report, f"synthesize {split}")
                with open(folder / "metadata.jsonl", "w", encoding="utf-8") as f:
                    for row in rows:
                        f.write(json.dumps(row, ensure_ascii=True) + "\n")
                seconds = sum(r["duration_s"] for r in rows)
                summary["splits"][split] = {
                    "utterances": len(rows), "hours": round(seconds / 3600, 3),
                    "mean_s": round(seconds / len(rows), 3) if rows else 0.0,
                    "voices": len({r["voice"] for r in rows})}
        finally:
            if pool is not None:
                pool.shutdown()
        with open(staging / "corpus.json", "w", encoding="utf-8") as f:
            json.dump({k: v for k, v in summary.items() if k != "output"}, f, indent=2, sort_keys=True)
            f.write("\n")
        replace_directory(staging, output)
    except BaseException:
        shutil.rmtree(staging, ignore_errors=True)
        raise
    summary["wall_s"] = round(time.monotonic() - started, 1)
    return summary
