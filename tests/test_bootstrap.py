"""Bootstrap intervals: against a plain loop over the same draws, and hand cases."""

import numpy as np
import pytest

from mohaq_jax.numerics import bootstrap


def _loop_reference(errors, totals, draws, confidence, ref=None):
    """The percentile bootstrap written as a plain Python loop."""
    alpha = (1 - confidence) / 2
    out = []
    for e, t in zip(errors, totals, strict=True):
        rates, diffs = [], []
        for d in draws:
            rate = sum(e[i] for i in d) / max(sum(t[i] for i in d), 1)
            rates.append(rate)
            if ref is not None:
                r = sum(ref[0][i] for i in d) / max(sum(ref[1][i] for i in d), 1)
                diffs.append(rate - r)
        row = [np.quantile(rates, alpha), np.quantile(rates, 1 - alpha)]
        if ref is not None:
            row += [np.quantile(diffs, alpha), np.quantile(diffs, 1 - alpha)]
        out.append(row)
    return np.asarray(out)


def test_matches_plain_loop():
    rng = np.random.default_rng(1)
    totals = rng.integers(5, 40, size=(3, 17)).astype(float)
    errors = np.floor(totals * rng.uniform(0.1, 0.6, size=(3, 17)))
    ref = (np.floor(totals[0] * 0.3), totals[0])
    got = bootstrap.bootstrap_intervals(
        errors, totals, n_resamples=200, confidence=0.9, seed=7, reference=ref
    )
    draws = bootstrap.resample_indices(17, 200, 7)
    expected = _loop_reference(errors, totals, draws, 0.9, ref)
    np.testing.assert_allclose(got["low"], expected[:, 0], rtol=1e-12)
    np.testing.assert_allclose(got["high"], expected[:, 1], rtol=1e-12)
    np.testing.assert_allclose(got["diff_low"], expected[:, 2], rtol=1e-12, atol=1e-15)
    np.testing.assert_allclose(got["diff_high"], expected[:, 3], rtol=1e-12, atol=1e-15)
    np.testing.assert_allclose(got["rate"], errors.sum(1) / totals.sum(1))


def test_identical_utterances_give_a_point():
    # every utterance: 1 error in 4 -> every resample has rate 0.25 exactly
    got = bootstrap.bootstrap_intervals(np.ones((1, 9)), np.full((1, 9), 4.0))
    assert got["low"][0] == got["high"][0] == 0.25


def test_paired_difference_marks_indistinguishable():
    rng = np.random.default_rng(0)
    totals = rng.integers(20, 40, size=60).astype(float)
    ref_err = np.floor(totals * 0.3)
    same = ref_err.copy()  # the float model itself
    worse = ref_err + 5  # 5 more errors on every utterance
    got = bootstrap.bootstrap_intervals(
        np.stack([same, worse]),
        np.stack([totals, totals]),
        reference=(ref_err, totals),
    )
    assert got["same_as_reference"].tolist() == [True, False]
    assert got["diff_low"][0] == got["diff_high"][0] == 0.0
    assert got["diff_low"][1] > 0


def test_per_utterance_counts_sum_to_split_counts():
    # a fake evaluator: edits = sum of the utterance's labels, phones = its length
    features = np.zeros((3, 8, 2), np.float32)
    labels = np.arange(24, dtype=np.int32).reshape(3, 8) % 5
    lengths = np.array([8, 5, 3], np.int32)

    def evaluate(genomes, batch):
        _, lab, n = batch
        valid = np.arange(lab.shape[1])[None] < n[:, None]
        edits = float(np.sum(np.where(valid, lab, 0)))
        scale = np.arange(1, len(genomes) + 1, dtype=float)
        return {"phone_edits": edits * scale, "n_phones": float(n.sum()) * scale}

    genomes = np.zeros((2, 1), np.int32)
    errors, totals = bootstrap.per_utterance_counts(
        evaluate, genomes, (features, labels, lengths), n_time=8
    )
    whole = evaluate(genomes, (features, labels, lengths))
    np.testing.assert_allclose(errors.sum(1), whole["phone_edits"])
    np.testing.assert_allclose(totals.sum(1), whole["n_phones"])
    assert totals[0].tolist() == [8, 5, 3]


def test_bad_input_is_named():
    with pytest.raises(ValueError, match="confidence"):
        bootstrap.bootstrap_intervals(np.ones((1, 3)), np.ones((1, 3)), confidence=1.5)
    with pytest.raises(ValueError, match="metric"):
        bootstrap.per_utterance_counts(
            lambda g, b: {}, np.zeros((1, 1)), (0, 0, [1]), "loss"
        )
