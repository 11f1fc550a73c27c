"""The pieces of an NSGA-II generation (:class:`~mohaq_jax.search.nsga2.NSGA2`).

Split from :mod:`mohaq_jax.search.nsga2`: survival (constrained rank, crowding, random
tie-breaks), pymoo's binary tournament and mating, the retried search for unique
offspring, and the archive. Each function takes the strategy (static sizes and settings)
and arrays; all are pure and traceable. Objectives are minimized.

Speed on a CPU (``benchmarks/nsga2.py``): no float, multi-operand or lexicographic sort
(each order is a ``uint32`` sort, :mod:`mohaq_jax.search.ordering`), duplicate
elimination against a hash set of the archive (:mod:`mohaq_jax.search.keyset`) instead
of sorting the archive, and bit-packed front peeling (:mod:`mohaq_jax.search.pareto`).
"""

from __future__ import annotations

import math

import jax
import jax.numpy as jnp

from mohaq_jax.search import hypervolume as hv
from mohaq_jax.search import keyset, ordering
from mohaq_jax.search.nsga2_state import Params, State
from mohaq_jax.search.pareto import (
    constrained_rank,
    crowding_distance,
    dominates,
    value_positions,
)
from mohaq_jax.search.variation import (
    _bits,
    _genome_keys,
    _random_reset,
    _sbx_pm_rows,
    _uniform_crossover,
    _uniform_levels,
    seed_words,
    sub_seed,
)

_U32 = jnp.uint32
_F32_INF = float("inf")


def survival_order(key, objectives, violation, n_keep: int):
    """NSGA-II survival: indices of the best ``n_keep``, with their ranks and crowding.

    Order: constrained rank, then larger crowding distance (0 for infeasible
    individuals), remaining ties at random.

    Args:
      key: PRNG key or hash-generator seed (tie-breaks).
      objectives: float32 ``(n, n_obj)``, minimized.
      violation: float32 ``(n,)`` total violation.
      n_keep: survivors.

    Returns:
      ``(keep int32 (n_keep,), ranks int32 (n,), crowding float32 (n,))``.
    """
    n = violation.shape[0]
    positions = value_positions(objectives) if n > ordering.SMALL else None
    ranks = constrained_rank(objectives, violation, n_keep, positions)
    crowding = crowding_distance(objectives, ranks, positions)
    crowding = jnp.where(violation <= 0.0, crowding, 0.0)
    # The 24 bits of a uniform float (_uniform), as tie-breaks.
    tie_break = _bits(seed_words(key), n) >> _U32(8)
    bits = ordering.index_bits(n)
    if 2 * bits + 1 > 32:  # ranks and crowding positions no longer share a uint32
        keep = jnp.lexsort((tie_break, -crowding, ranks))
        return keep[:n_keep].astype(jnp.int32), ranks, crowding
    # Random tie-breaks: a stable sort of randomly shuffled individuals.
    shuffle = ordering.random_permutation(tie_break, key_bits=24)
    crowded = ordering.positions(~ordering.float_key(crowding))
    rank_bits = jnp.clip(ranks, 0, n).astype(_U32)
    low = _U32((1 << bits) - 1)

    def one_sort():  # (rank, crowding position, place in the shuffle) in one uint32
        place = ordering.inverse_permutation(shuffle).astype(_U32)
        key = (rank_bits << _U32(2 * bits)) | (crowded << _U32(bits)) | place
        return shuffle[(jnp.sort(key) & low).astype(jnp.int32)]

    def stable():
        primary = (rank_bits << _U32(bits)) | crowded
        return shuffle[ordering.stable_order(primary[shuffle])]

    if n <= ordering.SMALL or 3 * bits > 32:
        keep = stable()
    elif ordering.index_bits(n + 1) + 2 * bits <= 32:  # every rank 0..n fits
        keep = one_sort()
    else:
        keep = jax.lax.cond(jnp.max(ranks) < (1 << (32 - 2 * bits)), one_sort, stable)
    return keep[:n_keep], ranks, crowding


