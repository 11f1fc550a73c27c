"""MOHAQ inference-only search: NSGA-II over bit-width genomes, scored in batches.

Rashed, Jordan, Hemani et al., "MOHAQ: Multi-Objective Hardware-Aware Quantization of
Recurrent Neural Networks" (2021), Sec. IV: NSGA-II (population 40, 10 offspring per
generation) minimizes the model's error on the development set together with hardware
objectives, under a memory-size and a maximum-error constraint; the final Pareto set is
re-evaluated on the test set.

Here :class:`QuantizationProblem` scores whole populations at once with the batched
evaluator (:mod:`mohaq_jax.evaluate`) and a vmapped platform cost model
(:mod:`mohaq_jax.hardware`), never evaluating a genome twice (an archive cache), and
:func:`run_search` drives the jitted ``ask``/``tell`` of :class:`~mohaq_jax.search.nsga2.NSGA2`
generation by generation with an atomic checkpoint after each one, so ``resume=True``
continues after a crash, losing at most the generation in flight, and reaches the same
final front as an uninterrupted run with the same seed.

Objectives are normalized before NSGA-II sees them, ``(f - ideal) / (nadir - ideal)``
with ``ideal`` the best value the platform allows (error 0, the lowest-bit genome's
costs) and ``nadir`` the constraint bound / 16-bit genome, so the hypervolume against
the reference point ``(1, ..., 1)`` is a fraction of the attainable box. Every
objective is minimized; maximized ones (``speedup``) are negated by
:func:`~mohaq_jax.search.nsga2.objectives_from`.
"""

from __future__ import annotations

import dataclasses
import os
import time
from collections.abc import Sequence
from typing import Any

import jax
import jax.numpy as jnp
import numpy as np
from tqdm.auto import tqdm

from mohaq_jax import checkpoint
from mohaq_jax.evaluate import PopulationEvaluator
from mohaq_jax.genome import GenomeSpace
from mohaq_jax.search import compilation, hypervolume, nsga2, score_cache

STATE_FILE = "search_state.msgpack"


@dataclasses.dataclass(frozen=True)
class SearchConfig:
    """Settings of one NSGA-II search (MOHAQ's defaults)."""

    objectives: tuple[str, ...] = ("error", "speedup", "energy_pj")  # names, in order
    maximize: tuple[str, ...] = ("speedup",)  # objectives negated before minimizing
    pop_size: int = 40  # NSGA-II population (MOHAQ: 40)
    n_offspring: int = 10  # genomes evaluated per generation (MOHAQ: 10)
    n_generations: int = 15  # generations after the initial population (MOHAQ: 15)
    seed: int = 0  # PRNG seed: same seed, same front
    max_error: float = 0.24  # constraint: dev error <= this (absolute fraction)
    memory_limit_mb: float | None = None  # constraint: memory <= this; None = none
    memory_metric: str | None = "memory_mb"  # platform metric the limit bounds (plat12)
    error_metric: str = "phone_error"  # "phone_error" | "frame_error" | "loss" |
    # "class_error" (image classification, evaluate_tasks.ClassificationMetrics)
    budget: int | None = None  # stop once this many genomes were evaluated

    def __post_init__(self):
        if self.pop_size < 2 or self.n_offspring < 1 or self.n_generations < 0:
            raise ValueError("need pop_size >= 2, n_offspring >= 1, n_generations >= 0")
        if "error" not in self.objectives:
            raise ValueError("objectives must include 'error'")
        if self.error_metric not in (
            "phone_error",
            "frame_error",
            "loss",
            "class_error",
        ):
            raise ValueError(f"unknown error_metric {self.error_metric!r}")
        if not self.max_error > 0:
            raise ValueError("max_error must be > 0")

    def to_dict(self) -> dict:
        return dataclasses.asdict(self)


