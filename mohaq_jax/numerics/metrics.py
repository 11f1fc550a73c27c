"""Error metrics: frame error rate and phone error rate, vectorized in JAX.

Phone error rate (PER) as in TIMIT practice (Lee & Hon 1989): frame labels are folded
to the 39 scoring phones, repeated labels are collapsed into one phone, and the
Levenshtein distance between the hypothesis and reference phone sequences is divided
by the reference length. Everything has fixed shapes (sequences are compacted into
``(T,)`` arrays padded with -1) so it runs inside ``jit`` and ``vmap``. The phone
sequence comes from Viterbi decoding (:mod:`mohaq_jax.decode`), smoothed or raw
framewise argmax (``per_mode``).
"""

from __future__ import annotations

import jax
import jax.numpy as jnp


def compact(values: jax.Array, keep: jax.Array) -> tuple[jax.Array, jax.Array]:
    """Moves the kept entries to the front, in order; pads with -1.

    Args:
      values: int ``(T,)``.
      keep: bool ``(T,)``.

    Returns:
      ``(out (T,), count)``.
    """
    n_time = values.shape[0]
    pos = jnp.cumsum(keep.astype(jnp.int32)) - 1
    target = jnp.where(keep, pos, n_time)
    out = jnp.full((n_time,), -1, values.dtype).at[target].set(values, mode="drop")
    return out, jnp.sum(keep.astype(jnp.int32))


def collapse(labels: jax.Array, length: jax.Array, fold: jax.Array):
    """Phone sequence of one utterance's frame labels.

    Args:
      labels: int ``(T,)`` training-class labels per frame (-1 allowed at padding).
      length: valid frames.
      fold: int ``(n_classes,)`` class -> scoring phone, -1 = not scored.

    Returns:
      ``(sequence (T,), count)``: folded labels with runs merged, padded with -1.
    """
    n_time = labels.shape[0]
    folded = jnp.where(labels >= 0, fold[jnp.maximum(labels, 0)], -1)
    valid = (jnp.arange(n_time) < length) & (folded >= 0)
    seq, n = compact(folded, valid)
    prev = jnp.concatenate([jnp.full((1,), -1, seq.dtype), seq[:-1]])
    return compact(seq, (jnp.arange(n_time) < n) & (seq != prev))


def levenshtein(hyp: jax.Array, n_hyp: jax.Array, ref: jax.Array, n_ref: jax.Array):
    """Edit distance between ``hyp[:n_hyp]`` and ``ref[:n_ref]`` (fixed shapes).

    Row-by-row dynamic programming; the insertion recurrence inside a row,
    ``d[j] = min(t[j], d[j-1] + 1)``, is solved at once with a cumulative minimum:
    ``d[j] = j + cummin_k<=j (t[k] - k)``.

    Args:
      hyp: int ``(T,)``; n_hyp: its length. ref: int ``(S,)``; n_ref: its length.

    Returns:
      int32 scalar distance.
    """
    cols = jnp.arange(ref.shape[0] + 1, dtype=jnp.int32)
    row0 = cols

    def step(row, inputs):
        i, h = inputs
        sub = row[:-1] + (h != ref).astype(jnp.int32)
        dele = row[1:] + 1
        t = jnp.concatenate([jnp.reshape(i + 1, (1,)), jnp.minimum(sub, dele)])
        new = jax.lax.cummin(t - cols) + cols
        return jnp.where(i < n_hyp, new, row), None

    rows = jnp.arange(hyp.shape[0], dtype=jnp.int32)
    last, _ = jax.lax.scan(step, row0, (rows, hyp))
    return last[n_ref]


def utterance_phone_errors(pred, labels, length, fold):
    """(edit distance, reference phone count) of one utterance."""
    hyp, n_hyp = collapse(pred, length, fold)
    ref, n_ref = collapse(labels, length, fold)
    return levenshtein(hyp, n_hyp, ref, n_ref), n_ref


def phone_error_rate(pred, labels, lengths, fold):
    """Per-utterance phone errors of a batch.

    Args:
      pred: int ``(B, T)`` predicted training classes.
      labels: int ``(B, T)`` reference classes, -1 at padding.
      lengths: int ``(B,)``.
      fold: int ``(n_classes,)`` class -> scoring phone (-1 = not scored).

    Returns:
      ``(errors (B,), ref_len (B,))``; PER = ``errors.sum() / ref_len.sum()``.
    """
    fold = jnp.asarray(fold, jnp.int32)
    return jax.vmap(utterance_phone_errors, (0, 0, 0, None))(
        jnp.asarray(pred, jnp.int32), jnp.asarray(labels, jnp.int32), lengths, fold
    )


def frame_errors(pred, labels, lengths):
    """(misclassified frames, valid frames) per utterance, ``(B,)`` each."""
    valid = (jnp.arange(labels.shape[1])[None, :] < lengths[:, None]) & (labels >= 0)
    wrong = (pred != labels) & valid
    return jnp.sum(wrong, axis=1), jnp.sum(valid, axis=1)


def masked_cross_entropy(logits, labels, lengths):
    """(summed cross-entropy, valid frames) per utterance; padding masked out."""
    valid = (jnp.arange(labels.shape[1])[None, :] < lengths[:, None]) & (labels >= 0)
    logp = jax.nn.log_softmax(logits, axis=-1)
    nll = -jnp.take_along_axis(logp, jnp.maximum(labels, 0)[..., None], axis=-1)[..., 0]
    return jnp.sum(jnp.where(valid, nll, 0.0), axis=1), jnp.sum(valid, axis=1)


