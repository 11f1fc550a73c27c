"""Bootstrap confidence intervals of error rates, resampling utterances or images.

A dev set of 60 utterances makes PER differences of a few tenths of a point noise.
The error rate of a model on a split is ``sum(errors) / sum(totals)`` over
utterances (phone edits / reference phones, or wrong / valid frames); the percentile
bootstrap (Efron & Tibshirani 1993, ch. 13) resamples the utterances with replacement
and recomputes that ratio. Every model is resampled with the SAME utterance draws, so
the difference to a reference model (the float model) gets a paired interval: a
solution whose difference interval contains 0 is indistinguishable from the reference
at that confidence.

Per-utterance counts come from the population evaluator called on one utterance at a
time (:func:`per_utterance_counts`): their sums are exactly the whole-split counts the
search reports. An image task resamples images the same way (its per-image 0/1 errors,
:func:`per_example_counts` with the task's units, :mod:`mohaq_jax.evaluation.evaluate_tasks`).
"""

from __future__ import annotations

from collections.abc import Callable

import numpy as np


def utterance_batch(batch, index: int, n_time: int | None = None) -> tuple:
    """Utterance ``index`` of a padded batch, as a batch of one (time padded to ``n_time``).

    Args:
      batch: ``(features (B, T, F), labels (B, T), lengths (B,))``.
      index: the utterance.
      n_time: pad (or keep) time to this many frames (>= its length); None = ``T``.
    """
    features, labels, lengths = (np.asarray(x) for x in batch)
    f, lab, n = features[index : index + 1], labels[index : index + 1], lengths[index]
    n_time = features.shape[1] if n_time is None else n_time
    if n_time < n:
        raise ValueError(f"n_time {n_time} is shorter than the utterance ({n})")
    f, lab = f[:, :n_time], lab[:, :n_time]
    pad = n_time - f.shape[1]
    if pad > 0:
        f = np.concatenate([f, np.zeros((1, pad, f.shape[2]), f.dtype)], axis=1)
        lab = np.concatenate([lab, np.full((1, pad), -1, lab.dtype)], axis=1)
    return f, lab, lengths[index : index + 1]


def utterance_counts(results, metric: str, one) -> tuple[np.ndarray, np.ndarray]:
    """Phone edits and reference phones, or wrong and valid frames, per genome.

    Args:
      results: the evaluator's results on the one-utterance batch ``one``: ``(g,)``
        arrays with ``phone_edits`` and ``n_phones`` (phone error) or
        ``frame_error`` (frame error).
      metric: "phone_error" or "frame_error".
      one: ``(features (1, T, F), labels (1, T), lengths (1,))``.
    """
    if metric == "phone_error":
        return (
            np.asarray(results["phone_edits"], np.float64),
            np.asarray(results["n_phones"], np.float64),
        )
    if metric == "frame_error":
        frames = float(np.asarray(one[2])[0])
        rate = np.asarray(results["frame_error"], np.float64)
        return np.round(rate * frames), np.full(rate.shape, frames)
    raise ValueError(f"no per-utterance counts for metric {metric!r}")


def per_example_counts(
    evaluate: Callable, genomes: np.ndarray, examples, counts: Callable
) -> tuple[np.ndarray, np.ndarray]:
    """Error counts of each genome on each resampling unit (utterance, image).

    Args:
      evaluate: ``evaluate(genomes, batch) -> dict`` of ``(g,)`` arrays, e.g. a
        :class:`~mohaq_jax.evaluation.evaluate.PopulationEvaluator`.
      genomes: int ``(g, n_genes)``.
      examples: the units, each a batch of one (one shape: one compile).
      counts: ``counts(results, one) -> (errors (g,), totals (g,))``.

    Returns:
      ``(errors, totals)``, float64 ``(g, n_examples)`` each.
    """
    errors, totals = [], []
    for one in examples:
        e, t = counts(evaluate(genomes, one), one)
        errors.append(np.asarray(e, np.float64))
        totals.append(np.asarray(t, np.float64))
    return np.stack(errors, axis=1), np.stack(totals, axis=1)


def per_utterance_counts(
    evaluate: Callable,
    genomes: np.ndarray,
    batch,
    metric: str = "phone_error",
    n_time: int | None = None,
) -> tuple[np.ndarray, np.ndarray]:
    """Error counts of each genome on each utterance.

    Args:
      evaluate: ``evaluate(genomes, batch) -> dict`` of ``(pop,)`` arrays with
        ``phone_edits`` and ``n_phones`` (phone error) or ``frame_error`` (frame
        error), e.g. a :class:`~mohaq_jax.evaluation.evaluate.PopulationEvaluator`.
      genomes: int ``(g, n_genes)``.
      batch: the split, ``(features (B, T, F), labels (B, T), lengths (B,))``.
      metric: "phone_error" or "frame_error".
      n_time: time length every one-utterance batch is padded to (one compile).

    Returns:
      ``(errors, totals)``, float64 ``(g, B)`` each: phone edits and reference phones,
      or wrong and valid frames.
    """
    if metric not in ("phone_error", "frame_error"):
        raise ValueError(f"no per-utterance counts for metric {metric!r}")
    examples = (
        utterance_batch(batch, i, n_time) for i in range(len(np.asarray(batch[2])))
    )
    return per_example_counts(
        evaluate,
        genomes,
        examples,
        lambda results, one: utterance_counts(results, metric, one),
    )


