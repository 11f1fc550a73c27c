"""Pareto machinery for minimized objectives: fitness forms, ranks, crowding, fronts.

Deb, Pratap, Agarwal & Meyarivan, "A fast and elitist multiobjective genetic algorithm:
NSGA-II", IEEE TEVC 2002 (non-dominated sorting, crowding distance) with Deb's
constrained domination (Deb 2000). **Every objective is minimized.** Constraints follow
pymoo's ``G`` convention: ``g <= 0`` is satisfied, an individual's total violation is
``sum(max(g, 0))``. Fronts are integer ranks computed with a dominance matrix and front
peeling in one ``lax.while_loop`` (fixed shapes, one compiled function per size).
"""

from __future__ import annotations

from collections.abc import Mapping, Sequence

import jax
import jax.numpy as jnp

__all__ = [
    "constrained_rank",
    "crowding_distance",
    "dominates",
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


def constrained_rank(objectives, violation, n_stop: int) -> jax.Array:
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
    return constrained_rank(objectives, jnp.asarray(violation, jnp.float32), n)


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
