"""The C speech front end (device/frontend) against the training features (model.features.LogMel):
same frames to float32 rounding, the same int8 encoder inputs, the same bits for any chunking and
on every board, and a one-line error for every bad table file."""

from __future__ import annotations

import math
import shutil
import struct
import subprocess
import zlib

import numpy as np
import pytest
import torch

from amc.common.errors import InputError
from amc.model.config import FeatureConfig
from amc.model.features import LogMel, mel_filterbank
from amc.runtime import frontend
from amc.runtime.c_tests import runner_command
from amc.runtime.frontend import CFrontEnd, build_frontend, table_bytes, write_tables
from amc.targets.presets import get_target

CONFIG = FeatureConfig()


@pytest.fixture(scope="module")
def speech() -> np.ndarray:
    """About 4 s of int16 PCM: digital silence, espeak-ng speech (tones where it is missing) at a
    normal and a very low level, light noise and a clipped stretch."""
    rng = np.random.default_rng(0)
    if shutil.which("espeak-ng"):
        from amc.model.corpus.synth import espeak
        from amc.model.corpus.voices import Voice

        voiced = espeak("set a timer for twenty minutes and call my sister", Voice("en-us", "m3"), [])
    else:
        t = np.arange(32000) / 16000
        voiced = 0.3 * np.sin(2 * np.pi * (150 + 40 * np.sin(3 * t)) * t) * (np.sin(2 * np.pi * 2 * t) > 0)
    x = np.concatenate([np.zeros(3000), voiced, 0.003 * voiced, np.clip(4 * voiced[:8000], -1, 1)])
    x = x + 0.002 * rng.standard_normal(x.size) * (np.arange(x.size) >= 3000)
    return np.clip(np.round(x * 32767), -32768, 32767).astype(np.int16)


def reference(pcm: np.ndarray) -> np.ndarray:
    """The training features of int16 PCM (load_wav's scaling)."""
    return LogMel(CONFIG)(pcm.astype(np.float32) / 32768.0).numpy()


# ---- tables ----------------------------------------------------------------------------------

