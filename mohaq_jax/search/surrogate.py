"""Surrogate-assisted multi-objective search: a wrapper around any ask/tell algorithm.

At the paper's scale one genome costs ~20 s of CPU to evaluate, while its hardware
costs are exact and free (cost models). So only the error needs a model: here a
Bayesian ridge regression on the genome's per-gene-level one-hot features, with the
sensitivity stage's additive proxy (:mod:`mohaq_jax.search.sensitivity`) as prior mean
and as features (``proxy``, ``proxy^2``: the error grows faster than additively when
many genes are low), refitted on every real evaluation after each ``tell``, with its
predictive standard deviation as the uncertainty. Surrogate-assisted multi-objective
search is pysamoo's idea (Blank & Deb, "pysamoo: Surrogate-Assisted Multi-Objective
Optimization in Python", 2022); here it is composed around an algorithm as optax
composes gradient transformations:

* :meth:`Assisted.ask` asks the wrapped algorithm ``candidates`` times (independent
  keys, same state), predicts the error of every distinct, never-evaluated candidate
  (optimistically, ``mean - explore * std``), computes its exact costs, ranks the
  candidates together with every genome already evaluated by constrained
  non-dominated rank, then crowding distance (NSGA-II's survival order), and returns
  the best ``n_offspring``. Only those are evaluated, so the budget stays counted in
  real, distinct evaluations.
* :meth:`Assisted.tell` passes the real fitness to the wrapped algorithm and refits.
* :meth:`Assisted.initial_population` puts the sensitivity genomes first and fills the
  population with the proxy's predicted Pareto set (``seed_proxy``) or random genomes.

Everything is pure and traceable (fixed shapes; the archive has a capacity), so
:func:`make_run` runs a whole assisted search in one ``lax.scan`` that ``jax.vmap``
runs over seeds. The wrapped algorithm must take any population in ``tell`` (NSGA-II
and evosax's population-based algorithms do) and keep ask's state changes in the
state ``ask`` returns (here: the state of the first of the ``candidates`` asks).
Objectives are minimized; ``error_index`` names the error's column.
"""

from __future__ import annotations

import dataclasses
import math
from collections.abc import Callable
from typing import Any

import jax
import jax.numpy as jnp
import numpy as np
from flax import struct

from mohaq_jax.search import nsga2_steps, sensitivity
from mohaq_jax.search.nsga2_state import generation_keys, initial_keys
from mohaq_jax.search.pareto import (
    Fitness,
    constrained_rank,
    crowding_distance,
    split_fitness,
    total_violation,
)

__all__ = [
    "Assisted",
    "SurrogateOptions",
    "State",
    "assisted",
    "design_matrix",
    "fit_ridge",
    "make_run",
    "problem_fitness_fn",
    "start",
]

#: Violation given to candidates that must not be chosen (duplicates, empty slots).
_EXCLUDED = 1e30
#: Spaces up to this many genomes are enumerated whole for proxy seeding.
_ENUMERATE_UP_TO = 1 << 15

# (genomes (n, n_genes) int32, error objective (n,) float32) -> (objectives, constraints)
FitnessFn = Callable[[jax.Array, jax.Array], tuple[jax.Array, jax.Array]]


@dataclasses.dataclass(frozen=True)
class SurrogateOptions:
    """Settings of the assisted search (static)."""

    screen: bool = True  # pre-screen offspring with the model (False: seeding only)
    seed_proxy: bool = True  # fill the initial population with the proxy's front
    candidates: int = 30  # asks per generation: candidates = this x n_offspring
    ridge: float = 1.0  # ridge penalty (prior precision / noise precision)
    explore: float = 1.0  # optimistic error = mean - explore * predictive std
    # None: constant; else explore shrinks linearly to 0 at this many evaluations
    explore_until: int | None = None
    archive_size: int = 1000  # real evaluations the model remembers (capacity)
    # local candidates: the one-gene, one-level neighbours of this many of the best
    # real evaluations (constrained non-dominated rank) join the pool (0: none)
    neighbours: int = 0

    def __post_init__(self):
        if self.candidates < 1 or self.ridge <= 0 or self.explore < 0:
            raise ValueError("need candidates >= 1, ridge > 0, explore >= 0")
        if self.neighbours < 0:
            raise ValueError("need neighbours >= 0")


