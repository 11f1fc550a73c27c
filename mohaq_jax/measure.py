"""What the pipeline measures after a search: test errors, intervals, sweeps.

Helpers of :mod:`mohaq_jax.pipeline`, each taking the search's problem (its evaluator),
the problem's final state (score cache, beacons: ``SearchResult.state``) and the
prepared data: the Pareto set's test error (with the beacon each
genome used), bootstrap confidence intervals of dev and test error per Pareto solution
and for the float model (per-utterance counts, :mod:`mohaq_jax.bootstrap`), and the
compression experiment's uniform-bit sweep.
"""

from __future__ import annotations

import jax
import numpy as np

from mohaq_jax import bootstrap
from mohaq_jax.console import say
from mohaq_jax.data import pad_batch
from mohaq_jax.evaluate import PopulationEvaluator
from mohaq_jax.prepare import Setup


def test_errors(problem, state, genomes, batch) -> np.ndarray:
    """Test error of genomes, with the beacon each one used on dev (min with PTQ)."""
    metric = problem.config.error_metric
    ptq = problem.errors(genomes, batch)[metric]
    index = problem.evaluate(state, genomes)[1]["beacon"].astype(np.int32)
    if not np.any(index):
        return ptq
    beacon = problem.beacon_errors(state.extra, genomes, index, batch)
    return np.where(index > 0, np.minimum(ptq, beacon), ptq)


def compression_sweep(problem, state, setup: Setup, sweep_bits) -> dict:
    """Every weight at each of ``sweep_bits`` (activations 16-bit): dev metrics, test.

    Returns:
      ``{"bits": (k,), "genomes": (k, n_genes), "dev": {metric: (k,)}, "test": (k,)}``.
    """
    space = problem.space
    genomes = np.stack(
        [
            space.encode({**{n: b for n in space.gene_names[:-1]}, "a_all": 16})
            for b in sweep_bits
        ]
    )
    _, dev = problem.evaluate(state, genomes)
    test = problem.errors(genomes, setup.test_batch)[problem.config.error_metric]
    return {
        "bits": np.asarray(sweep_bits),
        "genomes": genomes,
        "dev": dev,
        "test": test,
    }


def best_within_margin(
    problem, result, setup: Setup, sweep: dict, margin
) -> dict | None:
    """The evaluated genome of largest compression within ``margin`` of 16-bit error."""
    reference = float(sweep["dev"]["error"][0])  # the sweep starts at 16 bits
    allm = result.metrics
    ok = allm["error"] <= reference + margin
    if not ok.any():
        return {"reference": reference, "index": None}
    best = int(np.flatnonzero(ok)[np.argmax(allm["compression"][ok])])
    genome = result.genomes[best]
    test = problem.errors(genome[None], setup.test_batch)[problem.config.error_metric]
    return {
        "reference": reference,
        "index": best,
        "genome": genome,
        "compression": float(allm["compression"][best]),
        "memory_mb": float(allm["memory_mb"][best]),
        "dev_error": float(allm["error"][best]),
        "test_error": float(test[0]),
    }


def error_intervals(
    cfg, setup, problem, state, genomes, float_eval, beacon_config=None
):
    """Bootstrap intervals of dev and test error: float model and ``genomes``.

    Each genome is scored per utterance with the weights its dev error came from
    (its beacon's retrained weights in a beacon-based search, when they won on dev).

    Returns:
      ``{"dev": ..., "test": ...}`` as :func:`mohaq_jax.bootstrap.split_intervals`
      gives them (arrays in the order of ``genomes``), or None when
      ``--bootstrap 0``, no genomes, or an error metric without per-utterance counts.
    """
    s = cfg.search
    metric = s.error_metric
    if s.n_bootstrap == 0 or not len(genomes):
        return None
    if metric not in ("phone_error", "frame_error"):
        return None
    say(
        cfg.output.progress,
        f"confidence intervals: {len(genomes)} Pareto solution(s) and the float "
        f"model, per utterance on dev and test, {s.n_bootstrap} bootstrap resamples",
    )
    evaluator = problem.evaluator
    size = -(-len(genomes) // 8) * 8  # few distinct sizes: few compilations
    ci_eval = PopulationEvaluator(
        evaluator.config,
        evaluator.space,
        evaluator.fold,
        evaluator.params,
        evaluator.calib,
        chunk_size=None,
        genome_batch=size,
        decoder=evaluator.decoder,
        per_mode=evaluator.per_mode,
    )
    sources = np.zeros(len(genomes), np.int32)
    if beacon_config is not None:
        _, m = problem.evaluate(state, genomes)
        won = (m["beacon"] > 0) & (m["beacon_error"] <= m["ptq_error"])
        sources = np.where(won, m["beacon"], 0).astype(np.int32)

    def evaluate_genomes(batch):
        out = {}
        for slot in np.unique(sources):
            rows = np.flatnonzero(sources == slot)
            params = None
            if slot > 0:
                params = jax.tree.map(lambda leaf, s=slot: leaf[s], state.extra.stacked)
            res = ci_eval(genomes[rows], batch, params=params)
            for k, v in res.items():
                out.setdefault(k, np.zeros(len(genomes), v.dtype))[rows] = v
        return out

    zero = np.zeros((1, float_eval.space.n_genes), np.int32)
    # Per-utterance counts: one utterance at a time, padded to one length (one
    # compile); the whole split is held as host numpy arrays only.
    splits = {
        name: _padded_split(getattr(setup.corpus, name)) for name in ("dev", "test")
    }
    n_time = max(b[0].shape[1] for b in splits.values())
    return {
        split: bootstrap.split_intervals(
            evaluate_genomes,
            lambda batch: float_eval(zero, batch),
            batch,
            metric,
            n_time,
            s.n_bootstrap,
            s.confidence,
            s.seed,
        )
        for split, batch in splits.items()
    }


def _padded_split(split):
    """A split as one host-side padded batch (time padded to a multiple of 16)."""
    n_time = max(len(f) for f in split.features)
    return tuple(pad_batch(split, range(len(split)), pad_to=-(-n_time // 16) * 16))
