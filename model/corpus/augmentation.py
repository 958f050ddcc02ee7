"""What happens to clean synthetic speech before it is written: reverberation from synthetic
decaying impulse responses, leading and trailing silence as an endpointer leaves it, additive
noise (white, pink, brown, hum, babble) mixed at a drawn SNR, a band limit now and then, and
gain changes. Everything is float32 at 16 kHz and driven by a numpy Generator, so the same
generator state gives the same samples."""

from __future__ import annotations

from dataclasses import dataclass

import numpy as np

SAMPLE_RATE = 16_000
NOISE_KINDS = ("white", "pink", "brown", "hum", "babble")


def _power(x: np.ndarray) -> float:
    return float(np.mean(np.square(x, dtype=np.float64))) if x.size else 0.0


def _fft_filter(x: np.ndarray, gain_of_frequency) -> np.ndarray:
    """Shape a signal's spectrum: multiply its rFFT by gain_of_frequency(f in Hz)."""
    n = len(x)
    spectrum = np.fft.rfft(x)
    freqs = np.fft.rfftfreq(n, 1 / SAMPLE_RATE)
    return np.fft.irfft(spectrum * gain_of_frequency(freqs), n).astype(np.float32)


def colored_noise(kind: str, n: int, rng: np.random.Generator) -> np.ndarray:
    """White (flat), pink (1/f power) or brown (1/f^2 power) noise, unit power."""
    white = rng.standard_normal(n).astype(np.float32)
    if kind == "white":
        noise = white
    elif kind == "pink":
        noise = _fft_filter(white, lambda f: 1 / np.sqrt(np.maximum(f, 20.0)))
    elif kind == "brown":
        noise = _fft_filter(white, lambda f: 1 / np.maximum(f, 20.0))
    else:
        raise ValueError(f"unknown noise kind {kind!r}")
    return (noise / np.sqrt(_power(noise) + 1e-20)).astype(np.float32)


def hum(n: int, rng: np.random.Generator) -> np.ndarray:
    """Mains hum (50 or 60 Hz and its harmonics, drifting a little) over faint white noise."""
    base = rng.choice([50.0, 60.0]) * rng.uniform(0.99, 1.01)
    t = np.arange(n) / SAMPLE_RATE
    signal = np.zeros(n)
    for harmonic in range(1, 8):
        signal += rng.uniform(0.1, 1.0) / harmonic * np.sin(2 * np.pi * base * harmonic * t + rng.uniform(0, 2 * np.pi))
    signal += 0.05 * rng.standard_normal(n)
    return (signal / np.sqrt(_power(signal))).astype(np.float32)


def babble(n: int, bank: list[np.ndarray], rng: np.random.Generator) -> np.ndarray:
    """Several talkers from the babble bank, each from a random offset, summed, unit power."""
    out = np.zeros(n, dtype=np.float32)
    for _ in range(int(rng.integers(3, 8))):
        clip = bank[int(rng.integers(len(bank)))]
        start = int(rng.integers(len(clip)))
        piece = np.resize(np.roll(clip, -start), n)  # loop the clip to length n
        out += piece * rng.uniform(0.5, 1.0)
    return (out / np.sqrt(_power(out) + 1e-20)).astype(np.float32)


def impulse_response(rt60_s: float, rng: np.random.Generator) -> np.ndarray:
    """A synthetic room: a direct path, a few early reflections, then exponentially decaying
    noise with the given reverberation time (60 dB decay), high frequencies decaying faster."""
    n = int(rt60_s * SAMPLE_RATE)
    t = np.arange(n) / SAMPLE_RATE
    tail = rng.standard_normal(n) * np.exp(-6.9 * t / rt60_s)
    tail = _fft_filter(tail, lambda f: 1 / (1 + (f / rng.uniform(2000, 6000)) ** 2)) * 0.3
    ir = np.asarray(tail, dtype=np.float64)
    ir[0] = 1.0
    for _ in range(int(rng.integers(2, 6))):
        delay = int(rng.uniform(0.002, 0.03) * SAMPLE_RATE)
        if delay < n:
            ir[delay] += rng.uniform(-0.6, 0.6)
    return (ir / np.sqrt(np.sum(ir**2))).astype(np.float32)


def reverberate(x: np.ndarray, ir: np.ndarray) -> np.ndarray:
    """Convolve with an impulse response (FFT), keeping the speech's length plus its tail."""
    n = len(x) + len(ir) - 1
    size = 1 << (n - 1).bit_length()
    y = np.fft.irfft(np.fft.rfft(x, size) * np.fft.rfft(ir, size), size)[:n]
    return y.astype(np.float32)


