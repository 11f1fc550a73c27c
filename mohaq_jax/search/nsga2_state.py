"""NSGA-II's state, params, key schedule and whole-search loop (:mod:`.nsga2`).

Split from :mod:`mohaq_jax.search.nsga2` (which re-exports every name here): the
evosax-style ``State``/``Params`` (extending evosax 0.3's population-based ones), the
key schedule that :func:`make_run` and the step-by-step MOHAQ driver share, the archive
views, and :func:`make_run`, one ``lax.scan`` over generations. Objectives are
minimized.
"""

from __future__ import annotations

from collections.abc import Callable
from typing import Any

import jax
import jax.numpy as jnp
from evosax.algorithms.population_based import base as evosax_base
from flax import struct

from mohaq_jax.search.pareto import Fitness, pareto_mask

__all__ = [
    "Params",
    "State",
    "archive",
    "archive_front",
    "generation_keys",
    "initial_keys",
    "make_run",
]

# --------------------------------------------------------------------------------------
# State, params, key schedule
# --------------------------------------------------------------------------------------


@struct.dataclass
class Params(evosax_base.Params):
    """Searched-over-free settings; defaults are MOHAQ's (pymoo 0.6 meanings).

    Attributes:
      crossover_prob: probability that a mating recombines at all (SBX ``prob``).
      sbx_eta: SBX distribution index.
      sbx_prob_var: per-gene probability that SBX touches a gene (pymoo ``prob_var``).
      sbx_prob_exchange: per-gene probability that the two children swap the gene
        (pymoo ``prob_bin``).
      uniform_prob: per-gene swap probability of uniform crossover (uniform variant).
      mutation_prob: per-individual probability of mutation (pymoo ``Mutation.prob``).
      mutation_prob_var: per-gene mutation probability (pymoo: min(0.5, 1 / n_genes)).
      mutation_eta: polynomial-mutation distribution index.
      ref_point: float ``(n_obj,)`` reference point for the hypervolume metric, or
        None (hypervolume reported as NaN).
    """

    crossover_prob: jax.Array
    sbx_eta: jax.Array
    sbx_prob_var: jax.Array
    sbx_prob_exchange: jax.Array
    uniform_prob: jax.Array
    mutation_prob: jax.Array
    mutation_prob_var: jax.Array
    mutation_eta: jax.Array
    ref_point: jax.Array | None = None


@struct.dataclass
class State(evosax_base.State):
    """NSGA-II state (evosax's population-based state plus ranks and the archive).

    Inherited: ``population`` (pop, n_genes) int32 survivors, ``fitness`` (pop, n_obj)
    float32 their minimized objectives (alias :attr:`objectives`), ``best_solution``
    (n_genes,), ``best_fitness`` (n_obj,), ``generation_counter`` () int32 tells after
    init. The archive holds every evaluated genome in evaluation order (initial
    population first) up to its capacity; later genomes are not stored
    (``archive_count`` stops at capacity while ``n_evaluations`` keeps counting).
    """

    violation: jax.Array  # shape=(pop,), float32 total constraint violation, 0 feasible
    best_violation: jax.Array  # shape=(), float32 violation of best_solution
    rank: jax.Array  # shape=(pop,), int32 constrained non-dominated rank
    crowding: jax.Array  # shape=(pop,), float32 crowding distance in its front
    archive_genomes: jax.Array  # shape=(capacity, n_genes), int32
    archive_objectives: jax.Array  # shape=(capacity, n_obj), float32
    archive_violation: jax.Array  # shape=(capacity,), float32
    archive_generation: jax.Array  # shape=(capacity,), int32 generation evaluated
    archive_count: jax.Array  # shape=(), int32 filled slots
    # Hash set of the archived genomes' keys (mohaq_jax.search.keyset), for duplicate
    # elimination: slots = keyset.table_size(capacity).
    archive_index: jax.Array  # shape=(slots,), uint32 genome keys
    archive_index_used: jax.Array  # shape=(slots,), bool occupied slots
    n_evaluations: jax.Array  # shape=(), int32 genomes told so far
    n_unique_offspring: jax.Array  # shape=(), int32 unique genomes the last ask found
    n_random_offspring: jax.Array  # shape=(), int32 of them random (mating ran dry)
    n_mating_rounds: jax.Array  # shape=(), int32 matings the last ask drew

    @property
    def objectives(self) -> jax.Array:
        """The population's minimized objectives ``(pop, n_obj)`` (= ``fitness``)."""
        return self.fitness


def initial_keys(key: jax.Array) -> tuple[jax.Array, jax.Array]:
    """``(key_sample, key_init)`` of a search: both from ``fold_in(key, 0)``."""
    key_sample, key_init = jax.random.split(jax.random.fold_in(key, 0))
    return key_sample, key_init


