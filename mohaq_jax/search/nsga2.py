"""NSGA-II over integer genomes, as a pure evosax-style strategy.

Deb, Pratap, Agarwal & Meyarivan, "A fast and elitist multiobjective genetic algorithm:
NSGA-II", IEEE TEVC 2002: non-dominated sorting, crowding distance, binary tournament,
(mu + lambda) survival, with Deb's constrained domination (Deb 2000). MOHAQ (Rashed et
al. 2021, Sec. IV-C) runs it through pymoo with population 40, 10 offspring per
generation, integer SBX (p = 1.0, eta = 3), integer polynomial mutation (eta = 3) and
duplicate elimination; those are the defaults here (:attr:`NSGA2.default_params`).

**Every objective is minimized.** Objectives users maximize (speedup, energy saving)
are negated once, where fitness is assembled: :func:`objectives_from`. Constraints
follow pymoo's ``G`` convention: ``g <= 0`` is satisfied, and an individual's total
violation is ``sum(max(g, 0))``.

The interface is evosax's population-based one (``init(key, population, fitness,
params)``, ``ask(key, state, params)``, ``tell(key, population, fitness, state,
params)``), so the strategy drops into any evosax-style loop, and :func:`make_run`
builds a whole search as one ``lax.scan`` that ``jax.vmap`` runs over seeds.

Genomes are integer vectors; gene ``i`` takes the levels ``0..upper[i]``. Variation
mirrors pymoo 0.6's integer recipe (``SBX(vtype=float, repair=RoundingRepair())`` and
``PM(vtype=float, repair=RoundingRepair())``): the operators work on floats in
``[0, upper]`` and children are rounded (half to even, as ``np.around``). A uniform
crossover + random-reset variant is available (``variation="uniform_reset"``).

Shapes are fixed: fronts are integer ranks computed with a dominance matrix and front
peeling in ``lax.while_loop``; duplicate elimination draws an oversized candidate pool
and keeps its first genomes not yet in the archive (an exact sort over packed genome
codes); the archive of every evaluated genome has a fixed capacity and a count.

Differences from pymoo's NSGA-II (all deliberate, see the tests):
  * Duplicates are eliminated against the whole archive (every genome ever evaluated),
    pymoo only against the current population and the other offspring.
  * pymoo re-runs mating up to 100 times to find unique offspring; here the pool is
    ``pool_rounds`` matings plus one batch of uniformly random genomes. If even that
    leaves too few unique genomes, duplicates fill the remaining slots (counted in
    ``State.n_unique_offspring``).
  * Infeasible survivors with equal total violation are ordered at random; pymoo keeps
    them in population order.
"""

from __future__ import annotations

import math
from collections.abc import Callable, Mapping, Sequence
from typing import Any

import jax
import jax.numpy as jnp
import numpy as np
from flax import struct

from mohaq_jax.search import hypervolume as hv

__all__ = [
    "NSGA2",
    "Params",
    "State",
    "archive",
    "archive_front",
    "crowding_distance",
    "dominates",
    "make_run",
    "non_dominated_rank",
    "objectives_from",
    "pareto_mask",
    "split_fitness",
    "total_violation",
]

Fitness = jax.Array | tuple[jax.Array, jax.Array]

_F32_INF = float("inf")


# --------------------------------------------------------------------------------------
# Fitness helpers
# --------------------------------------------------------------------------------------


def objectives_from(
    values: Mapping[str, jax.Array],
    names: Sequence[str],
    maximize: Sequence[str] = (),
) -> jax.Array:
    """Stacks named objectives into the minimized ``(..., n_obj)`` array NSGA-II wants.

    This is the one place maximized objectives are negated: MOHAQ's SiLago search is
    ``objectives_from(m, ("error", "speedup", "energy"), maximize=("speedup",))``.

    Args:
      values: name -> array of shape ``(...)`` (one value per individual).
      names: objective order.
      maximize: names of objectives to maximize; they are negated.

    Returns:
      float32 ``(..., len(names))``, all minimized.
    """
    unknown = set(maximize) - set(names)
    if unknown:
        raise ValueError(
            f"maximize names {sorted(unknown)} are not among {list(names)}"
        )
    columns = [
        jnp.asarray(values[name], jnp.float32) * (-1.0 if name in maximize else 1.0)
        for name in names
    ]
    return jnp.stack(columns, axis=-1)


