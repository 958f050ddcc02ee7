"""The audio-folder reader: good folders read back exactly; every bad folder is a one-line
InputError that names the metadata file and line (or the audio file)."""

from __future__ import annotations

import json
import wave
from pathlib import Path

import numpy as np
import pytest

from amc.common.errors import InputError
from amc.model.corpus.audio_folder import load_wav, read_audio_folder, summarize_audio_folder, wav_info


def _wav(path: Path, samples: np.ndarray, rate: int = 16000, channels: int = 1, width: int = 2) -> None:
    path.parent.mkdir(parents=True, exist_ok=True)
    dtype = {1: "u1", 2: "<i2", 4: "<i4"}[width]
    scale = {1: 127, 2: 32767, 4: 2**31 - 1}[width]
    pcm = np.round(samples * scale) + (128 if width == 1 else 0)
    frames = np.repeat(pcm[:, None], channels, axis=1).astype(dtype)
    with wave.open(str(path), "wb") as w:
        w.setnchannels(channels)
        w.setsampwidth(width)
        w.setframerate(rate)
        w.writeframes(frames.tobytes())


def _folder(tmp_path: Path, lines: list[str], name: str = "data") -> Path:
    folder = tmp_path / name
    t = np.arange(8000) / 16000
    _wav(folder / "a.wav", 0.5 * np.sin(2 * np.pi * 440 * t))
    _wav(folder / "sub" / "b.wav", np.linspace(-1, 1, 4000))
    (folder / "metadata.jsonl").write_text("".join(line + "\n" for line in lines))
    return folder


GOOD = [json.dumps({"file_name": "a.wav", "text": "set a timer for five minutes", "voice": "en-us+m1"}),
        json.dumps({"file_name": "sub/b.wav", "text": "what's the weather", "snr_db": 3.5})]


def test_reads_a_good_folder(tmp_path):
    folder = _folder(tmp_path, GOOD)
    utterances = read_audio_folder(folder)
    assert [u.text for u in utterances] == ["set a timer for five minutes", "what's the weather"]
    assert utterances[0].path == folder / "a.wav" and utterances[1].path == folder / "sub" / "b.wav"
    assert utterances[0].metadata == {"voice": "en-us+m1"}
    assert utterances[1].metadata == {"snr_db": 3.5}
    samples = load_wav(utterances[1].path)
    assert samples.dtype == np.float32 and samples.shape == (4000,)
    assert samples.min() == pytest.approx(-1, abs=1e-4) and samples.max() == pytest.approx(1, abs=1e-4)
    assert np.abs(load_wav(utterances[0].path)).max() == pytest.approx(0.5, abs=1e-3)
    summary = summarize_audio_folder(folder)
    assert summary["utterances"] == 2 and summary["mean_s"] == pytest.approx(0.375)


def test_a_trailing_blank_line_is_fine(tmp_path):
    folder = _folder(tmp_path, GOOD + [""])
    assert len(read_audio_folder(folder)) == 2


def test_summary_of_a_corpus_folder_is_per_split(tmp_path):
    for split in ("train", "test"):
        _folder(tmp_path / "corpus", GOOD, name=split)
    summary = summarize_audio_folder(tmp_path / "corpus")
    assert sorted(summary["splits"]) == ["test", "train"]
    assert summary["splits"]["train"]["utterances"] == 2


def _error(folder: Path) -> str:
    with pytest.raises(InputError) as caught:
        read_audio_folder(folder)
    message = str(caught.value)
    assert "\n" not in message
    return message