@struct.dataclass
class State:
    """The wrapped algorithm's state plus the error model and what it is fitted on."""

    inner: Any  # the wrapped algorithm's state
    genomes: jax.Array  # shape=(capacity, n_genes), int32 evaluated genomes
    errors: jax.Array  # shape=(capacity,), float32 their error objective
    count: jax.Array  # shape=(), int32 filled rows
    proxy: sensitivity.Proxy  # additive proxy in error-objective units
    weights: jax.Array  # shape=(n_features,), float32 ridge weights (on the residual)
    covariance: jax.Array  # shape=(n_features, n_features), (X'X + ridge I)^-1
    noise: jax.Array  # shape=(), float32 residual variance
    n_screened: jax.Array  # shape=(), int32 distinct new candidates the last ask saw

    def __getattr__(self, name):
        # Reads of the wrapped state's fields (population, archive, ...) fall through,
        # so drivers written for the wrapped algorithm read an assisted state as is.
        if name.startswith("_") or name == "inner":
            raise AttributeError(name)
        return getattr(self.inner, name)


def design_matrix(upper, proxy: sensitivity.Proxy, genomes) -> jax.Array:
    """Features ``[1, proxy, proxy^2, one-hot(gene i at level l) ...]``, ``(n, p)``."""
    genomes = jnp.asarray(genomes, jnp.int32)
    predicted = sensitivity.predict(proxy, genomes)
    columns = [jnp.ones_like(predicted)[:, None], predicted[:, None],
               jnp.square(predicted)[:, None]]  # fmt: skip
    for gene, top in enumerate(np.asarray(upper)):
        levels = jnp.arange(int(top) + 1, dtype=jnp.int32)
        columns.append((genomes[:, gene, None] == levels[None]).astype(jnp.float32))
    return jnp.concatenate(columns, axis=1)


def fit_ridge(features, targets, mask, ridge):
    """Ridge regression in closed form over the rows where ``mask`` holds.

    Args:
      features: float ``(n, p)``.
      targets: float ``(n,)``.
      mask: bool ``(n,)`` rows that count.
      ridge: penalty ``lambda`` on every weight.

    Returns:
      ``(weights (p,), covariance (p, p), noise ())``: ``w = (X'X + lambda I)^-1 X'y``,
      that inverse, and the residual variance ``sum(r^2) / max(n - 1, 1)`` (a small
      floor keeps it positive).
    """
    weight = mask.astype(jnp.float32)
    x = features * weight[:, None]
    p = features.shape[1]
    gram = x.T @ features + ridge * jnp.eye(p, dtype=jnp.float32)
    covariance = jnp.linalg.inv(gram)
    weights = covariance @ (x.T @ targets)
    residual = (targets - features @ weights) * weight
    n = jnp.sum(weight)
    noise = jnp.sum(jnp.square(residual)) / jnp.maximum(n - 1.0, 1.0)
    return weights, covariance, jnp.maximum(noise, 1e-8)


def _distinct(rows, known, known_valid):
    """Bool ``(n,)``: rows equal to no earlier row and to no valid known row."""
    same = jnp.all(rows[:, None, :] == rows[None, :, :], axis=-1)
    earlier = jnp.tril(same, k=-1)
    seen = jnp.any(
        jnp.all(rows[:, None, :] == known[None, :, :], axis=-1) & known_valid[None],
        axis=1,
    )
    return ~jnp.any(earlier, axis=1) & ~seen


