"""MOEA/D over integer genomes: multi-objective search by decomposition.

Zhang & Li, "MOEA/D: A Multiobjective Evolutionary Algorithm Based on Decomposition",
IEEE TEVC 2007. The front is split into ``pop_size`` scalar subproblems, one weight
vector each; subproblem ``i`` keeps one genome and minimizes the Tchebycheff distance
``max_k w_ik |f_k - z_k|`` to the ideal point ``z`` (the smallest objectives seen).
A child is bred from parents in the subproblem's neighbourhood (its ``T`` nearest
weight vectors) and replaces every neighbour it beats. **Objectives are minimized**;
constraints enter by Deb's rule: a neighbour is beaten when the child's total
violation is smaller, or equal and its Tchebycheff distance smaller.

Deliberate differences from the paper and from pymoo's ``MOEAD``, for fixed shapes and
MOHAQ's budget:

  * Each generation breeds ``n_offspring`` children (MOHAQ: 10) for the next
    ``n_offspring`` subproblems in turn (round robin), not one child per subproblem.
  * Weights: the Das-Dennis lattice with the fewest points at least ``pop_size``,
    thinned evenly to ``pop_size`` (pymoo requires the lattice size itself); a zero
    weight counts as ``1e-6``.
  * Variation is NSGA-II's integer SBX + polynomial mutation with MOHAQ's settings
    (:mod:`mohaq_jax.search.variation`), first child kept; parents from the
    neighbourhood with probability 0.9, else from the whole population (pymoo's
    ``prob_neighbor_mating``); replacement always within the neighbourhood.
  * No duplicate elimination: a genome asked again is looked up by the driver, and
    the budget counts distinct genomes.

Pure functions over a :class:`State` (fixed shapes, jittable); :func:`make` gives the
search driver's :class:`~mohaq_jax.search.algorithm.Algorithm`.
"""

from __future__ import annotations

import itertools

import jax
import jax.numpy as jnp
import numpy as np
from flax import struct

from mohaq_jax.search import compilation
from mohaq_jax.search.algorithm import Algorithm, default_budget
from mohaq_jax.search.nsga2 import NSGA2
from mohaq_jax.search.pareto import split_fitness
from mohaq_jax.search.variation import (
    _polynomial_mutation,
    _round_levels,
    _sbx,
    _uniform_levels,
)

__all__ = ["State", "make", "neighbours", "replace", "tchebycheff", "weights"]

NEIGHBOUR_MATING_PROB = 0.9  # pymoo's prob_neighbor_mating


@struct.dataclass
class State:
    """One genome per subproblem, its fitness, the ideal point and the turn."""

    population: jax.Array  # shape=(pop, n_genes) int32, genome of subproblem i
    objectives: jax.Array  # shape=(pop, n_obj) float32, minimized
    violation: jax.Array  # shape=(pop,) float32, 0 when feasible
    ideal: jax.Array  # shape=(n_obj,) float32, smallest objectives seen
    turn: jax.Array  # shape=() int32, first subproblem of the next generation


def weights(pop_size: int, n_obj: int) -> np.ndarray:
    """``(pop_size, n_obj)`` weight vectors on the simplex (see the module notes)."""
    divisions = 1
    while _lattice_size(divisions, n_obj) < pop_size:
        divisions += 1
    lattice = np.asarray(
        [
            combo
            for combo in itertools.product(range(divisions + 1), repeat=n_obj)
            if sum(combo) == divisions
        ],
        np.float64,
    )
    keep = np.round(np.linspace(0, len(lattice) - 1, pop_size)).astype(int)
    return np.maximum(lattice[keep] / divisions, 1e-6).astype(np.float32)


def _lattice_size(divisions: int, n_obj: int) -> int:
    return int(np.round(np.prod([(divisions + k) / k for k in range(1, n_obj)])))


def neighbours(weight_vectors: np.ndarray, size: int) -> np.ndarray:
    """int32 ``(pop, size)``: each weight vector's ``size`` nearest (itself first)."""
    diff = weight_vectors[:, None, :] - weight_vectors[None, :, :]
    distance = np.sqrt(np.sum(diff.astype(np.float64) ** 2, axis=-1))
    return np.argsort(distance, axis=1, kind="stable")[:, :size].astype(np.int32)


def tchebycheff(objectives: jax.Array, weight: jax.Array, ideal: jax.Array):
    """``max_k weight_k * |objectives_k - ideal_k|`` over the last axis."""
    distance = jnp.abs(objectives - jnp.broadcast_to(ideal, objectives.shape))
    return jnp.max(weight * distance, axis=-1)


