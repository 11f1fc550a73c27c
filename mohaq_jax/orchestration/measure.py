"""What the pipeline measures after a search: test errors, intervals, sweeps.

Helpers of :mod:`mohaq_jax.orchestration.pipeline`, each taking the search's problem (its evaluator),
the problem's final state (score cache, beacons: ``SearchResult.state``) and the
prepared data: the Pareto set's test error (each genome with the model, PTQ or its
beacon's, chosen on dev), bootstrap confidence intervals of dev and test error per
Pareto solution and for the float model (per-utterance or per-image counts, the
task's resampling units, :mod:`mohaq_jax.numerics.bootstrap`), and the compression
experiment's uniform-bit sweep.
"""

from __future__ import annotations

import jax
import numpy as np

from mohaq_jax.evaluation.evaluate import PopulationEvaluator, task_of
from mohaq_jax.numerics import bootstrap
from mohaq_jax.orchestration.prepare import Setup
from mohaq_jax.runtime.console import say


def chosen_models(problem, state, genomes) -> np.ndarray:
    """Which weights each genome's dev error came from: 0 = the float model's (PTQ),
    ``s > 0`` = beacon slot ``s`` (its retrained weights, when they won on dev).

    The choice is made on dev only; test errors and both intervals then belong to
    the chosen model (never the better of two on test).
    """
    _, m = problem.evaluate(state, genomes)
    if "beacon" not in m:
        return np.zeros(len(genomes), np.int32)
    won = (m["beacon"] > 0) & (m["beacon_error"] <= m["ptq_error"])
    return np.where(won, m["beacon"], 0).astype(np.int32)