def _first_distinct(rows, n: int):
    """The first ``n`` rows that equal no earlier row (then the rest, in order)."""
    new = _distinct(rows, rows[:0], jnp.zeros(0, bool))
    order = jnp.argsort(~new, stable=True)
    return rows[order[:n]]


class Assisted:
    """An ask/tell algorithm whose offspring are pre-screened by an error model.

    Args:
      strategy: the wrapped multi-objective algorithm (``init``, ``ask``, ``tell``,
        ``pop_size``, ``n_offspring``, ``upper``, ``sample``; e.g.
        :class:`~mohaq_jax.search.nsga2.NSGA2`).
      fitness_fn: exact fitness given a predicted error: ``(genomes, error objective)
        -> (objectives, constraints)``, traceable (costs are cost models).
      options: :class:`SurrogateOptions`.
      error_index: column of the error in the objectives.
    """

    def __init__(
        self,
        strategy,
        fitness_fn: FitnessFn,
        options: SurrogateOptions = SurrogateOptions(),
        error_index: int = 0,
    ):
        self.strategy = strategy
        self.fitness_fn = fitness_fn
        self.options = options
        self.error_index = int(error_index)
        self.upper = np.asarray(strategy.upper, np.int32)
        self.n_genes = int(self.upper.size)
        self.pop_size = int(strategy.pop_size)
        self.n_offspring = int(strategy.n_offspring)
        self.sensitivity_genomes = sensitivity.genomes(self.upper)
        # They lead the initial population when they leave room for others.
        self.sensitivity_in_population = len(self.sensitivity_genomes) < self.pop_size
        self.n_features = 3 + int(np.sum(self.upper + 1))

    @property
    def default_params(self):
        return self.strategy.default_params

    # ---- the model ---------------------------------------------------------------
    def predict(self, state: State, genomes) -> tuple[jax.Array, jax.Array]:
        """Predicted error objective and its standard deviation, ``(n,)`` each."""
        features = design_matrix(self.upper, state.proxy, genomes)
        prior = sensitivity.predict(state.proxy, genomes)
        mean = prior + features @ state.weights
        spread = jnp.einsum("np,pq,nq->n", features, state.covariance, features)
        return mean, jnp.sqrt(state.noise * (1.0 + spread))

    def _refit(self, state: State) -> State:
        # rows stored without a reliable error (NaN: a raced genome's partial
        # estimate, or a genome left unscored once the budget was spent) are not fitted
        valid = (jnp.arange(state.errors.shape[0]) < state.count) & jnp.isfinite(
            state.errors
        )
        features = design_matrix(self.upper, state.proxy, state.genomes)
        residual = state.errors - sensitivity.predict(state.proxy, state.genomes)
        weights, covariance, noise = fit_ridge(
            features, jnp.where(valid, residual, 0.0), valid, self.options.ridge
        )
        return state.replace(weights=weights, covariance=covariance, noise=noise)

    def _store(self, state: State, genomes, fitness: Fitness, reliable=None) -> State:
        objectives, _ = split_fitness(fitness)
        errors = objectives[:, self.error_index]
        if reliable is not None:
            errors = jnp.where(jnp.asarray(reliable, bool), errors, jnp.nan)
        n = genomes.shape[0]
        rows = state.count + jnp.arange(n, dtype=jnp.int32)
        return state.replace(
            genomes=state.genomes.at[rows].set(genomes, mode="drop"),
            errors=state.errors.at[rows].set(errors, mode="drop"),
            count=jnp.minimum(state.count + n, state.genomes.shape[0]),
        )

    # ---- the ask/tell interface --------------------------------------------------
    def initial_population(self, key, proxy: sensitivity.Proxy | None) -> jax.Array:
        """Sensitivity genomes, then the proxy's front (``seed_proxy``) or random.

        Args:
          key: PRNG key.
          proxy: the sensitivity stage's proxy in error-objective units (needed with
            ``seed_proxy``).

        Returns:
          int32 ``(pop_size, n_genes)``, distinct.
        """
        fixed = jnp.asarray(self.sensitivity_genomes)
        if not self.sensitivity_in_population:
            fixed = fixed[:0]
        key_pool, key_rank = jax.random.split(key)
        if self.options.seed_proxy and proxy is not None:
            pool = self._proxy_pool(key_pool)
            objectives, constraints = self.fitness_fn(
                pool, sensitivity.predict(proxy, pool)
            )
            keep, _, _ = nsga2_steps.survival_order(
                key_rank, objectives, total_violation(constraints), self.pop_size
            )
            fill = pool[keep]
        else:
            fill = self.strategy.sample(key_pool, 2 * self.pop_size)
        return _first_distinct(jnp.concatenate([fixed, fill]), self.pop_size)

    def _proxy_pool(self, key) -> jax.Array:
        size = math.prod(int(u) + 1 for u in self.upper)
        if size <= _ENUMERATE_UP_TO:
            grids = np.meshgrid(*[np.arange(u + 1) for u in self.upper], indexing="ij")
            return jnp.asarray(
                np.stack([g.reshape(-1) for g in grids], axis=1), jnp.int32
            )
        upper = jnp.asarray(self.upper)
        return jax.random.randint(
            key, (_ENUMERATE_UP_TO, self.n_genes), 0, upper[None] + 1, jnp.int32
        )

    def empty_state(self, n_obj: int) -> State:
        """A state of the right shapes (a checkpoint template)."""
        cap, p = self.options.archive_size, self.n_features
        return State(
            inner=self.strategy.empty_state(n_obj),
            genomes=jnp.zeros((cap, self.n_genes), jnp.int32),
            errors=jnp.zeros(cap, jnp.float32),
            count=jnp.int32(0),
            proxy=sensitivity.Proxy(
                base=jnp.float32(0.0),
                increase=jnp.zeros((self.n_genes, int(self.upper.max()) + 1)),
            ),
            weights=jnp.zeros(p, jnp.float32),
            covariance=jnp.eye(p, dtype=jnp.float32),
            noise=jnp.float32(1.0),
            n_screened=jnp.int32(0),
        )

    def init(
        self, key, population, fitness: Fitness, params, proxy=None, reliable=None
    ) -> State:
        """The wrapped ``init``. ``proxy``: the sensitivity proxy in error-objective
        units; None reads it off the sensitivity genomes in ``population``
        (:meth:`initial_population` puts them there when they fit). ``reliable``:
        per genome, whether its error is a full measurement (None: all are); the
        model is fitted on those only, the wrapped algorithm sees every one."""
        population = jnp.asarray(population, jnp.int32)
        objectives, _ = split_fitness(fitness)
        inner = self.strategy.init(key, population, fitness, params)
        state = self.empty_state(objectives.shape[1]).replace(inner=inner)
        if proxy is None:
            proxy, _ = sensitivity.proxy_from_population(
                self.upper, population, objectives[:, self.error_index]
            )
        state = self._store(state.replace(proxy=proxy), population, fitness, reliable)
        return self._refit(state)

    def ask(self, key, state: State, params) -> tuple[jax.Array, State]:
        """The ``n_offspring`` most promising of ``candidates`` asks of the wrapped
        algorithm (all of the first ask's without ``screen`` or with one ask)."""
        opts = self.options
        if not opts.screen or opts.candidates == 1:
            offspring, inner = self.strategy.ask(key, state.inner, params)
            return offspring, state.replace(inner=inner)
        keys = jax.random.split(key, opts.candidates)
        pools, inners = jax.vmap(lambda k: self.strategy.ask(k, state.inner, params))(
            keys
        )
        inner = jax.tree.map(lambda x: x[0], inners)
        pool = pools.reshape(-1, self.n_genes)
        known = jnp.arange(state.errors.shape[0]) < state.count
        old_objectives, old_constraints = self.fitness_fn(state.genomes, state.errors)
        old_violation = jnp.where(
            known & jnp.isfinite(state.errors),
            total_violation(old_constraints),
            _EXCLUDED,
        )
        if opts.neighbours:
            pool = jnp.concatenate(
                [pool, self._neighbours(state, old_objectives, old_violation)]
            )
        new = _distinct(pool, state.genomes, known)
        mean, std = self.predict(state, pool)
        explore = jnp.float32(opts.explore)
        if opts.explore_until is not None:
            left = 1.0 - state.count.astype(jnp.float32) / opts.explore_until
            explore = explore * jnp.clip(left, 0.0, 1.0)
        objectives, constraints = self.fitness_fn(pool, mean - explore * std)
        violation = jnp.where(new, total_violation(constraints), _EXCLUDED)
        all_objectives = jnp.concatenate([objectives, old_objectives])
        all_violation = jnp.concatenate([violation, old_violation])
        n = all_violation.shape[0]
        ranks = constrained_rank(all_objectives, all_violation, n)
        crowding = crowding_distance(all_objectives, ranks)
        crowding = jnp.where(all_violation > 0, 0.0, crowding)
        # Candidates only: by rank, then less crowded, then more uncertain.
        order = jnp.lexsort((-std, -crowding[: len(pool)], ranks[: len(pool)]))
        offspring = pool[order[: self.n_offspring]]
        return offspring, state.replace(
            inner=inner, n_screened=jnp.sum(new, dtype=jnp.int32)
        )

    def _neighbours(self, state: State, objectives, violation) -> jax.Array:
        """Every genome one level up or down in one gene from the
        ``options.neighbours`` best real evaluations (constrained non-dominated rank,
        then less violation), ``(m * 2 * n_genes, n_genes)``; a step past a gene's
        range stays put (the genome itself: already evaluated, so excluded)."""
        m = min(self.options.neighbours, state.genomes.shape[0])
        ranks = constrained_rank(objectives, violation, violation.shape[0])
        best = state.genomes[jnp.lexsort((violation, ranks))[:m]]
        steps = jnp.concatenate(
            [
                jnp.eye(self.n_genes, dtype=jnp.int32),
                -jnp.eye(self.n_genes, dtype=jnp.int32),
            ]
        )
        moved = best[:, None, :] + steps[None]
        upper = jnp.asarray(self.upper)[None, None]
        return jnp.clip(moved, 0, upper).reshape(-1, self.n_genes)

    def tell(
        self, key, population, fitness: Fitness, state: State, params, reliable=None
    ):
        """The wrapped ``tell`` with the real fitness, then the model refitted on the
        ``reliable`` rows (see :meth:`init`)."""
        population = jnp.asarray(population, jnp.int32)
        inner, metrics = self.strategy.tell(
            key, population, fitness, state.inner, params
        )
        state = self._store(state.replace(inner=inner), population, fitness, reliable)
        state = self._refit(state)
        return state, {**metrics, "n_screened": state.n_screened}


