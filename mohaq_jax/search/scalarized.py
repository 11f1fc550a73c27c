"""Any evosax strategy as a search algorithm: one scalarized, constrained objective.

MOHAQ (Rashed et al. 2021) searches the whole error/speed/energy front with NSGA-II. A
common simpler question is one point of it: *maximize speedup subject to error <= eps*
(and memory <= limit). :func:`scalarized` answers it with any evosax 0.3 strategy,
composed in two wrappers (as optax builds variants by wrapping, not by branching):

* an **adapter** gives the strategy one signature over continuous points ``x``
  (:func:`population_based` for SimpleGA, DE, ...: ``init(key, x, fitness)``;
  :func:`distribution_based` for CMA-ES, ...: evosax's ``init(key, mean)``, then the
  scored initial population told as its first generation, mean = that population's);
* :func:`scalarized` turns it into an :class:`~mohaq_jax.search.algorithm.Algorithm`
  over integer genomes: gene ``i``'s level is ``clip(round(x_i), 0, upper_i)`` (half
  to even, :func:`levels_from`), and the fitness is Deb's feasibility rule folded into
  one minimized number (:func:`scalarize`): a feasible genome scores its objective
  (normalized to ``[0, 1]`` by the problem, so below ``worst``), an infeasible one
  ``worst + violation``; every feasible genome beats every infeasible one.

The initial population holds uniformly random levels as floats; SimpleGA's Gaussian
mutation has standard deviation 1 level, DE and CMA-ES their defaults (CMA-ES: initial
step 1 level). The strategies rely on NumPy-style dtype and rank promotion (SimpleGA multiplies
floats by ``1 - bool_mask``, CMA-ES subtracts the mean from the population), so they
are traced under NumPy's rules. Budget: distinct genomes (evosax strategies
repeat genomes often on small integer spaces; a repeat is looked up, not scored).
"""

from __future__ import annotations

import contextlib
import dataclasses
import functools
from collections.abc import Callable, Sequence
from typing import Any

import jax
import jax.numpy as jnp
import numpy as np
from flax import struct

from mohaq_jax.search.algorithm import Algorithm, default_budget
from mohaq_jax.search.pareto import total_violation
from mohaq_jax.search.variation import _uniform_levels

__all__ = [
    "ContinuousStrategy",
    "distribution_based",
    "levels_from",
    "population_based",
    "scalarize",
    "scalarized",
    "target_objective",
]

#: population (genomes asked per generation) of the scalarized strategies
POPULATION_SIZE = 20


@dataclasses.dataclass(frozen=True)
class ContinuousStrategy:
    """An evosax strategy behind one signature (``x``: float ``(pop, n_genes)``)."""

    init: Callable[[jax.Array, jax.Array, jax.Array], Any]  # (key, x, fitness) -> state
    ask: Callable[[jax.Array, Any], tuple[jax.Array, Any]]  # (key, state) -> (x, state)
    tell: Callable[[jax.Array, jax.Array, jax.Array, Any], Any]  # -> state


@contextlib.contextmanager
def _numpy_rules():
    """evosax's strategies rely on NumPy's dtype and rank promotion."""
    with jax.numpy_dtype_promotion("standard"), jax.numpy_rank_promotion("allow"):
        yield


@functools.lru_cache(maxsize=32)
def _strategy(cls, n_genes: int, population_size: int, options: tuple):
    """One evosax object per setting: evosax jits ``ask``/``tell`` with the object
    static, so they compile once per setting."""
    algorithm = cls(population_size, jnp.zeros(n_genes, jnp.float32), **dict(options))
    with _numpy_rules():
        return algorithm, algorithm.default_params


def population_based(cls, **options) -> Callable[[int, int], ContinuousStrategy]:
    """Adapter for an evosax population-based strategy (``init(key, x, fitness)``).

    Args:
      cls: e.g. ``evosax.algorithms.population_based.SimpleGA``.
      **options: constructor keywords (hashable values).
    """

    def make(n_genes: int, population_size: int) -> ContinuousStrategy:
        algorithm, params = _strategy(
            cls, n_genes, population_size, tuple(sorted(options.items()))
        )
        return ContinuousStrategy(
            init=lambda key, x, fitness: algorithm.init(key, x, fitness, params),
            ask=lambda key, state: algorithm.ask(key, state, params),
            tell=lambda key, x, fitness, state: algorithm.tell(
                key, x, fitness, state, params
            )[0],
        )

    return make


