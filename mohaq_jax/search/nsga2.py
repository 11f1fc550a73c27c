"""NSGA-II over integer genomes, as an evosax algorithm with multi-objective fitness.

Deb, Pratap, Agarwal & Meyarivan, "A fast and elitist multiobjective genetic algorithm:
NSGA-II", IEEE TEVC 2002: non-dominated sorting, crowding distance, binary tournament,
(mu + lambda) survival, with Deb's constrained domination (Deb 2000). MOHAQ (Rashed et
al. 2021, Sec. IV-C) runs it through pymoo with population 40, 10 offspring per
generation, integer SBX (p = 1.0, eta = 3), integer polynomial mutation (eta = 3) and
duplicate elimination; those are the defaults here (:attr:`NSGA2.default_params`).

**Every objective is minimized.** Objectives users maximize (speedup, energy saving)
are negated once, where fitness is assembled: :func:`objectives_from`. Constraints
follow pymoo's ``G`` convention: ``g <= 0`` is satisfied, and an individual's total
violation is ``sum(max(g, 0))``. Sorting and crowding live in
:mod:`mohaq_jax.search.pareto`, the operators in :mod:`mohaq_jax.search.variation`.

:class:`NSGA2` subclasses evosax 0.3's ``PopulationBasedAlgorithm`` (its ``State`` and
``Params`` extend evosax's, ``ask``/``_ask`` are evosax's), so it runs wherever an
evosax algorithm runs. evosax assumes scalar fitness ``(population_size,)`` in four
places, which are overridden here for fitness ``(n, n_obj)`` or ``(objectives (n,
n_obj), constraints (n, n_constr))``: ``EvolutionaryAlgorithm.tell`` (its
``update_best_solution_and_fitness`` and default ``metrics_fn`` take ``jnp.argmin`` of
the fitness, which flattens an ``(n, n_obj)`` array into a wrong index, and
``jnp.isnan`` cannot take the tuple form), ``PopulationBasedAlgorithm.init`` (the same
``argmin`` to seed ``best_solution``) and ``get_best_solution`` (``argmin`` of
``state.fitness``). Here ``best_solution`` is the feasible-first, lexicographically
smallest member (objective 0 first) ever kept, and ``best_fitness`` its objectives
``(n_obj,)``. evosax's ``population_size`` is what ``ask`` returns (``n_offspring``);
the survivors are ``pop_size``.

:func:`make_run` builds a whole search as one ``lax.scan`` that ``jax.vmap`` runs over
seeds; its key schedule (:func:`initial_keys`, :func:`generation_keys`) and state
template (:meth:`NSGA2.empty_state`) are public so that step-by-step drivers
(:mod:`mohaq_jax.search.mohaq`) reproduce it exactly.

Differences from pymoo's NSGA-II (all deliberate, see the tests):
  * Duplicates are eliminated against the whole archive (every genome ever evaluated,
    kept in a hash set: :mod:`mohaq_jax.search.keyset`), pymoo only against the current
    population and the other offspring.
  * Like pymoo, mating is retried (up to ``max_mating_rounds`` = 100 matings of
    ``n_offspring`` children) until enough unique offspring exist; under jit this is a
    ``lax.while_loop`` whose iterations each draw ``pool_rounds`` matings at once.
    pymoo then returns fewer offspring; here, so that shapes stay fixed, one batch of
    uniformly random genomes is tried last, and if even that leaves too few unique
    genomes, duplicates fill the remaining slots (counted in
    ``State.n_unique_offspring``; random ones in ``State.n_random_offspring``).
  * Infeasible survivors with equal total violation are ordered at random; pymoo keeps
    them in population order.
  * Random numbers come from a counter-based hash generator
    (:mod:`mohaq_jax.search.variation`), not threefry: same seed, same front.

The generation's pieces live in :mod:`mohaq_jax.search.nsga2_steps`; every sort there
is a ``uint32`` one (:mod:`mohaq_jax.search.ordering`), so a generation of population
1 000 takes about 2 ms on one CPU core (``benchmarks/nsga2.py``).
"""

from __future__ import annotations

import functools
import math
from collections.abc import Sequence

import jax
import jax.numpy as jnp
import numpy as np
from evosax.algorithms.population_based import base as evosax_base