def assisted(strategy, fitness_fn: FitnessFn, options=None, error_index: int = 0):
    """:class:`Assisted` around ``strategy`` (optax-style wrapping)."""
    return Assisted(strategy, fitness_fn, options or SurrogateOptions(), error_index)


def problem_fitness_fn(problem) -> FitnessFn:
    """A search problem's exact fitness with the error replaced by a prediction.

    ``problem``: a :class:`~mohaq_jax.search.problem.QuantizationProblem` (its cost
    model is traceable; the error objective is normalized by its ideal and nadir).
    """
    column = problem.config.objectives.index("error")
    low = float(problem.ideal[column])
    scale = float(problem.nadir[column] - problem.ideal[column])

    def fitness_fn(genomes, error_objective):
        costs = problem.cost_arrays(genomes)
        return problem.fitness({**costs, "error": error_objective * scale + low})

    return fitness_fn


def make_run(
    wrapped: Assisted,
    evaluate_fn: Callable[[jax.Array], Fitness],
    n_generations: int,
    params=None,
) -> Callable[[jax.Array], tuple[State, dict[str, Any]]]:
    """``run(key) -> (final state, metrics per generation)``: one ``lax.scan``.

    The sensitivity stage is scored first (its genomes then lead the initial
    population, so a caching ``evaluate_fn`` scores them once); keys follow
    :func:`~mohaq_jax.search.nsga2.make_run`. ``evaluate_fn`` takes a population.
    """
    params = wrapped.default_params if params is None else params
    sens = jnp.asarray(wrapped.sensitivity_genomes)

    def run(key):
        key_sample, key_init = initial_keys(key)
        objectives, _ = split_fitness(evaluate_fn(sens))
        proxy = sensitivity.fit_proxy(wrapped.upper, objectives[:, wrapped.error_index])
        population = wrapped.initial_population(key_sample, proxy)
        state = wrapped.init(
            key_init, population, evaluate_fn(population), params, proxy
        )

        def generation(state, index):
            key_ask, key_tell = generation_keys(key, index)
            offspring, state = wrapped.ask(key_ask, state, params)
            return wrapped.tell(
                key_tell, offspring, evaluate_fn(offspring), state, params
            )

        return jax.lax.scan(
            generation, state, jnp.arange(1, n_generations + 1, dtype=jnp.int32)
        )

    return run


