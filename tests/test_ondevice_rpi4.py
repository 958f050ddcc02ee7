"""On-target checks for the Raspberry Pi 4 preset: amc-runner cross-compiled against the executorch
aarch64 wheel, run under qemu-aarch64 (Cortex-A72) on a small compiled bundle, compared with the
host's runtime; and the one-line errors for a wrong bundle, a missing QEMU or cross compiler."""

from __future__ import annotations

import json
import os
from pathlib import Path

import numpy as np
import pytest

from amc.common.errors import InputError, ToolMissingError
from tests.ondevice_fixtures import fixture_bundle


@pytest.fixture(scope="session")
def rpi4_bundle() -> tuple[Path, Path]:
    return fixture_bundle()


# ---- the device files: formats (plain) ----------------------------------------------------------

def test_records_round_trip(tmp_path):
    from amc.targets.amc_runner import read_records, write_records

    records = [[np.arange(6, dtype=np.float32).reshape(2, 3), np.array([-3, 7], np.int8)],
               [np.zeros(6, np.float32), np.array([127, -128], np.int8)]]
    back = read_records(write_records(tmp_path / "r.amcr", records))
    assert len(back) == 2
    for given, got in zip(records, back):
        for a, b in zip(given, got):
            assert a.dtype == b.dtype and np.array_equal(a.reshape(-1), b)
    (tmp_path / "bad.amcr").write_bytes(b"AMCR" + bytes(12) + b"\x09")
    with pytest.raises(InputError):
        read_records(tmp_path / "bad.amcr")


def test_stream_report_is_parsed():
    from amc.targets.amc_runner import parse_stream

    out = ("utterance 0 frames=3 fast_frames=1 latency_ms=12.500000\nroutes 0 SFS\ntext 0  hi there\n"
           "utterance 1 frames=0 fast_frames=0 latency_ms=0.000000\nroutes 1 \ntext 1 \nsummary target=rpi4\n")
    parsed = parse_stream(out)
    assert parsed[0] == {"frames": 3, "fast_frames": 1, "latency_ms": 12.5, "routes": "SFS", "text": " hi there"}
    assert parsed[1]["text"] == "" and parsed[1]["routes"] == ""


# ---- bad input: one-line errors (plain) ---------------------------------------------------------------

def _fake_bundle(path: Path, target: str) -> Path:
    path.mkdir()
    graphs = {g: {"file": f"{g}.pte"} for g in ("fast", "slow", "arbitrator")}
    (path / "manifest.json").write_text(json.dumps({"schema": "amc-bundle", "schema_version": 1, "target": target,
                                                    "backend": "executorch", "graphs": graphs}))
    return path


def test_bundle_for_another_target_is_refused(tmp_path, capsys):
    from amc.cli import main

    bundle = _fake_bundle(tmp_path / "b", "host")
    with pytest.raises(SystemExit) as exit_info:
        main(["test", "--target", "rpi4", "--bundle", str(bundle), "--json"])
    assert exit_info.value.code == InputError.exit_code
    err = capsys.readouterr().err.strip()
    assert len(err.splitlines()) == 1 and "for target 'host', not 'rpi4'" in err and "amc compile --target rpi4" in err
    with pytest.raises(SystemExit) as exit_info:
        main(["image", "--target", "rpi4", "--bundle", str(bundle), "-o", str(tmp_path / "img")])
    assert exit_info.value.code == InputError.exit_code


def test_missing_qemu_and_cross_compiler_say_what_to_install(tmp_path, monkeypatch):
    from amc.ontarget.harness import test_on_target

    bundle = _fake_bundle(tmp_path / "b", "rpi4")
    monkeypatch.setenv("PATH", str(tmp_path / "empty"))       # nothing installed
    with pytest.raises(ToolMissingError, match="apt-get install qemu-user"):
        test_on_target("rpi4", bundle)
    tools = tmp_path / "tools"
    tools.mkdir()
    os.symlink("/usr/bin/qemu-aarch64", tools / "qemu-aarch64")   # QEMU present, the cross compiler not
    monkeypatch.setenv("PATH", str(tools))
    with pytest.raises(ToolMissingError, match="apt-get install gcc-aarch64-linux-gnu"):
        test_on_target("rpi4", bundle)


def test_host_preset_is_not_a_board():
    from amc.ontarget.harness import test_on_target

    with pytest.raises(InputError, match="board presets"):
        test_on_target("host")


# ---- under QEMU -------------------------------------------------------------------------------------