def total_violation(constraints: jax.Array) -> jax.Array:
    """``sum(max(g, 0))`` over constraints ``(n, n_constr)`` (``g <= 0`` satisfied)."""
    constraints = jnp.asarray(constraints, jnp.float32)
    return jnp.sum(jnp.maximum(constraints, 0.0), axis=-1)


def split_fitness(fitness: Fitness) -> tuple[jax.Array, jax.Array]:
    """Objectives and total violation from either fitness form.

    Args:
      fitness: float ``(n, n_obj)`` minimized objectives, or a tuple ``(objectives (n,
        n_obj), constraints (n, n_constr))`` with ``g <= 0`` meaning satisfied.

    Returns:
      ``(objectives, violation)``: float32 ``(n, n_obj)`` with NaN replaced by ``+inf``
      (a failed evaluation is never preferred), and float32 ``(n,)``, 0 if feasible.
    """
    if isinstance(fitness, tuple | list):
        objectives, constraints = fitness
        violation = total_violation(constraints)
        violation = jnp.where(jnp.isnan(violation), _F32_INF, violation)
    else:
        objectives = fitness
        violation = None
    objectives = jnp.asarray(objectives, jnp.float32)
    if objectives.ndim != 2:
        raise ValueError(f"objectives must be (n, n_obj), got shape {objectives.shape}")
    if violation is None:
        violation = jnp.zeros(objectives.shape[:1], jnp.float32)
    objectives = jnp.where(jnp.isnan(objectives), _F32_INF, objectives)
    return objectives, violation


# --------------------------------------------------------------------------------------
# Sorting and crowding
# --------------------------------------------------------------------------------------


def dominates(objectives_a: jax.Array, objectives_b: jax.Array) -> jax.Array:
    """Pareto dominance, minimization: ``a <= b`` everywhere and ``<`` somewhere."""
    return jnp.all(objectives_a <= objectives_b, axis=-1) & jnp.any(
        objectives_a < objectives_b, axis=-1
    )


def _dominance_matrix(objectives: jax.Array) -> jax.Array:
    """``D[i, j]``: ``i`` Pareto-dominates ``j`` (minimization), ``(n, n)``."""
    n, n_obj = objectives.shape
    # One 2-D comparison per objective: XLA on CPU is ~2x faster than on (n, n, n_obj).
    all_le = jnp.ones((n, n), bool)
    any_lt = jnp.zeros((n, n), bool)
    for m in range(n_obj):
        mine, theirs = objectives[:, None, m], objectives[None, :, m]
        all_le &= mine <= theirs
        any_lt |= mine < theirs
    return all_le & any_lt


def _dense_rank(values: jax.Array, active: jax.Array) -> jax.Array:
    """0-based dense rank of ``values`` among ``active`` entries (ties share)."""
    keys = jnp.where(active, values, _F32_INF)
    order = jnp.argsort(keys, stable=True)
    sorted_keys = keys[order]
    is_new = jnp.concatenate([jnp.ones(1, bool), sorted_keys[1:] != sorted_keys[:-1]])
    level = jnp.cumsum(is_new.astype(jnp.int32)) - 1
    return jnp.zeros_like(level).at[order].set(level)