def resample_indices(n_items: int, n_resamples: int, seed: int) -> np.ndarray:
    """int ``(n_resamples, n_items)``: utterance draws with replacement."""
    rng = np.random.default_rng(seed)
    return rng.integers(0, n_items, size=(n_resamples, n_items))


def bootstrap_intervals(
    errors,
    totals,
    n_resamples: int = 1000,
    confidence: float = 0.95,
    seed: int = 0,
    reference: tuple | None = None,
) -> dict[str, np.ndarray]:
    """Percentile bootstrap intervals of ``sum(errors) / sum(totals)`` per model.

    Args:
      errors, totals: ``(m, n)`` per-model, per-utterance counts.
      n_resamples: bootstrap resamples (the same draws for every model).
      confidence: e.g. 0.95.
      seed: of the draws (same seed, same intervals).
      reference: optional ``(errors (n,), totals (n,))`` of a reference model; adds
        the paired interval of each model's rate minus the reference's.

    Returns:
      ``rate``, ``low``, ``high`` ``(m,)``; with ``reference`` also ``diff_low``,
      ``diff_high`` ``(m,)`` and ``same_as_reference`` (bool ``(m,)``: the difference
      interval contains 0).
    """
    errors = np.atleast_2d(np.asarray(errors, np.float64))
    totals = np.atleast_2d(np.asarray(totals, np.float64))
    if errors.shape != totals.shape:
        raise ValueError(f"errors {errors.shape} and totals {totals.shape} differ")
    if not 0.0 < confidence < 1.0:
        raise ValueError(f"confidence must be in (0, 1), got {confidence}")
    n_items = errors.shape[1]
    draws = resample_indices(n_items, n_resamples, seed)
    # counts[m, r, u]: how often resample r drew utterance u -> sums by one matmul.
    weights = np.zeros((n_resamples, n_items))
    np.add.at(weights, (np.arange(n_resamples)[:, None], draws), 1.0)

    def rates(e, t):
        return (e @ weights.T) / np.maximum(t @ weights.T, 1.0)

    alpha = (1.0 - confidence) / 2.0
    boot = rates(errors, totals)  # (m, n_resamples)
    out = {
        "rate": errors.sum(1) / np.maximum(totals.sum(1), 1.0),
        "low": np.quantile(boot, alpha, axis=1),
        "high": np.quantile(boot, 1.0 - alpha, axis=1),
    }
    if reference is not None:
        ref_e = np.asarray(reference[0], np.float64)[None]
        ref_t = np.asarray(reference[1], np.float64)[None]
        diff = boot - rates(ref_e, ref_t)
        out["diff_low"] = np.quantile(diff, alpha, axis=1)
        out["diff_high"] = np.quantile(diff, 1.0 - alpha, axis=1)
        out["same_as_reference"] = (out["diff_low"] <= 0.0) & (out["diff_high"] >= 0.0)
    return out


def split_intervals(
    evaluate_genomes: Callable,
    evaluate_float: Callable,
    examples,
    counts: Callable,
    n_resamples: int,
    confidence: float,
    seed: int,
) -> dict:
    """Intervals of a set of genomes and of the float model on one split.

    Args:
      evaluate_genomes: ``batch -> dict`` of ``(g,)`` results of the genomes (the
        genomes are bound in by the caller).
      evaluate_float: the same for the float model, ``(1,)``.
      examples: the split's resampling units, each a batch of one (a list: it is
        read twice).
      counts: ``counts(results, one) -> (errors, totals)``, as
        :func:`per_example_counts`.
      n_resamples, confidence, seed: as :func:`bootstrap_intervals`.

    Returns:
      ``{"float": {rate, low, high}, "genomes": {rate, low, high, diff_low, diff_high,
      same_as_reference}}`` of numpy arrays (``(1,)`` and ``(g,)``).
    """
    one = np.zeros((1, 1), np.int32)
    ref_e, ref_t = per_example_counts(
        lambda g, b: evaluate_float(b), one, examples, counts
    )
    err, tot = per_example_counts(
        lambda g, b: evaluate_genomes(b), one, examples, counts
    )
    reference = (ref_e[0], ref_t[0])
    return {
        "float": bootstrap_intervals(ref_e, ref_t, n_resamples, confidence, seed),
        "genomes": bootstrap_intervals(
            err, tot, n_resamples, confidence, seed, reference=reference
        ),
    }
