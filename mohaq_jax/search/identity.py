"""What a search's scores depend on, recorded in its checkpoint and checked on resume.

A search checkpoint holds scores (dev errors, hardware costs) and a population ranked
by them. They stay valid only for the same float baseline, calibration, dev data,
error metric and decoder, constraints, platform, genome space, seed and search
settings; :func:`identity_fields` names each of these and
:func:`mohaq_jax.runtime.checkpoint.identity` digests them, so ``--resume`` refuses a
checkpoint from any other setup, naming the field (the driver stores the digests in
the checkpoint's meta and compares them with
:func:`mohaq_jax.runtime.checkpoint.check_identity`).
Settings that change no score (chunk size, devices, batch frames) are left out, so a
search may resume on another machine.
"""

from __future__ import annotations

from typing import Any

import numpy as np

from mohaq_jax.evaluation.evaluate import task_of
from mohaq_jax.runtime import checkpoint

__all__ = ["search_identity"]


def data_rows(task, batches) -> list[str]:
    """Sorted digests of the examples in ``batches``, padding left out.

    The same dev data batched differently (``--batch-frames``, ``--eval-batch``)
    gives the same list, so only the examples themselves count.

    Args:
      task: the model's :class:`~mohaq_jax.evaluation.evaluate_tasks.Task`: ``"frames"``
        batches are ``(features, labels, lengths)`` (a row is its first ``length``
        frames), ``"classification"`` ones ``(images, labels)`` (label -1: padding).
      batches: one batch or a sequence of them.
    """
    rows = []
    for batch in task.as_batches(batches):
        arrays = [np.asarray(a) for a in batch]
        if task.name == "frames":
            features, labels, lengths = arrays
            examples = [
                (features[i, :n], labels[i, :n]) for i, n in enumerate(lengths) if n
            ]
        else:
            images, labels = arrays
            examples = [(images[i], labels[i]) for i in np.flatnonzero(labels >= 0)]
        rows += [checkpoint.identity({"row": ex})["row"] for ex in examples]
    return sorted(rows)


def identity_fields(problem) -> dict[str, Any]:
    """The plain values the scores of ``problem`` depend on, by field name.

    Args:
      problem: a :class:`~mohaq_jax.search.problem.QuantizationProblem` (or a
        subclass: the beacon policy and QAT settings of a beacon-based one count too).
    """
    evaluator, space, config = problem.evaluator, problem.space, problem.config
    lowest = np.zeros(space.n_genes, np.int32)
    extremes = np.stack([lowest, space.upper.astype(np.int32)])
    fields = {
        "baseline_params": evaluator.params,
        "model": evaluator.config,
        "calibration": evaluator.calib,
        "data": data_rows(task_of(evaluator.config), problem.batch),
        "metric": {
            "error_metric": config.error_metric,
            "per_mode": evaluator.per_mode,
            "decoder": evaluator.decoder,
            "fold": evaluator.fold,
        },
        "constraints": {
            "max_error": config.max_error,
            "memory_limit_mb": config.memory_limit_mb,
            "memory_metric": config.memory_metric,
        },
        # The platform is a cost function: its costs of the lowest- and highest-bit
        # genomes, and the normalization points drawn from them, stand for it.
        "platform": {
            "costs": problem.costs(extremes),
            "ideal": problem.ideal,
            "nadir": problem.nadir,
        },
        "space": {
            "name": space.name,
            "genes": list(space.gene_names),
            "values": [list(map(int, v)) for v in space.gene_values],
        },
        "seed": config.seed,
        "search": {
            "objectives": config.objectives,
            "maximize": config.maximize,
            "pop_size": config.pop_size,
            "n_offspring": config.n_offspring,
            "n_generations": config.n_generations,
            "budget": config.budget,
        },
    }
    beacon_config = getattr(problem, "beacon_config", None)
    if beacon_config is not None:
        fields["beacons"] = {
            "config": beacon_config,
            "train_config": getattr(problem, "train_config", None),
        }
    return fields


def search_identity(problem) -> dict[str, str]:
    """Digest per field of :func:`identity_fields` (JSON-able, for the checkpoint)."""
    return checkpoint.identity(identity_fields(problem))
