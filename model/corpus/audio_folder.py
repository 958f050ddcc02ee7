"""The audio folder every amc command reads (`--data DIR`): 16-bit PCM, 16 kHz, mono WAV files
and a `metadata.jsonl` whose lines are `{"file_name": "x.wav", "text": "...", ...}` (the
Hugging Face audio-folder convention). Every problem is an `InputError` naming the file and the
metadata line: "DIR/metadata.jsonl:17: ...".
"""

from __future__ import annotations

import json
import wave
from dataclasses import dataclass, field
from pathlib import Path, PurePosixPath

import numpy as np

from amc.common.errors import InputError
from amc.model.corpus.text import invalid_characters

SAMPLE_RATE = 16_000
METADATA = "metadata.jsonl"
SPLITS = ("train", "dev", "test")


@dataclass(frozen=True)
class Utterance:
    path: Path
    text: str
    metadata: dict = field(default_factory=dict)
    """The line's other fields (voice, snr_db, split, ...)."""


WAV_HEADER_MIN = 44
"""Bytes of the smallest WAV header (RIFF, fmt and data chunk headers)."""


@dataclass(frozen=True)
class WavInfo:
    frames: int
    sample_rate: int
    channels: int
    sample_width: int

    @property
    def seconds(self) -> float:
        return self.frames / self.sample_rate


def wav_info(path: Path, where: str | None = None) -> WavInfo:
    """Read a WAV header and check it is 16-bit PCM, 16 kHz, mono; `where` prefixes errors."""
    where = where or str(path)
    try:
        with wave.open(str(path), "rb") as w:
            info = WavInfo(w.getnframes(), w.getframerate(), w.getnchannels(), w.getsampwidth())
    except FileNotFoundError:
        raise InputError(f"{where}: audio file {path} does not exist") from None
    except (wave.Error, EOFError, OSError) as error:
        raise InputError(f"{where}: {path} is not a PCM WAV file ({error})") from None
    if info.sample_rate != SAMPLE_RATE:
        raise InputError(f"{where}: {path} has sample rate {info.sample_rate} Hz, expected {SAMPLE_RATE}")
    if info.channels != 1:
        raise InputError(f"{where}: {path} has {info.channels} channels, expected mono")
    if info.sample_width != 2:
        raise InputError(f"{where}: {path} has {8 * info.sample_width}-bit samples, expected 16-bit PCM")
    if Path(path).stat().st_size < WAV_HEADER_MIN + 2 * info.frames:
        raise InputError(f"{where}: {path} is truncated: its header promises {info.frames} samples")
    return info


def load_wav(path: str | Path) -> np.ndarray:
    """The samples of a 16-bit, 16 kHz, mono WAV file as float32 in [-1, 1)."""
    path = Path(path)
    wav_info(path)
    with wave.open(str(path), "rb") as w:
        frames = w.getnframes()
        pcm = w.readframes(frames)
    if len(pcm) != 2 * frames:
        raise InputError(f"{path} is truncated: its header promises {frames} samples, it holds {len(pcm) // 2}")
    return np.frombuffer(pcm, dtype="<i2").astype(np.float32) / 32768.0


def _parse_line(folder: Path, where: str, line: str, seen: dict[str, str]) -> Utterance:
    if not line.strip():
        raise InputError(f"{where}: empty line")
    try:
        row = json.loads(line)
    except json.JSONDecodeError as error:
        raise InputError(f"{where}: not valid JSON ({error.msg} at column {error.colno})") from None
    if not isinstance(row, dict):
        raise InputError(f"{where}: expected a JSON object, got {type(row).__name__}")
    for key in ("file_name", "text"):
        if key not in row:
            raise InputError(f"{where}: missing field {key!r}")
        if not isinstance(row[key], str):
            raise InputError(f"{where}: field {key!r} must be a string")
    name, text = row.pop("file_name"), row.pop("text")
    relative = PurePosixPath(name)
    if not name or relative.is_absolute() or ".." in relative.parts:
        raise InputError(f"{where}: file_name {name!r} must be a relative path inside the folder")
    if name in seen:
        raise InputError(f"{where}: file_name {name!r} already listed at line {seen[name]}")
    seen[name] = where.rsplit(":", 1)[1]
    if not text.strip():
        raise InputError(f"{where}: empty text")
    bad = invalid_characters(text)
    if bad:
        raise InputError(f"{where}: text has characters outside the alphabet: {bad!r} "
                         "(use lowercase a-z, space and apostrophe; write digits as words)")
    return Utterance(path=folder / relative, text=text, metadata=row)


def read_audio_folder(path: str | Path, check_audio: bool = True) -> list[Utterance]:
    """The utterances of an audio folder, in metadata order. With `check_audio`, every WAV
    header is read and checked (16-bit PCM, 16 kHz, mono); samples are read by `load_wav`."""
    folder = Path(path)
    if not folder.is_dir():
        raise InputError(f"{folder}: not a directory")
    metadata = folder / METADATA
    if not metadata.is_file():
        raise InputError(f"{metadata}: missing (an audio folder needs a {METADATA})")
    utterances: list[Utterance] = []
    seen: dict[str, str] = {}
    with open(metadata, encoding="utf-8", errors="strict") as f:
        try:
            lines = f.read().splitlines()
        except UnicodeDecodeError as error:
            raise InputError(f"{metadata}: not UTF-8 text ({error.reason})") from None
    for number, line in enumerate(lines, 1):
        where = f"{metadata}:{number}"
        if not line.strip() and number == len(lines):
            continue  # a trailing blank line is harmless
        utterance = _parse_line(folder, where, line, seen)
        if check_audio:
            wav_info(utterance.path, where)
        elif not utterance.path.is_file():
            raise InputError(f"{where}: audio file {utterance.path} does not exist")
        utterances.append(utterance)
    if not utterances:
        raise InputError(f"{metadata}: empty (no utterances)")
    return utterances


def summarize_audio_folder(path: str | Path) -> dict:
    """Validate a folder and count it: utterances, total hours, mean seconds, characters.
    A folder of split folders (train/dev/test, as `amc data synth` writes) is summarized per split."""
    folder = Path(path)
    if not (folder / METADATA).exists() and any((folder / s / METADATA).exists() for s in SPLITS):
        return {"path": str(folder), "splits": {s: summarize_audio_folder(folder / s)
                                                for s in SPLITS if (folder / s).is_dir()}}
    utterances = read_audio_folder(folder)
    seconds = [wav_info(u.path).seconds for u in utterances]
    return {
        "path": str(folder), "utterances": len(utterances),
        "hours": round(sum(seconds) / 3600, 3),
        "mean_s": round(sum(seconds) / len(seconds), 3),
        "min_s": round(min(seconds), 3), "max_s": round(max(seconds), 3),
        "characters": sum(len(u.text) for u in utterances),
    }