def _constrained_rank(objectives, violation, n_stop: int) -> jax.Array:
    """Constrained non-dominated ranks, peeling feasible fronts until ``n_stop`` ranked.

    Feasible individuals come first, ranked by Pareto fronts; infeasible ones follow,
    one front per distinct total violation, smaller first (Deb's constrained
    domination). If peeling stops early, the unranked feasible individuals share one
    rank after the last peeled front (enough for survival, which never reaches them).
    """
    n = objectives.shape[0]
    feasible = violation <= 0.0
    dominance = _dominance_matrix(objectives) & feasible[:, None] & feasible[None, :]
    ranks = jnp.full(n, -1, jnp.int32)

    def cond(carry):
        _, ranks, n_ranked = carry
        return (n_ranked < n_stop) & jnp.any(feasible & (ranks < 0))

    def body(carry):
        front_id, ranks, n_ranked = carry
        unranked = ranks < 0
        # Reducing over the leading axis vectorizes over j; on CPU this beats both a
        # dominator-count matvec and bit-packed rows.
        dominated = jnp.any(dominance & unranked[:, None], axis=0)
        front = feasible & unranked & ~dominated
        ranks = jnp.where(front, front_id, ranks)
        return front_id + 1, ranks, n_ranked + jnp.sum(front, dtype=jnp.int32)

    n_fronts, ranks, _ = jax.lax.while_loop(
        cond, body, (jnp.int32(0), ranks, jnp.int32(0))
    )
    leftover = feasible & (ranks < 0)
    ranks = jnp.where(leftover, n_fronts, ranks)
    first_infeasible = n_fronts + jnp.any(leftover).astype(jnp.int32)
    infeasible_rank = first_infeasible + _dense_rank(violation, ~feasible)
    return jnp.where(feasible, ranks, infeasible_rank)


def non_dominated_rank(objectives: jax.Array, violation: jax.Array | None = None):
    """Non-dominated sorting ranks (0 = first front) of minimized objectives.

    Matches pymoo's ``NonDominatedSorting`` fronts (equal points share a front). With a
    ``violation``, Deb's constrained domination: feasible (violation <= 0) first, then
    infeasible by total violation, one front per distinct value, smaller first.

    Args:
      objectives: float ``(n, n_obj)``, minimized.
      violation: optional float ``(n,)`` total constraint violation (0 = feasible).

    Returns:
      int32 ``(n,)`` ranks.
    """
    objectives = jnp.asarray(objectives, jnp.float32)
    n = objectives.shape[0]
    if violation is None:
        violation = jnp.zeros(n, jnp.float32)
    return _constrained_rank(objectives, jnp.asarray(violation, jnp.float32), n)


def crowding_distance(objectives: jax.Array, ranks: jax.Array) -> jax.Array:
    """NSGA-II crowding distance within each front, pymoo's conventions.

    As ``pymoo...rank_and_crowding.metrics.calc_crowding_distance`` applied front by
    front: in each objective the front is sorted (ties by index); the two extreme
    points get ``inf``, others the gap between their neighbours divided by the front's
    range in that objective; an objective with zero range contributes 0 (even to its
    extremes); the sum is divided by ``n_obj``; fronts of one or two points get ``inf``.
    Larger is less crowded.

    Args:
      objectives: float ``(n, n_obj)``.
      ranks: int ``(n,)`` front of each point (as from :func:`non_dominated_rank`).

    Returns:
      float32 ``(n,)``.
    """
    objectives = jnp.asarray(objectives, jnp.float32)
    ranks = jnp.asarray(ranks, jnp.int32)
    n, n_obj = objectives.shape
    index = jnp.arange(n, dtype=jnp.int32)
    segment = jnp.clip(ranks, 0, n)
    front_size = jax.ops.segment_sum(jnp.ones(n, jnp.int32), segment, n + 1)[segment]

    def one_objective(values):
        order = jnp.lexsort((index, values, ranks))
        ranks_s, values_s = ranks[order], values[order]
        same = ranks_s[1:] == ranks_s[:-1]
        gap = values_s[1:] - values_s[:-1]
        to_last = jnp.concatenate(
            [jnp.full(1, _F32_INF), jnp.where(same, gap, _F32_INF)]
        )
        to_next = jnp.concatenate(
            [jnp.where(same, gap, _F32_INF), jnp.full(1, _F32_INF)]
        )
        span = (
            jax.ops.segment_max(values, segment, n + 1)
            - jax.ops.segment_min(values, segment, n + 1)
        )[segment][order]
        has_span = span > 0.0
        contribution = jnp.where(
            has_span, (to_last + to_next) / jnp.where(has_span, span, 1.0), 0.0
        )
        return jnp.zeros(n, jnp.float32).at[order].set(contribution)

    total = jnp.sum(jax.vmap(one_objective, in_axes=1, out_axes=1)(objectives), axis=1)
    return jnp.where(front_size <= 2, _F32_INF, total / n_obj)


