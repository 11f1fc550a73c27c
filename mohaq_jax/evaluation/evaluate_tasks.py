"""What a population evaluation measures, per task: batch layout, metric sums, rates.

The population evaluator (:mod:`mohaq_jax.evaluation.evaluate`) is model-neutral: it quantizes,
gathers, chunks and shards, and asks the model's *task* how one batch's logits become
per-genome metric sums and how summed counts become rates. A model declares its task
with a module-level ``TASK`` string (absent = ``"frames"``); see
:mod:`mohaq_jax.models`.

* ``"frames"`` (speech: SRU, LSTM): a batch is ``(features (B, T, F), labels (B, T),
  lengths (B,))``; sums ``(loss_sum, n_frames, frame_wrong, phone_edits, n_phones)``
  (:func:`mohaq_jax.numerics.metrics.error_counts`), rates :class:`PopulationMetrics`.
* ``"classification"`` (images: VGG-9): a batch is ``(images (B, H, W, C), labels
  (B,))``, label ``-1`` = padding (not scored); sums ``(loss_sum, n_samples,
  n_wrong)``, rates :class:`ClassificationMetrics` (``class_error`` is the fraction of
  misclassified images).

Each task also says how a split is cut into its resampling units for the bootstrap
intervals (:mod:`mohaq_jax.numerics.bootstrap`): an utterance (speech) or an image, each
scored as a batch of one, with the error counts the search's metric is the ratio of.

Adding a task is one :class:`Task` in :data:`TASKS`.
"""

from __future__ import annotations

import dataclasses
from collections.abc import Callable, Sequence
from typing import Any

import jax
import jax.numpy as jnp
import numpy as np
from flax import struct

from mohaq_jax.data import batching
from mohaq_jax.numerics import bootstrap, metrics


@struct.dataclass
class PopulationMetrics:
    """Per-genome results; every field has shape ``(pop,)``. All are minimized."""

    loss: jax.Array  # mean framewise cross-entropy over valid frames, float32
    frame_error: jax.Array  # fraction of misclassified frames, float32
    phone_error: jax.Array  # phone error rate (39 folded phones), float32
    phone_edits: jax.Array  # summed Levenshtein distance, int32
    n_phones: jax.Array  # summed reference phone count, int32


@struct.dataclass
class ClassificationMetrics:
    """Per-genome results of a classifier; every field ``(pop,)``. All minimized."""

    loss: jax.Array  # mean softmax cross-entropy over scored samples, float32
    class_error: jax.Array  # fraction of misclassified samples, float32
    n_wrong: jax.Array  # misclassified samples, int32
    n_samples: jax.Array  # scored samples (label >= 0), int32


def metrics_from_sums(sums) -> PopulationMetrics:
    """Rates from per-genome ``(loss_sum, n_frames, frame_wrong, edits, n_phones)``."""
    loss_sum, n_frames, wrong, edits, n_phones = sums
    n_frames_f = jnp.maximum(n_frames, 1).astype(jnp.float32)
    return PopulationMetrics(
        loss=loss_sum / n_frames_f,
        frame_error=wrong.astype(jnp.float32) / n_frames_f,
        phone_error=edits.astype(jnp.float32)
        / jnp.maximum(n_phones, 1).astype(jnp.float32),
        phone_edits=edits,
        n_phones=n_phones,
    )


def classification_from_sums(sums) -> ClassificationMetrics:
    """Rates from per-genome ``(loss_sum, n_samples, n_wrong)``."""
    loss_sum, n_samples, wrong = sums
    n_f = jnp.maximum(n_samples, 1).astype(jnp.float32)
    return ClassificationMetrics(
        loss=loss_sum / n_f,
        class_error=wrong.astype(jnp.float32) / n_f,
        n_wrong=wrong,
        n_samples=n_samples,
    )


def classification_counts(logits, labels):
    """Summed ``(loss_sum, n_samples, n_wrong)`` of a batch; label -1 is not scored.

    Args:
      logits: ``(B, C)``; labels: int ``(B,)``.
    """
    valid = labels >= 0
    logp = jax.nn.log_softmax(logits, axis=-1)
    nll = -jnp.take_along_axis(logp, jnp.maximum(labels, 0)[:, None], axis=-1)[:, 0]
    wrong = (jnp.argmax(logits, axis=-1).astype(labels.dtype) != labels) & valid
    return (
        jnp.sum(jnp.where(valid, nll, 0.0)),
        jnp.sum(valid.astype(jnp.int32)),
        jnp.sum(wrong.astype(jnp.int32)),
    )


def _frame_sums(logits, batch, fold, decoder, per_mode):
    _, labels, lengths = batch
    return metrics.error_counts(
        logits, labels, lengths, fold, decoder=decoder, per_mode=per_mode
    )


def _class_sums(logits, batch, fold, decoder, per_mode):
    del fold, decoder, per_mode
    return classification_counts(logits, batch[1])


