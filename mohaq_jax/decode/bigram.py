"""Decoder estimation: class priors and the smoothed phone bigram LM.

Estimated on the training transcripts after merging repeated frame labels (as
:mod:`mohaq_jax.numerics.metrics` does before folding), with sentence boundaries, smoothed
towards the add-one unigram: ``P(q|p) = (n(p,q) + alpha P_uni(q)) / (n(p) + alpha)``
(Lee & Hon 1989 use a bigram on TIMIT). See :mod:`mohaq_jax.decode`.
"""

from __future__ import annotations

from collections.abc import Iterable, Sequence

import jax.numpy as jnp
import numpy as np

from mohaq_jax.decode.phone_loop import DEFAULT_N_STATES, Decoder

#: Weight of the smoothing prior (pseudo-counts) of the bigram towards the unigram.
DEFAULT_ALPHA = 1.0


def phone_sequences(labels: Iterable[np.ndarray]) -> list[np.ndarray]:
    """Each utterance's class sequence with repeated frame labels merged (-1 dropped)."""
    out = []
    for lab in labels:
        lab = np.asarray(lab)
        lab = lab[lab >= 0]
        keep = np.ones(len(lab), bool)
        keep[1:] = lab[1:] != lab[:-1]
        out.append(lab[keep])
    return out


def bigram_counts(sequences: Iterable[np.ndarray], n_classes: int) -> np.ndarray:
    """``(C+1, C+1)`` int64 counts n(prev, next); index C = <s> as prev, </s> as next."""
    counts = np.zeros((n_classes + 1, n_classes + 1), np.int64)
    for seq in sequences:
        seq = np.asarray(seq, np.int64)
        if seq.size and (seq.min() < 0 or seq.max() >= n_classes):
            raise ValueError(f"labels must be in 0..{n_classes - 1}, got {seq}")
        padded = np.concatenate([[n_classes], seq, [n_classes]])
        np.add.at(counts, (padded[:-1], padded[1:]), 1)
    return counts


def bigram_log_probs(counts: np.ndarray, alpha: float = DEFAULT_ALPHA) -> np.ndarray:
    """Smoothed ``log P(next|prev)``, ``(C+1, C+1)`` float32 (see module docstring)."""
    counts = np.asarray(counts, np.float64)
    n_next = counts.sum(axis=0)  # occurrences of each next token (incl. </s>)
    unigram = (n_next + 1.0) / (n_next.sum() + counts.shape[1])
    probs = (counts + alpha * unigram[None, :]) / (
        counts.sum(axis=1, keepdims=True) + alpha
    )
    return np.log(probs).astype(np.float32)


def class_log_priors(labels: Iterable[np.ndarray], n_classes: int) -> np.ndarray:
    """Add-one smoothed log frame frequency of each class, ``(C,)`` float32."""
    freq = np.ones(n_classes, np.float64)
    for lab in labels:
        lab = np.asarray(lab)
        freq += np.bincount(lab[lab >= 0], minlength=n_classes)[:n_classes]
    return np.log(freq / freq.sum()).astype(np.float32)


def estimate(
    train_labels: Sequence[np.ndarray],
    n_classes: int,
    n_states: int = DEFAULT_N_STATES,
    alpha: float = DEFAULT_ALPHA,
    lm_weight: float = 1.0,
    insertion_penalty: float = 0.0,
) -> Decoder:
    """Priors and bigram from training frame labels (one ``(T_i,)`` array each)."""
    if n_states < 1:
        raise ValueError(f"n_states must be >= 1, got {n_states}")
    counts = bigram_counts(phone_sequences(train_labels), n_classes)
    return Decoder(
        log_prior=jnp.asarray(class_log_priors(train_labels, n_classes)),
        log_bigram=jnp.asarray(bigram_log_probs(counts, alpha)),
        lm_weight=jnp.float32(lm_weight),
        insertion_penalty=jnp.float32(insertion_penalty),
        n_states=n_states,
    )