class QuantizationProblem:
    """Scores genomes: error on a data batch, hardware costs, constraints.

    Args:
      evaluator: batched error evaluator (fixed padded population size).
      cost_fn: a platform's cost function of ONE genome (vmapped here).
      batch: the development batch errors are measured on.
      config: the search settings (objectives, constraint bounds).
      ideal, nadir: per-objective normalization points, in the minimized convention.
    """

    def __init__(
        self,
        evaluator: PopulationEvaluator,
        cost_fn,
        batch,
        config: SearchConfig,
        ideal: Sequence[float] | None = None,
        nadir: Sequence[float] | None = None,
    ):
        self.evaluator = evaluator
        self.space: GenomeSpace = evaluator.space
        self.batch = batch
        self.config = config
        self._cost = jax.jit(jax.vmap(cost_fn))
        # The explicit state: replaced by pure functions, never mutated.
        self.cache_state = score_cache.ScoreCache()
        n_obj = len(config.objectives)
        self.ideal = (
            np.zeros(n_obj, np.float32)
            if ideal is None
            else np.asarray(ideal, np.float32)
        )
        self.nadir = (
            np.ones(n_obj, np.float32)
            if nadir is None
            else np.asarray(nadir, np.float32)
        )
        if np.any(self.nadir <= self.ideal):
            raise ValueError(
                f"nadir {self.nadir} must exceed ideal {self.ideal} per objective"
            )
        self.changed = False  # whether the last update() changed earlier scores

    def costs(self, genomes) -> dict[str, np.ndarray]:
        """Hardware costs of a population (no error evaluation)."""
        genomes = self.space.validate(genomes)
        return {k: np.asarray(v) for k, v in self._cost(jnp.asarray(genomes)).items()}

    def errors(self, genomes, batch=None) -> dict[str, np.ndarray]:
        """Error metrics of a population on ``batch`` (default: the dev batch)."""
        genomes = self.space.validate(genomes)
        size = self.evaluator.pop_size or len(genomes)
        parts = [
            self.evaluator(
                genomes[i : i + size], self.batch if batch is None else batch
            )
            for i in range(0, len(genomes), size)
        ]
        return {k: np.concatenate([p[k] for p in parts]) for k in parts[0]}

    def evaluate(self, genomes) -> dict[str, np.ndarray]:
        """All metrics of a population, from the cache where evaluated before.

        Returns:
          name -> ``(pop,)`` arrays: ``error`` (the configured metric), the evaluator's
          metrics, and the platform's costs.
        """
        genomes = self.space.validate(genomes)
        cache = score_cache.score(self.cache_state, genomes, self._score)
        self.cache_state = self._refresh(genomes, cache)
        return self.cache_state.lookup(genomes)

    @property
    def cache(self):
        """Read-only view: genome bytes -> metrics (:class:`ScoreCache` entries)."""
        return self.cache_state.entries

    @property
    def n_evaluated(self) -> int:
        """Genomes actually run (cache misses)."""
        return self.cache_state.n_evaluated

    def _score(self, genomes) -> dict[str, np.ndarray]:
        """Metrics of genomes not seen before (the cache stores what this returns)."""
        res = {**self.errors(genomes), **self.costs(genomes)}
        res["error"] = res[self.config.error_metric]
        return res

    # Hooks for problems whose scores change during the search (beacons).
    def _refresh(self, genomes, cache: score_cache.ScoreCache):
        """The cache with stale entries of ``genomes`` recomputed (pure)."""
        del genomes
        return cache

    def update(self, genomes, results) -> bool:
        """Called with each evaluated population; True if earlier scores changed."""
        del genomes, results
        return False

    def extra_state(self):
        """Arrays to checkpoint with the search (None: nothing)."""
        return None

    def extra_meta(self) -> dict:
        return {}

    def restore_extra(self, tree, meta) -> None:
        del tree, meta

    def fitness(self, results: dict[str, np.ndarray]) -> tuple[jax.Array, jax.Array]:
        """(normalized minimized objectives ``(n, n_obj)``, constraints ``(n, 2)``).

        Constraints (``g <= 0`` satisfied): ``(memory - limit) / limit`` and
        ``(error - max_error) / max_error``, the authors' normalized form.
        """
        cfg = self.config
        raw = nsga2.objectives_from(results, cfg.objectives, cfg.maximize)
        objectives = (raw - self.ideal[None]) / (self.nadir - self.ideal)[None]
        error = jnp.asarray(results["error"], jnp.float32)
        g_err = (error - cfg.max_error) / jnp.float32(cfg.max_error)
        if cfg.memory_limit_mb is None or cfg.memory_metric is None:
            g_mem = jnp.zeros_like(error) - 1.0
        else:
            limit = jnp.float32(cfg.memory_limit_mb)
            memory = jnp.asarray(results[cfg.memory_metric], jnp.float32)  # plat12
            g_mem = (memory - limit) / limit
        return objectives, jnp.stack([g_mem, g_err], axis=1)