def distribution_based(cls, **options) -> Callable[[int, int], ContinuousStrategy]:
    """Adapter for an evosax distribution-based strategy (``init(key, mean)``): the
    distribution starts at the initial population's mean, which is then told as its
    first generation, so the scored initial population is not wasted."""

    def make(n_genes: int, population_size: int) -> ContinuousStrategy:
        algorithm, params = _strategy(
            cls, n_genes, population_size, tuple(sorted(options.items()))
        )

        def init(key, x, fitness):
            state = algorithm.init(key, jnp.mean(x, axis=0), params)
            return algorithm.tell(key, x, fitness, state, params)[0]

        return ContinuousStrategy(
            init=init,
            ask=lambda key, state: algorithm.ask(key, state, params),
            tell=lambda key, x, fitness, state: algorithm.tell(
                key, x, fitness, state, params
            )[0],
        )

    return make


def levels_from(x: jax.Array, upper) -> jax.Array:
    """Gene levels ``(..., n_genes)`` int32 of continuous points: round, then clip."""
    upper = jnp.broadcast_to(jnp.asarray(upper, jnp.float32), jnp.shape(x))
    return jnp.clip(jnp.round(x), 0.0, upper).astype(jnp.int32)


def scalarize(objective: jax.Array, violation: jax.Array, worst: float = 10.0):
    """One minimized number per genome: ``objective`` if feasible, else ``worst +
    violation``. ``objective`` ``(n,)`` must stay below ``worst`` when feasible."""
    objective = jnp.asarray(objective, jnp.float32)
    violation = jnp.asarray(violation, jnp.float32)
    return jnp.where(violation <= 0.0, objective, jnp.float32(worst) + violation)


def target_objective(objectives: Sequence[str], maximize: Sequence[str]) -> str:
    """The objective a scalarized search optimizes: ``speedup`` when searched, else
    the first maximized objective, else the first one besides ``error``."""
    if "speedup" in objectives:
        return "speedup"
    for name in objectives:
        if name in maximize:
            return name
    others = [n for n in objectives if n != "error"]
    if not others:
        raise ValueError(f"no objective besides error in {tuple(objectives)}")
    return others[0]


@struct.dataclass
class State:
    """A scalarized search: the strategy's state and the points it last asked."""

    inner: Any  # the evosax strategy's state
    x: jax.Array  # shape=(pop, n_genes) float32: continuous points behind the genomes


def scalarized(
    strategy: Callable[[int, int], ContinuousStrategy],
    population_size: int = POPULATION_SIZE,
    worst: float = 10.0,
) -> Callable[..., Algorithm]:
    """The factory ``make(config, upper) -> Algorithm`` of an adapted evosax strategy.

    The search minimizes the problem's normalized :func:`target_objective` column
    (speedup is negated there, so this maximizes it) subject to the constraints, for
    :func:`~mohaq_jax.search.algorithm.default_budget` distinct genomes (at most
    ``20 * budget`` generations, for spaces smaller than the budget).

    Args:
      strategy: :func:`population_based` / :func:`distribution_based` of an evosax
        class.
      population_size: genomes asked per generation.
      worst: see :func:`scalarize`.
    """

    def make(config, upper) -> Algorithm:
        upper = np.asarray(upper, np.int32)
        inner = strategy(int(upper.size), population_size)
        column = config.objectives.index(
            target_objective(config.objectives, config.maximize)
        )
        budget = default_budget(config)

        def one_number(fitness):
            objectives, constraints = fitness
            objective = jnp.asarray(objectives, jnp.float32)[:, column]
            return scalarize(objective, total_violation(constraints), worst)

        def sample(key):
            shape = (population_size, upper.size)
            return _uniform_levels(key, shape, jnp.asarray(upper, jnp.float32))

        def init(key, genomes, fitness):
            x = jnp.asarray(genomes).astype(jnp.float32)
            with _numpy_rules():
                return State(inner.init(key, x, one_number(fitness)), x)

        def ask(key, state):
            with _numpy_rules():
                x, inner_state = inner.ask(key, state.inner)
            return levels_from(x, upper), State(inner_state, x)

        def tell(key, genomes, fitness, state):
            del genomes  # the continuous points behind them are told
            with _numpy_rules():
                inner_state = inner.tell(key, state.x, one_number(fitness), state.inner)
            return State(inner_state, state.x)

        return Algorithm(
            sample=sample,
            init=init,
            ask=ask,
            tell=tell,
            max_generations=20 * budget,
            budget=budget,
        )

    return make
