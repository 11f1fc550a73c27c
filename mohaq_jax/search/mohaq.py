"""MOHAQ inference-only search: NSGA-II over bit-width genomes, scored in batches.

Rashed, Jordan, Hemani et al., "MOHAQ: Multi-Objective Hardware-Aware Quantization of
Recurrent Neural Networks" (2021), Sec. IV: NSGA-II (population 40, 10 offspring per
generation) minimizes the model's error on the development set together with hardware
objectives, under a memory-size and a maximum-error constraint; the final Pareto set is
re-evaluated on the test set.

Here a :class:`~mohaq_jax.search.problem.QuantizationProblem` (immutable) scores whole
populations at once with the batched evaluator (:mod:`mohaq_jax.evaluate`) and a
vmapped platform cost model (:mod:`mohaq_jax.hardware`), never evaluating a genome twice
(its score cache lives in an explicit :class:`~mohaq_jax.search.problem.ProblemState`).
The search is pure steps over one :class:`SearchState` (NSGA-II state, problem state,
history): :func:`init_search` scores the initial population, :func:`search_step` runs
one generation (the jitted ``ask``/``tell`` of :class:`~mohaq_jax.search.nsga2.NSGA2`,
keys from :func:`~mohaq_jax.search.nsga2.generation_keys`, the schedule of
:func:`~mohaq_jax.search.nsga2.make_run`). :func:`run_search` loops them with an atomic
checkpoint after each generation, so ``resume=True`` continues after a crash, losing at
most the generation in flight, and reaches the same final front as an uninterrupted
run with the same seed.

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
from typing import Any

import jax
import jax.numpy as jnp
import numpy as np
from tqdm.auto import tqdm

from mohaq_jax import checkpoint
from mohaq_jax.search import compilation, hypervolume, nsga2, score_cache, surrogate
from mohaq_jax.search.problem import ProblemState, QuantizationProblem, SearchConfig

__all__ = [
    "STATE_FILE",
    "ProblemState",
    "QuantizationProblem",
    "SearchConfig",
    "SearchResult",
    "SearchState",
    "Searcher",
    "archive_result",
    "run_search",
]

STATE_FILE = "search_state.msgpack"


@dataclasses.dataclass(frozen=True)
class SearchState:
    """Everything a search has done so far: one value, replaced each generation."""

    strategy: Any  # nsga2.State: population, archive, ranks
    problem: ProblemState  # score cache (and beacons)
    generation: int  # last completed generation (0: the initial population)
    history: tuple[dict, ...]  # one row per generation
    seconds: float  # wall time spent so far (all sessions)


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
    state: ProblemState | None = None  # the problem's final state (cache, beacons)


def archive_result(
    problem: QuantizationProblem,
    pstate: ProblemState,
    genomes: np.ndarray,
    generation: np.ndarray,
    history: list[dict[str, Any]],
    seconds: float,
    resumed: bool = False,
) -> SearchResult:
    """The :class:`SearchResult` of the distinct ``genomes`` a search evaluated:
    their metrics (from ``pstate``'s cache), feasibility and feasible front."""
    pstate, metrics = problem.evaluate(pstate, genomes)
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
        seconds=seconds,
        resumed=resumed,
        state=pstate,
    )