def replace(
    state: State,
    subproblems: jax.Array,
    objectives: jax.Array,
    violation: jax.Array,
    genomes: jax.Array,
    weight_vectors: jax.Array,
    neighbourhoods: jax.Array,
) -> State:
    """Selection: children in order, each replacing the neighbours it beats.

    Args:
      state: before the generation.
      subproblems: int32 ``(n,)``, the subproblem each child was bred for.
      objectives, violation: the children's fitness ``(n, n_obj)``, ``(n,)``.
      genomes: int32 ``(n, n_genes)`` the children.
      weight_vectors: ``(pop, n_obj)``; neighbourhoods: int32 ``(pop, T)``.

    Returns:
      the state with the ideal point lowered by the children first, then each child
      (in order) copied over every neighbour ``j`` of its subproblem where
      ``(violation, tchebycheff_j)`` of the child is lexicographically smaller.
    """
    finite = jnp.where(jnp.isfinite(objectives), objectives, jnp.inf)
    ideal = jnp.minimum(state.ideal, jnp.min(finite, axis=0))

    def one_child(c, carry):
        population, current, current_violation = carry
        hood = neighbourhoods[subproblems[c]]
        w = weight_vectors[hood]
        child = tchebycheff(objectives[c][None], w, ideal)
        kept = tchebycheff(current[hood], w, ideal)
        v_child, v_kept = violation[c], current_violation[hood]
        better = (v_child < v_kept) | ((v_child == v_kept) & (child < kept))
        population = population.at[hood].set(
            jnp.where(better[:, None], genomes[c][None], population[hood])
        )
        current = current.at[hood].set(
            jnp.where(better[:, None], objectives[c][None], current[hood])
        )
        current_violation = current_violation.at[hood].set(
            jnp.where(better, v_child, v_kept)
        )
        return population, current, current_violation

    population, current, current_violation = jax.lax.fori_loop(
        0,
        genomes.shape[0],
        one_child,
        (state.population, state.objectives, state.violation),
    )
    return state.replace(
        population=population,
        objectives=current,
        violation=current_violation,
        ideal=ideal,
    )


def make(config, upper) -> Algorithm:
    """MOEA/D for the search driver: ``config.pop_size`` subproblems,
    ``config.n_offspring`` children per generation, neighbourhoods of a quarter of
    the population (at least 2), :func:`~mohaq_jax.search.algorithm.default_budget`
    distinct genomes (at most ``20 * budget`` generations)."""
    upper_int = np.asarray(upper, np.int32)
    upper_f = jnp.asarray(upper_int, jnp.float32)
    pop, n_children = config.pop_size, config.n_offspring
    weight_vectors = jnp.asarray(weights(pop, len(config.objectives)))
    neighbourhoods = jnp.asarray(
        neighbours(np.asarray(weight_vectors), max(2, pop // 4))
    )
    # MOHAQ's SBX and polynomial mutation settings, as NSGA-II's
    params = NSGA2(pop, n_children, upper_int).default_params
    budget = default_budget(config)

    def sample(key):
        return _uniform_levels(key, (pop, upper_int.size), upper_f)

    def init(key, genomes, fitness):
        del key
        objectives, violation = split_fitness(fitness)
        finite = jnp.where(jnp.isfinite(objectives), objectives, jnp.inf)
        return State(
            population=jnp.asarray(genomes, jnp.int32),
            objectives=objectives,
            violation=violation,
            ideal=jnp.min(finite, axis=0),
            turn=jnp.int32(0),
        )

    def subproblems_of(state):
        return (state.turn + jnp.arange(n_children, dtype=jnp.int32)) % pop

    def ask(key, state):
        key_local, key_pick, key_sbx, key_pm = jax.random.split(key, 4)
        hood = neighbourhoods[subproblems_of(state)]
        local = jax.random.uniform(key_local, (n_children, 1)) < NEIGHBOUR_MATING_PROB
        near = jax.random.randint(key_pick, (n_children, 2), 0, hood.shape[1])
        anywhere = jax.random.randint(
            jax.random.fold_in(key_pick, 1), near.shape, 0, pop
        )
        parents = jnp.where(local, jnp.take_along_axis(hood, near, axis=1), anywhere)
        parent_1 = state.population[parents[:, 0]].astype(jnp.float32)
        parent_2 = state.population[parents[:, 1]].astype(jnp.float32)
        child, _ = _sbx(key_sbx, parent_1, parent_2, upper_f, params)
        child = _polynomial_mutation(key_pm, child, upper_f, params)
        return _round_levels(child, upper_f), state

    def tell(key, genomes, fitness, state):
        del key
        objectives, violation = split_fitness(fitness)
        state = replace(
            state,
            subproblems_of(state),
            objectives,
            violation,
            jnp.asarray(genomes, jnp.int32),
            weight_vectors,
            neighbourhoods,
        )
        return state.replace(turn=(state.turn + n_children) % pop)

    def rescore(state, score):
        objectives, violation = split_fitness(score(state.population))
        return state.replace(objectives=objectives, violation=violation)

    return Algorithm(
        sample=compilation.jit_small(sample),
        init=compilation.jit_small(init),
        ask=compilation.jit_small(ask),
        tell=compilation.jit_small(tell),
        max_generations=20 * budget,
        budget=budget,
        rescore=rescore,
    )
