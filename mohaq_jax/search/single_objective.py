"""evosax's single-objective strategies on toy functions (benchmarks, tests).

The MOHAQ problems run every algorithm, evosax's through the scalarizing wrapper, in
the one driver (:func:`mohaq_jax.search.mohaq.run_search`, registry
:data:`mohaq_jax.search.algorithms.ALGORITHMS`). This module runs SimpleGA and DE on a
plain function of the genomes, with the same scalarization
(:func:`~mohaq_jax.search.scalarized.scalarize`) and level rounding
(:func:`~mohaq_jax.search.scalarized.levels_from`):

* :func:`make_run`: one ``lax.scan``, vmappable over seeds, counting every genome
  asked;
* :func:`search`: a Python loop around a non-traceable function, counting distinct
  genomes (repeats come from a cache and cost nothing), as the driver does: evosax's
  algorithms repeat genomes often on small integer spaces (on 3^8 genomes a SimpleGA
  of 10 asks about 400 genomes to find 110 distinct ones).

Both follow NSGA-II's key schedule; :func:`comparison_lines` tabulates
``benchmarks/search_quality.py``.
"""

from __future__ import annotations

import functools
import math
from collections.abc import Callable, Mapping, Sequence

import jax
import jax.numpy as jnp
import numpy as np
import optax
from evosax.algorithms.population_based import DifferentialEvolution, SimpleGA

from mohaq_jax.search import nsga2
from mohaq_jax.search.scalarized import levels_from, scalarize
from mohaq_jax.search.variation import _uniform_levels

__all__ = [
    "ALGORITHMS",
    "comparison_lines",
    "make_algorithm",
    "make_run",
    "search",
]

ALGORITHMS = ("simple_ga", "de")  # the evosax strategies of these toy-function runs


@functools.lru_cache(maxsize=16)
def make_algorithm(name: str, n_genes: int, population_size: int):
    """``(evosax algorithm, its params)`` for ``name`` in :data:`ALGORITHMS`.

    Cached: evosax jits ``ask``/``tell`` with the algorithm object static, so one
    object per setting compiles them once.
    """
    solution = jnp.zeros(n_genes, jnp.float32)
    if name == "simple_ga":
        algorithm = SimpleGA(
            population_size, solution, std_schedule=optax.constant_schedule(1.0)
        )
    elif name == "de":
        algorithm = DifferentialEvolution(population_size, solution)
    else:
        raise ValueError(f"--algorithm: unknown {name!r}, choose from {ALGORITHMS}")
    return algorithm, algorithm.default_params


def make_run(
    name: str,
    upper: Sequence[int] | np.ndarray,
    evaluate_fn: Callable[[jax.Array], tuple[jax.Array, jax.Array]],
    budget: int,
    population_size: int = 10,
    worst: float = 10.0,
    jit: bool = True,
) -> Callable[[jax.Array], dict[str, jax.Array]]:
    """Builds ``run(key)``: an evosax search of ``budget`` evaluations.

    Keys follow NSGA-II's schedule (:func:`~mohaq_jax.search.nsga2.initial_keys`,
    :func:`~mohaq_jax.search.nsga2.generation_keys`).

    Args:
      name: ``"simple_ga"`` or ``"de"``.
      upper: int ``(n_genes,)`` largest level per gene.
      evaluate_fn: int32 genomes ``(n, n_genes)`` -> ``(objective (n,), violation
        (n,))``; the objective minimized (e.g. normalized ``-speedup``), violation 0
        when feasible.
      budget: evaluations: ``ceil(budget / population_size)`` generations of
        ``population_size`` (the first one the random initial population).
      population_size: genomes per generation.
      worst: see :func:`scalarize`.
      jit: whether ``evaluate_fn`` is traceable (one ``lax.scan``); else a Python loop
        around jitted ask/tell.

    Returns:
      ``run(key) -> dict``: ``genomes`` ``(n_evals, n_genes)`` int32 in evaluation
      order, ``objective`` and ``violation`` ``(n_evals,)``, ``best_genome``
      ``(n_genes,)`` and ``best_fitness`` ``()`` (scalarized, minimized).
    """
    upper = np.asarray(upper, np.int32)
    algorithm, params = make_algorithm(name, int(upper.size), population_size)
    n_generations = max(math.ceil(budget / population_size) - 1, 0)

    def score(x):
        genomes = levels_from(x, upper)
        objective, violation = evaluate_fn(genomes)
        return genomes, objective, violation, scalarize(objective, violation, worst)

    def start(key):
        key_sample, key_init = nsga2.initial_keys(key)
        levels = _uniform_levels(
            key_sample, (population_size, upper.size), jnp.asarray(upper, jnp.float32)
        )
        return key_init, levels.astype(jnp.float32)

    def step(key, state, generation):
        key_ask, key_tell = nsga2.generation_keys(key, generation)
        with jax.numpy_dtype_promotion("standard"):
            x, state = algorithm.ask(key_ask, state, params)
        return key_tell, x, state

    def finish(key_tell, x, fitness, state):
        with jax.numpy_dtype_promotion("standard"):
            state, _ = algorithm.tell(key_tell, x, fitness, state, params)
        return state

    def output(state, genomes, objective, violation):
        return {
            "genomes": genomes.reshape(-1, upper.size),
            "objective": objective.reshape(-1),
            "violation": violation.reshape(-1),
            "best_genome": levels_from(state.best_solution, upper),
            "best_fitness": state.best_fitness,
        }

    def run_scan(key):
        key_init, x = start(key)
        genomes, objective, violation, fitness = score(x)
        with jax.numpy_dtype_promotion("standard"):
            state = algorithm.init(key_init, x, fitness, params)

        def generation(state, index):
            key_tell, x, state = step(key, state, index)
            genomes, objective, violation, fitness = score(x)
            return finish(key_tell, x, fitness, state), (genomes, objective, violation)

        state, (more_g, more_o, more_v) = jax.lax.scan(
            generation, state, jnp.arange(1, n_generations + 1, dtype=jnp.int32)
        )
        return output(
            state,
            jnp.concatenate([genomes[None], more_g]),
            jnp.concatenate([objective[None], more_o]),
            jnp.concatenate([violation[None], more_v]),
        )

    if jit:
        return run_scan

    start_jit, step_jit, finish_jit = jax.jit(start), jax.jit(step), jax.jit(finish)

    def run_loop(key):
        key_init, x = start_jit(key)
        genomes, objective, violation, fitness = score(x)
        with jax.numpy_dtype_promotion("standard"):
            state = jax.jit(algorithm.init)(key_init, x, fitness, params)
        parts = [(genomes, objective, violation)]
        for generation in range(1, n_generations + 1):
            key_tell, x, state = step_jit(key, state, generation)
            genomes, objective, violation, fitness = score(x)
            state = finish_jit(key_tell, x, fitness, state)
            parts.append((genomes, objective, violation))
        stacked = [jnp.stack([p[i] for p in parts]) for i in range(3)]
        return output(state, *stacked)

    return run_loop