def mix_at_snr(speech: np.ndarray, noise: np.ndarray, snr_db: float,
               speech_region: slice | None = None) -> np.ndarray:
    """speech + noise scaled so that 10*log10(P_speech / P_noise) == snr_db, where P_speech is
    the mean power over `speech_region` (the voiced part, not the padding) and P_noise the mean
    noise power over the whole signal."""
    p_speech = _power(speech[speech_region] if speech_region is not None else speech)
    p_noise = _power(noise)
    scale = np.sqrt(p_speech / (p_noise * 10 ** (snr_db / 10))) if p_noise > 0 else 0.0
    return (speech + scale * noise).astype(np.float32)


def measured_snr_db(speech: np.ndarray, mixture: np.ndarray, speech_region: slice | None = None) -> float:
    """The SNR of a mixture whose clean speech is known, measured as `mix_at_snr` defines it."""
    region = speech_region if speech_region is not None else slice(None)
    return 10 * np.log10(_power(speech[region]) / _power(mixture - speech))


@dataclass(frozen=True)
class Degradation:
    """What was done to one utterance (recorded in metadata.jsonl)."""

    lead_s: float
    trail_s: float
    rt60_s: float | None
    noise: str | None
    snr_db: float | None
    band_limit_hz: int | None
    level_dbfs: float
    gain_ramp_db: float


def draw_degradation(rng: np.random.Generator) -> Degradation:
    """Most utterances are noisy (SNR uniform in 0-30 dB), about half are reverberant."""
    noisy = rng.random() < 0.85
    return Degradation(
        lead_s=float(rng.uniform(0.1, 0.5)), trail_s=float(rng.uniform(0.1, 0.5)),
        rt60_s=float(rng.uniform(0.15, 0.9)) if rng.random() < 0.5 else None,
        noise=str(rng.choice(NOISE_KINDS, p=[0.15, 0.25, 0.15, 0.1, 0.35])) if noisy else None,
        snr_db=float(rng.uniform(0.0, 30.0)) if noisy else None,
        band_limit_hz=int(rng.choice([3400, 4000, 5500])) if rng.random() < 0.15 else None,
        level_dbfs=float(rng.uniform(-38.0, -14.0)),
        gain_ramp_db=float(rng.uniform(-8.0, 8.0)) if rng.random() < 0.3 else 0.0,
    )


def degrade(speech: np.ndarray, d: Degradation, babble_bank: list[np.ndarray],
            rng: np.random.Generator) -> np.ndarray:
    """Apply a drawn degradation to clean 16 kHz speech; returns float32 in [-1, 1]."""
    if d.rt60_s is not None:
        wet = reverberate(speech, impulse_response(d.rt60_s, rng))
        speech = wet[: len(speech) + int(0.1 * SAMPLE_RATE)]
    lead, trail = int(d.lead_s * SAMPLE_RATE), int(d.trail_s * SAMPLE_RATE)
    padded = np.concatenate([np.zeros(lead, np.float32), speech, np.zeros(trail, np.float32)])
    region = slice(lead, lead + len(speech))
    if d.noise is not None:
        n = len(padded)
        if d.noise == "hum":
            noise = hum(n, rng)
        elif d.noise == "babble":
            noise = babble(n, babble_bank, rng)
        else:
            noise = colored_noise(d.noise, n, rng)
        padded = mix_at_snr(padded, noise, d.snr_db, region)
    else:  # even "clean" recordings have a faint noise floor
        padded = mix_at_snr(padded, colored_noise("pink", len(padded), rng), 55.0, region)
    if d.band_limit_hz is not None:
        cutoff = d.band_limit_hz
        padded = _fft_filter(padded, lambda f: 1 / (1 + (f / cutoff) ** 8) / (1 + (300 / np.maximum(f, 1)) ** 4))
    # level: speech RMS to level_dbfs, with a linear gain ramp across the utterance
    rms = np.sqrt(_power(padded[region]) + 1e-20)
    ramp = 10 ** (np.linspace(0.0, d.gain_ramp_db, len(padded)) / 20)
    out = padded * (10 ** (d.level_dbfs / 20) / rms) * ramp
    peak = float(np.max(np.abs(out))) if out.size else 0.0
    if peak > 0.99:  # no clipping: turn the whole utterance down instead
        out *= 0.99 / peak
    return out.astype(np.float32)