def pareto_mask(objectives: jax.Array, mask: jax.Array | None = None) -> jax.Array:
    """Points not dominated by any other (valid) point; minimization.

    Equal points are all kept (pymoo's ``find_non_dominated``). ``O(n^2)`` memory.

    Args:
      objectives: float ``(n, n_obj)``.
      mask: optional bool ``(n,)``; False points neither count nor dominate.

    Returns:
      bool ``(n,)``.
    """
    objectives = jnp.asarray(objectives, jnp.float32)
    valid = (
        jnp.ones(objectives.shape[0], bool) if mask is None else jnp.asarray(mask, bool)
    )
    dominated = jnp.any(_dominance_matrix(objectives) & valid[:, None], axis=0)
    return valid & ~dominated


# --------------------------------------------------------------------------------------
# State, params
# --------------------------------------------------------------------------------------


@struct.dataclass
class Params:
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
class State:
    """NSGA-II state; objectives are minimized.

    The archive holds every evaluated genome in evaluation order (initial population
    first) up to its capacity; later genomes are not stored (``archive_count`` stops at
    capacity while ``n_evaluations`` keeps counting).
    """

    population: jax.Array  # shape=(pop, n_genes), int32 gene levels
    objectives: jax.Array  # shape=(pop, n_obj), float32, minimized
    violation: jax.Array  # shape=(pop,), float32 total constraint violation, 0 feasible
    rank: jax.Array  # shape=(pop,), int32 constrained non-dominated rank
    crowding: jax.Array  # shape=(pop,), float32 crowding distance in its front
    archive_genomes: jax.Array  # shape=(capacity, n_genes), int32
    archive_objectives: jax.Array  # shape=(capacity, n_obj), float32
    archive_violation: jax.Array  # shape=(capacity,), float32
    archive_generation: jax.Array  # shape=(capacity,), int32 generation evaluated
    archive_count: jax.Array  # shape=(), int32 filled slots
    n_evaluations: jax.Array  # shape=(), int32 genomes told so far
    n_unique_offspring: jax.Array  # shape=(), int32 unique genomes the last ask found
    generation_counter: jax.Array  # shape=(), int32 tells after init


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


# --------------------------------------------------------------------------------------
# Variation (pymoo 0.6 integer recipe)
# --------------------------------------------------------------------------------------


def _uniform(key, shape):
    """Uniform [0, 1) floats drawn flat: multi-dimensional draws compile much slower."""
    return jax.random.uniform(key, (math.prod(shape),)).reshape(shape)


def _pow(base, exponent):
    """``base ** exponent`` for ``base >= 0`` as exp(log): a general power op is slow to
    compile on CPU when the exponent is traced (``0 ** p`` gives 0 for ``p > 0``)."""
    return jnp.exp(exponent * jnp.log(base))


