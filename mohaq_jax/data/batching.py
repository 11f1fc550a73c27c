"""Padding variable-length utterances into fixed-shape batches.

Padded frames carry label -1 so losses and phone error rates can mask them;
batch time lengths are rounded up to a multiple so jitted steps see few shapes.

Scoring a split (dev/test evaluation, the population evaluator, dev monitoring in
training and QAT) streams it through :func:`bucketed_batches`: utterances sorted by
length and cut into a few bucket shapes of at most ``batch_frames`` frames each, so
that memory depends on ``batch_frames``, not on the size of the split, and a jitted
evaluator compiles once per bucket shape. Per-batch metric sums are added up with
:func:`accumulate_sums`.
"""

from __future__ import annotations

import dataclasses
from collections.abc import Callable, Iterable, Iterator, Sequence
from typing import Any, NamedTuple

import jax
import numpy as np

from mohaq_jax.data.corpus import Split

PAD_LABEL = -1

#: Default frames per evaluation batch (rows x padded time). On the paper's SRU (4
#: bidirectional layers of 550), with a population chunk of 2, the population
#: evaluator then peaks at about 2 GB RSS on a TIMIT-sized dev set, whatever its size
#: (``benchmarks/paper_scale.py``; one padded batch: 5.4 GB at 100 utterances).
DEFAULT_BATCH_FRAMES = 16384

#: Default most bucket shapes per split (each compiles once per jitted evaluator).
DEFAULT_MAX_BUCKETS = 8

#: Default padding share a split's buckets aim at: the fewest shapes that reach it
#: are used (8 buckets of TIMIT-like lengths pad about 8 %; 4 about 16 %).
DEFAULT_MAX_PADDING = 0.1


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


# --------------------------------------------------------------------------------------
# Streaming evaluation: a split as a few fixed bucket shapes
# --------------------------------------------------------------------------------------


class Bucket(NamedTuple):
    """Utterances that share one batch shape ``(rows, time)``."""

    indices: np.ndarray  # shape=(n,), int64: utterances, shortest first
    rows: int  # utterances per batch (the last batch gets empty rows)
    time: int  # padded frames per utterance


