"""MOHAQ inference-only search: any registered algorithm over bit-width genomes.

Rashed, Jordan, Hemani et al., "MOHAQ: Multi-Objective Hardware-Aware Quantization of
Recurrent Neural Networks" (2021), Sec. IV: NSGA-II (population 40, 10 offspring per
generation) minimizes the model's error on the development set together with hardware
objectives, under a memory-size and a maximum-error constraint; the final Pareto set is
re-evaluated on the test set.

Here a :class:`~mohaq_jax.search.problem.QuantizationProblem` (immutable) scores whole
populations at once with the batched evaluator (:mod:`mohaq_jax.evaluation.evaluate`) and a
vmapped platform cost model (:mod:`mohaq_jax.hardware`), never evaluating a genome twice
(its score cache lives in an explicit :class:`~mohaq_jax.search.problem.ProblemState`).
The one driver, :class:`Searcher`, runs any algorithm of
:data:`~mohaq_jax.search.algorithms.ALGORITHMS` (NSGA-II by default) as pure steps over
one :class:`SearchState` (algorithm state, problem state, archive, history):
:meth:`Searcher.init` scores the initial population, :meth:`Searcher.step` runs one
generation (the algorithm's ``ask``, scoring, its ``tell``; keys from
:func:`~mohaq_jax.search.nsga2.initial_keys` and
:func:`~mohaq_jax.search.nsga2.generation_keys`, the schedule of
:func:`~mohaq_jax.search.nsga2.make_run`). :func:`run_search` loops them with an atomic
checkpoint after each generation, so ``resume=True`` continues after a crash, losing at
most the generation in flight, and reaches the same final front as an uninterrupted
run with the same seed. The budget counts distinct genomes.

Objectives are normalized before an algorithm sees them, ``(f - ideal) / (nadir -
ideal)`` with ``ideal`` the best value the platform allows (error 0, the lowest-bit
genome's costs) and ``nadir`` the constraint bound / 16-bit genome, so the hypervolume
against the reference point ``(1, ..., 1)`` is a fraction of the attainable box. Every
objective is minimized; maximized ones (``speedup``) are negated by
:func:`~mohaq_jax.search.pareto.objectives_from`.
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

from mohaq_jax.runtime import checkpoint
from mohaq_jax.search import hypervolume, nsga2, pareto, score_cache, seeding, surrogate
from mohaq_jax.search.algorithm import default_budget
from mohaq_jax.search.identity import search_identity
from mohaq_jax.search.problem import ProblemState, QuantizationProblem, SearchConfig

__all__ = [
    "STATE_FILE",
    "Archive",
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
N_CONSTRAINTS = 2  # QuantizationProblem.fitness: memory and error


@dataclasses.dataclass(frozen=True)
class Archive:
    """The distinct genomes a search scored, in the order it scored them."""

    genomes: np.ndarray  # shape=(n, n_genes) int32
    generation: np.ndarray  # shape=(n,) int32, generation of first evaluation

    @classmethod
    def empty(cls, n_genes: int) -> Archive:
        return cls(np.zeros((0, n_genes), np.int32), np.zeros(0, np.int32))

    def __len__(self) -> int:
        return len(self.genomes)

    def keys(self) -> set[bytes]:
        return {g.tobytes() for g in self.genomes}

    def add(self, genomes: np.ndarray, generation: int) -> Archive:
        """The archive with ``genomes`` (new to it) appended."""
        return Archive(
            np.concatenate([self.genomes, genomes]),
            np.concatenate(
                [self.generation, np.full(len(genomes), generation, np.int32)]
            ),
        )


@dataclasses.dataclass(frozen=True)
class SearchState:
    """Everything a search has done so far: one value, replaced each generation."""

    strategy: Any  # the algorithm's state (e.g. nsga2.State)
    problem: ProblemState  # score cache (and beacons)
    archive: Archive  # distinct genomes this search scored
    generation: int  # last completed generation (0: the initial population)
    n_asked: int  # genomes the algorithm asked for, repeats included
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
    front = np.asarray(pareto.pareto_mask(objectives, jnp.asarray(feasible)))
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
    """The one search driver: any registered algorithm on a problem (no search state).

    ``init()`` and ``step(state)`` are pure in the search state: they read the
    problem's and the algorithm's fixed settings and return a new :class:`SearchState`.
    Scoring goes through the problem's cache: a genome asked again is looked up, and
    the budget counts distinct genomes; once it is spent, genomes not scored yet get
    ``+inf`` fitness (an algorithm never prefers them).

    Args:
      problem: the scored problem (its ``config`` gives sizes, seed, budget).
      algorithm: a name in :data:`~mohaq_jax.search.algorithms.ALGORITHMS`.
      problem_state: the problem's state to start from (None: a fresh one); a state
        from an earlier search of the same problem lends its scores, so genomes both
        searches ask for are evaluated once. The budget counts this search's genomes.
      assist: False runs the algorithm plain whatever the config's ``surrogate`` and
        ``seed_proxy`` say (a compared run).
    """

    def __init__(
        self,
        problem: QuantizationProblem,
        algorithm: str = "nsga2",
        problem_state: ProblemState | None = None,
        assist: bool = True,
    ):
        from mohaq_jax.search.algorithms import get_algorithm  # they sit above

        self.problem = problem
        self.name = algorithm
        self.algorithm = get_algorithm(algorithm)(problem.config, problem.space.upper)
        self.key = jax.random.key(problem.config.seed)
        self.problem_state = problem_state
        self._identity = None  # what the scores depend on, digested on first use
        self.assisted = None  # the surrogate wrapper, with --surrogate / --seed-proxy
        cfg = problem.config
        if assist and (cfg.surrogate or cfg.seed_proxy):
            if algorithm != "nsga2":
                raise ValueError(
                    "--surrogate and --seed-proxy wrap NSGA-II (--algorithm nsga2)"
                )
            self.algorithm, self.assisted = surrogate.assisted_nsga2(problem)

    @property
    def identity(self) -> dict[str, str]:
        """Digests of what the problem's scores depend on (checked on resume)."""
        if self._identity is None:
            self._identity = search_identity(self.problem)
        return self._identity

    def init(self) -> SearchState:
        """The search after scoring the initial population (generation 0)."""
        t0 = time.perf_counter()
        key_sample, key_init = nsga2.initial_keys(self.key)
        start = self.problem_state or self.problem.initial_state()
        extra, stage_seconds = (), None
        if self.assisted is not None:  # sensitivity stage, then the population
            start, population, proxy = surrogate.start(
                self.problem, start, self.assisted, key_sample
            )
            extra, stage_seconds = (proxy,), time.perf_counter() - t0
        else:
            population = self.algorithm.sample(key_sample)
            if self.problem.config.seed_uniform:  # every uniform genome, random rows
                population = jnp.asarray(seeding.seed_problem(self.problem, population))
        empty = Archive.empty(self.problem.space.n_genes)
        pstate, archive, fitness, _, reliable = self._score(start, empty, population, 0)
        strategy = self.algorithm.init(
            key_init, population, self._told(fitness, reliable), *extra
        )
        seconds = time.perf_counter() - t0
        n_asked = len(population)
        row = self._row(pstate, archive, 0, n_asked, seconds)
        if stage_seconds is not None:  # its genomes were scored before the rest
            row["sensitivity_seconds"] = stage_seconds
        return SearchState(strategy, pstate, archive, 0, n_asked, (row,), seconds)

    def step(self, state: SearchState) -> SearchState:
        """``state`` after one more generation (ask, score, tell)."""
        t0 = time.perf_counter()
        generation = state.generation + 1
        key_ask, key_tell = nsga2.generation_keys(self.key, generation)
        genomes, strategy = self.algorithm.ask(key_ask, state.strategy)
        pstate, archive, fitness, changed, reliable = self._score(
            state.problem, state.archive, genomes, generation
        )
        if changed and self.algorithm.rescore is not None:
            # Beacons made in this generation re-score the kept genomes too.
            def score(kept):
                nonlocal pstate
                pstate, results = self.problem.evaluate(pstate, np.asarray(kept))
                return self.problem.fitness(results)

            strategy = self.algorithm.rescore(strategy, score)
        told = self._told(fitness, reliable)
        strategy = self.algorithm.tell(key_tell, genomes, told, strategy)
        elapsed = time.perf_counter() - t0
        n_asked = state.n_asked + len(genomes)
        row = self._row(pstate, archive, generation, n_asked, state.seconds + elapsed)
        row["evals_per_s"] = len(genomes) / max(elapsed, 1e-9)
        return SearchState(
            strategy,
            pstate,
            archive,
            generation,
            n_asked,
            state.history + (row,),
            row["seconds"],
        )

    def _score(self, pstate, archive, genomes, generation):
        """Scores the asked ``genomes`` within the budget and applies the problem's
        policy (beacons). Returns ``(problem state, archive, fitness, changed,
        reliable)``; ``reliable``: per genome, scored in full (not unscored for the
        budget, not a raced genome's partial estimate)."""
        problem, budget = self.problem, self.algorithm.budget
        genomes = np.asarray(genomes, np.int32)
        keys = [g.tobytes() for g in genomes]
        known = archive.keys()
        new = [k for k in dict.fromkeys(keys) if k not in known]
        if budget is not None:
            new = new[: max(budget - len(archive), 0)]
        if new:
            fresh = np.stack([np.frombuffer(k, np.int32) for k in new])
            pstate, _ = problem.evaluate(pstate, fresh)
            archive = archive.add(fresh, generation)
        scored = known | set(new)
        rows = np.asarray([k in scored for k in keys])
        pstate, results = problem.evaluate(pstate, genomes[rows])
        updated = problem.update(pstate, genomes[rows], results)
        changed = problem.changed(pstate, updated)
        if changed:
            updated, results = problem.evaluate(updated, genomes[rows])
        fitness = problem.fitness(results)
        # a full measurement: scored, and not a raced genome's partial estimate
        reliable = np.zeros(len(genomes), bool)
        partial = np.asarray(results.get("error_partial", np.zeros(rows.sum())))
        reliable[rows] = partial == 0
        if not rows.all():  # unscored: the budget is spent
            index = jnp.asarray(np.flatnonzero(rows))
            fitness = tuple(
                jnp.full((len(genomes), part.shape[1]), jnp.inf).at[index].set(part)
                for part in fitness
            )
        return updated, archive, fitness, changed, reliable

    def _told(self, fitness, reliable):
        """What the algorithm's init/tell gets: the fitness, and with the surrogate
        which of its rows are full measurements (the model fits those only)."""
        if self.assisted is None:
            return fitness
        return (*fitness, jnp.asarray(reliable))

    def done(self, state: SearchState) -> bool:
        """Whether the search has run its generations or spent its budget."""
        if state.generation >= self.algorithm.max_generations:
            return True
        budget = self.algorithm.budget
        return budget is not None and len(state.archive) >= budget

    def total(self) -> int:
        """Distinct genomes a whole search scores, unless the space runs out."""
        budget = self.algorithm.budget
        return budget if budget is not None else default_budget(self.problem.config)

    def result(self, state: SearchState, resumed: bool = False) -> SearchResult:
        """The archive of ``state`` with its metrics, feasibility and front."""
        return archive_result(
            self.problem,
            state.problem,
            state.archive.genomes,
            state.archive.generation,
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
            "algorithm": self.name,
            "generation": state.generation,
            "n_asked": state.n_asked,
            "history": list(state.history),
            "seconds": state.seconds,
            "search_config": problem.config.to_dict(),
            "space": problem.space.name,
            "gene_names": list(problem.space.gene_names),
            "cache_names": names,
            "n_evaluated": pstate.n_evaluated,
            "identity": self.identity,
        }
        tree = {
            "state": state.strategy,
            "cache": cache,
            "archive": {
                "genomes": state.archive.genomes,
                "generation": state.archive.generation,
            },
        }
        if extra is not None:
            tree["extra"] = extra
        checkpoint.save(path, tree, meta)

    def load(self, path) -> SearchState:
        """The state saved at ``path`` (same algorithm, settings and genome space, or
        an error)."""
        problem = self.problem
        meta = checkpoint.read_meta(path)
        checkpoint.check_identity(meta.get("identity"), self.identity, path)
        checkpoint.check_compatible(
            {
                "search_config": meta["search_config"],
                "space": {"name": meta["space"]},
                "algorithm": {"name": meta.get("algorithm", "nsga2")},
            },
            {
                "search_config": problem.config.to_dict(),
                "space": {"name": problem.space.name},
                "algorithm": {"name": self.name},
            },
            path,
        )
        empty = np.zeros(0)
        template = {
            "state": self._state_template(),
            "cache": {"genomes": empty, "values": empty},
            "archive": {"genomes": empty, "generation": empty},
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
        archive = Archive(
            np.asarray(saved["archive"]["genomes"], np.int32).reshape(
                -1, problem.space.n_genes
            ),
            np.asarray(saved["archive"]["generation"], np.int32),
        )
        return SearchState(
            jax.tree.map(jnp.asarray, saved["state"]),
            pstate,
            archive,
            int(meta["generation"]),
            int(meta["n_asked"]),
            tuple(meta["history"]),
            float(meta["seconds"]),
        )

    def _state_template(self):
        """A state of the algorithm's structure (what a checkpoint restores into):
        ``init`` of an all-zero population (run once, on resume only; the
        algorithms' compiled steps cannot be traced by ``jax.eval_shape``)."""
        key = jax.random.key(0)
        n_obj = len(self.problem.config.objectives)
        population = jnp.zeros_like(self.algorithm.sample(key))
        n = population.shape[0]
        fitness = (jnp.zeros((n, n_obj)), jnp.zeros((n, N_CONSTRAINTS)))
        state = self.algorithm.init(
            key, population, self._told(fitness, np.ones(n, bool))
        )
        return jax.tree.map(np.asarray, state)

    def _row(self, pstate, archive, generation: int, n_asked: int, seconds: float):
        """One history row: the distinct genomes scored so far, their feasible ones,
        the best feasible error and the hypervolume of the feasible front."""
        problem = self.problem
        results = pstate.scores.lookup(archive.genomes)
        objectives, constraints = problem.fitness(results)
        feasible = np.asarray(pareto.total_violation(constraints)) <= 0
        errors = np.asarray(results["error"])
        # padded to a power of two: the hypervolume compiles a few times, not per row
        size = max(64, 1 << (len(archive) - 1).bit_length())
        padded = np.full((size, objectives.shape[1]), np.inf, np.float32)
        padded[: len(archive)] = np.asarray(objectives)
        mask = np.zeros(size, bool)
        mask[: len(archive)] = feasible
        ref = jnp.ones(objectives.shape[1], jnp.float32)
        hv = hypervolume.hypervolume(jnp.asarray(padded), ref, jnp.asarray(mask))
        return {
            "generation": generation,
            "n_evaluations": int(n_asked),
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
    algorithm: str = "nsga2",
    problem_state: ProblemState | None = None,
    assist: bool = True,
) -> SearchResult:
    """Runs (or resumes) a search of ``problem`` by a registered algorithm.

    Args:
      problem: the scored problem (its ``config`` gives sizes, seed, budget).
      out_dir: folder for the per-generation checkpoint (``search_state.msgpack``);
        None = no checkpoint.
      resume: continue from the checkpoint in ``out_dir`` if there is one (it must have
        been written by the same algorithm, search settings and genome space).
      progress: show a progress bar (best error, hypervolume, evaluations/s).
      stop_after: stop after this generation (to simulate a crash in tests).
      algorithm: a name in :data:`~mohaq_jax.search.algorithms.ALGORITHMS`.
      problem_state, assist: see :class:`Searcher`.

    Returns:
      :class:`SearchResult` (its ``state``: the problem's final state).
    """
    searcher = Searcher(problem, algorithm, problem_state, assist)
    path = None if out_dir is None else os.path.join(os.fspath(out_dir), STATE_FILE)
    resumed = resume and path is not None and os.path.exists(path)
    if resumed:
        state = searcher.load(path)
    else:
        state = searcher.init()
        if path is not None:
            searcher.save(path, state)
    bar = tqdm(
        total=searcher.total(),
        initial=len(state.archive),
        desc=f"{algorithm} {problem.space.name}",
        unit="genome",
        disable=not progress,
        dynamic_ncols=True,
    )
    _postfix(bar, state.history[-1])
    while not searcher.done(state):
        before = len(state.archive)
        state = searcher.step(state)
        if path is not None:
            searcher.save(path, state)
        bar.update(len(state.archive) - before)
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
