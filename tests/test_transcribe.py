"""`amc transcribe MODEL FILE.wav...`: the text a model hears in each file, as `amc eval` hears the
same audio, and the one-line errors of `amc data check` for audio it cannot take."""

from __future__ import annotations

import json
import wave

import numpy as np
import pytest

from amc.model.checkpoint import save_checkpoint
from tests.compile_fixtures import write_wav
from tests.conftest import run_cli as run


@pytest.fixture()
def checkpoint(tmp_path, tiny_model):
    return save_checkpoint(tiny_model, tmp_path / "ckpt")


def _speechless(path, seconds: float, seed: int):
    write_wav(path, np.random.default_rng(seed).standard_normal(int(16000 * seconds)) * 0.2)
    return path


def test_one_result_per_file_matching_eval_of_the_same_audio(tmp_path, checkpoint, capsys):
    from amc.compiler.scoring import evaluate_path

    data = tmp_path / "data"
    data.mkdir()
    files = [_speechless(data / f"{i}.wav", 0.6 + 0.4 * i, i) for i in range(3)]
    (data / "metadata.jsonl").write_text("".join(json.dumps({"file_name": f.name, "text": "x"}) + "\n" for f in files))
    code, out, err = run(["transcribe", str(checkpoint), *map(str, files), "--route", "slow", "--json"], capsys)
    assert code == 0, err
    results = json.loads(out)["results"]
    assert [r["file"] for r in results] == [str(f) for f in files]
    traces = evaluate_path(checkpoint, data, "slow", keep_traces=True)["traces"]
    assert [r["text"] for r in results] == [t["hypothesis"] for t in traces]
    assert all(r["fast_fraction"] == 0.0 for r in results)          # --route slow: no fast frame
    code, out, _ = run(["transcribe", str(checkpoint), str(files[0]), "--route", "fast", "--mflops", "1000"], capsys)
    assert code == 0 and out.count("\n") == 1 and "(fast 100%" in out


def _wav(path, rate=16000, channels=1, width=2, frames=1600):
    with wave.open(str(path), "wb") as w:
        w.setnchannels(channels)
        w.setsampwidth(width)
        w.setframerate(rate)
        w.writeframes(bytes(frames * channels * width))
    return path


def _written(path, data: bytes):
    path.write_bytes(data)
    return path


@pytest.mark.parametrize("make, expected", [
    (lambda p: _wav(p, rate=8000), "has sample rate 8000 Hz, expected 16000"),
    (lambda p: _wav(p, channels=2), "has 2 channels, expected mono"),
    (lambda p: _wav(p, width=1), "has 8-bit samples, expected 16-bit PCM"),
    (lambda p: _written(p, b"ID3\x03 not audio at all"), "is not a PCM WAV file"),
    (lambda p: _written(p, _wav(p).read_bytes()[:1000]), "is truncated"),
])
def test_bad_audio_is_one_line_naming_the_file(tmp_path, checkpoint, capsys, make, expected):
    good = _speechless(tmp_path / "good.wav", 0.5, 0)
    bad = make(tmp_path / "bad.wav")
    code, out, err = run(["transcribe", str(checkpoint), str(good), str(bad)], capsys)
    assert code == 2 and out == ""                                  # nothing transcribed before the check
    assert err.count("\n") == 1 and str(bad) in err and expected in err, err