#: Frames averaged (centered) over log-posteriors before the phone sequence is read
#: off the framewise argmax. Without any decoding, a frame classifier's argmax
#: flickers inside a phone and every flicker is an inserted phone; a short median or
#: mean filter over posteriors is the usual remedy for framewise phone recognition.
#: 1 disables it. Frame error always uses the raw argmax.
PER_SMOOTHING = 7


def smoothed_predictions(logits, lengths, window: int = PER_SMOOTHING) -> jax.Array:
    """Argmax of log-posteriors averaged over ``window`` frames (valid frames only).

    Args:
      logits: ``(B, T, C)``; lengths: ``(B,)``; window: odd number of frames.

    Returns:
      int32 ``(B, T)``.
    """
    if window <= 1:
        return jnp.argmax(logits, axis=-1).astype(jnp.int32)
    half = window // 2
    n_time = logits.shape[1]
    t = jnp.arange(n_time)
    valid = t[None, :] < lengths[:, None]
    logp = jnp.where(valid[..., None], jax.nn.log_softmax(logits, axis=-1), 0.0)
    csum = jnp.concatenate(
        [jnp.zeros_like(logp[:, :1]), jnp.cumsum(logp, axis=1)], axis=1
    )
    hi = jnp.minimum(t[None, :] + half + 1, jnp.maximum(lengths[:, None], 1))
    lo = jnp.minimum(jnp.maximum(t[None, :] - half, 0), hi - 1)
    total = jnp.take_along_axis(csum, hi[..., None], axis=1) - jnp.take_along_axis(
        csum, lo[..., None], axis=1
    )
    return jnp.argmax(total, axis=-1).astype(jnp.int32)


#: How the phone sequence is read off the model outputs (``per_mode``): "decoded" =
#: Viterbi phone loop with a bigram LM (:mod:`mohaq_jax.decode`; needs decoder
#: params), "smoothed" = argmax of posteriors averaged over ``PER_SMOOTHING`` frames,
#: "raw" = framewise argmax.
PER_MODES = ("decoded", "smoothed", "raw")


def resolve_per_mode(per_mode, decoder) -> str:
    """``per_mode`` checked; ``None`` = "decoded" when decoder params are given, else
    "smoothed"."""
    if per_mode is None:
        return "smoothed" if decoder is None else "decoded"
    if per_mode not in PER_MODES:
        raise ValueError(f"per_mode must be one of {PER_MODES}, got {per_mode!r}")
    if per_mode == "decoded" and decoder is None:
        raise ValueError(
            "per_mode='decoded' needs decoder params (mohaq_jax.decode.Decoder, e.g. "
            "from decode.get_or_fit); pass decoder= or use 'smoothed'/'raw'"
        )
    return per_mode


#: How each ``per_mode`` reads phones, in words (reports and printed errors).
PER_READINGS = {
    "decoded": "decoded (Viterbi phone loop with a bigram LM)",
    "smoothed": f"smoothed (argmax of posteriors averaged over {PER_SMOOTHING} frames)",
    "raw": "raw (framewise argmax)",
}


def error_reading(metric: str, per_mode: str | None = None) -> str:
    """An error metric in words, with how phones were read for a phone error.

    ``error_reading("phone_error", "decoded")`` ->
    "phone error rate (PER), decoded (Viterbi phone loop with a bigram LM)".
    """
    if metric == "phone_error":
        mode = PER_READINGS.get(per_mode, per_mode or "reading not recorded")
        return f"phone error rate (PER), {mode}"
    words = {
        "frame_error": "frame error rate (framewise argmax)",
        "class_error": "classification error",
        "loss": "cross-entropy loss",
    }
    return words.get(metric, metric.replace("_", " "))


def phone_predictions(
    logits, lengths, per_mode=None, decoder=None, window: int = PER_SMOOTHING
) -> jax.Array:
    """Class per frame from which the phone sequence is read, int32 ``(B, T)``.

    Args:
      logits: ``(B, T, C)``; lengths: ``(B,)``.
      per_mode: one of :data:`PER_MODES` or None (see :func:`resolve_per_mode`).
      decoder: object with ``predict(logits, lengths) -> (B, T)`` (a
        :class:`mohaq_jax.decode.Decoder`), needed for "decoded".
      window: smoothing window of "smoothed".
    """
    mode = resolve_per_mode(per_mode, decoder)
    if mode == "decoded":
        return decoder.predict(logits, lengths)
    return smoothed_predictions(logits, lengths, window if mode == "smoothed" else 1)


def error_counts(
    logits,
    labels,
    lengths,
    fold,
    window: int = PER_SMOOTHING,
    *,
    decoder=None,
    per_mode=None,
):
    """Summed counts of a batch: ``(loss_sum, n_frames, frame_wrong, phone_edits, n_phones)``.

    The single place where model outputs become error counts, for the population
    evaluator, training and QAT alike. Frame errors always use the raw argmax; the
    phone sequence follows ``per_mode`` (:func:`phone_predictions`).
    """
    pred = jnp.argmax(logits, axis=-1).astype(jnp.int32)
    loss_sum, n_frames = masked_cross_entropy(logits, labels, lengths)
    wrong, _ = frame_errors(pred, labels, lengths)
    phones = phone_predictions(logits, lengths, per_mode, decoder, window)
    edits, n_phones = phone_error_rate(phones, labels, lengths, fold)
    return (
        jnp.sum(loss_sum),
        jnp.sum(n_frames),
        jnp.sum(wrong),
        jnp.sum(edits),
        jnp.sum(n_phones),
    )