def test_tables_hold_the_training_window_and_filters():
    data = table_bytes(CONFIG)
    n_fft, n_mels = CONFIG.n_fft, CONFIG.n_mels
    window = np.frombuffer(data, "<f4", n_fft, 32)
    features = LogMel(CONFIG)
    padded = torch.nn.functional.pad(features.window, (56, 56)).numpy()    # torch.stft's padding
    assert window.tobytes() == padded.tobytes()
    spans = np.frombuffer(data, "<u2", 2 * n_mels, 32 + 8 * n_fft).reshape(n_mels, 2)
    weights = np.frombuffer(data, "<f4", int(spans[:, 1].sum()), 32 + 8 * n_fft + 4 * n_mels)
    rebuilt = np.zeros((n_fft // 2 + 1, n_mels), np.float32)
    at = 0
    for m, (first, count) in enumerate(spans):
        rebuilt[first:first + count, m] = weights[at:at + count]
        at += count
    assert rebuilt.tobytes() == mel_filterbank(CONFIG).numpy().tobytes()
    assert len(data) == struct.unpack_from("<I", data, 28)[0]
    assert struct.unpack_from("<I", data, len(data) - 4)[0] == zlib.crc32(data[:-4])


def test_write_tables(tmp_path):
    assert write_tables(CONFIG, tmp_path / "frontend.bin").read_bytes() == table_bytes(CONFIG)


# ---- frames against the training features ----------------------------------------------------

def test_frames_match_the_training_features(speech):
    ours, theirs = CFrontEnd(CONFIG).frames(speech), reference(speech)
    assert ours.shape == theirs.shape and ours.shape[1] == CONFIG.frame_dim
    difference = np.abs(ours - theirs).max()
    print(f"max abs difference {difference:.3g} over {ours.size} values")
    assert difference < 1e-3
    # as the model's first graph input sees them: int8 over the features' range
    low, high = float(theirs.min()), float(theirs.max())
    scale = (high - low) / 255
    zero_point = round(-128 - low / scale)

    def quantize(x):
        return np.clip(np.round(x / scale) + zero_point, -128, 127).astype(np.int32)

    steps = np.abs(quantize(ours) - quantize(theirs))
    print(f"int8 (scale {scale:.4f}): {np.mean(steps == 0):.6f} identical, max {steps.max()} step")
    assert np.mean(steps == 0) >= 0.999 and steps.max() <= 1


@pytest.mark.parametrize("samples", [0, 1, 399, 512, 831, 832, 991, 992, 1151, 1152, 16000])
def test_frame_count_matches(samples):
    pcm = np.random.default_rng(samples).integers(-3000, 3000, samples, dtype=np.int16)
    assert CFrontEnd(CONFIG).frames(pcm).shape == reference(pcm).shape


def test_short_windows_give_no_frame():
    """LogMel raises for 400..511 samples (torch.stft wants n_fft of them); a row needs 512 here,
    and a frame 832, so the C gives none, as LogMel gives for every other length below 832."""
    for samples in (400, 511):
        assert CFrontEnd(CONFIG).frames(np.ones(samples, np.int16)).shape == (0, CONFIG.frame_dim)


@pytest.mark.parametrize("chunk", [1, 7, 160, 4096])
def test_any_chunking_gives_the_same_bits(speech, chunk):
    whole = CFrontEnd(CONFIG).frames(speech)
    front_end = CFrontEnd(CONFIG)
    parts = [front_end.push(speech[i:i + chunk]) for i in range(0, speech.size, chunk)]
    assert np.concatenate(parts).tobytes() == whole.tobytes()


def test_reset_starts_a_new_utterance(speech):
    front_end = CFrontEnd(CONFIG)
    front_end.push(speech[:1234])
    assert front_end.frames(speech).tobytes() == CFrontEnd(CONFIG).frames(speech).tobytes()


def test_log_is_within_one_ulp():
    """The front end's own log over positive normal floats (random bit patterns) and the range
    the clamped mel sums take."""
    rng = np.random.default_rng(1)
    bits = rng.integers(0x00800000, 0x7f800000, 20000, dtype=np.uint32)
    values = np.concatenate([bits.view(np.float32), np.geomspace(1e-6, 1e7, 5000, dtype=np.float32),
                             np.float32([1.0, 2.0, 0.5, 1e-6, np.sqrt(2), 1 / np.sqrt(2)])])
    worst = 0.0
    for x in values:
        exact = math.log(float(x))
        worst = max(worst, abs(frontend.c_log(float(x)) - exact) / float(np.spacing(np.float32(abs(exact)) or 1)))
    assert frontend.c_log(1.0) == 0.0 and worst <= 1.0, worst


# ---- the FFT against numpy's, at every size --------------------------------------------------

def bin_tables(n_fft: int, hop: int, bins: np.ndarray) -> bytes:
    """A table file whose "mels" are single power bins, weight 1, one row a frame: the C's frames
    are then log |X[b]|^2 of those bins. A hann window over all n_fft samples; the twiddles as
    table_bytes writes them."""
    window = (0.5 - 0.5 * np.cos(2 * np.pi * np.arange(n_fft) / n_fft)).astype("<f4")
    twiddles = np.exp(-2j * np.pi * np.arange(n_fft // 2) / n_fft)
    twiddles = np.stack([twiddles.real, twiddles.imag], axis=1).astype("<f4")
    spans = np.stack([bins, np.ones_like(bins)], axis=1).astype("<u2")
    body = window.tobytes() + twiddles.tobytes() + spans.tobytes() + np.ones(bins.size, "<f4").tobytes()
    total = frontend.HEADER.size + len(body) + 4
    data = frontend.HEADER.pack(frontend.MAGIC, frontend.VERSION, n_fft, hop, bins.size, 1, n_fft,
                                CONFIG.sample_rate, 1e-30, bins.size, total) + body
    return data + struct.pack("<I", zlib.crc32(data))


@pytest.mark.parametrize("n_fft", [4, 8, 16, 32, 64, 128, 256, 512])
def test_fft_matches_numpy(n_fft):
    """Every power bin, DC and Nyquist included, against numpy's float64 rfft of the same windowed
    full-scale noise: |X| within 1e-5 of the row's RMS bin magnitude (float32 rounding gives under
    1e-6; an index or twiddle wrong anywhere is off by O(1)). An odd hop and 7-sample chunks move
    the sample ring around."""
    hop = (3 * n_fft // 8) | 1
    pcm = np.random.default_rng(n_fft).integers(-32768, 32768, n_fft + 40 * hop, dtype=np.int16)
    rows = (pcm.size - n_fft) // hop + 1
    frames = np.stack([pcm[r * hop:r * hop + n_fft] for r in range(rows)]) / 32768.0
    window = np.frombuffer(bin_tables(n_fft, hop, np.arange(1)), "<f4", n_fft, frontend.HEADER.size).astype(np.float64)
    magnitude = np.abs(np.fft.rfft(frames * window, axis=1))
    rms = np.sqrt(np.mean(magnitude ** 2, axis=1, keepdims=True))
    bins = n_fft // 2 + 1
    stride = -(-bins // 80)                     # at most 80 "mels" a table
    for first in range(stride):
        chosen = np.arange(first, bins, stride)
        front_end = CFrontEnd.from_tables(bin_tables(n_fft, hop, chosen))
        ours = front_end.frames(pcm)
        assert ours.shape == (rows, chosen.size)
        error = np.abs(np.sqrt(np.exp(ours.astype(np.float64))) - magnitude[:, chosen]) / rms
        assert error.max() < 1e-5, (first, error.max())
        front_end.reset()
        chunked = np.concatenate([front_end.push(pcm[i:i + 7]) for i in range(0, pcm.size, 7)])
        assert chunked.tobytes() == ours.tobytes()


# ---- bad table files -------------------------------------------------------------------------

def resealed(data: bytes) -> bytes:
    """`data` with its CRC recomputed: the checks behind the CRC see the change."""
    return data[:-4] + struct.pack("<I", zlib.crc32(data[:-4]))


def patched(offset: int, fmt: str, value) -> bytes:
    data = bytearray(table_bytes(CONFIG))
    struct.pack_into(fmt, data, offset, value)
    return resealed(bytes(data))


GOOD = table_bytes(CONFIG)
BAD_TABLES = {
    "empty": (b"", "truncated"),
    "header only": (GOOD[:32], "truncated"),
    "cut short": (GOOD[:-1], "truncated"),
    "bad magic": (b"XXXX" + GOOD[4:], "not a front-end table file"),
    "version 2": (patched(4, "<H", 2), "unsupported front-end table version"),
    "bit flipped": (GOOD[:100] + bytes([GOOD[100] ^ 1]) + GOOD[101:], "CRC mismatch"),
    "n_fft not a power of two": (patched(6, "<H", 500), "config out of bounds"),
    "n_fft too large": (patched(6, "<H", 1024), "config out of bounds"),
    "hop zero": (patched(8, "<H", 0), "config out of bounds"),
    "too many mels": (patched(10, "<H", 200), "config out of bounds"),
    "frame too wide": (patched(12, "<H", 7), "config out of bounds"),
    "log floor zero": (patched(20, "<f", 0.0), "config out of bounds"),
    "log floor nan": (patched(20, "<f", float("nan")), "config out of bounds"),
    "weight count off": (patched(24, "<I", 500), "length or value out of bounds"),
    "span past the bins": (patched(32 + 8 * 512, "<H", 256), "length or value out of bounds"),
    "weight infinite": (patched(len(GOOD) - 8, "<f", float("inf")), "length or value out of bounds"),
    "trailing bytes": (GOOD + b"\0", "length or value out of bounds"),
}


@pytest.mark.parametrize("name", BAD_TABLES)
def test_bad_tables_are_refused(name):
    data, message = BAD_TABLES[name]
    with pytest.raises(InputError, match=message):
        CFrontEnd.from_tables(data)


def test_every_truncation_and_bit_flip_is_refused():
    for size in range(0, len(GOOD), 7):
        with pytest.raises(InputError):
            CFrontEnd.from_tables(GOOD[:size])
    for bit in range(0, 8 * len(GOOD), 61):
        flipped = bytearray(GOOD)
        flipped[bit // 8] ^= 1 << bit % 8
        with pytest.raises(InputError):
            CFrontEnd.from_tables(bytes(flipped))


def test_cli_says_what_is_wrong_in_one_line(tmp_path):
    cli = build_frontend("host").cli
    (tmp_path / "bad.bin").write_bytes(BAD_TABLES["bit flipped"][0])
    (tmp_path / "in.pcm").write_bytes(b"\0" * 2000)
    result = subprocess.run([str(cli), "bad.bin", "in.pcm", "out.f32"], cwd=tmp_path, capture_output=True, text=True)
    assert result.returncode == 1
    assert result.stderr == "amc-frontend: bad.bin: front-end tables corrupt (CRC mismatch)\n"
    assert subprocess.run([str(cli)], capture_output=True).returncode == 64


def test_pcm_must_be_int16():
    with pytest.raises(InputError, match="int16"):
        CFrontEnd(CONFIG).frames(np.zeros(1000, np.float32))


def test_core_needs_no_library():
    """No libc or libm symbol: the core is + - * / on float32 and integer code."""
    assert build_frontend("host").sizes["undefined_symbols"] == []


# ---- the same bits on every board ------------------------------------------------------------

@pytest.fixture(scope="module")
def cli_inputs(tmp_path_factory, speech):
    """The table file, the speech as a WAV file and as raw PCM, and the host binding's frames."""
    from amc.model.corpus.synth import write_wav

    folder = tmp_path_factory.mktemp("frontend")
    write_tables(CONFIG, folder / "frontend.bin")
    speech.astype("<i2").tofile(folder / "in.pcm")
    write_wav(folder / "in.wav", speech.astype(np.float32) / 32767.0)
    expected = {"in.pcm": CFrontEnd(CONFIG).frames(speech)}
    with open(folder / "in.wav", "rb") as f:
        expected["in.wav"] = CFrontEnd(CONFIG).frames(np.frombuffer(f.read()[44:], "<i2"))
    return folder, expected


def run_cli(target: str, folder, source: str, extra=()) -> np.ndarray:
    built = build_frontend(target)
    out = f"out-{target}.f32"
    result = subprocess.run(runner_command(get_target(target), built.cli, ["frontend.bin", source, out, *extra]),
                            cwd=folder, capture_output=True, text=True, timeout=600)
    assert result.returncode == 0 and "frames=" in result.stdout, result.stdout + result.stderr
    return np.fromfile(folder / out, "<f4").reshape(-1, CONFIG.frame_dim)


@pytest.mark.parametrize("source", ["in.pcm", "in.wav"])
def test_host_cli_gives_the_binding_bits(cli_inputs, source):
    folder, expected = cli_inputs
    assert run_cli("host", folder, source, ["--chunk", "7"]).tobytes() == expected[source].tobytes()


@pytest.mark.cross
@pytest.mark.parametrize("target", ["rpi4", "rpi3", "cortex-m7", "cortex-m4"])
def test_board_gives_the_host_bits(cli_inputs, target):
    """aarch64 and armhf under qemu-user, Cortex-M7 and M4 bare metal under qemu-system-arm
    (files by semihosting): the same float32 bits as the host."""
    folder, expected = cli_inputs
    assert run_cli(target, folder, "in.wav").tobytes() == expected["in.wav"].tobytes()


@pytest.mark.cross
@pytest.mark.parametrize("target", ["rpi4", "rpi3", "cortex-m7", "cortex-m4"])
def test_board_build_fuses_no_multiply_add(target):
    """-ffp-contract=off holds: no fused multiply-add, which rounds once where x86-64 rounds twice.
    (VFP's vmla/vnmls are not fused: they round the product first, as a multiply would.)"""
    preset = get_target(target)
    built = build_frontend(target)
    listing = subprocess.run([f"{preset.triple}-objdump", "-d", str(built.library)],
                             capture_output=True, text=True, check=True).stdout
    mnemonics = {line.split("\t")[2].split()[0] for line in listing.splitlines() if line.count("\t") >= 2}
    fused = {m for m in mnemonics if m.startswith(("fmadd", "fmsub", "fnmadd", "fnmsub", "vfma", "vfms",
                                                   "vfnma", "vfnms"))}
    assert mnemonics and not fused, fused
    assert built.sizes["undefined_symbols"] == []