def generation_keys(key: jax.Array, generation) -> tuple[jax.Array, jax.Array]:
    """``(key_ask, key_tell)`` of generation ``generation`` (1-based)."""
    key_ask, key_tell = jax.random.split(jax.random.fold_in(key, generation))
    return key_ask, key_tell


def archive(state: State) -> tuple[jax.Array, jax.Array, jax.Array, jax.Array]:
    """Every evaluated genome: ``(genomes, objectives, violation, valid)``.

    Fixed shapes ``(capacity, ...)``; ``valid`` (bool ``(capacity,)``) marks filled
    slots.
    """
    valid = jnp.arange(state.archive_genomes.shape[0]) < state.archive_count
    return (
        state.archive_genomes,
        state.archive_objectives,
        state.archive_violation,
        valid,
    )


def archive_front(state: State) -> jax.Array:
    """Bool ``(capacity,)``: feasible archive members no feasible member dominates.

    Index :func:`archive`'s arrays with it (outside jit) to get the final Pareto set.
    """
    _, objectives, violation, valid = archive(state)
    return pareto_mask(objectives, valid & (violation <= 0.0))


def _lexicographic_best(violation, objectives):
    """Index of the smallest ``(violation, objectives[0], objectives[1], ...)``; the
    first such index on ties (successive minima: no sort)."""
    candidate = jnp.ones(violation.shape, bool)
    for column in [violation, *(objectives[:, m] for m in range(objectives.shape[1]))]:
        masked = jnp.where(candidate & ~jnp.isnan(column), column, jnp.inf)
        candidate &= masked == jnp.min(masked)
    return jnp.argmax(candidate)


def _lexicographic_less(violation_a, objectives_a, violation_b, objectives_b):
    """Whether ``(violation_a, *objectives_a) < (violation_b, *objectives_b)``."""
    a = jnp.concatenate([violation_a[None], objectives_a])
    b = jnp.concatenate([violation_b[None], objectives_b])
    differs = a != b
    first = jnp.argmax(differs)
    return jnp.any(differs) & (a[first] < b[first])


# --------------------------------------------------------------------------------------
# Whole searches
# --------------------------------------------------------------------------------------


def make_run(
    strategy,  # an NSGA2
    evaluate_fn: Callable[[jax.Array], Fitness],
    n_generations: int,
    params: Params | None = None,
    batched: bool = False,
    jit: bool = True,
) -> Callable[[jax.Array], tuple[State, dict[str, Any]]]:
    """Builds ``run(key) -> (final_state, metrics per generation)``.

    With ``jit=True`` the whole search is one ``lax.scan`` over generations, so
    ``jax.vmap(run)(keys)`` searches several seeds at once. Keys: :func:`initial_keys`
    for the initial sample and init, :func:`generation_keys` for generation ``g``; the
    same key gives the same front.

    Args:
      strategy: a :class:`~mohaq_jax.search.nsga2.NSGA2`.
      evaluate_fn: fitness of one genome (``(n_genes,)`` int32 -> minimized objectives
        ``(n_obj,)`` or ``(objectives, constraints)``), vmapped here; or, with
        ``batched=True``, of a population ``(n, n_genes)``.
      n_generations: generations after the initial population.
      params: :class:`Params`, default ``strategy.default_params``.
      batched: whether ``evaluate_fn`` takes a whole population.
      jit: whether ``evaluate_fn`` is traceable; if False, generations run in a Python
        loop around jitted ``ask``/``tell`` and the metrics are stacked afterwards.

    Returns:
      ``run(key)``; metrics are ``tell``'s, each with a leading ``n_generations`` axis.
    """
    params = strategy.default_params if params is None else params
    evaluate = evaluate_fn if batched else jax.vmap(evaluate_fn)

    def start(key):
        key_sample, key_init = initial_keys(key)
        return key_init, strategy.sample(key_sample)

    def run_scan(key):
        key_init, population = start(key)
        state = strategy.init(key_init, population, evaluate(population), params)

        def generation(state, index):
            key_ask, key_tell = generation_keys(key, index)
            offspring, state = strategy.ask(key_ask, state, params)
            return strategy.tell(
                key_tell, offspring, evaluate(offspring), state, params
            )

        return jax.lax.scan(
            generation, state, jnp.arange(1, n_generations + 1, dtype=jnp.int32)
        )

    if jit:
        return run_scan

    start_jit = jax.jit(start)
    init_jit = jax.jit(strategy.init)
    ask_jit = jax.jit(strategy.ask)
    tell_jit = jax.jit(strategy.tell)

    def run_loop(key):
        key_init, population = start_jit(key)
        state = init_jit(key_init, population, evaluate(population), params)
        history = []
        for index in range(1, n_generations + 1):
            key_ask, key_tell = generation_keys(key, index)
            offspring, state = ask_jit(key_ask, state, params)
            state, metrics = tell_jit(
                key_tell, offspring, evaluate(offspring), state, params
            )
            history.append(metrics)
        return state, jax.tree.map(lambda *xs: jnp.stack(xs), *history)

    return run_loop
