"""Single-objective mode: evosax's own algorithms on a scalarized, constrained problem.

MOHAQ (Rashed et al. 2021) searches the whole error/speed/energy front with NSGA-II. A
common simpler question is one point of it: *maximize speedup subject to error <= eps*
(and memory <= limit). This module answers it with evosax 0.3's population-based
algorithms (``SimpleGA``, ``DifferentialEvolution``) and the same evaluation budget as
NSGA-II, so the two can be compared (``benchmarks/search_quality.py``).

* **Scalarization** (:func:`scalarize`), Deb's feasibility rule folded into one
  minimized number: a feasible genome scores its objective (normalized to ``[0, 1]`` by
  the driver, so below ``worst``), an infeasible one ``worst + violation``; every
  feasible genome beats every infeasible one, and less violation beats more.
* **Continuous to genes** (:func:`levels_from`): evosax searches ``x`` in
  ``R^n_genes``; gene ``i``'s level is ``clip(round(x_i), 0, upper_i)`` (half to
  even). The initial population holds uniformly random levels as floats, SimpleGA's
  Gaussian mutation has standard deviation 1 level, DE its default settings.
* The algorithms are evosax's, unchanged; they rely on NumPy-style dtype promotion
  (SimpleGA multiplies floats by ``1 - bool_mask``), so they are traced under
  ``jax.numpy_dtype_promotion("standard")``.

Budget: :func:`search` counts distinct genomes (repeats come from a cache, as in the
MOHAQ driver, and cost nothing), as NSGA-II, which never asks a genome twice, does;
evosax's algorithms repeat genomes often on small integer spaces (on 3^8 genomes a
SimpleGA of 10 asks about 400 genomes to find 110 distinct ones). :func:`make_run`
(one ``lax.scan``, vmappable over seeds) counts every genome asked instead.
"""

from __future__ import annotations

import functools
import math
import time
from collections.abc import Callable, Mapping, Sequence

import jax
import jax.numpy as jnp
import numpy as np
import optax
from evosax.algorithms.population_based import DifferentialEvolution, SimpleGA

from mohaq_jax.search import nsga2
from mohaq_jax.search.variation import _uniform_levels

__all__ = [
    "ALGORITHMS",
    "comparison_lines",
    "levels_from",
    "make_algorithm",
    "make_run",
    "run_problem",
    "scalarize",
    "search",
    "target_objective",
]

ALGORITHMS = ("simple_ga", "de")  # the --algorithm choices besides "nsga2"


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


def target_objective(objectives: Sequence[str], maximize: Sequence[str]) -> str:
    """The objective the single-objective mode optimizes: ``speedup`` when searched,
    else the first maximized objective, else the first one besides ``error``."""
    if "speedup" in objectives:
        return "speedup"
    for name in objectives:
        if name in maximize:
            return name
    others = [n for n in objectives if n != "error"]
    if not others:
        raise ValueError(f"no objective besides error in {tuple(objectives)}")
    return others[0]


def run_problem(
    problem,
    algorithm: str,
    objective: str | None = None,
    population_size: int = 20,
    state=None,
):
    """The single-objective search on a MOHAQ problem, at NSGA-II's budget.

    Minimizes ``problem``'s normalized ``objective`` column (default:
    :func:`target_objective`; speedup is negated, so this maximizes it) subject to its
    constraints (error <= max error, memory <= limit), evaluating ``config.budget``
    (default ``pop_size + n_generations * n_offspring``, MOHAQ's 190) distinct genomes
    through the problem's cache.

    Args:
      state: the problem's state to start from (None: a fresh one); a state from an
        earlier search of the same problem lends its scores, so genomes both searches
        ask for are evaluated once. The budget counts this search's genomes only.

    Returns:
      :class:`~mohaq_jax.search.mohaq.SearchResult` (its front: the feasible
      non-dominated genomes among those evaluated, in all of the problem's
      objectives; history: one row).
    """
    from mohaq_jax.search import hypervolume, mohaq  # the driver sits above

    cfg = problem.config
    if objective is None:
        objective = target_objective(cfg.objectives, cfg.maximize)
    if objective not in cfg.objectives:
        raise ValueError(f"objective {objective!r} is not among {cfg.objectives}")
    column = cfg.objectives.index(objective)
    budget = cfg.budget or cfg.pop_size + cfg.n_generations * cfg.n_offspring
    state = problem.initial_state() if state is None else state

    def evaluate_fn(genomes):
        nonlocal state  # the problem's score cache, threaded through the search
        state, results = problem.evaluate(state, genomes)
        objectives, constraints = problem.fitness(results)
        return (
            np.asarray(objectives)[:, column],
            np.asarray(nsga2.total_violation(constraints)),
        )

    start = time.perf_counter()
    out = search(
        algorithm,
        problem.space.upper,
        evaluate_fn,
        budget,
        jax.random.key(cfg.seed),
        population_size,
    )
    seconds = time.perf_counter() - start
    result = mohaq.archive_result(
        problem, state, out["genomes"], out["generation"], [], seconds
    )
    objectives, _ = problem.fitness(result.metrics)
    ref = jnp.ones(objectives.shape[1], jnp.float32)
    feasible = result.feasible
    result.history.append(
        {
            "generation": int(out["n_generations"]),
            "n_evaluations": len(result.genomes),
            "n_feasible": int(feasible.sum()),
            "best_error": float(result.metrics["error"][feasible].min())
            if feasible.any()
            else float("nan"),
            "hypervolume": float(
                hypervolume.hypervolume(objectives, ref, jnp.asarray(result.front))
            ),
            "seconds": seconds,
        }
    )
    return result


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