def _sbx(key, parent_1, parent_2, upper, params: Params):
    """pymoo ``cross_sbx`` on floats in ``[0, upper]``; both children, unrounded."""
    eps = 1.0e-14
    shape = parent_1.shape
    # One draw for all four uses: each random-bits call compiles its own generator.
    u_var, u_spread, u_exch, u_mating = _uniform(key, (4, *shape))
    cross = u_var < params.sbx_prob_var
    cross &= jnp.abs(parent_1 - parent_2) > eps
    cross &= (upper > 0.0)[None, :]
    smaller = parent_1 < parent_2
    y1 = jnp.minimum(parent_1, parent_2)
    y2 = jnp.maximum(parent_1, parent_2)
    delta = jnp.where(cross, y2 - y1, 1.0)
    rand = u_spread
    eta = params.sbx_eta
    # Both children's spread factors in one stacked array: each power op is costly to
    # compile when eta is traced.
    upper_row = upper[None, :]
    beta = 1.0 + 2.0 * jnp.stack([y1, upper_row - y2]) / delta[None]
    alpha = 2.0 - _pow(beta, -(eta + 1.0))
    rand = rand[None]
    inside = rand <= 1.0 / alpha
    base = jnp.where(
        inside, rand * alpha, 1.0 / jnp.where(inside, 1.0, 2.0 - rand * alpha)
    )
    spread = _pow(base, 1.0 / (eta + 1.0))
    c1 = 0.5 * ((y1 + y2) - spread[0] * delta)
    c2 = 0.5 * ((y1 + y2) + spread[1] * delta)
    child_1 = jnp.where(smaller, c1, c2)
    child_2 = jnp.where(smaller, c2, c1)
    swap = (u_exch < params.sbx_prob_exchange) ^ (parent_1 > parent_2)
    child_1, child_2 = (
        jnp.where(swap, child_2, child_1),
        jnp.where(swap, child_1, child_2),
    )
    child_1 = jnp.clip(jnp.where(cross, child_1, parent_1), 0.0, upper_row)
    child_2 = jnp.clip(jnp.where(cross, child_2, parent_2), 0.0, upper_row)
    # A mating that does not recombine passes its parents through (pymoo Crossover.do).
    mate = u_mating[:, 0] < params.crossover_prob
    child_1 = jnp.where(mate[:, None], child_1, parent_1)
    child_2 = jnp.where(mate[:, None], child_2, parent_2)
    return child_1, child_2


def _polynomial_mutation(key, genomes, upper, params: Params):
    """pymoo ``mut_pm`` + ``Mutation.do`` on floats in ``[0, upper]`` (unrounded)."""
    shape = genomes.shape
    u_ind, u_var, rand = _uniform(key, (3, *shape))
    upper_row = upper[None, :]
    span = jnp.where(upper_row > 0.0, upper_row, 1.0)
    mutate = u_var < params.mutation_prob_var
    mutate &= upper_row > 0.0
    mutate &= u_ind[:, :1] <= params.mutation_prob
    delta_1 = genomes / span
    delta_2 = (upper_row - genomes) / span
    eta = params.mutation_eta
    power = 1.0 / (eta + 1.0)
    low_side = rand <= 0.5
    tail = _pow(jnp.where(low_side, 1.0 - delta_1, 1.0 - delta_2), eta + 1.0)
    val = jnp.where(
        low_side,
        2.0 * rand + (1.0 - 2.0 * rand) * tail,
        2.0 * (1.0 - rand) + 2.0 * (rand - 0.5) * tail,
    )
    root = _pow(val, power)
    delta_q = jnp.where(low_side, root - 1.0, 1.0 - root)
    mutated = jnp.clip(genomes + delta_q * upper_row, 0.0, upper_row)
    return jnp.where(mutate, mutated, genomes)


def _round_levels(genomes, upper):
    return jnp.clip(jnp.round(genomes), 0.0, upper[None, :]).astype(jnp.int32)


def _uniform_levels(key, shape, upper):
    """Uniform integer levels, gene ``i`` in ``0..upper[i]``."""
    draws = jnp.floor(_uniform(key, shape) * (upper + 1.0)[None, :])
    return jnp.minimum(draws, upper[None, :]).astype(jnp.int32)


def _uniform_crossover(key, parent_1, parent_2, params: Params):
    u_swap, u_mating = _uniform(key, (2, *parent_1.shape))
    swap = (u_swap < params.uniform_prob) & (u_mating[:, :1] < params.crossover_prob)
    return jnp.where(swap, parent_2, parent_1), jnp.where(swap, parent_1, parent_2)


def _random_reset(key, genomes, upper, params: Params):
    u_ind, u_var, u_level = _uniform(key, (3, *genomes.shape))
    mutate = (u_var < params.mutation_prob_var) & (u_ind[:, :1] <= params.mutation_prob)
    levels = jnp.minimum(jnp.floor(u_level * (upper + 1.0)[None, :]), upper[None, :])
    return jnp.where(mutate, levels.astype(jnp.int32), genomes)