def test_errors(problem, state, genomes, batch) -> np.ndarray:
    """Test error of genomes, each with the model chosen on dev (:func:`chosen_models`:
    PTQ, or its beacon's retrained weights when those won on dev)."""
    metric = problem.config.error_metric
    source = chosen_models(problem, state, genomes)
    out = problem.errors(genomes, batch)[metric]
    rows = np.flatnonzero(source > 0)
    if len(rows):
        out = out.copy()
        out[rows] = problem.beacon_errors(
            state.extra, genomes[rows], source[rows], batch
        )
    return out


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

    Each genome is scored per resampling unit of the model's task (utterance,
    image) with the weights its dev error came from
    (its beacon's retrained weights in a beacon-based search, when they won on dev).

    Returns:
      ``{"dev": ..., "test": ...}`` as :func:`mohaq_jax.numerics.bootstrap.split_intervals`
      gives them (arrays in the order of ``genomes``), or None when
      ``--bootstrap 0``, no genomes, or an error metric without per-example counts.
    """
    s = cfg.search
    metric = s.error_metric
    task = task_of(problem.evaluator.config)
    if s.n_bootstrap == 0 or not len(genomes):
        return None
    if metric not in task.example_metrics:
        return None
    say(
        cfg.output.progress,
        f"confidence intervals: {len(genomes)} Pareto solution(s) and the float "
        f"model, per {task.example_name} on dev and test, "
        f"{s.n_bootstrap} bootstrap resamples",
    )
    sources = np.zeros(len(genomes), np.int32)
    if beacon_config is not None:
        sources = chosen_models(problem, state, genomes)
    evaluate_genomes = _chosen_evaluator(problem, state, genomes, sources)

    zero = np.zeros((1, float_eval.space.n_genes), np.int32)
    examples = split_examples(task, setup.corpus)
    return {
        split: bootstrap.split_intervals(
            evaluate_genomes,
            lambda batch: float_eval(zero, batch),
            units,
            lambda results, one: task.example_counts(results, metric, one),
            s.n_bootstrap,
            s.confidence,
            s.seed,
        )
        for split, units in examples.items()
    }


def split_examples(task, corpus) -> dict:
    """``{"dev": [...], "test": [...]}``: each split's resampling units (utterances,
    images), each a batch of one, all padded to one shape (one compile); the split
    is held as host numpy arrays only."""
    splits = {name: task.whole_split(getattr(corpus, name)) for name in ("dev", "test")}
    size = max(task.example_size(b) for b in splits.values())
    return {name: task.examples(batch, size) for name, batch in splits.items()}


def _chosen_evaluator(problem, state, genomes, sources):
    """``batch -> {metric: (g,)}``: each genome on the weights of slot ``sources[i]``
    (0: the float model's, PTQ; ``s > 0``: beacon ``s``'s retrained weights)."""
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

    return evaluate_genomes


def beacon_gains(cfg, setup, plain: dict, beacons: dict) -> list[dict]:
    """What beacons buy at each speedup level, on dev and on test, paired intervals.

    At each speedup level ``s`` (the speedups of both final fronts), each search's
    solution is its front's lowest-*dev*-error genome with speedup ``>= s``, scored
    with its dev-chosen model (:func:`chosen_models`). Both solutions are scored per
    example of the model's task (utterance, image) on dev and test; the reduction
    (inference-only error minus beacon-based error) gets a paired percentile
    bootstrap interval (the same draws for both,
    :func:`mohaq_jax.numerics.bootstrap.bootstrap_intervals`).

    Args:
      cfg: the experiment config (bootstrap resamples, confidence, seed, metric).
      setup: the prepared data (dev and test splits).
      plain, beacons: summaries of the inference-only and beacon-based searches
        (``problem``, ``result``).

    Returns:
      One dict per level: ``speedup``, the archive indices ``plain_index`` and
      ``beacon_index``, and per split ``{split}_plain``, ``{split}_beacon`` (errors)
      and ``{split}_reduction`` with ``{split}_low``/``{split}_high`` (interval of
      the reduction; None with ``--bootstrap 0``).
    """
    s = cfg.search
    pp, pr = plain["problem"], plain["result"]
    bp, br = beacons["problem"], beacons["result"]
    pm, bm = pr.metrics, br.metrics
    pf, bf = np.asarray(pr.front, bool), np.asarray(br.front, bool)
    levels = np.unique(np.concatenate([pm["speedup"][pf], bm["speedup"][bf]]))
    picks = []
    for level in levels:
        a = np.flatnonzero(pf & (pm["speedup"] >= level))
        b = np.flatnonzero(bf & (bm["speedup"] >= level))
        if len(a) and len(b):
            ia = a[np.argmin(pm["error"][a])]
            ib = b[np.argmin(bm["error"][b])]
            picks.append((float(level), int(ia), int(ib)))
    if not picks:
        return []
    task = task_of(pp.evaluator.config)
    say(
        cfg.output.progress,
        f"beacon gain: {len(picks)} speedup level(s), both searches per "
        f"{task.example_name} on dev and test",
    )
    ia = np.asarray([p[1] for p in picks])
    ib = np.asarray([p[2] for p in picks])
    eval_a = _chosen_evaluator(
        pp, pr.state, pr.genomes[ia], np.zeros(len(ia), np.int32)
    )
    eval_b = _chosen_evaluator(
        bp, br.state, br.genomes[ib], chosen_models(bp, br.state, br.genomes[ib])
    )

    def counts(results, one):
        return task.example_counts(results, s.error_metric, one)

    rows = [{"speedup": lv, "plain_index": a, "beacon_index": b} for lv, a, b in picks]
    for split, units in split_examples(task, setup.corpus).items():
        one = np.zeros((1, 1), np.int32)
        ea, ta = bootstrap.per_example_counts(
            lambda g, x: eval_a(x), one, units, counts
        )
        eb, tb = bootstrap.per_example_counts(
            lambda g, x: eval_b(x), one, units, counts
        )
        for j, row in enumerate(rows):
            rate_a = ea[j].sum() / max(ta[j].sum(), 1.0)
            rate_b = eb[j].sum() / max(tb[j].sum(), 1.0)
            row[f"{split}_plain"], row[f"{split}_beacon"] = rate_a, rate_b
            row[f"{split}_reduction"] = rate_a - rate_b
            row[f"{split}_low"] = row[f"{split}_high"] = None
            if s.n_bootstrap:
                ci = bootstrap.bootstrap_intervals(
                    eb[j][None],
                    tb[j][None],
                    s.n_bootstrap,
                    s.confidence,
                    s.seed,
                    reference=(ea[j], ta[j]),
                )  # beacon minus plain: the reduction is its negative
                row[f"{split}_low"] = float(-ci["diff_high"][0])
                row[f"{split}_high"] = float(-ci["diff_low"][0])
    return rows