def start(problem, pstate, wrapped: Assisted, key) -> tuple[Any, jax.Array, Any]:
    """A driver's first step: the sensitivity stage scored through ``problem``
    (cached: each genome once), then the initial population.

    Returns:
      ``(problem state, initial population (pop_size, n_genes), proxy)``.
    """
    pstate, results = problem.evaluate(pstate, wrapped.sensitivity_genomes)
    objectives, _ = problem.fitness(results)
    proxy = sensitivity.fit_proxy(wrapped.upper, objectives[:, wrapped.error_index])
    population = jax.jit(wrapped.initial_population)(key, proxy)
    return pstate, population, proxy


def assisted_nsga2(problem):
    """NSGA-II wrapped by :class:`Assisted` as the driver's
    :class:`~mohaq_jax.search.algorithm.Algorithm` (``--surrogate``,
    ``--seed-proxy``), and the wrapper itself (the driver's first step scores its
    sensitivity genomes: :func:`start`). The wrapper's ``init`` takes the proxy
    as its extra argument."""
    from mohaq_jax.search import nsga2  # the registry's algorithms sit beside this
    from mohaq_jax.search.algorithm import Algorithm

    cfg = problem.config
    strategy = nsga2.NSGA2(
        cfg.pop_size,
        cfg.n_offspring,
        problem.space.upper,
        archive_size=cfg.pop_size + cfg.n_generations * cfg.n_offspring,
    )
    wrapped = assisted(
        strategy,
        problem_fitness_fn(problem),
        SurrogateOptions(
            screen=cfg.surrogate,
            seed_proxy=cfg.seed_proxy,
            archive_size=strategy.archive_size,
        ),
        cfg.objectives.index("error"),
    )
    params = wrapped.default_params.replace(
        ref_point=jnp.ones(len(cfg.objectives), jnp.float32)
    )
    init = jax.jit(wrapped.init)
    ask = jax.jit(wrapped.ask)
    tell = jax.jit(wrapped.tell)
    algorithm = Algorithm(
        sample=lambda key: wrapped.initial_population(key, None),
        # the driver hands (objectives, constraints, reliable): see Assisted.init
        init=lambda key, genomes, fitness, proxy=None: init(
            key, genomes, fitness[:2], params, proxy, fitness[2]
        ),
        ask=lambda key, state: ask(key, state, params),
        tell=lambda key, genomes, fitness, state: tell(
            key, genomes, fitness[:2], state, params, fitness[2]
        )[0],
        max_generations=cfg.n_generations,
        budget=cfg.budget,
    )
    return algorithm, wrapped
