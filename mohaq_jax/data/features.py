"""Log-mel filterbank features and frame labels, in numpy.

MOHAQ (Rezk et al., 2022, Sec. 5) trains its SRU models on TIMIT filterbank
features: 23 log-mel energies over 25 ms windows with a 10 ms hop, extended with
first and second time derivatives and normalized per speaker, the usual
PyTorch-Kaldi front end. This module computes them from a waveform with plain
numpy so that the TIMIT and eSpeak corpora go through the same pipeline.
"""

from __future__ import annotations

import dataclasses

import numpy as np


@dataclasses.dataclass(frozen=True)
class FeatureConfig:
    """How waveforms become feature frames (hashable; part of every cache key)."""

    sample_rate: int = 16000  # Hz; TIMIT is 16 kHz, eSpeak audio is resampled to it
    n_mels: int = 23  # mel filters; 23 as the paper's model, 40 also common
    win: float = 0.025  # analysis window, seconds
    hop: float = 0.010  # frame shift, seconds
    n_fft: int = 512  # FFT size; must hold one window
    preemphasis: float = 0.97  # y[n] = x[n] - a x[n-1]; 0 disables
    fmin: float = 20.0  # lowest filter edge, Hz
    fmax: float | None = None  # highest filter edge, Hz; None = Nyquist
    deltas: bool = True  # append first time derivatives
    delta_deltas: bool = True  # also append second derivatives (needs deltas)
    delta_window: int = 2  # N in the regression formula over +-N frames
    log_floor: float = 1e-10  # energies are clipped to this before the log
    normalize: bool = True  # per-speaker mean/variance normalization

    def __post_init__(self):
        if self.win_length > self.n_fft:
            raise ValueError(
                f"window of {self.win_length} samples does not fit n_fft={self.n_fft}"
            )
        if self.delta_deltas and not self.deltas:
            raise ValueError("delta_deltas=True needs deltas=True")

    @property
    def win_length(self) -> int:
        """Window length in samples."""
        return int(round(self.win * self.sample_rate))

    @property
    def hop_length(self) -> int:
        """Frame shift in samples."""
        return int(round(self.hop * self.sample_rate))

    @property
    def n_features(self) -> int:
        """Features per frame: n_mels times 1, 2 or 3 (with derivatives)."""
        return self.n_mels * (1 + int(self.deltas) + int(self.delta_deltas))


def hz_to_mel(hz):
    """HTK mel scale: 2595 log10(1 + f / 700)."""
    return 2595.0 * np.log10(1.0 + np.asarray(hz, dtype=np.float64) / 700.0)


def mel_to_hz(mel):
    """Inverse of hz_to_mel."""
    return 700.0 * (10.0 ** (np.asarray(mel, dtype=np.float64) / 2595.0) - 1.0)