def _group_cost(counts_upto, values, a, b, batch_frames):
    """Padded frames (rows x time x batches) of groups ``[a..b]`` for every ``a``."""
    n = counts_upto[b + 1] - counts_upto[a]
    time = int(values[b])
    cap = max(1, batch_frames // time)
    n_batches = -(-n // cap)
    rows = -(-n // n_batches)
    return n_batches * rows * time


def plan_buckets(
    lengths: Sequence[int],
    batch_frames: int,
    max_buckets: int = DEFAULT_MAX_BUCKETS,
    pad_multiple: int = 16,
    max_padding: float = DEFAULT_MAX_PADDING,
) -> list[Bucket]:
    """Splits utterances into a few batch shapes with little padding.

    Utterances sorted by length are cut into contiguous buckets; a bucket's time is
    its longest utterance rounded up to ``pad_multiple``, its batches hold
    ``rows = ceil(n / ceil(n / (batch_frames // time)))`` utterances (so each batch has
    at most ``batch_frames`` frames, and its batches are as equal as possible: the
    last one lacks fewer rows than there are batches). The cut points minimize the
    padded frames (time and row padding together) for each number of buckets, by
    dynamic programming over the distinct padded lengths. The fewest buckets whose
    padding share is at most ``max_padding`` are used (else ``max_buckets``); ties go
    to earlier cuts, so the plan is deterministic.

    Args:
      lengths: frames per utterance, ``(n_utts,)``, all >= 1.
      batch_frames: frames per batch (rows x padded time); an utterance longer than
        this gets a batch of its own.
      max_buckets: the most distinct batch shapes.
      pad_multiple: padded times are multiples of this.
      max_padding: padding share (of all batch frames) to reach with as few
        buckets as possible; 0 = always the least padding with ``max_buckets``.

    Returns:
      The buckets, shortest first.
    """
    lengths = np.asarray(lengths, np.int64).reshape(-1)
    for name, value in (
        ("batch_frames", batch_frames),
        ("max_buckets", max_buckets),
        ("pad_multiple", pad_multiple),
    ):
        if int(value) < 1:
            raise ValueError(f"{name} must be >= 1, got {value}")
    if not 0.0 <= max_padding < 1.0:
        raise ValueError(f"max_padding must be in [0, 1), got {max_padding}")
    if lengths.size == 0:
        raise ValueError("cannot batch an empty split (no utterances)")
    if lengths.min() < 1:
        raise ValueError(f"utterance lengths must be >= 1, got {int(lengths.min())}")
    order = np.argsort(lengths, kind="stable")
    padded = -(-lengths[order] // pad_multiple) * pad_multiple
    values, counts = np.unique(padded, return_counts=True)
    counts_upto = np.concatenate([[0], np.cumsum(counts)])
    m, k_max = len(values), min(int(max_buckets), len(values))
    big = np.iinfo(np.int64).max // 4
    # best[g, b]: least padded frames covering values[0..b] with g + 1 buckets.
    best = np.full((k_max, m), big, np.int64)
    cut = np.zeros((k_max, m), np.int64)  # first value index of the last bucket
    starts = np.arange(m)
    for b in range(m):
        cost = _group_cost(counts_upto, values, starts[: b + 1], b, batch_frames)
        best[0, b] = cost[0]
        for g in range(1, k_max):
            if b < g:
                continue
            total = best[g - 1, :b] + cost[1 : b + 1]  # last bucket starts at a>=1
            a = int(np.argmin(total))
            best[g, b], cut[g, b] = total[a], a + 1
    slots = best[:, m - 1]
    good = np.flatnonzero(lengths.sum() >= (1.0 - max_padding) * slots)
    n_buckets = int(good[0] if len(good) else np.argmin(slots)) + 1
    bounds, b = [], m - 1
    for g in range(n_buckets - 1, -1, -1):
        a = int(cut[g, b]) if g else 0
        bounds.append((a, b))
        b = a - 1
    buckets = []
    for a, b in reversed(bounds):
        members = order[counts_upto[a] : counts_upto[b + 1]]
        time = int(values[b])
        cap = max(1, batch_frames // time)
        n_batches = -(-len(members) // cap)
        buckets.append(Bucket(members, -(-len(members) // n_batches), time))
    return buckets


@dataclasses.dataclass(frozen=True)
class BucketedSplit(Sequence):
    """A split as padded batches of a few fixed shapes (a sequence of :class:`Batch`).

    Empty rows (length 0, labels -1) fill the last batch of a bucket; they add no
    frames, phones or errors to any metric sum.
    """

    batches: tuple[Batch, ...]
    n_frames: int  # true frames of the split
    n_utterances: int

    def __getitem__(self, index):
        return self.batches[index]

    def __len__(self) -> int:
        return len(self.batches)

    @property
    def shapes(self) -> tuple[tuple[int, int], ...]:
        """Distinct ``(rows, time)`` batch shapes, in first-use order."""
        return tuple(dict.fromkeys(b.labels.shape for b in self.batches))

    @property
    def n_padded_frames(self) -> int:
        """Frames the batches hold, padding included (rows x time, summed)."""
        return int(sum(b.labels.size for b in self.batches))

    @property
    def padding_share(self) -> float:
        """Fraction of the batches' frames that are padding (time and empty rows)."""
        return 1.0 - self.n_frames / max(self.n_padded_frames, 1)

    @property
    def max_batch_frames(self) -> int:
        """Largest batch, rows x time."""
        return max(b.labels.size for b in self.batches)

    def describe(self) -> str:
        """One line: utterances, batches, shapes and the padding share."""
        shapes = ", ".join(f"{r}x{t}" for r, t in self.shapes)
        return (
            f"{self.n_utterances} utterances ({self.n_frames} frames) in "
            f"{len(self.batches)} batches of {len(self.shapes)} shapes "
            f"(rows x frames: {shapes}); padding {100 * self.padding_share:.1f} %"
        )


def bucketed_batches(
    split: Split,
    batch_frames: int = DEFAULT_BATCH_FRAMES,
    max_buckets: int = DEFAULT_MAX_BUCKETS,
    pad_multiple: int = 16,
    max_padding: float = DEFAULT_MAX_PADDING,
) -> BucketedSplit:
    """The split as deterministic, length-bucketed batches of a few fixed shapes.

    Args:
      split: the utterances.
      batch_frames: frames per batch, rows x padded time (memory per batch).
      max_buckets: the most distinct batch shapes (compilations per jitted
        evaluator).
      pad_multiple: padded times are multiples of this.
      max_padding: use the fewest buckets whose padding share is at most this
        (see :func:`plan_buckets`).

    Returns:
      :class:`BucketedSplit`: batches shortest first, each
      ``Batch(features (rows, time, F) float32, labels (rows, time) int32, lengths
      (rows,) int32)``; every utterance in exactly one row.
    """
    lengths = [f.shape[0] for f in split.features]
    batches = []
    plan = plan_buckets(lengths, batch_frames, max_buckets, pad_multiple, max_padding)
    for bucket in plan:
        for start in range(0, len(bucket.indices), bucket.rows):
            chunk = bucket.indices[start : start + bucket.rows]
            batches.append(
                pad_rows(pad_batch(split, chunk, pad_to=bucket.time), bucket.rows)
            )
    return BucketedSplit(tuple(batches), int(sum(lengths)), len(lengths))


def pad_rows(batch: Batch, rows: int) -> Batch:
    """Appends empty utterances (length 0, labels -1) up to ``rows`` rows.

    Every batch then has the same number of rows, so a jitted step compiles once per
    time length; empty rows add nothing to the loss or the error counts.
    """
    missing = rows - batch.features.shape[0]
    if missing <= 0:
        return batch
    n_time, n_feat = batch.features.shape[1:]
    return Batch(
        np.concatenate(
            [batch.features, np.zeros((missing, n_time, n_feat), np.float32)]
        ),
        np.concatenate([batch.labels, np.full((missing, n_time), PAD_LABEL, np.int32)]),
        np.concatenate([batch.lengths, np.zeros((missing,), np.int32)]),
    )


def as_batches(data) -> Sequence:
    """A :class:`BucketedSplit` or list of batches as is; one batch as a 1-list.

    A single batch is a ``(features (B, T, F), labels, lengths)`` triple whose first
    element is 3-dimensional.
    """
    if isinstance(data, BucketedSplit):
        return data
    if isinstance(data, Batch) or (
        isinstance(data, tuple)
        and len(data) == 3
        and getattr(data[0], "ndim", None) == 3
    ):
        return [data]
    batches = list(data)
    if not batches:
        raise ValueError("no batches to evaluate")
    return batches


def accumulate_sums(
    fn: Callable[[Any], Any],
    batches: Iterable,
    to_host: Callable[[Any], np.ndarray] = np.asarray,
) -> Any:
    """Sum over batches of ``fn(batch)``, a pytree of arrays of any shape.

    Integer leaves are added exactly (int64), floating leaves in float64, on the
    host. At most two batches are in flight: the next one is dispatched before the
    previous result is fetched, so an asynchronous device keeps working while memory
    stays bounded by two batches' outputs.

    Args:
      fn: batch -> pytree of per-batch sums (device or numpy arrays).
      batches: the batches (any iterable, consumed once).
      to_host: array -> numpy array (e.g. :func:`mohaq_jax.runtime.sharding.to_host` for
        arrays spread over hosts).

    Returns:
      The summed pytree, numpy leaves (int64 or float64).
    """

    def fetch(tree):
        def leaf(x):
            x = to_host(x)
            return x.astype(
                np.int64 if np.issubdtype(x.dtype, np.integer) else np.float64
            )

        return jax.tree.map(leaf, tree)

    total, pending = None, None
    for batch in batches:
        out = fn(batch)
        if pending is not None:
            part = fetch(pending)
            total = part if total is None else jax.tree.map(np.add, total, part)
        pending = out
    if pending is None:
        raise ValueError("no batches to evaluate")
    part = fetch(pending)
    return part if total is None else jax.tree.map(np.add, total, part)