def search(
    name: str,
    upper: Sequence[int] | np.ndarray,
    evaluate_fn: Callable[[np.ndarray], tuple[np.ndarray, np.ndarray]],
    budget: int,
    key: jax.Array,
    population_size: int = 20,
    worst: float = 10.0,
    max_generations: int | None = None,
) -> dict[str, np.ndarray]:
    """An evosax search that evaluates ``budget`` distinct genomes (a Python loop).

    Args:
      name: ``"simple_ga"`` or ``"de"``.
      upper: int ``(n_genes,)`` largest level per gene.
      evaluate_fn: int32 numpy genomes ``(n, n_genes)``, each new, -> ``(objective
        (n,), violation (n,))`` (objective minimized, violation 0 when feasible); it
        may be an expensive, non-traceable evaluator.
      budget: distinct genomes to evaluate.
      key: PRNG key (NSGA-II's key schedule).
      population_size: genomes asked per generation.
      worst: see :func:`scalarize`.
      max_generations: stop after this many generations even below the budget
        (default ``20 * budget``, for spaces smaller than the budget).

    Returns:
      dict: ``genomes`` ``(n, n_genes)`` int32 distinct, in evaluation order (``n <=
      budget``), ``objective`` and ``violation`` ``(n,)``, ``best_genome``,
      ``best_fitness`` (scalarized), ``n_generations``.
    """
    upper = np.asarray(upper, np.int32)
    algorithm, params = make_algorithm(name, int(upper.size), population_size)
    max_generations = 20 * budget if max_generations is None else max_generations
    cache: dict[bytes, tuple[float, float]] = {}
    first_generation: dict[bytes, int] = {}
    generation = 0

    def fitness(x):
        genomes = np.asarray(levels_from(x, upper))
        new = [g for g in dict.fromkeys(g.tobytes() for g in genomes) if g not in cache]
        new = new[: budget - len(cache)]
        if new:
            fresh = np.stack([np.frombuffer(g, np.int32) for g in new])
            objective, violation = evaluate_fn(fresh)
            for g, o, v in zip(
                new, np.asarray(objective), np.asarray(violation), strict=True
            ):
                cache[g] = (float(o), float(v))
                first_generation[g] = generation
        # Genomes over the budget were never evaluated: they score worst of all.
        values = np.asarray(
            [cache.get(g.tobytes(), (np.inf, np.inf)) for g in genomes], np.float32
        )
        return scalarize(values[:, 0], values[:, 1], worst)

    key_sample, key_init = nsga2.initial_keys(key)
    x = _uniform_levels(
        key_sample, (population_size, upper.size), jnp.asarray(upper, jnp.float32)
    ).astype(jnp.float32)
    ask, tell = algorithm.ask, algorithm.tell  # jitted by evosax
    with jax.numpy_dtype_promotion("standard"):
        state = algorithm.init(key_init, x, fitness(x), params)
        while len(cache) < budget and generation < max_generations:
            generation += 1
            key_ask, key_tell = nsga2.generation_keys(key, generation)
            x, state = ask(key_ask, state, params)
            state, _ = tell(key_tell, x, fitness(x), state, params)
    genomes = np.stack([np.frombuffer(g, np.int32) for g in cache])
    values = np.asarray(list(cache.values()), np.float32)
    return {
        "genomes": genomes,
        "objective": values[:, 0],
        "violation": values[:, 1],
        "best_genome": np.asarray(levels_from(state.best_solution, upper)),
        "best_fitness": float(state.best_fitness),
        "generation": np.asarray(list(first_generation.values()), np.int32),
        "n_generations": generation,
    }


def comparison_lines(
    shares: Mapping[str, Sequence[float]], budget: int, what: str = "HV share"
) -> list[str]:
    """Markdown table lines: per method, median and range over seeds of ``shares``.

    Args:
      shares: method name -> one value per seed (e.g. the hypervolume share of the
        true Pareto front reached).
      budget: evaluations each method had (named in the header).
      what: the quantity's name.
    """
    lines = [
        f"| method ({budget} evaluations) | seeds | median {what} | range |",
        "|---|---|---|---|",
    ]
    for method, values in shares.items():
        values = np.asarray(values, np.float64)
        lines.append(
            f"| {method} | {len(values)} | {np.median(values):.3f} | "
            f"{values.min():.3f} – {values.max():.3f} |"
        )
    return lines