class Searcher:
    """The NSGA-II of a problem's settings and its jitted steps (no search state).

    ``init(key)`` and ``step(state)`` are pure in the search state: they read the
    problem's fixed settings and return a new :class:`SearchState`.
    """

    def __init__(self, problem: QuantizationProblem):
        cfg = problem.config
        self.problem = problem
        self.n_obj = len(cfg.objectives)
        self.strategy = nsga2.NSGA2(
            cfg.pop_size,
            cfg.n_offspring,
            problem.space.upper,
            archive_size=cfg.pop_size + cfg.n_generations * cfg.n_offspring,
        )
        if cfg.surrogate or cfg.seed_proxy:  # wraps the algorithm's ask/tell
            self.strategy = surrogate.assisted(
                self.strategy,
                surrogate.problem_fitness_fn(problem),
                surrogate.SurrogateOptions(
                    screen=cfg.surrogate,
                    seed_proxy=cfg.seed_proxy,
                    archive_size=self.strategy.archive_size,
                ),
                cfg.objectives.index("error"),
            )
        self.params = self.strategy.default_params.replace(
            ref_point=jnp.ones(self.n_obj, jnp.float32)
        )
        self.key = jax.random.key(cfg.seed)
        # NSGA-II steps take milliseconds next to the evaluation: compile them cheaply.
        self._ask = compilation.jit_small(self.strategy.ask)
        self._tell = compilation.jit_small(self.strategy.tell)

    def _score(self, pstate: ProblemState, genomes) -> tuple[ProblemState, dict, bool]:
        """Scores a population and applies the problem's policy (beacons)."""
        problem = self.problem
        pstate, results = problem.evaluate(pstate, genomes)
        updated = problem.update(pstate, genomes, results)
        changed = problem.changed(pstate, updated)
        if changed:
            updated, results = problem.evaluate(updated, genomes)
        return updated, results, changed

    def init(self, seconds_before: float = 0.0) -> SearchState:
        """The search after scoring the initial population (generation 0)."""
        t0 = time.perf_counter()
        key_sample, key_init = nsga2.initial_keys(self.key)
        pstate, extra = self.problem.initial_state(), ()
        if isinstance(self.strategy, surrogate.Assisted):
            pstate, population, proxy = surrogate.start(
                self.problem, pstate, self.strategy, key_sample
            )
            extra = (proxy,)
        else:
            population = compilation.jit_small(self.strategy.sample)(key_sample)
        pstate, results, _ = self._score(pstate, np.asarray(population))
        fitness = self.problem.fitness(results)
        strategy = compilation.jit_small(self.strategy.init)(
            key_init, population, fitness, self.params, *extra
        )
        seconds = seconds_before + time.perf_counter() - t0
        row = self._row(strategy, 0, seconds)
        return SearchState(strategy, pstate, 0, (row,), seconds)

    def step(self, state: SearchState) -> SearchState:
        """``state`` after one more generation (ask, score, tell)."""
        t0 = time.perf_counter()
        generation = state.generation + 1
        key_ask, key_tell = nsga2.generation_keys(self.key, generation)
        offspring, strategy = self._ask(key_ask, state.strategy, self.params)
        pstate, results, changed = self._score(state.problem, np.asarray(offspring))
        fitness = self.problem.fitness(results)
        if changed:
            # Beacons made in this generation re-score the survivors too.
            pstate, survivors = self.problem.evaluate(
                pstate, np.asarray(strategy.population)
            )
            objectives, constraints = self.problem.fitness(survivors)
            strategy = strategy.replace(
                fitness=objectives, violation=nsga2.total_violation(constraints)
            )
        strategy, _ = self._tell(key_tell, offspring, fitness, strategy, self.params)
        elapsed = time.perf_counter() - t0
        row = self._row(strategy, generation, state.seconds + elapsed)
        row["evals_per_s"] = self.problem.config.n_offspring / max(elapsed, 1e-9)
        return SearchState(
            strategy, pstate, generation, state.history + (row,), row["seconds"]
        )

    def done(self, state: SearchState) -> bool:
        """Whether the search has run its generations or spent its budget."""
        cfg = self.problem.config
        if state.generation >= cfg.n_generations:
            return True
        return cfg.budget is not None and state.problem.n_evaluated >= cfg.budget

    def result(self, state: SearchState, resumed: bool = False) -> SearchResult:
        """The archive of ``state`` with its metrics, feasibility and front."""
        problem = self.problem
        genomes_all, _, _, valid = nsga2.archive(state.strategy)
        valid = np.asarray(valid)
        genomes = np.asarray(genomes_all)[valid]
        generation = np.asarray(state.strategy.archive_generation)[valid]
        # When a small space runs out of new genomes, ask() refills with duplicates
        # (counted in n_unique_offspring); they were never re-evaluated, list each once.
        _, first = np.unique(genomes, axis=0, return_index=True)
        first = np.sort(first)
        genomes, generation = genomes[first], generation[first]
        return archive_result(
            problem,
            state.problem,
            genomes,
            generation,
            list(state.history),
            state.seconds,
            resumed,
        )

    # ---- checkpoints ---------------------------------------------------------------
    def save(self, path, state: SearchState) -> None:
        """Writes ``state`` atomically to ``path``."""
        problem, pstate = self.problem, state.problem
        cache, names = pstate.scores.to_arrays()
        extra = problem.state_to_tree(pstate)
        meta = {
            **problem.state_meta(pstate),
            "generation": state.generation,
            "history": list(state.history),
            "seconds": state.seconds,
            "search_config": problem.config.to_dict(),
            "space": problem.space.name,
            "gene_names": list(problem.space.gene_names),
            "cache_names": names,
            "n_evaluated": pstate.n_evaluated,
        }
        tree = {"state": state.strategy, "cache": cache}
        if extra is not None:
            tree["extra"] = extra
        checkpoint.save(path, tree, meta)

    def load(self, path) -> SearchState:
        """The state saved at ``path`` (same settings and genome space, or an error)."""
        problem = self.problem
        meta = checkpoint.read_meta(path)
        checkpoint.check_compatible(
            {"search_config": meta["search_config"], "space": {"name": meta["space"]}},
            {
                "search_config": problem.config.to_dict(),
                "space": {"name": problem.space.name},
            },
            path,
        )
        template = {
            "state": self.strategy.empty_state(self.n_obj),
            "cache": {"genomes": np.zeros(0), "values": np.zeros(0)},
        }
        extra = problem.state_to_tree(problem.initial_state())
        if extra is not None:
            template["extra"] = extra
        saved, meta = checkpoint.load(path, template)
        scores = score_cache.ScoreCache.from_arrays(
            saved["cache"]["genomes"],
            saved["cache"]["values"],
            meta["cache_names"],
            meta["n_evaluated"],
        )
        pstate = problem.restore_state(scores, saved.get("extra"), meta)
        return SearchState(
            jax.tree.map(jnp.asarray, saved["state"]),
            pstate,
            int(meta["generation"]),
            tuple(meta["history"]),
            float(meta["seconds"]),
        )

    def _row(self, strategy, generation: int, seconds: float) -> dict:
        problem = self.problem
        feasible = np.asarray(strategy.violation) <= 0
        scale = problem.nadir[0] - problem.ideal[0]
        errors = np.asarray(strategy.objectives)[:, 0] * scale + problem.ideal[0]
        front = (strategy.violation <= 0) & (strategy.rank == 0)
        hv = hypervolume.hypervolume(strategy.objectives, self.params.ref_point, front)
        return {
            "generation": generation,
            "n_evaluations": int(strategy.n_evaluations),
            "n_feasible": int(feasible.sum()),
            "best_error": float(errors[feasible].min())
            if feasible.any()
            else float("nan"),
            "hypervolume": float(hv),
            "seconds": seconds,
        }


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
      :class:`SearchResult` (its ``state``: the problem's final state).
    """
    searcher = Searcher(problem)
    cfg = problem.config
    path = None if out_dir is None else os.path.join(os.fspath(out_dir), STATE_FILE)
    resumed = resume and path is not None and os.path.exists(path)
    if resumed:
        state = searcher.load(path)
    else:
        state = searcher.init()
        if path is not None:
            searcher.save(path, state)
    bar = tqdm(
        total=cfg.n_generations,
        initial=state.generation,
        desc=f"NSGA-II {problem.space.name}",
        unit="gen",
        disable=not progress,
        dynamic_ncols=True,
    )
    _postfix(bar, state.history[-1])
    while not searcher.done(state):
        state = searcher.step(state)
        if path is not None:
            searcher.save(path, state)
        bar.update(1)
        _postfix(bar, state.history[-1])
        if stop_after is not None and state.generation >= stop_after:
            break
    bar.close()
    return searcher.result(state, resumed)


def _postfix(bar, row):
    bar.set_postfix(
        best_err=f"{row['best_error']:.4f}",
        hv=f"{row['hypervolume']:.4f}",
        evals=row["n_evaluations"],
        ev_s=f"{row.get('evals_per_s', float('nan')):.1f}",
    )