from mohaq_jax.search import compilation, keyset, nsga2_steps
from mohaq_jax.search.algorithm import Algorithm
from mohaq_jax.search.nsga2_state import (
    Params,
    State,
    _lexicographic_best,
    _lexicographic_less,
    archive,
    archive_front,
    generation_keys,
    initial_keys,
    make_run,
)
from mohaq_jax.search.pareto import (
    Fitness,
    split_fitness,
    total_violation,
)
from mohaq_jax.search.variation import (
    _code_words,
    _first_unique,
    _polynomial_mutation,  # noqa: F401 (tests use nsga2._polynomial_mutation)
    _sbx,  # noqa: F401 (tests use nsga2._sbx)
    _uniform_levels,
)

__all__ = [
    "NSGA2",
    "Params",
    "State",
    "archive",
    "archive_front",
    "generation_keys",
    "initial_keys",
    "make",
    "make_run",
]


class NSGA2(evosax_base.PopulationBasedAlgorithm):
    """NSGA-II for integer genomes, an evosax ``PopulationBasedAlgorithm``.

    The object holds only static settings (sizes, gene ranges, operator choice); all of
    its methods are pure functions of their arguments and can be ``jax.jit``-ed or
    ``jax.vmap``-ed. Objectives are minimized.

    Args:
      pop_size: survivors per generation (MOHAQ: 40).
      n_offspring: genomes asked per generation (MOHAQ: 10); evosax's
        ``population_size``.
      upper: int ``(n_genes,)``, the largest level of each gene; gene ``i`` takes
        ``0..upper[i]``.
      archive_size: capacity of the archive of evaluated genomes; default holds the
        initial population and 100 generations.
      variation: ``"sbx_pm"`` (integer SBX + polynomial mutation, pymoo's recipe) or
        ``"uniform_reset"`` (uniform crossover + random-reset mutation).
      pool_rounds: matings drawn at once per retry, each giving ``n_offspring``
        candidates.
      max_mating_rounds: matings tried per ask before random genomes (pymoo: 100);
        ``pool_rounds`` gives the behaviour of earlier versions (random fill at once).
    """

    def __init__(
        self,
        pop_size: int,
        n_offspring: int,
        upper: Sequence[int] | np.ndarray,
        archive_size: int | None = None,
        variation: str = "sbx_pm",
        pool_rounds: int = 2,
        max_mating_rounds: int = 100,
    ):
        upper = np.asarray(upper)
        if upper.ndim != 1 or upper.size == 0 or np.any(upper < 0):
            raise ValueError(
                f"upper must be a non-empty vector of levels >= 0, got {upper}"
            )
        if variation not in ("sbx_pm", "uniform_reset"):
            raise ValueError(f"unknown variation {variation!r}")
        if pop_size < 2 or n_offspring < 1:
            raise ValueError("need pop_size >= 2 and n_offspring >= 1")
        if pool_rounds < 1 or max_mating_rounds < pool_rounds:
            raise ValueError(
                "need pool_rounds >= 1 and max_mating_rounds >= pool_rounds"
            )
        super().__init__(n_offspring, jnp.zeros(upper.size, jnp.int32))
        self.pop_size = int(pop_size)
        self.n_offspring = int(n_offspring)
        self.upper = upper.astype(np.int32)
        self.n_genes = int(upper.size)
        self.archive_size = int(
            archive_size if archive_size is not None else pop_size + 100 * n_offspring
        )
        self.variation = variation
        self.pool_rounds = int(pool_rounds)
        self.max_mating_rounds = int(max_mating_rounds)
        # Genes packed into uint32 code words (duplicate elimination).
        self.code_words = _code_words(self.upper)
        # pymoo mates in pairs: ceil(n_offspring / 2) matings give 2 children each.
        self.n_matings = math.ceil(self.n_offspring / 2)
        # Retries (while_loop iterations) of pool_rounds matings each.
        self.n_mating_iterations = math.ceil(self.max_mating_rounds / self.pool_rounds)

    @property
    def _default_params(self) -> Params:
        """MOHAQ's settings: SBX p = 1.0, eta = 3; PM eta = 3; else pymoo defaults."""
        f32 = lambda x: jnp.asarray(x, jnp.float32)
        return Params(
            crossover_prob=f32(1.0),
            sbx_eta=f32(3.0),
            sbx_prob_var=f32(0.5),
            sbx_prob_exchange=f32(0.5),
            uniform_prob=f32(0.5),
            mutation_prob=f32(0.9),
            mutation_prob_var=f32(min(0.5, 1.0 / self.n_genes)),
            mutation_eta=f32(3.0),
            ref_point=None,
        )

    def empty_state(self, n_obj: int) -> State:
        """A state of the right shapes with an empty archive (a checkpoint template)."""
        pop, genes, cap = self.pop_size, self.n_genes, self.archive_size
        f32, i32 = jnp.float32, jnp.int32
        index, used = keyset.empty(cap)
        return State(
            population=jnp.zeros((pop, genes), i32),
            fitness=jnp.full((pop, n_obj), jnp.inf, f32),
            best_solution=jnp.zeros(genes, i32),
            best_fitness=jnp.full(n_obj, jnp.inf, f32),
            generation_counter=jnp.int32(0),
            violation=jnp.full(pop, jnp.inf, f32),
            best_violation=jnp.float32(jnp.inf),
            rank=jnp.zeros(pop, i32),
            crowding=jnp.zeros(pop, f32),
            archive_genomes=jnp.zeros((cap, genes), i32),
            archive_objectives=jnp.full((cap, n_obj), jnp.inf, f32),
            archive_violation=jnp.zeros(cap, f32),
            archive_generation=jnp.full(cap, -1, i32),
            archive_count=jnp.int32(0),
            archive_index=index,
            archive_index_used=used,
            n_evaluations=jnp.int32(0),
            n_unique_offspring=jnp.int32(0),
            n_random_offspring=jnp.int32(0),
            n_mating_rounds=jnp.int32(0),
        )

    def sample(self, key: jax.Array, n: int | None = None) -> jax.Array:
        """Distinct uniformly random genomes (pymoo ``IntegerRandomSampling`` + dedup).

        Args:
          key: PRNG key.
          n: how many, default ``pop_size``.

        Returns:
          int32 ``(n, n_genes)``; distinct unless the space has fewer than ``n``.
        """
        n = self.pop_size if n is None else n
        upper = jnp.asarray(self.upper, jnp.float32)
        pool = _uniform_levels(key, (4 * n, self.n_genes), upper)
        return _first_unique(pool, n, self.code_words)

    def _survive(self, key, genomes, objectives, violation, state: State) -> State:
        keep, ranks, crowding = nsga2_steps.survival_order(
            key, objectives, violation, self.pop_size
        )
        state = state.replace(
            population=genomes[keep],
            fitness=objectives[keep],
            violation=violation[keep],
            rank=ranks[keep],
            crowding=crowding[keep],
        )
        return self._update_best(state)

    def _update_best(self, state: State) -> State:
        best = _lexicographic_best(state.violation, state.fitness)
        better = _lexicographic_less(
            state.violation[best],
            state.fitness[best],
            state.best_violation,
            state.best_fitness,
        )
        return state.replace(
            best_solution=jnp.where(
                better, state.population[best], state.best_solution
            ),
            best_fitness=jnp.where(better, state.fitness[best], state.best_fitness),
            best_violation=jnp.where(
                better, state.violation[best], state.best_violation
            ),
        )

    def _metrics(self, state: State, params: Params) -> dict[str, jax.Array]:
        return nsga2_steps.metrics(state, params)

    # ---- the evosax interface -------------------------------------------------------

    def _init(self, key: jax.Array, params: Params) -> State:
        """evosax's empty state; needs ``n_obj``, so only ``init`` builds states here."""
        raise NotImplementedError(
            "NSGA2 states come from init(key, population, fitness, params) or "
            "empty_state(n_obj): the number of objectives is not a parameter"
        )

    @functools.partial(jax.jit, static_argnames=("self",))
    def init(
        self, key: jax.Array, population: jax.Array, fitness: Fitness, params: Params
    ):
        """State from an evaluated initial population (e.g. from :meth:`sample`).

        Args:
          key: PRNG key (survival tie-breaks).
          population: int ``(pop_size, n_genes)`` gene levels.
          fitness: minimized objectives ``(pop_size, n_obj)``, or ``(objectives,
            constraints)`` with constraints ``(pop_size, n_constr)``, ``g <= 0``
            satisfied.
          params: :class:`Params`.

        Returns:
          :class:`State` with the population ranked and the archive holding it.
        """
        del params
        population = jnp.asarray(population, jnp.int32)
        objectives, violation = split_fitness(fitness)
        if population.shape != (self.pop_size, self.n_genes):
            raise ValueError(
                f"initial population must be ({self.pop_size}, {self.n_genes}), "
                f"got {population.shape}"
            )
        state = self.empty_state(objectives.shape[1])
        state = nsga2_steps.store(self, state, population, objectives, violation)
        return self._survive(key, population, objectives, violation, state)

    def _ask(self, key: jax.Array, state: State, params: Params):
        """Offspring none equal to an archived genome or to each other (see ``ask``)."""
        offspring, n_unique, n_random, n_rounds = nsga2_steps.unique_offspring(
            self, key, state, params
        )
        return offspring, state.replace(
            n_unique_offspring=n_unique,
            n_random_offspring=n_random,
            n_mating_rounds=n_rounds,
        )

    def ask(self, key: jax.Array, state: State, params: Params):
        """Offspring to evaluate, none equal to an archived genome or to each other.

        Mating is retried, ``pool_rounds`` matings per ``lax.while_loop`` iteration,
        until ``n_offspring`` unique genomes are found or ``max_mating_rounds``
        matings were drawn; then one batch of uniformly random genomes; then
        duplicates fill the rest.

        Args:
          key: PRNG key.
          state: current :class:`State`.
          params: :class:`Params`.

        Returns:
          ``(offspring, state)``: int32 ``(n_offspring, n_genes)`` and the state with
          ``n_unique_offspring``, ``n_random_offspring`` and ``n_mating_rounds`` set.
        """
        return super().ask(key, state, params)

    def _tell(self, key, population, fitness: Fitness, state: State, params: Params):
        del params
        population = jnp.asarray(population, jnp.int32)
        objectives, violation = split_fitness(fitness)
        state = state.replace(generation_counter=state.generation_counter + 1)
        state = nsga2_steps.store(self, state, population, objectives, violation)
        return self._survive(
            key,
            jnp.concatenate([state.population, population]),
            jnp.concatenate([state.fitness, objectives]),
            jnp.concatenate([state.violation, violation]),
            state,
        )

    @functools.partial(jax.jit, static_argnames=("self",))
    def tell(
        self,
        key: jax.Array,
        population: jax.Array,
        fitness: Fitness,
        state: State,
        params: Params,
    ):
        """Archives the evaluated offspring and keeps the best ``pop_size`` of all.

        Survival is NSGA-II's: constrained rank first, then larger crowding distance,
        remaining ties at random.

        Args:
          key: PRNG key.
          population: int ``(n_offspring, n_genes)`` as returned by :meth:`ask`.
          fitness: minimized objectives ``(n_offspring, n_obj)``, or ``(objectives,
            constraints)``, ``g <= 0`` satisfied.
          state: current :class:`State`.
          params: :class:`Params`; ``ref_point`` enables the hypervolume metric.

        Returns:
          ``(state, metrics)``; metrics: ``generation_counter``, ``n_evaluations``,
          ``n_feasible`` and ``n_front`` (feasible first-front size) of the new
          population, ``best_objectives`` (``(n_obj,)`` minimum over its feasible
          members, ``inf`` if none), ``best_fitness`` (``State.best_fitness``),
          ``hypervolume`` of its feasible first front (NaN without ``ref_point``),
          ``n_unique_offspring``, ``n_random_offspring``, ``n_mating_rounds``.
        """
        state = self._tell(key, population, fitness, state, params)
        return state, self._metrics(state, params)

    def get_best_solution(self, state: State) -> jax.Array:
        """``best_solution``: feasible first, then smallest objectives in order."""
        return state.best_solution