def _pad_rows(batch, multiple: int, fills: Sequence[Any]):
    """Pads every array of a batch along axis 0 to a multiple, with ``fills``."""
    n = batch[0].shape[0]
    extra = -(-n // multiple) * multiple - n
    if extra == 0:
        return batch
    return tuple(
        jnp.concatenate([x, jnp.full((extra,) + x.shape[1:], fill, x.dtype)])
        for x, fill in zip(batch, fills, strict=True)
    )


def _pad_frames(batch, multiple: int):
    """Empty utterances (length 0: no frames, no phones, no errors)."""
    return _pad_rows(batch, multiple, (0, -1, 0))


def _pad_images(batch, multiple: int):
    """Blank images labelled -1 (not scored)."""
    return _pad_rows(batch, multiple, (0, -1))


def check_batch(batch) -> None:
    """Rejects a batch with NaN/inf features or inconsistent shapes, naming the problem."""
    features, labels, lengths = (np.asarray(x) for x in batch)
    if features.ndim != 3:
        raise ValueError(
            f"features must be (batch, time, features), got {features.shape}"
        )
    if labels.shape != features.shape[:2] or lengths.shape != features.shape[:1]:
        raise ValueError(
            f"labels {labels.shape} / lengths {lengths.shape} do not match features "
            f"{features.shape}"
        )
    bad = ~np.isfinite(features)
    if np.any(bad):
        utt, frame, feat = (int(i) for i in np.argwhere(bad)[0])
        raise ValueError(
            f"features contain NaN or inf ({int(bad.sum())} values; first at utterance "
            f"{utt}, frame {frame}, feature {feat})"
        )
    # Length 0 marks an empty row (bucketed batches fill their last batch with them).
    if np.any(lengths < 0) or np.any(lengths > features.shape[1]):
        raise ValueError(f"lengths must be in 0..{features.shape[1]}, got {lengths}")


def check_image_batch(batch) -> None:
    """Rejects an image batch that is not ``(images (B, H, W, C), labels (B,))``."""
    if len(batch) != 2:
        raise ValueError(f"an image batch is (images, labels), got {len(batch)} arrays")
    images, labels = (np.asarray(x) for x in batch)
    if images.ndim != 4 or labels.shape != images.shape[:1]:
        raise ValueError(
            f"images must be (batch, height, width, channels) with labels (batch,), "
            f"got images {images.shape} and labels {labels.shape}"
        )
    bad = ~np.isfinite(images)
    if np.any(bad):
        raise ValueError(
            f"images contain NaN or inf ({int(bad.sum())} values; first in image "
            f"{int(np.argwhere(bad)[0][0])})"
        )


def _image_batches(data) -> Sequence:
    """One ``(images, labels)`` batch as a 1-list; a sequence of batches as a list."""
    if isinstance(data, tuple) and len(data) == 2 and getattr(data[1], "ndim", 0) == 1:
        return [data]  # (images, labels): labels are 1-D, a batch of batches is not
    batches = list(data)
    if not batches:
        raise ValueError("no image batches to evaluate")
    return batches


def _padded_split(split):
    """A speech split as one host batch (time padded to a multiple of 16)."""
    n_time = max(len(f) for f in split.features)
    return tuple(
        batching.pad_batch(split, range(len(split)), pad_to=-(-n_time // 16) * 16)
    )


def _image_split(split):
    """An image split (``.images``, ``.labels``) as one host batch."""
    return np.asarray(split.images, np.float32), np.asarray(split.labels, np.int32)


def _image_example(batch, index: int, size=None):
    """Image ``index`` of a batch, as a batch of one."""
    del size  # every image has the batch's shape
    return tuple(np.asarray(x)[index : index + 1] for x in batch)


def _image_counts(results, metric: str, one) -> tuple[np.ndarray, np.ndarray]:
    """``(wrong, scored)`` images of a one-image batch, per genome."""
    del one
    if metric != "class_error":
        raise ValueError(f"no per-image counts for metric {metric!r}")
    return (
        np.asarray(results["n_wrong"], np.float64),
        np.asarray(results["n_samples"], np.float64),
    )


@dataclasses.dataclass(frozen=True)
class Task:
    """How the evaluator reads one task's batches and turns logits into metrics.

    Attributes:
      name: registry name (a model's ``TASK``).
      sums: ``sums(logits, batch, fold, decoder, per_mode) -> tuple`` of scalars.
      from_sums: per-genome sums (jax or numpy) -> a metrics dataclass of rates.
      host_dtypes: numpy dtype of each sum on the host (:func:`host_metrics`).
      pad: ``pad(batch, multiple)``: rows added so the batch splits evenly, unscored.
      check: raises a one-line ValueError on a malformed batch.
      as_batches: one batch or a sequence of batches -> a sequence of batches.
      ratios: ``(metric name, numerator, denominator)`` rows, indices into the sums:
        the metric is ``sums[numerator] / sums[denominator]``, the numerator is never
        negative and the denominator does not depend on the model's outputs (racing,
        :meth:`mohaq_jax.evaluation.evaluate.PopulationEvaluator.race`, relies on both).
      unit: index of the sum that counts scored units (frames, images).
      reference_logits: ``(batch, n_classes) -> logits`` of a model that is always
        right; its sums give a batch's denominators by the same code as ``sums``.
      whole_split: a split of the task's data (``corpus.dev``) -> one host batch
        holding every example once, in order (the bootstrap's resampling units).
      example: ``example(batch, index, size)``: example ``index`` of a host batch as
        a batch of one, padded to ``size`` (:attr:`example_size`; one compile).
      example_size: ``batch -> size`` the examples of a batch are padded to.
      example_counts: ``(results, metric, one) -> (errors (g,), totals (g,))``: the
        counts whose ratio is ``metric``, from the evaluator's results on the batch
        of one example ``one``.
      example_metrics: the metrics that have per-example counts.
      example_name: what one example is, in words.
    """

    name: str
    sums: Callable[..., tuple]
    from_sums: Callable[[Any], Any]
    host_dtypes: tuple[Any, ...]
    pad: Callable[[Any, int], Any]
    check: Callable[[Any], None]
    as_batches: Callable[[Any], Sequence]
    ratios: tuple[tuple[str, int, int], ...] = ()  # none: the task cannot race
    unit: int = 1
    reference_logits: Callable[[Any, int], Any] | None = None
    whole_split: Callable[[Any], tuple] | None = None
    example: Callable[[Any, int, Any], tuple] | None = None
    example_size: Callable[[Any], int] = lambda batch: 0
    example_counts: Callable[[dict, str, Any], tuple] | None = None
    example_metrics: tuple[str, ...] = ()
    example_name: str = "example"

    def examples(self, batch, size=None) -> list:
        """Every example of a host batch (:attr:`whole_split`), each a batch of one."""
        return [self.example(batch, i, size) for i in range(len(batch[1]))]

    def ratio(self, metric: str) -> tuple[int, int]:
        """``(numerator, denominator)`` indices of ``metric`` in the sums."""
        for name, numerator, denominator in self.ratios:
            if name == metric:
                return numerator, denominator
        raise ValueError(
            f"task {self.name!r} has no metric {metric!r}; it has "
            f"{[row[0] for row in self.ratios]}"
        )


def _one_hot_labels(batch, n_classes: int):
    """Logits that put all mass on the label (padding label -1 -> class 0)."""
    return jax.nn.one_hot(jnp.maximum(batch[1], 0), n_classes, dtype=jnp.float32)


FRAMES = Task(
    "frames",
    _frame_sums,
    metrics_from_sums,
    (np.float32, np.int32, np.int32, np.int32, np.int32),
    _pad_frames,
    check_batch,
    batching.as_batches,
    ratios=(("loss", 0, 1), ("frame_error", 2, 1), ("phone_error", 3, 4)),
    unit=1,
    reference_logits=_one_hot_labels,
    whole_split=_padded_split,
    example=bootstrap.utterance_batch,
    example_size=lambda batch: int(np.shape(batch[0])[1]),
    example_counts=bootstrap.utterance_counts,
    example_metrics=("phone_error", "frame_error"),
    example_name="utterance",
)
CLASSIFICATION = Task(
    "classification",
    _class_sums,
    classification_from_sums,
    (np.float32, np.int32, np.int32),
    _pad_images,
    check_image_batch,
    _image_batches,
    ratios=(("loss", 0, 1), ("class_error", 2, 1)),
    unit=1,
    reference_logits=_one_hot_labels,
    whole_split=_image_split,
    example=_image_example,
    example_counts=_image_counts,
    example_metrics=("class_error",),
    example_name="image",
)

#: name -> task; a model names its task with a module-level ``TASK``.
TASKS: dict[str, Task] = {"frames": FRAMES, "classification": CLASSIFICATION}


def get_task(name: str) -> Task:
    """The registered task ``name``."""
    if name not in TASKS:
        raise ValueError(f"unknown task {name!r}; registered: {sorted(TASKS)}")
    return TASKS[name]


def host_metrics(sums, task: Task = FRAMES):
    """``task.from_sums`` of host sums (int64/float64), as numpy arrays."""
    cast = tuple(
        np.asarray(s, dtype) for s, dtype in zip(sums, task.host_dtypes, strict=True)
    )
    return jax.tree.map(np.asarray, task.from_sums(cast))


__all__ = [
    "CLASSIFICATION",
    "FRAMES",
    "TASKS",
    "ClassificationMetrics",
    "PopulationMetrics",
    "Task",
    "check_batch",
    "check_image_batch",
    "classification_counts",
    "classification_from_sums",
    "get_task",
    "host_metrics",
    "metrics_from_sums",
]