def mel_filterbank(config: FeatureConfig) -> np.ndarray:
    """Triangular filters equally spaced on the mel scale.

    Args:
      config: feature settings (sample_rate, n_fft, n_mels, fmin, fmax).

    Returns:
      shape=(n_mels, n_fft // 2 + 1), float64: filter weights per FFT bin; each
      filter rises linearly from its left edge to 1 at its centre and falls back
      to 0 at its right edge (edges are the neighbouring centres).
    """
    fmax = config.sample_rate / 2 if config.fmax is None else config.fmax
    edges_hz = mel_to_hz(
        np.linspace(hz_to_mel(config.fmin), hz_to_mel(fmax), config.n_mels + 2)
    )
    bins_hz = np.arange(config.n_fft // 2 + 1) * config.sample_rate / config.n_fft
    left, centre, right = edges_hz[:-2, None], edges_hz[1:-1, None], edges_hz[2:, None]
    rising = (bins_hz - left) / (centre - left)
    falling = (right - bins_hz) / (right - centre)
    return np.maximum(0.0, np.minimum(rising, falling))


def num_frames(n_samples: int, config: FeatureConfig) -> int:
    """Whole windows that fit in ``n_samples`` (no padding at either end)."""
    if n_samples < config.win_length:
        return 0
    return 1 + (n_samples - config.win_length) // config.hop_length


def log_mel(signal: np.ndarray, config: FeatureConfig) -> np.ndarray:
    """Log mel filterbank energies of one waveform.

    Args:
      signal: shape=(n_samples,), float; any scale (TIMIT int16 values work).
      config: feature settings.

    Returns:
      shape=(T, n_mels), float32 with T = num_frames(n_samples): log of the mel
      energies of the pre-emphasized, Hamming-windowed power spectrum.
    """
    signal = np.asarray(signal, dtype=np.float64)
    if config.preemphasis:
        signal = np.concatenate(
            [signal[:1], signal[1:] - config.preemphasis * signal[:-1]]
        )
    n_frames = num_frames(signal.shape[0], config)
    if n_frames == 0:
        return np.zeros((0, config.n_mels), dtype=np.float32)
    starts = np.arange(n_frames) * config.hop_length
    frames = signal[starts[:, None] + np.arange(config.win_length)[None, :]]
    frames = frames * np.hamming(config.win_length)[None, :]
    power = np.abs(np.fft.rfft(frames, n=config.n_fft, axis=1)) ** 2
    energies = power @ mel_filterbank(config).T
    return np.log(np.maximum(energies, config.log_floor)).astype(np.float32)


def deltas(features: np.ndarray, window: int = 2) -> np.ndarray:
    """Regression time derivatives (HTK / Kaldi formula), edges repeated.

    d_t = sum_{n=1..N} n (c_{t+n} - c_{t-n}) / (2 sum_{n=1..N} n^2)

    Args:
      features: shape=(T, F).
      window: N.

    Returns:
      shape=(T, F), same dtype.
    """
    if features.shape[0] == 0:
        return features.copy()
    padded = np.pad(
        features.astype(np.float64), ((window, window), (0, 0)), mode="edge"
    )
    length = features.shape[0]
    total = np.zeros(features.shape, dtype=np.float64)
    for n in range(1, window + 1):
        total += n * (
            padded[window + n : window + n + length]
            - padded[window - n : window - n + length]
        )
    return (total / (2 * sum(n * n for n in range(1, window + 1)))).astype(
        features.dtype
    )


def compute_features(signal: np.ndarray, config: FeatureConfig) -> np.ndarray:
    """Log-mel energies with the derivatives the config asks for (no normalization).

    Args:
      signal: shape=(n_samples,).
      config: feature settings.

    Returns:
      shape=(T, config.n_features), float32: [log-mel, deltas, delta-deltas].
    """
    static = log_mel(signal, config)
    parts = [static]
    if config.deltas:
        parts.append(deltas(static, config.delta_window))
        if config.delta_deltas:
            parts.append(deltas(parts[-1], config.delta_window))
    return np.concatenate(parts, axis=1).astype(np.float32)


def normalize_per_speaker(
    features: list[np.ndarray], speakers: list[str], eps: float = 1e-8
) -> list[np.ndarray]:
    """Mean/variance normalization with statistics pooled over each speaker.

    Args:
      features: one shape=(T_i, F) array per utterance.
      speakers: the speaker of each utterance.
      eps: added to the standard deviation.

    Returns:
      New arrays, float32: every feature has zero mean and unit variance over
      all frames of each speaker.
    """
    if len(features) != len(speakers):
        raise ValueError(f"{len(features)} feature arrays but {len(speakers)} speakers")
    normalized: list[np.ndarray] = [np.empty(0)] * len(features)
    for speaker in sorted(set(speakers)):
        members = [i for i, s in enumerate(speakers) if s == speaker]
        stacked = np.concatenate([features[i] for i in members], axis=0).astype(
            np.float64
        )
        mean = stacked.mean(axis=0)
        std = stacked.std(axis=0) + eps
        for i in members:
            normalized[i] = ((features[i] - mean) / std).astype(np.float32)
    return normalized


def frame_labels(
    starts: np.ndarray,
    ends: np.ndarray,
    labels: np.ndarray,
    n_frames: int,
    config: FeatureConfig,
) -> np.ndarray:
    """The label of the segment holding each frame's centre sample.

    Frames whose centre falls in a gap get the next segment's label; frames
    before the first segment get the first label. Frames whose centre lies at
    or past the last segment's end get -1 (callers trim them).

    Args:
      starts: shape=(S,), int: first sample of each segment, sorted.
      ends: shape=(S,), int: one past the last sample of each segment.
      labels: shape=(S,), int: class index of each segment.
      n_frames: frames in the utterance.
      config: gives window and hop lengths.

    Returns:
      shape=(n_frames,), int32.
    """
    del starts  # segments are contiguous or gaps go to the next one
    centres = np.arange(n_frames) * config.hop_length + config.win_length // 2
    segment = np.searchsorted(np.asarray(ends), centres, side="right")
    out = np.full(n_frames, -1, dtype=np.int32)
    inside = segment < len(ends)
    out[inside] = np.asarray(labels, dtype=np.int32)[segment[inside]]
    return out


#: The default front end (frozen, so safe as a default argument).
DEFAULT_CONFIG = FeatureConfig()
