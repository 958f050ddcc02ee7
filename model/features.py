"""Log-mel filterbank features, computed with torch ops, stacked into encoder frames.

The definition lives in `FeatureConfig` (config.json), so training, compile, eval and the device
runner all compute the same numbers."""

from __future__ import annotations

import math

import numpy as np
import torch

from amc.model.config import FeatureConfig


def _hz_to_mel(hz: float) -> float:
    return 2595.0 * math.log10(1.0 + hz / 700.0)


def mel_filterbank(config: FeatureConfig) -> torch.Tensor:
    """Triangular HTK-mel filters, shape (n_fft // 2 + 1, n_mels)."""
    bins = config.n_fft // 2 + 1
    fft_hz = torch.linspace(0.0, config.sample_rate / 2, bins, dtype=torch.float64)
    mel_points = torch.linspace(_hz_to_mel(config.f_min), _hz_to_mel(config.f_max), config.n_mels + 2,
                                dtype=torch.float64)
    hz_points = 700.0 * (10.0 ** (mel_points / 2595.0) - 1.0)
    lower, center, upper = hz_points[:-2], hz_points[1:-1], hz_points[2:]
    rising = (fft_hz[:, None] - lower) / (center - lower)
    falling = (upper - fft_hz[:, None]) / (upper - center)
    return torch.clamp(torch.minimum(rising, falling), min=0.0).to(torch.float32)


class LogMel:
    """waveform (samples,) float in [-1, 1] -> encoder frames (frames, n_mels * stack)."""

    def __init__(self, config: FeatureConfig):
        self.config = config
        self.hop = round(config.sample_rate * config.hop_ms / 1000)
        self.window_length = round(config.sample_rate * config.window_ms / 1000)
        self.window = torch.hann_window(self.window_length, periodic=True)
        self.filters = mel_filterbank(config)

    def log_mels(self, waveform: torch.Tensor) -> torch.Tensor:
        """(samples,) -> (10 ms frames, n_mels); only whole windows, no padding beyond the end."""
        if waveform.numel() < self.window_length:
            return torch.zeros(0, self.config.n_mels)
        spectrum = torch.stft(waveform, self.config.n_fft, hop_length=self.hop, win_length=self.window_length,
                              window=self.window, center=False, return_complex=True)
        power = spectrum.abs().pow(2).T                      # (frames, bins)
        return torch.log(torch.clamp(power @ self.filters, min=self.config.log_floor))

    def __call__(self, waveform: np.ndarray | torch.Tensor) -> torch.Tensor:
        waveform = torch.as_tensor(waveform, dtype=torch.float32)
        mels = self.log_mels(waveform)
        usable = mels.shape[0] // self.config.stack * self.config.stack
        return mels[:usable].reshape(-1, self.config.frame_dim)