@pytest.mark.cross
def test_rpi4_graphs_streaming_and_patch_match_the_host(rpi4_bundle):
    from amc.ontarget.harness import Settings, test_on_target

    bundle, audio = rpi4_bundle
    result = test_on_target("rpi4", bundle, data=audio, settings=Settings(utterances=3, records_per_graph=48))
    assert result["outputs_compared"] > 0
    assert result["max_int8_step_diff"] <= 1.0
    assert result["transcripts_equal"] and result["routes_equal"]
    assert result["max_latency_diff_ms"] < 1e-3
    assert result["frames"] == sum(t["frames"] for t in result["transcripts"])
    fast = sum(t["fast_frames"] for t in result["transcripts"])
    assert 0 < fast < result["frames"], fast                # routes that switch branch were compared
    assert "skipped" not in result["patch"], result["patch"]          # amc-patch for rpi4 is built
    assert result["patched_equal"] is True
    assert result["patch"]["outputs_changed"] and result["patch"]["files_equal"]
    # WAV audio in: the board's C front end made the frames, to the bit of the host's build
    assert result["audio_in"] is True and result["frontend"]["board_equals_host_c"]
    assert result["frontend_max_step_diff"] <= 1 and result["frontend"]["int8_identical_fraction"] >= 0.999


@pytest.mark.cross
def test_rpi4_runner_transcribes_files_and_listens_to_stdin_as_the_host_does(rpi4_bundle, tmp_path):
    """`amc-runner transcribe` on the board prints what `amc transcribe` prints on the host;
    `listen` on raw PCM from stdin gives the same final text, its partial texts growing to it."""
    import wave

    from amc.compiler.scoring import transcribe_path
    from amc.ontarget.linux_board import Board
    from amc.ontarget.recording import audio_files
    from amc.targets.amc_runner import parse_stream
    from amc.targets.presets import get_target
    from amc.targets.qemu import run_on_board

    bundle, audio = rpi4_bundle
    wavs = audio_files(audio)[:3]
    host = transcribe_path(bundle, wavs)["results"]
    board = Board(get_target("rpi4"))
    streamed = parse_stream(board.run_bundle_tool(["transcribe", bundle, *wavs], "transcribing"))
    assert [u["text"] for u in streamed] == [r["text"] for r in host]
    assert [round(u["fast_frames"] / max(1, u["frames"]), 4) for u in streamed] == [r["fast_fraction"] for r in host]
    with wave.open(str(wavs[0]), "rb") as w:
        pcm = w.readframes(w.getnframes())
    result = run_on_board(board.target, board.runner.program, ["listen", bundle, "-"], board.library_path, stdin=pcm)
    lines = result.stdout.decode().splitlines()
    assert result.returncode == 0, result.stderr.decode()[-500:]
    partials = [line[len("partial "):] for line in lines if line.startswith("partial ")]
    final = next(line.split(" ", 2)[2] if line.count(" ") >= 2 else "" for line in lines if line.startswith("text 0"))
    assert final == host[0]["text"]
    assert all(b.startswith(a) for a, b in zip(partials, partials[1:])) and (not partials or partials[-1] == final)
    assert any(line.startswith("listen ") and "board_latency_ms=" in line for line in lines)
    bad = run_on_board(board.target, board.runner.program, ["transcribe", bundle, str(tmp_path / "none.wav")],
                       board.library_path)
    assert bad.returncode == 2 and b"cannot open audio file" in bad.stderr


@pytest.mark.cross
def test_rpi4_runner_routes_like_the_python_stream_at_other_speeds(rpi4_bundle, tmp_path):
    """Same routes as evaluate_bundle when the backlog builds up (slow processor) and when it does not."""
    from amc.compiler.bundle import load_bundle
    from amc.model.evaluate import evaluate_bundle
    from amc.model.feature_set import load_features
    from amc.ontarget.linux_board import Board
    from amc.ontarget.recording import compare_streams
    from amc.targets.presets import get_target

    bundle, audio = rpi4_bundle
    host = load_bundle(bundle)
    data = load_features(audio, host.config.features).subset(range(2))
    board = Board(get_target("rpi4"))
    latency = {}
    for mflops in (0.05, 1.0, 500.0):
        streamed = board.stream(bundle, [f.numpy() for f in data.features], mflops, tmp_path)
        traces = evaluate_bundle(host, data, mflops=mflops, keep_traces=True)["traces"]
        compared = compare_streams(traces, streamed)
        assert compared["routes_equal"] and compared["transcripts_equal"], mflops
        assert compared["max_latency_diff_ms"] < 1e-3
        fast = sum(t["fast_frames"] for t in compared["transcripts"])
        assert 0 < fast < compared["frames"], (mflops, fast)     # both branches ran, and switched
        latency[mflops] = max(float(s["latency_ms"]) for s in streamed)
    assert latency[0.05] > 0 == latency[500.0], latency      # the slow processor built a backlog


@pytest.mark.cross
def test_rpi4_cli_prints_the_figures(rpi4_bundle, capsys):
    from amc.cli import main

    bundle, audio = rpi4_bundle
    with pytest.raises(SystemExit) as exit_info:
        main(["test", "--target", "rpi4", "--bundle", str(bundle), "--data", str(audio), "--utterances", "1",
              "--records", "8", "--no-patch", "--json"])
    assert exit_info.value.code == 0
    result = json.loads(capsys.readouterr().out)
    for key in ("outputs_compared", "max_int8_step_diff", "transcripts_equal", "patched_equal"):
        assert key in result
    assert result["patched_equal"] is None and result["ok"] is True