@pytest.mark.parametrize("bad_line, expected", [
    ("", "empty line"),
    ("{not json", "not valid JSON"),
    ("[1, 2]", "expected a JSON object"),
    (json.dumps({"text": "hello"}), "missing field 'file_name'"),
    (json.dumps({"file_name": "a.wav"}), "missing field 'text'"),
    (json.dumps({"file_name": "new.wav", "text": 5}), "field 'text' must be a string"),
    (json.dumps({"file_name": "new.wav", "text": "  "}), "empty text"),
    (json.dumps({"file_name": "new.wav", "text": "set 5 timers"}), "outside the alphabet: '5'"),
    (json.dumps({"file_name": "new.wav", "text": "Hello there."}), "outside the alphabet: 'H.'"),
    (json.dumps({"file_name": "../a.wav", "text": "hello"}), "relative path inside the folder"),
    (json.dumps({"file_name": "/etc/passwd", "text": "hello"}), "relative path inside the folder"),
    (json.dumps({"file_name": "a.wav", "text": "again"}), "already listed at line 1"),
    (json.dumps({"file_name": "missing.wav", "text": "hello"}), "missing.wav does not exist"),
])
def test_bad_metadata_lines_name_file_and_line(tmp_path, bad_line, expected):
    folder = _folder(tmp_path, [GOOD[0], GOOD[1], bad_line, GOOD[1].replace("sub/b", "x")])
    message = _error(folder)
    assert message.startswith(f"{folder}/metadata.jsonl:3: "), message
    assert expected in message


@pytest.mark.parametrize("rate, channels, width, expected", [
    (22050, 1, 2, "sample rate 22050 Hz, expected 16000"),
    (16000, 2, 2, "2 channels, expected mono"),
    (16000, 1, 1, "8-bit samples, expected 16-bit PCM"),
    (16000, 1, 4, "32-bit samples, expected 16-bit PCM"),
])
def test_bad_wav_formats_name_line_and_file(tmp_path, rate, channels, width, expected):
    folder = _folder(tmp_path, GOOD + [json.dumps({"file_name": "odd.wav", "text": "odd"})])
    _wav(folder / "odd.wav", np.zeros(1600), rate=rate, channels=channels, width=width)
    message = _error(folder)
    assert message.startswith(f"{folder}/metadata.jsonl:3: {folder}/odd.wav"), message
    assert expected in message
    with pytest.raises(InputError, match=expected):
        load_wav(folder / "odd.wav")


def test_a_file_that_is_not_a_wav(tmp_path):
    folder = _folder(tmp_path, GOOD + [json.dumps({"file_name": "notes.wav", "text": "hi"})])
    (folder / "notes.wav").write_text("not audio")
    message = _error(folder)
    assert message.startswith(f"{folder}/metadata.jsonl:3: {folder}/notes.wav is not a PCM WAV file")


def test_missing_or_empty_metadata(tmp_path):
    folder = _folder(tmp_path, [])
    assert _error(folder) == f"{folder}/metadata.jsonl: empty (no utterances)"
    (folder / "metadata.jsonl").unlink()
    assert _error(folder).startswith(f"{folder}/metadata.jsonl: missing")
    assert _error(tmp_path / "nowhere").startswith(f"{tmp_path / 'nowhere'}: not a directory")


def test_metadata_that_is_not_utf8(tmp_path):
    folder = _folder(tmp_path, GOOD)
    (folder / "metadata.jsonl").write_bytes(b'{"file_name": "a.wav", "text": "caf\xe9"}\n')
    assert _error(folder).startswith(f"{folder}/metadata.jsonl: not UTF-8")


def test_load_wav_of_a_missing_file(tmp_path):
    with pytest.raises(InputError, match="does not exist"):
        load_wav(tmp_path / "gone.wav")
    assert wav_info(_folder(tmp_path, GOOD) / "a.wav").seconds == 0.5


def test_cli_check_reports_counts_and_fails_with_one_line(tmp_path, capsys):
    from typer.testing import CliRunner

    from amc.cli import data
    folder = _folder(tmp_path, GOOD)
    result = CliRunner().invoke(data.app, ["check", str(folder), "--json"])
    assert result.exit_code == 0, result.output
    assert json.loads(result.stdout)["utterances"] == 2
    (folder / "metadata.jsonl").write_text(GOOD[0] + "\n{oops\n")
    result = CliRunner().invoke(data.app, ["check", str(folder)])
    assert isinstance(result.exception, InputError)
    assert str(result.exception).startswith(f"{folder}/metadata.jsonl:2: not valid JSON")