@dataclasses.dataclass
class SearchResult:
    """What a search leaves: its archive (every evaluated genome) and history."""

    genomes: np.ndarray  # shape=(n_archive, n_genes) int32, evaluation order
    generation: np.ndarray  # shape=(n_archive,) int32, generation of first evaluation
    metrics: dict[str, np.ndarray]  # name -> (n_archive,)
    feasible: np.ndarray  # shape=(n_archive,) bool
    front: np.ndarray  # shape=(n_archive,) bool: feasible and non-dominated
    history: list[dict[str, Any]]  # one row per generation
    seconds: float  # wall time of the search (all sessions, when resumed)
    resumed: bool


def _save(path, state, problem, generation, history, seconds, config):
    cache, names = problem.cache_state.to_arrays()
    extra = problem.extra_state()
    meta = {
        **problem.extra_meta(),
        "generation": generation,
        "history": history,
        "seconds": seconds,
        "search_config": config.to_dict(),
        "space": problem.space.name,
        "gene_names": list(problem.space.gene_names),
        "cache_names": names,
        "n_evaluated": problem.n_evaluated,
    }
    tree = {"state": state, "cache": cache}
    if extra is not None:
        tree["extra"] = extra
    checkpoint.save(path, tree, meta)


def run_search(
    problem: QuantizationProblem,
    out_dir: str | os.PathLike | None = None,
    resume: bool = False,
    progress: bool = True,
    stop_after: int | None = None,
) -> SearchResult:
    """Runs (or resumes) an NSGA-II search on ``problem``.

    Args:
      problem: the scored problem (its ``config`` gives sizes, seed, budget).
      out_dir: folder for the per-generation checkpoint (``search_state.msgpack``);
        None = no checkpoint.
      resume: continue from the checkpoint in ``out_dir`` if there is one (it must have
        been written with the same search settings and genome space).
      progress: show a progress bar (best error, hypervolume, evaluations/s).
      stop_after: stop after this generation (to simulate a crash in tests).

    Returns:
      :class:`SearchResult`.
    """
    cfg = problem.config
    space = problem.space
    n_obj = len(cfg.objectives)
    strategy = nsga2.NSGA2(
        cfg.pop_size,
        cfg.n_offspring,
        space.upper,
        archive_size=cfg.pop_size + cfg.n_generations * cfg.n_offspring,
    )
    params = strategy.default_params.replace(ref_point=jnp.ones(n_obj, jnp.float32))
    # NSGA-II steps take milliseconds next to the evaluation: compile them cheaply.
    ask = compilation.jit_small(strategy.ask)
    tell = compilation.jit_small(strategy.tell)
    key = jax.random.key(cfg.seed)
    path = None if out_dir is None else os.path.join(os.fspath(out_dir), STATE_FILE)

    state, history, start, seconds_before, resumed = None, [], 0, 0.0, False
    if resume and path is not None and os.path.exists(path):
        meta = checkpoint.read_meta(path)
        checkpoint.check_compatible(
            {"search_config": meta["search_config"], "space": {"name": meta["space"]}},
            {"search_config": cfg.to_dict(), "space": {"name": space.name}},
            path,
        )
        template = {
            "state": strategy.empty_state(n_obj),
            "cache": {"genomes": np.zeros(0), "values": np.zeros(0)},
        }
        if problem.extra_state() is not None:
            template["extra"] = problem.extra_state()
        saved, meta = checkpoint.load(path, template)
        state = jax.tree.map(jnp.asarray, saved["state"])
        if "extra" in template:
            problem.restore_extra(saved["extra"], meta)
        problem.cache_state = score_cache.ScoreCache.from_arrays(
            saved["cache"]["genomes"],
            saved["cache"]["values"],
            meta["cache_names"],
            meta["n_evaluated"],
        )
        history, start = meta["history"], meta["generation"]
        seconds_before, resumed = meta["seconds"], True

    t0 = time.perf_counter()
    if state is None:
        key_sample, key_init = nsga2.initial_keys(key)
        population = compilation.jit_small(strategy.sample)(key_sample)
        fitness = problem.fitness(_evaluate_and_update(problem, np.asarray(population)))
        state = compilation.jit_small(strategy.init)(
            key_init, population, fitness, params
        )
        history.append(
            _history_row(state, params, strategy, problem, 0, t0, seconds_before)
        )
        if path is not None:
            _save(path, state, problem, 0, history, history[-1]["seconds"], cfg)

    bar = tqdm(
        total=cfg.n_generations,
        initial=start,
        desc=f"NSGA-II {space.name}",
        unit="gen",
        disable=not progress,
        dynamic_ncols=True,
    )
    _postfix(bar, history[-1])
    for generation in range(start + 1, cfg.n_generations + 1):
        if cfg.budget is not None and problem.n_evaluated >= cfg.budget:
            break
        t_gen = time.perf_counter()
        key_ask, key_tell = nsga2.generation_keys(key, generation)
        offspring, state = ask(key_ask, state, params)
        fitness = problem.fitness(_evaluate_and_update(problem, np.asarray(offspring)))
        if problem.changed:
            # Beacons made since the last generation re-score the survivors too.
            objectives, constraints = problem.fitness(
                problem.evaluate(np.asarray(state.population))
            )
            state = state.replace(
                fitness=objectives, violation=nsga2.total_violation(constraints)
            )
        state, _ = tell(key_tell, offspring, fitness, state, params)
        row = _history_row(
            state, params, strategy, problem, generation, t0, seconds_before
        )
        row["evals_per_s"] = cfg.n_offspring / max(time.perf_counter() - t_gen, 1e-9)
        history.append(row)
        if path is not None:
            _save(path, state, problem, generation, history, row["seconds"], cfg)
        bar.update(1)
        _postfix(bar, row)
        if stop_after is not None and generation >= stop_after:
            break
    bar.close()
    return _result(state, problem, history, resumed)


