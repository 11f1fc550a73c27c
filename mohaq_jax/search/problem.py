"""A MOHAQ search problem: immutable scoring of genomes, with explicit state.

:class:`QuantizationProblem` holds what never changes during a search (the batched
evaluator, the platform's vmapped cost function, the dev data, the settings and the
normalization points). Everything that does change lives in a :class:`ProblemState`
value (the score cache and, for beacon-based search, the beacons), which the problem's
methods take and return and never mutate:

* :meth:`QuantizationProblem.evaluate` ``(state, genomes) -> (state, results)``: scores
  the genomes the cache lacks, each once, and re-scores cached ones whose score the
  state made stale (a beacon nearer than before).
* :meth:`QuantizationProblem.update` ``(state, genomes, results) -> state``: the search
  policy after a population was scored (beacon-based search retrains beacons there;
  a plain problem returns ``state`` unchanged).
* :meth:`QuantizationProblem.fitness` ``results -> (objectives, constraints)``: pure.

So the driver (:mod:`mohaq_jax.search.mohaq`) is a loop of pure steps over one search
state that it can checkpoint, restore and hand back with the result.
"""

from __future__ import annotations

import dataclasses
from collections.abc import Sequence
from typing import Any

import jax
import jax.numpy as jnp
import numpy as np

from mohaq_jax.evaluation.evaluate import PopulationEvaluator
from mohaq_jax.evaluation.genome import GenomeSpace
from mohaq_jax.search import pareto, score_cache

__all__ = [
    "ERROR_METRICS",
    "ProblemState",
    "QuantizationProblem",
    "SearchConfig",
    "objective_bounds",
]

#: Error metrics the evaluators report (speech: frames; images: classification).
ERROR_METRICS = ("phone_error", "frame_error", "loss", "class_error")


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
    memory_metric: str | None = "memory_mb"  # platform metric the limit bounds
    # "phone_error" | "frame_error" | "loss" | "class_error" (image classification)
    error_metric: str = "phone_error"
    budget: int | None = None  # stop once this many genomes were evaluated
    # racing: stop scoring a genome once it is certain to exceed max_error
    # (PopulationEvaluator.race); its error is then the partial estimate, and its
    # results say so ("error_partial" 1.0) with the dev frames it was scored on
    race: bool = False
    race_confidence: float = 0.95  # of each racing stop (1.0: certain stops only)
    seed_uniform: bool = True  # initial population holds every uniform genome
    surrogate: bool = False  # offspring pre-screened by a surrogate error model
    seed_proxy: bool = False  # initial population from the sensitivity proxy

    def __post_init__(self):
        if self.pop_size < 2 or self.n_offspring < 1 or self.n_generations < 0:
            raise ValueError("need pop_size >= 2, n_offspring >= 1, n_generations >= 0")
        if "error" not in self.objectives:
            raise ValueError("objectives must include 'error'")
        if self.error_metric not in ERROR_METRICS:
            raise ValueError(f"unknown error_metric {self.error_metric!r}")
        if not self.max_error > 0:
            raise ValueError("max_error must be > 0")

    def to_dict(self) -> dict:
        return dataclasses.asdict(self)


@dataclasses.dataclass(frozen=True)
class ProblemState:
    """What scoring changes: the score cache and the problem's own part (beacons)."""

    scores: score_cache.ScoreCache = dataclasses.field(
        default_factory=score_cache.ScoreCache
    )
    extra: Any = None  # problem-specific (BeaconState for beacon-based search)

    @property
    def n_evaluated(self) -> int:
        """Genomes actually run (cache misses)."""
        return self.scores.n_evaluated


