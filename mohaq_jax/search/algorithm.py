"""What the search driver runs: an algorithm as a record of pure functions.

Every search algorithm of :data:`mohaq_jax.search.algorithms.ALGORITHMS` is built by a
factory ``make(config, upper) -> Algorithm`` (its settings captured in closures, as
optax's ``GradientTransformation(init, update)``), and :func:`mohaq_jax.search.mohaq.
run_search` runs any of them the same way: sample and score the initial population,
``init``, then per generation ``ask``, score, ``tell``, with a checkpoint after each.

The driver speaks integer genomes (gene levels, int32 ``(n, n_genes)``) and the
problem's fitness ``(objectives (n, n_obj), constraints (n, n_constr))``: objectives
normalized and **minimized**, a constraint ``g <= 0`` satisfied. A genome left unscored
by the budget gets ``+inf`` objectives and constraints. A multi-objective algorithm
reads this fitness directly; a single-objective (evosax) strategy is wrapped by
:func:`mohaq_jax.search.scalarized.scalarized`, which folds it into one number.
"""

from __future__ import annotations

import dataclasses
from collections.abc import Callable
from typing import Any

import jax

from mohaq_jax.search.pareto import Fitness

__all__ = ["Algorithm", "Fitness", "default_budget"]


@dataclasses.dataclass(frozen=True)
class Algorithm:
    """One search algorithm for the driver (pure functions; states are pytrees).

    Keys: the driver passes the two keys of ``initial_keys(seed)`` to ``sample`` and
    ``init``, and those of ``generation_keys(seed, g)`` to ``ask`` and ``tell`` of
    generation ``g`` (:mod:`mohaq_jax.search.nsga2_state`): same seed, same search.
    """

    # key -> int32 (n_initial, n_genes): the initial population
    sample: Callable[[jax.Array], jax.Array]
    # (key, genomes, fitness) -> state, from the scored initial population
    init: Callable[[jax.Array, jax.Array, Fitness], Any]
    # (key, state) -> (int32 (n_asked, n_genes) genomes to score, state)
    ask: Callable[[jax.Array, Any], tuple[jax.Array, Any]]
    # (key, genomes, fitness, state) -> state, once the asked genomes are scored
    tell: Callable[[jax.Array, jax.Array, Fitness, Any], Any]
    # How long it searches: at most this many generations after the initial
    # population, and at most ``budget`` distinct genomes scored (None: no budget).
    max_generations: int
    budget: int | None
    # (state, score) -> state with its kept genomes re-scored by ``score`` (int32
    # genomes -> fitness); the driver calls it when the problem's policy (beacons)
    # changed the scores. None: nothing kept to re-score.
    rescore: Callable[[Any, Callable[[jax.Array], Fitness]], Any] | None = None


def default_budget(config) -> int:
    """MOHAQ's budget in distinct genomes: the initial population and every
    generation's offspring of NSGA-II (``pop_size + n_generations * n_offspring``), or
    ``config.budget`` when set."""
    if config.budget is not None:
        return int(config.budget)
    return config.pop_size + config.n_generations * config.n_offspring
