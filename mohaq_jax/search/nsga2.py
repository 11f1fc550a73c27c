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
  * Duplicates are eliminated against the whole archive (every genome ever evaluated),
    pymoo only against the current population and the other offspring.
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
"""

from __future__ import annotations

import functools
import math
from collections.abc import Sequence

import jax
import jax.numpy as jnp
import numpy as np
from evosax.algorithms.population_based import base as evosax_base

from mohaq_jax.search import hypervolume as hv
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
    constrained_rank,
    crowding_distance,
    dominates,
    non_dominated_rank,
    objectives_from,
    pareto_mask,
    split_fitness,
    total_violation,
)
from mohaq_jax.search.variation import (
    _code_words,
    _first_occurrence,
    _first_unique,
    _genome_keys,
    _in_sorted,
    _polynomial_mutation,
    _random_reset,
    _round_levels,
    _sbx,
    _sorted_known,
    _uniform,
    _uniform_crossover,
    _uniform_levels,
    seed_words,
    sub_seed,
)

__all__ = [
    "NSGA2",
    "Params",
    "State",
    "archive",
    "archive_front",
    "crowding_distance",
    "dominates",
    "generation_keys",
    "initial_keys",
    "make_run",
    "non_dominated_rank",
    "objectives_from",
    "pareto_mask",
    "split_fitness",
    "total_violation",
]

_constrained_rank = constrained_rank  # the name older code and tests use
_F32_INF = float("inf")


# --------------------------------------------------------------------------------------
# The strategy
# --------------------------------------------------------------------------------------


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
        self._words = _code_words(self.upper)
        # pymoo mates in pairs: ceil(n_offspring / 2) matings give 2 children each.
        self._n_matings = math.ceil(self.n_offspring / 2)

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
            n_evaluations=jnp.int32(0),
            n_unique_offspring=jnp.int32(0),
            n_random_offspring=jnp.int32(0),
            n_mating_rounds=jnp.int32(0),
        )

    # ---- helpers -------------------------------------------------------------------

    def _upper_f(self):
        return jnp.asarray(self.upper, jnp.float32)

    def sample(self, key: jax.Array, n: int | None = None) -> jax.Array:
        """Distinct uniformly random genomes (pymoo ``IntegerRandomSampling`` + dedup).

        Args:
          key: PRNG key.
          n: how many, default ``pop_size``.

        Returns:
          int32 ``(n, n_genes)``; distinct unless the space has fewer than ``n``.
        """
        n = self.pop_size if n is None else n
        pool = _uniform_levels(key, (4 * n, self.n_genes), self._upper_f())
        no_keys = jnp.zeros(1, jnp.uint32)
        chosen, _ = _first_unique(pool, no_keys, jnp.int32(0), n, self._words)
        return chosen

    def _survive(self, key, genomes, objectives, violation):
        ranks = constrained_rank(objectives, violation, self.pop_size)
        crowding = crowding_distance(objectives, ranks)
        crowding = jnp.where(violation <= 0.0, crowding, 0.0)
        tie_break = _uniform(key, violation.shape)
        keep = jnp.lexsort((tie_break, -crowding, ranks))[: self.pop_size]
        return (
            genomes[keep],
            objectives[keep],
            violation[keep],
            ranks[keep],
            crowding[keep],
        )

    def _tournament(self, seed, state: State, n_select: int):
        """pymoo's binary tournament (``comp_by_dom_and_crowding``): winner indices."""
        n_random = 2 * n_select
        n_perms = math.ceil(n_random / self.pop_size)
        draws = _uniform(seed, (n_perms + 1, max(self.pop_size, n_select)))
        # Concatenated random permutations, as pymoo's random_permutations.
        perms = jnp.argsort(draws[:n_perms, : self.pop_size], axis=1).astype(jnp.int32)
        pairs = perms.reshape(-1)[:n_random].reshape(n_select, 2)
        a, b = pairs[:, 0], pairs[:, 1]
        coin = draws[n_perms, :n_select] < 0.5
        v_a, v_b = state.violation[a], state.violation[b]
        f_a, f_b = state.objectives[a], state.objectives[b]
        c_a, c_b = state.crowding[a], state.crowding[b]
        random_pick = jnp.where(coin, a, b)
        by_violation = jnp.where(v_a < v_b, a, jnp.where(v_b < v_a, b, random_pick))
        by_crowding = jnp.where(c_a > c_b, a, jnp.where(c_b > c_a, b, random_pick))
        by_dominance = jnp.where(
            dominates(f_a, f_b), a, jnp.where(dominates(f_b, f_a), b, by_crowding)
        )
        return jnp.where((v_a > 0.0) | (v_b > 0.0), by_violation, by_dominance)

    def _mate(self, seed, state: State, params: Params, n_matings: int):
        """pymoo's mating: tournament, crossover, mutation; ``2 * n_matings`` kids."""
        seed = seed_words(seed)
        seed_select, seed_cross, seed_mut = (sub_seed(seed, i) for i in range(3))
        winners = self._tournament(seed_select, state, 2 * n_matings)
        parents = state.population[winners].reshape(n_matings, 2, self.n_genes)
        parent_1, parent_2 = parents[:, 0], parents[:, 1]
        upper = self._upper_f()
        if self.variation == "sbx_pm":
            child_1, child_2 = _sbx(
                seed_cross,
                parent_1.astype(jnp.float32),
                parent_2.astype(jnp.float32),
                upper,
                params,
            )
            children = _round_levels(jnp.concatenate([child_1, child_2]), upper)
            mutated = _polynomial_mutation(
                seed_mut, children.astype(jnp.float32), upper, params
            )
            return _round_levels(mutated, upper)
        child_1, child_2 = _uniform_crossover(seed_cross, parent_1, parent_2, params)
        return _random_reset(
            seed_mut, jnp.concatenate([child_1, child_2]), upper, params
        )

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
        feasible = state.violation <= 0.0
        front = feasible & (state.rank == 0)
        best = jnp.min(jnp.where(feasible[:, None], state.objectives, _F32_INF), axis=0)
        if params.ref_point is None:
            volume = jnp.float32(jnp.nan)
        else:
            volume = hv.hypervolume(state.objectives, params.ref_point, front)
        return {
            "generation_counter": state.generation_counter,
            "n_evaluations": state.n_evaluations,
            "n_feasible": jnp.sum(feasible, dtype=jnp.int32),
            "n_front": jnp.sum(front, dtype=jnp.int32),
            "best_objectives": best,
            "best_fitness": state.best_fitness,
            "hypervolume": volume,
            "n_unique_offspring": state.n_unique_offspring,
            "n_random_offspring": state.n_random_offspring,
            "n_mating_rounds": state.n_mating_rounds,
        }

    def _store(self, state: State, genomes, objectives, violation) -> State:
        slots = state.archive_count + jnp.arange(genomes.shape[0], dtype=jnp.int32)
        n_stored = jnp.minimum(
            state.archive_count + genomes.shape[0], self.archive_size
        )
        generation = jnp.broadcast_to(state.generation_counter, slots.shape)
        return state.replace(
            archive_genomes=state.archive_genomes.at[slots].set(genomes, mode="drop"),
            archive_objectives=state.archive_objectives.at[slots].set(
                objectives, mode="drop"
            ),
            archive_violation=state.archive_violation.at[slots].set(
                violation, mode="drop"
            ),
            archive_generation=state.archive_generation.at[slots].set(
                generation, mode="drop"
            ),
            archive_count=n_stored.astype(jnp.int32),
            n_evaluations=state.n_evaluations + genomes.shape[0],
        )

    @property
    def _n_mating_iterations(self) -> int:
        return math.ceil(self.max_mating_rounds / self.pool_rounds)

    def _candidates(self, seed, state: State, params: Params, iteration):
        """``pool_rounds`` matings in pymoo's order (round by round, each round's first
        children, then its second); uniformly random genomes once matings are spent."""
        seed = sub_seed(seed, iteration)
        n_candidates = 2 * self.pool_rounds * self._n_matings

        def mated():
            children = self._mate(
                sub_seed(seed, 0), state, params, self.pool_rounds * self._n_matings
            )
            return (
                children.reshape(2, self.pool_rounds, self._n_matings, self.n_genes)
                .transpose(1, 0, 2, 3)
                .reshape(-1, self.n_genes)
            )

        def random():
            shape = (n_candidates, self.n_genes)
            return _uniform_levels(sub_seed(seed, 1), shape, self._upper_f())

        # A branch, not a select: the unused one costs nothing (outside vmap).
        return jax.lax.cond(iteration >= self._n_mating_iterations, random, mated)

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
        state = self._store(state, population, objectives, violation)
        genomes, objectives, violation, rank, crowding = self._survive(
            key, population, objectives, violation
        )
        state = state.replace(
            population=genomes,
            fitness=objectives,
            violation=violation,
            rank=rank,
            crowding=crowding,
        )
        return self._update_best(state)

    def _ask(self, key: jax.Array, state: State, params: Params):
        """Offspring none equal to an archived genome or to each other (see ``ask``).

        Mating is retried, ``pool_rounds`` matings per ``lax.while_loop`` iteration,
        until ``n_offspring`` unique genomes are found or ``max_mating_rounds``
        matings were drawn; then one batch of uniformly random genomes; then
        duplicates fill the rest.
        """
        seed = seed_words(key)
        known_sorted = _sorted_known(
            _genome_keys(state.archive_genomes, self._words), state.archive_count
        )
        n_off, n_iterations = self.n_offspring, self._n_mating_iterations
        n_candidates = 2 * self.pool_rounds * self._n_matings
        slots = jnp.arange(n_off)

        def body(carry):
            iteration, buffer, buffer_keys, n_filled, n_random, _ = carry
            candidates = self._candidates(seed, state, params, iteration)
            keys = _genome_keys(candidates, self._words)
            in_buffer = _in_sorted(keys, _sorted_known(buffer_keys, n_filled), n_filled)
            is_new = _first_occurrence(keys) & ~in_buffer
            is_new &= ~_in_sorted(keys, known_sorted, state.archive_count)
            position = n_filled + jnp.cumsum(is_new, dtype=jnp.int32) - 1
            position = jnp.where(is_new, position, n_off)
            buffer = buffer.at[position].set(candidates, mode="drop")
            buffer_keys = buffer_keys.at[position].set(keys, mode="drop")
            n_added = jnp.minimum(jnp.sum(is_new, dtype=jnp.int32), n_off - n_filled)
            n_random = n_random + jnp.where(iteration >= n_iterations, n_added, 0)
            return (
                iteration + 1,
                buffer,
                buffer_keys,
                n_filled + n_added,
                n_random,
                (candidates),
            )

        def cond(carry):
            iteration, _, _, n_filled, _, _ = carry
            return (n_filled < n_off) & (iteration <= n_iterations)

        start = (
            jnp.int32(0),
            jnp.zeros((n_off, self.n_genes), jnp.int32),
            jnp.zeros(n_off, jnp.uint32),
            jnp.int32(0),
            jnp.int32(0),
            jnp.zeros((n_candidates, self.n_genes), jnp.int32),
        )
        iterations, buffer, _, n_filled, n_random, last = jax.lax.while_loop(
            cond, body, start
        )
        # Too few unique genomes even at random (a nearly exhausted space): the last
        # candidates, all archived or already chosen, fill the remaining slots.
        offspring = jnp.where((slots < n_filled)[:, None], buffer, last[:n_off])
        n_rounds = jnp.minimum(iterations, n_iterations) * self.pool_rounds
        return offspring, state.replace(
            n_unique_offspring=n_filled,
            n_random_offspring=n_random,
            n_mating_rounds=n_rounds.astype(jnp.int32),
        )

    def ask(self, key: jax.Array, state: State, params: Params):
        """Offspring to evaluate, none equal to an archived genome or to each other.

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
        state = self._store(state, population, objectives, violation)
        genomes, objectives, violation, rank, crowding = self._survive(
            key,
            jnp.concatenate([state.population, population]),
            jnp.concatenate([state.fitness, objectives]),
            jnp.concatenate([state.violation, violation]),
        )
        state = state.replace(
            population=genomes,
            fitness=objectives,
            violation=violation,
            rank=rank,
            crowding=crowding,
        )
        return self._update_best(state)

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