def tournament(strategy, seed, state: State, n_select: int):
    """pymoo's binary tournament (``comp_by_dom_and_crowding``): winner indices."""
    pop_size = strategy.pop_size
    n_random = 2 * n_select
    n_perms = math.ceil(n_random / pop_size)
    # The 24 bits of uniform floats (_uniform): rows of permutation keys, then coins.
    width = max(pop_size, n_select)
    draws = (_bits(seed, (n_perms + 1) * width) >> _U32(8)).reshape(n_perms + 1, width)
    # Concatenated random permutations, as pymoo's random_permutations.
    perms = ordering.random_permutation(draws[:n_perms, :pop_size], key_bits=24)
    pairs = perms.reshape(-1)[:n_random].reshape(n_select, 2)
    a, b = pairs[:, 0], pairs[:, 1]
    coin = draws[n_perms, :n_select] < _U32(1 << 23)
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


def mate(strategy, seed, state: State, params: Params, n_rounds: int):
    """pymoo's mating, ``n_rounds`` times: tournament, crossover, mutation.

    Returns:
      int32 ``(2 * n_rounds * n_matings, n_genes)`` children in pymoo's order: round by
      round, each round's first children, then its second.
    """
    seed = seed_words(seed)
    seed_select, seed_cross, seed_mut = (sub_seed(seed, i) for i in range(3))
    n_matings, n_genes = strategy.n_matings, strategy.n_genes
    total = n_rounds * n_matings
    winners = tournament(strategy, seed_select, state, 2 * total)
    upper = jnp.asarray(strategy.upper, jnp.float32)
    if strategy.variation == "sbx_pm":
        row = jnp.arange(2 * total, dtype=jnp.int32)
        second = (row // n_matings) % 2 == 1
        mating = (row // (2 * n_matings)) * n_matings + row % n_matings
        parent_1 = state.population[winners[2 * mating]]
        parent_2 = state.population[winners[2 * mating + 1]]
        return _sbx_pm_rows(
            (seed_cross, seed_mut),
            parent_1,
            parent_2,
            second,
            mating,
            total,
            upper,
            params,
        )
    parents = state.population[winners].reshape(total, 2, n_genes)
    child_1, child_2 = _uniform_crossover(
        seed_cross, parents[:, 0], parents[:, 1], params
    )
    children = _random_reset(
        seed_mut, jnp.concatenate([child_1, child_2]), upper, params
    )
    return (
        children.reshape(2, n_rounds, n_matings, n_genes)
        .transpose(1, 0, 2, 3)
        .reshape(-1, n_genes)
    )


def candidates(strategy, seed, state: State, params: Params, iteration):
    """``pool_rounds`` matings in pymoo's order (:func:`mate`); uniformly random
    genomes once matings are spent."""
    seed = sub_seed(seed, iteration)

    def mated():
        return mate(strategy, sub_seed(seed, 0), state, params, strategy.pool_rounds)

    def random():
        shape = (2 * strategy.pool_rounds * strategy.n_matings, strategy.n_genes)
        upper = jnp.asarray(strategy.upper, jnp.float32)
        return _uniform_levels(sub_seed(seed, 1), shape, upper)

    # A branch, not a select: the unused one costs nothing (outside vmap).
    return jax.lax.cond(iteration >= strategy.n_mating_iterations, random, mated)


def unique_offspring(strategy, key, state: State, params: Params):
    """Offspring none equal to an archived genome or to each other.

    Mating is retried, ``pool_rounds`` matings per ``lax.while_loop`` iteration, until
    ``n_offspring`` unique genomes are found or ``max_mating_rounds`` matings were
    drawn; then one batch of uniformly random genomes; then duplicates fill the rest.

    Returns:
      ``(offspring int32 (n_offspring, n_genes), n_unique, n_random, n_rounds)``.
    """
    seed = seed_words(key)
    n_off, n_iterations = strategy.n_offspring, strategy.n_mating_iterations
    n_candidates = 2 * strategy.pool_rounds * strategy.n_matings

    def body(carry):
        iteration, buffer, chosen, n_filled, n_random, _ = carry
        pool = candidates(strategy, seed, state, params, iteration)
        keys = _genome_keys(pool, strategy.code_words)
        is_new = ordering.first_occurrence(keys)
        is_new &= ~keyset.contains(state.archive_index, state.archive_index_used, keys)

        def not_chosen():  # only a retry has chosen offspring to avoid
            filled = jnp.arange(n_off) < n_filled
            return ~jnp.any(
                (keys[:, None] == chosen[None, :]) & filled[None, :], axis=1
            )

        is_new &= jax.lax.cond(
            n_filled > 0, not_chosen, lambda: jnp.ones(keys.shape, bool)
        )
        position = n_filled + jnp.cumsum(is_new, dtype=jnp.int32) - 1
        position = jnp.where(is_new, position, n_off)
        buffer = buffer.at[position].set(pool, mode="drop")
        chosen = chosen.at[position].set(keys, mode="drop")
        n_added = jnp.minimum(jnp.sum(is_new, dtype=jnp.int32), n_off - n_filled)
        n_random = n_random + jnp.where(iteration >= n_iterations, n_added, 0)
        return iteration + 1, buffer, chosen, n_filled + n_added, n_random, pool

    def cond(carry):
        iteration, _, _, n_filled, _, _ = carry
        return (n_filled < n_off) & (iteration <= n_iterations)

    start = (
        jnp.int32(0),
        jnp.zeros((n_off, strategy.n_genes), jnp.int32),
        jnp.zeros(n_off, jnp.uint32),
        jnp.int32(0),
        jnp.int32(0),
        jnp.zeros((n_candidates, strategy.n_genes), jnp.int32),
    )
    iterations, buffer, _, n_filled, n_random, last = jax.lax.while_loop(
        cond, body, start
    )
    # Too few unique genomes even at random (a nearly exhausted space): the last
    # candidates, all archived or already chosen, fill the remaining slots.
    slots = jnp.arange(n_off)
    offspring = jnp.where((slots < n_filled)[:, None], buffer, last[:n_off])
    n_rounds = jnp.minimum(iterations, n_iterations) * strategy.pool_rounds
    return offspring, n_filled, n_random, n_rounds.astype(jnp.int32)


def store(strategy, state: State, genomes, objectives, violation) -> State:
    """Appends evaluated genomes to the archive (those beyond its capacity are not)."""
    n = genomes.shape[0]
    slots = state.archive_count + jnp.arange(n, dtype=jnp.int32)
    n_stored = jnp.minimum(state.archive_count + n, strategy.archive_size)
    generation = jnp.broadcast_to(state.generation_counter, slots.shape)
    index, used = keyset.insert(
        state.archive_index,
        state.archive_index_used,
        _genome_keys(genomes, strategy.code_words),
        slots < strategy.archive_size,
    )
    return state.replace(
        archive_genomes=state.archive_genomes.at[slots].set(genomes, mode="drop"),
        archive_objectives=state.archive_objectives.at[slots].set(
            objectives, mode="drop"
        ),
        archive_violation=state.archive_violation.at[slots].set(violation, mode="drop"),
        archive_generation=state.archive_generation.at[slots].set(
            generation, mode="drop"
        ),
        archive_count=n_stored.astype(jnp.int32),
        archive_index=index,
        archive_index_used=used,
        n_evaluations=state.n_evaluations + n,
    )


def metrics(state: State, params: Params) -> dict[str, jax.Array]:
    """``tell``'s metrics of the new population (see :meth:`NSGA2.tell`)."""
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