class QuantizationProblem:
    """Scores genomes: error on the dev data, hardware costs, constraints.

    Immutable once built: every method is a function of its arguments and of the
    fixed settings below (attributes cannot be reassigned).

    Args:
      evaluator: batched error evaluator (fixed padded population size).
      cost_fn: a platform's cost function of ONE genome (vmapped here).
      batch: the development data errors are measured on (one batch or a streamed
        split).
      config: the search settings (objectives, constraint bounds).
      ideal, nadir: per-objective normalization points, in the minimized convention.
    """

    evaluator: PopulationEvaluator
    space: GenomeSpace  # the evaluator's genome space
    batch: object  # the dev data
    config: SearchConfig
    ideal: np.ndarray  # shape=(n_obj,) float32
    nadir: np.ndarray  # shape=(n_obj,) float32

    def __init__(
        self,
        evaluator: PopulationEvaluator,
        cost_fn,
        batch,
        config: SearchConfig,
        ideal: Sequence[float] | None = None,
        nadir: Sequence[float] | None = None,
    ):
        n_obj = len(config.objectives)
        ideal = np.zeros(n_obj) if ideal is None else ideal
        nadir = np.ones(n_obj) if nadir is None else nadir
        ideal, nadir = np.asarray(ideal, np.float32), np.asarray(nadir, np.float32)
        if ideal.shape != (n_obj,) or nadir.shape != (n_obj,):
            raise ValueError(
                f"ideal and nadir need one value per objective ({n_obj}), got "
                f"{ideal.shape} and {nadir.shape}"
            )
        if np.any(nadir <= ideal):
            raise ValueError(f"nadir {nadir} must exceed ideal {ideal} per objective")
        fields = {
            "evaluator": evaluator,
            "space": evaluator.space,
            "batch": batch,
            "config": config,
            "ideal": ideal,
            "nadir": nadir,
            "_cost": jax.jit(jax.vmap(cost_fn)),
        }
        for name, value in fields.items():
            object.__setattr__(self, name, value)

    def __setattr__(self, name, value):
        raise AttributeError(
            f"{type(self).__name__} is immutable: {name!r} cannot be set; "
            "search state lives in a ProblemState"
        )

    # ---- state -------------------------------------------------------------------
    def initial_state(self) -> ProblemState:
        """The state before any genome was scored."""
        return ProblemState()

    def state_to_tree(self, state: ProblemState):
        """Arrays of ``state.extra`` to checkpoint (None: nothing)."""
        del state
        return None

    def state_meta(self, state: ProblemState) -> dict:
        """JSON-able description of ``state.extra`` for the checkpoint's metadata."""
        del state
        return {}

    def restore_state(self, scores, tree, meta) -> ProblemState:
        """The state a checkpoint holds (``tree``/``meta`` from the two above)."""
        del tree, meta
        return ProblemState(scores)

    # ---- scoring (pure) ----------------------------------------------------------
    def costs(self, genomes) -> dict[str, np.ndarray]:
        """Hardware costs of a population (no error evaluation)."""
        genomes = self.space.validate(genomes)
        return {k: np.asarray(v) for k, v in self._cost(jnp.asarray(genomes)).items()}

    def cost_arrays(self, genomes: jax.Array) -> dict[str, jax.Array]:
        """Hardware costs of a population, traceable (no validation): for jitted
        callers such as surrogate-assisted search."""
        return self._cost(genomes)

    def errors(self, genomes, batch=None) -> dict[str, np.ndarray]:
        """Error metrics of a population on ``batch`` (default: the dev data)."""
        genomes = self.space.validate(genomes)
        size = self.evaluator.genome_batch or len(genomes)
        batch = self.batch if batch is None else batch
        parts = [
            self.evaluator(genomes[i : i + size], batch)
            for i in range(0, len(genomes), size)
        ]
        return {k: np.concatenate([p[k] for p in parts]) for k in parts[0]}

    def evaluate(
        self, state: ProblemState, genomes
    ) -> tuple[ProblemState, dict[str, np.ndarray]]:
        """All metrics of a population, scoring only what ``state`` lacks.

        Returns:
          ``(new state, results)``; results: name -> ``(pop,)`` arrays: ``error`` (the
          configured metric), the evaluator's metrics, and the platform's costs.
        """
        genomes = self.space.validate(genomes)
        scores = score_cache.score(state.scores, genomes, self._score)
        state = dataclasses.replace(state, scores=scores)
        state = self._refresh(state, genomes)
        return state, state.scores.lookup(genomes)

    def update(self, state: ProblemState, genomes, results) -> ProblemState:
        """The search policy after ``genomes`` were scored (here: nothing)."""
        del genomes, results
        return state

    def changed(self, before: ProblemState, after: ProblemState) -> bool:
        """Whether ``after`` may score cached genomes differently than ``before``."""
        del before, after
        return False

    def raced_errors(self, genomes, batch=None) -> dict[str, np.ndarray]:
        """:meth:`errors`, racing against ``max_error`` (see ``SearchConfig.race``).

        Adds ``error_partial`` (1.0: stopped early, its metrics cover the batches it
        was scored on: above ``max_error`` at the racing confidence, or over the
        memory limit, which the cost model knows exactly, after the first batch),
        ``dev_frames`` (the frames, or images, it was scored on) and
        ``dev_frames_full`` (those of the whole split) per genome.
        """
        genomes = self.space.validate(genomes)
        size = self.evaluator.genome_batch or len(genomes)
        batch = self.batch if batch is None else batch
        doomed = self.memory_infeasible(genomes)
        parts = []
        for i in range(0, len(genomes), size):
            race = self.evaluator.race(
                genomes[i : i + size],
                batch,
                self.config.error_metric,
                self.config.max_error,
                confidence=self.config.race_confidence,
                doomed=doomed[i : i + size],
            )
            parts.append(
                {
                    **race.results,
                    "error_partial": (~race.completed).astype(np.float32),
                    "dev_frames": race.units_seen.astype(np.float64),
                    "dev_frames_full": np.full(
                        len(race.completed), race.units_total, np.float64
                    ),
                }
            )
        return {k: np.concatenate([p[k] for p in parts]) for k in parts[0]}

    def memory_infeasible(self, genomes) -> np.ndarray:
        """bool ``(n,)``: over the memory limit (exact: the cost model), so
        infeasible whatever their error."""
        cfg = self.config
        if cfg.memory_limit_mb is None or cfg.memory_metric is None:
            return np.zeros(len(genomes), bool)
        memory = np.asarray(self.costs(genomes)[cfg.memory_metric], np.float32)
        return memory > np.float32(cfg.memory_limit_mb)  # as fitness() compares

    def _score(self, genomes) -> dict[str, np.ndarray]:
        """Metrics of genomes not seen before (the cache stores what this returns)."""
        errors = self.raced_errors if self.config.race else self.errors
        res = {**errors(genomes), **self.costs(genomes)}
        res["error"] = res[self.config.error_metric]
        return res

    def _refresh(self, state: ProblemState, genomes) -> ProblemState:
        """``state`` with stale cached scores of ``genomes`` recomputed."""
        del genomes
        return state

    def fitness(self, results: dict[str, np.ndarray]) -> tuple[jax.Array, jax.Array]:
        """(normalized minimized objectives ``(n, n_obj)``, constraints ``(n, 2)``).

        Constraints (``g <= 0`` satisfied): ``(memory - limit) / limit`` and
        ``(error - max_error) / max_error``, the authors' normalized form.
        """
        cfg = self.config
        raw = pareto.objectives_from(results, cfg.objectives, cfg.maximize)
        objectives = (raw - self.ideal[None]) / (self.nadir - self.ideal)[None]
        error = jnp.asarray(results["error"], jnp.float32)
        g_err = (error - cfg.max_error) / jnp.float32(cfg.max_error)
        if cfg.memory_limit_mb is None or cfg.memory_metric is None:
            g_mem = jnp.zeros_like(error) - 1.0
        else:
            limit = jnp.float32(cfg.memory_limit_mb)
            memory = jnp.asarray(results[cfg.memory_metric], jnp.float32)
            g_mem = (memory - limit) / limit
        return objectives, jnp.stack([g_mem, g_err], axis=1)


def objective_bounds(cost_fn, space, objectives, maximize, max_error):
    """(ideal, nadir) per objective, in the minimized convention: the lowest-bit and
    highest-bit genomes' costs; the error spans 0 to ``max_error``."""
    extremes = np.stack(
        [np.zeros(space.n_genes, np.int32), space.upper.astype(np.int32)]
    )
    costs = {
        k: np.asarray(v) for k, v in jax.vmap(cost_fn)(jnp.asarray(extremes)).items()
    }
    ideal, nadir = [], []
    for name in objectives:
        if name == "error":
            lo, hi = 0.0, max_error
        else:
            vals = -costs[name] if name in maximize else costs[name]
            lo, hi = float(vals.min()), float(vals.max())
            if hi <= lo:
                hi = lo + 1.0
        ideal.append(lo)
        nadir.append(hi)
    return np.asarray(ideal, np.float32), np.asarray(nadir, np.float32)
