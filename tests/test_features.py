"""Features against a direct DFT and explicit triangular filters written here."""

import math

import numpy as np
import pytest

from mohaq_jax.data import features as F
from mohaq_jax.data.features import FeatureConfig


def reference_log_mel(signal, config):
    """Per-frame direct DFT, filters built bin by bin from their Hz edges."""
    x = np.asarray(signal, dtype=np.float64)
    emphasized = x.copy()
    for n in range(1, len(x)):
        emphasized[n] = x[n] - config.preemphasis * x[n - 1]
    win, hop, n_fft = config.win_length, config.hop_length, config.n_fft
    hamming = [0.54 - 0.46 * math.cos(2 * math.pi * n / (win - 1)) for n in range(win)]
    mel = lambda f: 2595.0 * math.log10(1.0 + f / 700.0)  # noqa: E731
    imel = lambda m: 700.0 * (10 ** (m / 2595.0) - 1.0)  # noqa: E731
    top = config.sample_rate / 2 if config.fmax is None else config.fmax
    lo, hi = mel(config.fmin), mel(top)
    edges = [
        imel(lo + (hi - lo) * i / (config.n_mels + 1)) for i in range(config.n_mels + 2)
    ]
    n_bins = n_fft // 2 + 1
    weights = np.zeros((config.n_mels, n_bins))
    for m in range(config.n_mels):
        left, centre, right = edges[m], edges[m + 1], edges[m + 2]
        for k in range(n_bins):
            f = k * config.sample_rate / n_fft
            if left < f <= centre:
                weights[m, k] = (f - left) / (centre - left)
            elif centre < f < right:
                weights[m, k] = (right - f) / (right - centre)
    n_frames = (len(x) - win) // hop + 1
    dft = np.exp(-2j * np.pi * np.outer(np.arange(n_bins), np.arange(win)) / n_fft)
    out = np.zeros((n_frames, config.n_mels))
    for t in range(n_frames):
        frame = emphasized[t * hop : t * hop + win] * np.array(hamming)
        power = np.abs(dft @ frame) ** 2  # zero padding to n_fft adds nothing
        out[t] = np.log(np.maximum(weights @ power, config.log_floor))
    return out


@pytest.fixture
def chirp_signal():
    rng = np.random.default_rng(0)
    t = np.arange(4000) / 16000
    return 3000 * np.sin(2 * np.pi * (300 + 2000 * t) * t) + 200 * rng.standard_normal(
        t.size
    )


@pytest.mark.parametrize("n_mels", [23, 40])
def test_log_mel_matches_direct_dft(chirp_signal, n_mels):
    config = FeatureConfig(n_mels=n_mels)
    ours = F.log_mel(chirp_signal, config)
    ref = reference_log_mel(chirp_signal, config)
    assert ours.shape == ref.shape == (1 + (4000 - 400) // 160, n_mels)
    np.testing.assert_allclose(ours, ref, rtol=1e-4, atol=1e-3)


def test_pure_tone_peaks_in_its_filter():
    config = FeatureConfig(preemphasis=0.0)
    tone = np.sin(2 * np.pi * 1000 * np.arange(8000) / 16000)
    energies = F.log_mel(tone, config)
    edges = F.mel_to_hz(np.linspace(F.hz_to_mel(20.0), F.hz_to_mel(8000.0), 25))
    expected = int(np.argmin(np.abs(edges[1:-1] - 1000)))
    assert np.all(np.argmax(energies, axis=1) == expected)


def test_deltas_against_loop():
    rng = np.random.default_rng(1)
    x = rng.standard_normal((7, 3)).astype(np.float32)
    ref = np.zeros_like(x, dtype=np.float64)
    for t in range(7):
        for n in (1, 2):
            ref[t] += n * (x[min(t + n, 6)] - x[max(t - n, 0)])
    ref /= 2 * (1 + 4)
    np.testing.assert_allclose(F.deltas(x, 2), ref, rtol=1e-5, atol=1e-6)


def test_deltas_of_a_ramp_are_its_slope():
    ramp = np.arange(10, dtype=np.float32)[:, None] * 0.5
    np.testing.assert_allclose(F.deltas(ramp, 2)[2:-2], 0.5)


@pytest.mark.parametrize(
    "kwargs, expected",
    [
        ({}, 69),
        ({"n_mels": 40}, 120),
        ({"delta_deltas": False}, 46),
        ({"deltas": False, "delta_deltas": False}, 23),
    ],
)
def test_n_features(kwargs, expected, chirp_signal):
    config = FeatureConfig(**kwargs)
    assert config.n_features == expected
    assert F.compute_features(chirp_signal, config).shape[1] == expected


def test_config_validation():
    with pytest.raises(ValueError):
        FeatureConfig(deltas=False)  # delta_deltas needs deltas
    with pytest.raises(ValueError):
        FeatureConfig(n_fft=256)  # 400-sample window does not fit


def test_short_signal_gives_no_frames():
    assert F.compute_features(np.zeros(399), FeatureConfig()).shape == (0, 69)


def test_normalize_per_speaker():
    rng = np.random.default_rng(2)
    feats = [rng.normal(5, 3, (n, 4)).astype(np.float32) for n in (10, 20, 30)]
    out = F.normalize_per_speaker(feats, ["a", "b", "a"])
    pooled = np.concatenate([out[0], out[2]])
    np.testing.assert_allclose(pooled.mean(0), 0, atol=1e-5)
    np.testing.assert_allclose(pooled.std(0), 1, atol=1e-4)
    np.testing.assert_allclose(out[1].mean(0), 0, atol=1e-5)
    # Speaker a's utterances share statistics: utterance 0 alone is not centred.
    assert not np.allclose(out[0].mean(0), 0, atol=1e-3)


def test_frame_labels_by_centre():
    config = FeatureConfig()  # window 400, hop 160: centres 200, 360, 520, 680 ...
    starts = np.array([0, 300, 600])
    ends = np.array([300, 600, 700])
    labels = F.frame_labels(starts, ends, np.array([4, 7, 9]), 5, config)
    # centres 200 -> seg0, 360 -> seg1, 520 -> seg1, 680 -> seg2, 840 -> past end
    np.testing.assert_array_equal(labels, [4, 7, 7, 9, -1])
