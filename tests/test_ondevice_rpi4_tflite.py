"""On-target checks of TFLite bundles for the Raspberry Pi 4 preset: the board side
(device/board/tflite_board.py) in Debian's arm64 CPython with ai-edge-litert's aarch64 wheel under
qemu-aarch64 (Cortex-A72), on a small compiled bundle, compared with the host's ai-edge-litert;
the device script's streaming against `evaluate_bundle` on the host; and the one-line errors."""

from __future__ import annotations

from pathlib import Path

import pytest

from amc.common.errors import InputError
from tests.ondevice_fixtures import fixture_bundle


@pytest.fixture(scope="session")
def rpi4_tflite_bundle() -> tuple[Path, Path]:
    return fixture_bundle("tflite")


# ---- plain -----------------------------------------------------------------------------------------

def test_board_root_describes_the_pi_4s_cpu(tmp_path, monkeypatch):
    from amc.targets.board_python import board_root
    from amc.targets.presets import get_target

    monkeypatch.setenv("AMC_DEVICE_CACHE", str(tmp_path))
    root = board_root(get_target("rpi4"))
    cpuinfo = (root / "proc" / "cpuinfo").read_text()
    assert cpuinfo.count("CPU part\t: 0xd08") == 4 and "Raspberry Pi 4" in cpuinfo
    assert (root / "sys/devices/system/cpu/possible").read_text() == "0-3\n"
    assert (root / "sys/devices/system/cpu/cpu3/cache/index2/size").read_text() == "1024K\n"
    assert (root / "lib").resolve() == Path("/usr/aarch64-linux-gnu/lib").resolve()
    assert board_root(get_target("rpi4")) == root          # made once


def test_device_script_refuses_bad_arguments():
    from amc.device.board.tflite_board import BadInput, main

    for argv in ([], ["graph", "b", "fast"], ["stream", "b", "f", "--speed", "3"],
                 ["graph", "b", "fast", "i", "o", "--kernels", "fastest"]):
        with pytest.raises((BadInput, OSError)):
            main(argv)


# ---- with the TFLite toolchain: the device script on the host ---------------------------------------

def test_device_script_streams_like_evaluate_bundle(rpi4_tflite_bundle, tmp_path, capsys):
    """The board's streaming loop, run here with the host's numpy and ai-edge-litert, gives the
    routes, transcripts and latencies of `evaluate_bundle`, at a speed where the backlog builds up
    and at one where it does not."""
    from amc.compiler.bundle import load_bundle
    from amc.device.board.tflite_board import main
    from amc.model.evaluate import evaluate_bundle
    from amc.model.feature_set import load_features
    from amc.ontarget.recording import compare_streams
    from amc.targets.amc_runner import parse_stream, write_features

    bundle, audio = rpi4_tflite_bundle
    host = load_bundle(bundle)
    data = load_features(audio, host.config.features).subset(range(2))
    features = write_features(tmp_path / "u.amcf", [f.numpy() for f in data.features])
    for mflops in (0.05, 500.0):
        main(["stream", str(bundle), str(features), "--mflops", repr(mflops)])
        streamed = parse_stream(capsys.readouterr().out)
        traces = evaluate_bundle(host, data, mflops=mflops, keep_traces=True)["traces"]
        compared = compare_streams(traces, streamed)
        assert compared["routes_equal"] and compared["transcripts_equal"], mflops
        assert compared["max_latency_diff_ms"] < 1e-3


# ---- under QEMU ---------------------------------------------------------------------------------------

@pytest.mark.cross
def test_rpi3_has_no_litert_wheel():
    from amc.targets.board_python import board_python
    from amc.targets.presets import get_target

    with pytest.raises(InputError, match="no ai-edge-litert wheel is published for arm-linux-gnueabihf"):
        board_python(get_target("rpi3"))


@pytest.mark.cross
def test_rpi4_tflite_graphs_streaming_and_patch_match_the_host(rpi4_tflite_bundle):
    from amc.ontarget.harness import Settings, test_on_target

    bundle, audio = rpi4_tflite_bundle
    result = test_on_target("rpi4", bundle, data=audio, settings=Settings(utterances=2, records_per_graph=32))
    assert result["backend"] == "tflite"
    assert result["runtime"].startswith("ai-edge-litert 2.3.0 (aarch64 wheel) under CPython 3.11")
    assert result["outputs_compared"] > 0
    assert result["max_int8_step_diff"] <= 1.0                     # XNNPACK's ARM kernels against its x86 ones
    assert result["reference_kernels"]["max_int8_step_diff"] == 0.0
    assert result["transcripts_equal"] and result["routes_equal"]
    assert result["max_latency_diff_ms"] < 1e-3
    assert "skipped" not in result["patch"], result["patch"]
    assert result["patched_equal"] is True and result["patch"]["outputs_changed"]
    # WAV audio in: the board's Python runs the board's build of the C front end (ctypes)
    assert result["audio_in"] is True and result["frontend"]["board_equals_host_c"]
    assert result["frontend_max_step_diff"] <= 1
    assert result["ok"] is True


@pytest.mark.cross
def test_board_python_transcribes_and_listens_as_the_host_does(rpi4_tflite_bundle):
    """The board's Python with the board's C front end: `transcribe` prints what `amc transcribe`
    prints on the host; `listen` on raw PCM from stdin ends at the same text, its partials growing."""
    import wave

    from amc.compiler.scoring import transcribe_path
    from amc.ontarget.linux_board import LiteRtBoard
    from amc.ontarget.recording import audio_files
    from amc.targets.amc_runner import parse_stream
    from amc.targets.presets import get_target

    bundle, audio = rpi4_tflite_bundle
    wavs = audio_files(audio)[:2]
    board = LiteRtBoard(get_target("rpi4"))
    host = transcribe_path(bundle, wavs)["results"]
    streamed = parse_stream(board.run_bundle_tool(["transcribe", bundle, *wavs, *board.frontend_options()],
                                                  "transcribing"))
    assert [u["text"] for u in streamed] == [r["text"] for r in host]
    with wave.open(str(wavs[0]), "rb") as w:
        pcm = w.readframes(w.getnframes())
    result = board.python.run("tflite_board.py", ["listen", bundle, "-", *board.frontend_options()], stdin=pcm)
    assert result.returncode == 0, result.stderr.decode()[-500:]
    lines = result.stdout.decode().splitlines()
    partials = [line[len("partial "):] for line in lines if line.startswith("partial ")]
    final = next(line[len("text 0 "):] for line in lines if line.startswith("text 0"))
    assert final == host[0]["text"]
    assert all(b.startswith(a) for a, b in zip(partials, partials[1:])) and (not partials or partials[-1] == final)
    assert any(line.startswith("listen ") and "board_latency_ms=" in line for line in lines)
