"""PER pieces vs plain-python references."""

import itertools

import jax.numpy as jnp
import numpy as np
from hypothesis import given, settings
from hypothesis import strategies as st

from mohaq_jax.numerics import metrics
from tests.conftest import python_levenshtein


def python_collapse(labels, length, fold):
    seq = [fold[x] for x in labels[:length] if x >= 0 and fold[x] >= 0]
    return [k for k, _ in itertools.groupby(seq)]


@settings(max_examples=40, deadline=None)
@given(
    st.lists(st.integers(0, 3), min_size=0, max_size=12),
    st.lists(st.integers(0, 3), min_size=0, max_size=12),
)
def test_levenshtein_matches_python(a, b):
    size = 12
    pa = jnp.asarray(a + [-1] * (size - len(a)), jnp.int32)
    pb = jnp.asarray(b + [-1] * (size - len(b)), jnp.int32)
    assert int(metrics.levenshtein(pa, len(a), pb, len(b))) == python_levenshtein(a, b)


def test_named_levenshtein_cases():
    cases = [
        ("kitten", "sitting", 3),
        ("", "abc", 3),
        ("abc", "", 3),
        ("flaw", "lawn", 2),
    ]
    for a, b, expected in cases:
        assert python_levenshtein(a, b) == expected
        enc = {c: i for i, c in enumerate(sorted(set(a + b)))}
        pa = jnp.asarray([enc[c] for c in a] + [-1] * (8 - len(a)), jnp.int32)
        pb = jnp.asarray([enc[c] for c in b] + [-1] * (8 - len(b)), jnp.int32)
        assert int(metrics.levenshtein(pa, len(a), pb, len(b))) == expected


def test_phone_error_rate_with_folding_and_padding():
    rng = np.random.default_rng(0)
    fold = np.asarray([0, 1, 1, 2, -1, 3])  # classes 1,2 fold together; 4 unscored
    n_b, n_t = 6, 20
    pred = rng.integers(0, 6, (n_b, n_t))
    labels = np.repeat(rng.integers(0, 6, (n_b, n_t // 4)), 4, axis=1)
    lengths = rng.integers(1, n_t + 1, n_b)
    labels = np.where(np.arange(n_t)[None] < lengths[:, None], labels, -1)
    edits, n_ref = metrics.phone_error_rate(pred, labels, jnp.asarray(lengths), fold)
    for i in range(n_b):
        hyp = python_collapse(pred[i], lengths[i], fold)
        ref = python_collapse(labels[i], lengths[i], fold)
        assert int(edits[i]) == python_levenshtein(hyp, ref)
        assert int(n_ref[i]) == len(ref)


def test_frame_errors_and_cross_entropy():
    logits = jnp.log(jnp.asarray([[[0.7, 0.3], [0.2, 0.8], [0.5, 0.5]]], jnp.float32))
    labels = jnp.asarray([[0, 0, -1]], jnp.int32)
    loss, n = metrics.masked_cross_entropy(logits, labels, jnp.asarray([3]))
    np.testing.assert_allclose(loss, [-np.log(0.7) - np.log(0.2)], rtol=1e-5)
    assert int(n[0]) == 2
    wrong, valid = metrics.frame_errors(
        jnp.asarray([[0, 1, 1]]), labels, jnp.asarray([3])
    )
    assert (int(wrong[0]), int(valid[0])) == (1, 2)


def numpy_smoothed(logits, length, window):
    logp = logits - np.log(np.sum(np.exp(logits), -1, keepdims=True))
    half = window // 2
    out = []
    for t in range(logits.shape[0]):
        lo, hi = max(0, t - half), min(length, t + half + 1)
        lo = min(lo, hi - 1)
        out.append(int(np.argmax(logp[lo:hi].sum(0))))
    return np.asarray(out)


def test_smoothed_predictions_match_numpy_and_remove_flicker():
    rng = np.random.default_rng(3)
    logits = rng.normal(size=(3, 15, 4)).astype(np.float32)
    lengths = np.asarray([15, 9, 1])
    for window in (1, 3, 7):
        got = np.asarray(
            metrics.smoothed_predictions(
                jnp.asarray(logits), jnp.asarray(lengths), window
            )
        )
        for b in range(3):
            n = lengths[b]
            np.testing.assert_array_equal(
                got[b, :n], numpy_smoothed(logits[b], n, window)[:n]
            )
    # a one-frame flicker inside a long phone (an inserted phone) is smoothed away
    flick = np.full((1, 12, 2), [2.0, 0.0], np.float32)
    flick[0, 6] = [0.0, 2.0]
    raw = metrics.smoothed_predictions(jnp.asarray(flick), jnp.asarray([12]), 1)
    smooth = metrics.smoothed_predictions(jnp.asarray(flick), jnp.asarray([12]), 3)
    assert int(raw[0, 6]) == 1 and int(smooth[0, 6]) == 0