# --------------------------------------------------------------------------------------
# Duplicate elimination over packed genome codes
# --------------------------------------------------------------------------------------


def _code_words(upper: np.ndarray) -> list[tuple[np.ndarray, np.ndarray]]:
    """Splits genes into chunks whose mixed-radix code fits a uint32 exactly."""
    words, genes, radices, product = [], [], [], 1
    for gene, n_levels in enumerate(np.asarray(upper, np.int64) + 1):
        if product * n_levels > 2**32:
            words.append((np.asarray(genes), np.asarray(radices, np.uint32)))
            genes, radices, product = [], [], 1
        genes.append(gene)
        radices.append(product)
        product *= int(n_levels)
    words.append((np.asarray(genes), np.asarray(radices, np.uint32)))
    return words


# Odd multipliers (from murmur3/xxhash) that mix several code words into one.
_MIX = (0x9E3779B1, 0x85EBCA77, 0xC2B2AE3D, 0x27D4EB2F, 0x165667B1)


def _genome_keys(genomes, words):
    """One uint32 key per genome, ``(n,)``.

    Exact (distinct genomes, distinct keys) when the space has at most 2^32 genomes,
    as both MOHAQ spaces do (SiLago 3^8, Bitfusion 4^16); larger spaces are hashed,
    where a rare collision can only make a new genome look like a duplicate.
    """
    genomes = genomes.astype(jnp.uint32)
    codes = [
        jnp.sum(
            genomes[:, genes] * jnp.asarray(radices)[None, :], axis=1, dtype=jnp.uint32
        )
        for genes, radices in words
    ]
    if len(codes) == 1:
        return codes[0]
    key = jnp.zeros_like(codes[0])
    for w, code in enumerate(codes):
        key = (key ^ (code * jnp.uint32(_MIX[w % len(_MIX)]))) * jnp.uint32(_MIX[-1])
        key = key ^ (key >> jnp.uint32(15))
    return key


def _first_unique(candidates, known_keys, n_known, n_take: int, words):
    """The first ``n_take`` candidates equal to no known genome and no earlier one.

    Args:
      candidates: int32 ``(n_pool, n_genes)`` in preference order.
      known_keys: uint32 ``(capacity,)`` keys (:func:`_genome_keys`) of the genomes to
        avoid; only the first ``n_known`` are filled.
      n_known: int32 scalar.
      n_take: how many to return.

    Returns:
      ``(chosen (n_take, n_genes), n_unique)``; if fewer than ``n_take`` candidates are
      unique, the rest are filled with duplicates, in pool order.
    """
    keys = _genome_keys(candidates, words)
    # Unfilled slots repeat slot 0's key, so they can match nothing new.
    filled = jnp.arange(known_keys.shape[0]) < n_known
    known_sorted = jnp.sort(jnp.where(filled, known_keys, known_keys[0]))
    slot = jnp.clip(jnp.searchsorted(known_sorted, keys), 0, known_keys.shape[0] - 1)
    seen = (known_sorted[slot] == keys) & (n_known > 0)
    # Among equal candidates the stable sort puts the earliest first.
    order = jnp.argsort(keys, stable=True)
    keys_sorted = keys[order]
    first_s = jnp.concatenate([jnp.ones(1, bool), keys_sorted[1:] != keys_sorted[:-1]])
    first = jnp.zeros(keys.shape, bool).at[order].set(first_s)
    is_new = first & ~seen
    chosen = jnp.argsort(~is_new, stable=True)[:n_take]
    return candidates[chosen], jnp.sum(is_new, dtype=jnp.int32)


# --------------------------------------------------------------------------------------
# The strategy
# --------------------------------------------------------------------------------------