def make(config, upper) -> Algorithm:
    """NSGA-II for the search driver: MOHAQ's population ``config.pop_size``,
    ``config.n_offspring`` per generation for ``config.n_generations`` generations
    (stopping earlier once ``config.budget`` genomes were scored, when set); the
    hypervolume metric against the reference point ``(1, ..., 1)`` of normalized
    objectives. Its steps take milliseconds next to the evaluation, so they are
    compiled cheaply (:func:`~mohaq_jax.search.compilation.jit_small`)."""
    strategy = NSGA2(
        config.pop_size,
        config.n_offspring,
        upper,
        archive_size=config.pop_size + config.n_generations * config.n_offspring,
    )
    params = strategy.default_params.replace(
        ref_point=jnp.ones(len(config.objectives), jnp.float32)
    )
    init = compilation.jit_small(strategy.init)
    ask = compilation.jit_small(strategy.ask)
    tell = compilation.jit_small(strategy.tell)

    def rescore(state: State, score) -> State:
        objectives, constraints = score(state.population)
        return state.replace(fitness=objectives, violation=total_violation(constraints))

    return Algorithm(
        sample=compilation.jit_small(strategy.sample),
        init=lambda key, genomes, fitness: init(key, genomes, fitness, params),
        ask=lambda key, state: ask(key, state, params),
        tell=lambda key, genomes, fitness, state: tell(
            key, genomes, fitness, state, params
        )[0],
        max_generations=config.n_generations,
        budget=config.budget,
        rescore=rescore,
    )
