"""Padding variable-length utterances into fixed-shape batches.

Padded frames carry label -1 so losses and phone error rates can mask them;
batch time lengths are rounded up to a multiple so jitted steps see few shapes.
"""

from __future__ import annotations

from collections.abc import Iterator, Sequence
from typing import NamedTuple

import numpy as np

from mohaq_jax.data.corpus import Split

PAD_LABEL = -1


class Batch(NamedTuple):
    """A padded batch of utterances."""

    features: np.ndarray  # shape=(B, T, F), float32; zeros at padding
    labels: np.ndarray  # shape=(B, T), int32; PAD_LABEL at padding
    lengths: np.ndarray  # shape=(B,), int32: true frames per utterance


def round_up(value: int, multiple: int) -> int:
    """Smallest multiple of ``multiple`` that is >= value (and >= multiple)."""
    return max(multiple, -(-value // multiple) * multiple)


def pad_batch(split: Split, indices: Sequence[int], pad_to: int | None = None) -> Batch:
    """Stacks the chosen utterances, padding time to a common length.

    Args:
      split: the utterances.
      indices: which ones, in batch order.
      pad_to: T of the batch; None = the longest chosen utterance. Must be at
        least that long.

    Returns:
      Batch with features (B, T, F), labels (B, T), lengths (B,).
    """
    indices = [int(i) for i in indices]
    lengths = np.array([split.features[i].shape[0] for i in indices], dtype=np.int32)
    longest = int(lengths.max()) if len(indices) else 0
    time = longest if pad_to is None else int(pad_to)
    if time < longest:
        raise ValueError(
            f"pad_to={pad_to} is shorter than the longest utterance ({longest})"
        )
    n_features = split.features[indices[0]].shape[1] if indices else 0
    features = np.zeros((len(indices), time, n_features), dtype=np.float32)
    labels = np.full((len(indices), time), PAD_LABEL, dtype=np.int32)
    for row, i in enumerate(indices):
        features[row, : lengths[row]] = split.features[i]
        labels[row, : lengths[row]] = split.labels[i]
    return Batch(features, labels, lengths)


def iterate_batches(
    split: Split,
    batch_size: int,
    rng: np.random.Generator | None = None,
    pad_multiple: int = 16,
    drop_remainder: bool = False,
) -> Iterator[Batch]:
    """Yields length-bucketed batches covering the split once.

    Utterances are sorted by length and cut into batches of similar lengths, so
    padding stays small; with ``rng`` the lengths are jittered before sorting
    (so buckets differ between epochs) and batch order is shuffled. Without
    ``rng`` the order is deterministic (shortest first), for evaluation.

    Args:
      split: the utterances.
      batch_size: B; the last batch may be smaller unless drop_remainder.
      rng: numpy Generator for shuffling, or None.
      pad_multiple: T of each batch is rounded up to a multiple of this.
      drop_remainder: drop a final batch smaller than batch_size.

    Yields:
      Batch.
    """
    if batch_size < 1:
        raise ValueError(f"batch_size must be positive, got {batch_size}")
    lengths = np.array([f.shape[0] for f in split.features], dtype=np.float64)
    if rng is not None:
        # Jitter of up to +-10% keeps buckets of similar length but not fixed.
        lengths = lengths * rng.uniform(0.9, 1.1, size=lengths.shape)
    order = np.argsort(lengths, kind="stable")
    chunks = [order[i : i + batch_size] for i in range(0, len(order), batch_size)]
    if drop_remainder and chunks and len(chunks[-1]) < batch_size:
        chunks = chunks[:-1]
    if rng is not None:
        chunks = [chunks[i] for i in rng.permutation(len(chunks))]
    for chunk in chunks:
        longest = max(split.features[i].shape[0] for i in chunk)
        yield pad_batch(split, chunk, pad_to=round_up(longest, pad_multiple))