class NSGA2:
    """NSGA-II for integer genomes with evosax's ``init``/``ask``/``tell`` interface.

    The object holds only static settings (sizes, gene ranges, operator choice); all of
    its methods are pure functions of their arguments and can be ``jax.jit``-ed or
    ``jax.vmap``-ed. Objectives are minimized.

    Args:
      pop_size: survivors per generation (MOHAQ: 40).
      n_offspring: genomes asked per generation (MOHAQ: 10).
      upper: int ``(n_genes,)``, the largest level of each gene; gene ``i`` takes
        ``0..upper[i]``.
      archive_size: capacity of the archive of evaluated genomes; default holds the
        initial population and 100 generations.
      variation: ``"sbx_pm"`` (integer SBX + polynomial mutation, pymoo's recipe) or
        ``"uniform_reset"`` (uniform crossover + random-reset mutation).
      pool_rounds: matings drawn per ask for duplicate elimination, each giving
        ``n_offspring`` candidates; one batch of random genomes follows them.
    """

    def __init__(
        self,
        pop_size: int,
        n_offspring: int,
        upper: Sequence[int] | np.ndarray,
        archive_size: int | None = None,
        variation: str = "sbx_pm",
        pool_rounds: int = 2,
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
        self.pop_size = int(pop_size)
        self.n_offspring = int(n_offspring)
        self.upper = upper.astype(np.int32)
        self.n_genes = int(upper.size)
        self.archive_size = int(
            archive_size if archive_size is not None else pop_size + 100 * n_offspring
        )
        self.variation = variation
        self.pool_rounds = int(pool_rounds)
        self._words = _code_words(self.upper)
        # pymoo mates in pairs: ceil(n_offspring / 2) matings give 2 children each.
        self._n_matings = math.ceil(self.n_offspring / 2)

    @property
    def default_params(self) -> Params:
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
        ranks = _constrained_rank(objectives, violation, self.pop_size)
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

    def _tournament(self, key, state: State, n_select: int):
        """pymoo's binary tournament (``comp_by_dom_and_crowding``): winner indices."""
        n_random = 2 * n_select
        n_perms = math.ceil(n_random / self.pop_size)
        draws = _uniform(key, (n_perms + 1, max(self.pop_size, n_select)))
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

    def _mate(self, key, state: State, params: Params, n_matings: int):
        """pymoo's mating: tournament, crossover, mutation; ``2 * n_matings`` kids."""
        key_select, key_cross, key_mut = jax.random.split(key, 3)
        winners = self._tournament(key_select, state, 2 * n_matings)
        parents = state.population[winners].reshape(n_matings, 2, self.n_genes)
        parent_1, parent_2 = parents[:, 0], parents[:, 1]
        upper = self._upper_f()
        if self.variation == "sbx_pm":
            child_1, child_2 = _sbx(
                key_cross,
                parent_1.astype(jnp.float32),
                parent_2.astype(jnp.float32),
                upper,
                params,
            )
            children = _round_levels(jnp.concatenate([child_1, child_2]), upper)
            mutated = _polynomial_mutation(
                key_mut, children.astype(jnp.float32), upper, params
            )
            return _round_levels(mutated, upper)
        child_1, child_2 = _uniform_crossover(key_cross, parent_1, parent_2, params)
        return _random_reset(
            key_mut, jnp.concatenate([child_1, child_2]), upper, params
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
            "hypervolume": volume,
            "n_unique_offspring": state.n_unique_offspring,
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

    # ---- the evosax interface -------------------------------------------------------

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
        n_obj = objectives.shape[1]
        capacity = self.archive_size
        state = State(
            population=population,
            objectives=objectives,
            violation=violation,
            rank=jnp.zeros(self.pop_size, jnp.int32),
            crowding=jnp.zeros(self.pop_size, jnp.float32),
            archive_genomes=jnp.zeros((capacity, self.n_genes), jnp.int32),
            archive_objectives=jnp.full((capacity, n_obj), jnp.inf, jnp.float32),
            archive_violation=jnp.zeros(capacity, jnp.float32),
            archive_generation=jnp.full(capacity, -1, jnp.int32),
            archive_count=jnp.int32(0),
            n_evaluations=jnp.int32(0),
            n_unique_offspring=jnp.int32(0),
            generation_counter=jnp.int32(0),
        )
        state = self._store(state, population, objectives, violation)
        genomes, objectives, violation, rank, crowding = self._survive(
            key, population, objectives, violation
        )
        return state.replace(
            population=genomes,
            objectives=objectives,
            violation=violation,
            rank=rank,
            crowding=crowding,
        )

    def ask(self, key: jax.Array, state: State, params: Params):
        """Offspring to evaluate, none equal to an archived genome or to each other.

        Args:
          key: PRNG key.
          state: current :class:`State`.
          params: :class:`Params`.

        Returns:
          ``(offspring, state)``: int32 ``(n_offspring, n_genes)`` and the state with
          ``n_unique_offspring`` set.
        """
        key_mate, key_random = jax.random.split(key)
        # pool_rounds rounds of pymoo's mating drawn as one larger mating, then put in
        # pymoo's order: round by round, each round's first children, then its second.
        candidates = self._mate(
            key_mate, state, params, self.pool_rounds * self._n_matings
        )
        candidates = (
            candidates.reshape(2, self.pool_rounds, self._n_matings, self.n_genes)
            .transpose(1, 0, 2, 3)
            .reshape(-1, self.n_genes)
        )
        fallback = _uniform_levels(
            key_random, (self.n_offspring, self.n_genes), self._upper_f()
        )
        pool = jnp.concatenate([candidates, fallback], axis=0)
        offspring, n_unique = _first_unique(
            pool,
            _genome_keys(state.archive_genomes, self._words),
            state.archive_count,
            self.n_offspring,
            self._words,
        )
        return offspring, state.replace(
            n_unique_offspring=jnp.minimum(n_unique, self.n_offspring)
        )

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
          members, ``inf`` if none), ``hypervolume`` of its feasible first front (NaN
          without ``ref_point``), ``n_unique_offspring``.
        """
        population = jnp.asarray(population, jnp.int32)
        objectives, violation = split_fitness(fitness)
        state = state.replace(generation_counter=state.generation_counter + 1)
        state = self._store(state, population, objectives, violation)
        genomes, objectives, violation, rank, crowding = self._survive(
            key,
            jnp.concatenate([state.population, population]),
            jnp.concatenate([state.objectives, objectives]),
            jnp.concatenate([state.violation, violation]),
        )
        state = state.replace(
            population=genomes,
            objectives=objectives,
            violation=violation,
            rank=rank,
            crowding=crowding,
        )
        return state, self._metrics(state, params)


# --------------------------------------------------------------------------------------
# Whole searches
# --------------------------------------------------------------------------------------


def make_run(
    strategy: NSGA2,
    evaluate_fn: Callable[[jax.Array], Fitness],
    n_generations: int,
    params: Params | None = None,
    batched: bool = False,
    jit: bool = True,
) -> Callable[[jax.Array], tuple[State, dict[str, Any]]]:
    """Builds ``run(key) -> (final_state, metrics per generation)``.

    With ``jit=True`` the whole search is one ``lax.scan`` over generations, so
    ``jax.vmap(run)(keys)`` searches several seeds at once. Keys: the initial sample and
    init use ``fold_in(key, 0)``, generation ``g`` uses ``fold_in(key, g)``; the same
    key gives the same front.

    Args:
      strategy: an :class:`NSGA2`.
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
        key_sample, key_init = jax.random.split(jax.random.fold_in(key, 0))
        population = strategy.sample(key_sample)
        return key_init, population

    def run_scan(key):
        key_init, population = start(key)
        state = strategy.init(key_init, population, evaluate(population), params)

        def generation(state, index):
            key_ask, key_tell = jax.random.split(jax.random.fold_in(key, index))
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
            key_ask, key_tell = jax.random.split(jax.random.fold_in(key, index))
            offspring, state = ask_jit(key_ask, state, params)
            state, metrics = tell_jit(
                key_tell, offspring, evaluate(offspring), state, params
            )
            history.append(metrics)
        return state, jax.tree.map(lambda *xs: jnp.stack(xs), *history)

    return run_loop