def _evaluate_and_update(problem, genomes):
    results = problem.evaluate(genomes)
    problem.changed = problem.update(genomes, results)
    if problem.changed:
        results = problem.evaluate(genomes)
    return results


def _history_row(
    state, params, strategy, problem, generation, t0, seconds_before
) -> dict:
    feasible = np.asarray(state.violation) <= 0
    errors = np.asarray(state.objectives)[:, 0] * (problem.nadir[0] - problem.ideal[0])
    errors = errors + problem.ideal[0]
    front = (state.violation <= 0) & (state.rank == 0)
    hv = float(hypervolume.hypervolume(state.objectives, params.ref_point, front))
    return {
        "generation": generation,
        "n_evaluations": int(state.n_evaluations),
        "n_feasible": int(feasible.sum()),
        "best_error": float(errors[feasible].min()) if feasible.any() else float("nan"),
        "hypervolume": hv,
        "seconds": seconds_before + time.perf_counter() - t0,
    }


def _postfix(bar, row):
    bar.set_postfix(
        best_err=f"{row['best_error']:.4f}",
        hv=f"{row['hypervolume']:.4f}",
        evals=row["n_evaluations"],
        ev_s=f"{row.get('evals_per_s', float('nan')):.1f}",
    )


def _result(state, problem, history, resumed) -> SearchResult:
    genomes_all, _, _, valid = nsga2.archive(state)
    valid = np.asarray(valid)
    genomes = np.asarray(genomes_all)[valid]
    generation = np.asarray(state.archive_generation)[valid]
    # When a small space runs out of new genomes, ask() refills with duplicates (counted
    # in n_unique_offspring); they were never re-evaluated (cache), so list each once.
    _, first = np.unique(genomes, axis=0, return_index=True)
    first = np.sort(first)
    genomes, generation = genomes[first], generation[first]
    metrics = problem.evaluate(genomes)
    objectives, constraints = problem.fitness(metrics)
    feasible = np.asarray(jnp.all(constraints <= 0, axis=1))
    front = np.asarray(nsga2.pareto_mask(objectives, jnp.asarray(feasible)))
    return SearchResult(
        genomes=genomes,
        generation=generation,
        metrics=metrics,
        feasible=feasible,
        front=front,
        history=history,
        seconds=history[-1]["seconds"],
        resumed=resumed,
    )
