"""evosax strategies through the scalarizing wrapper and the one driver, on a toy
problem with a numpy reference; NSGA-II as an evosax algorithm."""

import itertools

import chex
import jax.numpy as jnp
import numpy as np
import pytest
from evosax.algorithms.population_based.base import PopulationBasedAlgorithm

from mohaq_jax.evaluation import genome
from mohaq_jax.models import sru
from mohaq_jax.search import mohaq, nsga2, scalarized

SPACE = genome.silago_space(sru.sites(sru.paper_config()))  # 3^8 = 6561 genomes
UPPER = SPACE.upper
SPEED = np.asarray([3.0, 1.0, 2.0, 5.0, 1.0, 4.0, 2.0, 1.0], np.float32)
HARM = np.asarray([0.02, 0.01, 0.05, 0.03, 0.01, 0.04, 0.02, 0.01], np.float32)
MAX_ERROR = 0.25


def _toy_error(genomes):
    """float32 error of int genomes ``(n, 8)``: a lower level costs accuracy."""
    low = (UPPER - np.asarray(genomes)).astype(np.float32)
    return 0.1 + (low * low) @ HARM


def _numpy_problem(genomes):
    """Reference: normalized -speedup (minimized) and the error constraint's violation."""
    low = UPPER - genomes  # lower level = fewer bits = faster, less accurate
    speedup = low @ SPEED
    objective = 1.0 - speedup / (2.0 * SPEED.sum())
    return objective, np.maximum(_toy_error(genomes) - MAX_ERROR, 0.0) / MAX_ERROR


def _jax_problem(genomes):
    low = jnp.asarray(UPPER, jnp.float32)[None, :] - genomes.astype(jnp.float32)
    speedup = low @ jnp.asarray(SPEED)
    error = 0.1 + (low * low) @ jnp.asarray(HARM)
    objective = 1.0 - speedup / jnp.float32(2.0 * SPEED.sum())
    return objective, jnp.maximum(error - MAX_ERROR, 0.0) / MAX_ERROR


class ToyEvaluator:
    """The toy problem's error as a population evaluator (no model)."""

    space, genome_batch = SPACE, None

    def __call__(self, genomes, batch):
        del batch
        return {"phone_error": _toy_error(genomes)}


def _toy_cost(genome_levels):
    low = jnp.asarray(UPPER, jnp.float32) - genome_levels.astype(jnp.float32)
    return {"speedup": low @ jnp.asarray(SPEED)}


def _toy_search_problem(seed):
    """MOHAQ's budget (40 + 15 x 10 = 190 distinct genomes) on the toy problem: the
    driver's normalized speedup objective and error constraint are the reference's."""
    config = mohaq.SearchConfig(
        objectives=("error", "speedup"),
        maximize=("speedup",),
        seed=seed,
        max_error=MAX_ERROR,
        memory_limit_mb=None,
    )
    ideal, nadir = [0.0, -2.0 * float(SPEED.sum())], [MAX_ERROR, 0.0]
    return mohaq.QuantizationProblem(
        ToyEvaluator(), _toy_cost, None, config, ideal, nadir
    )


def test_levels_and_scalarization_by_hand():
    x = jnp.asarray([[-0.7, 0.5, 1.5, 2.6], [0.49, 1.51, 3.0, -0.2]])
    np.testing.assert_array_equal(
        scalarized.levels_from(x, [2, 2, 2, 2]), [[0, 0, 2, 2], [0, 2, 2, 0]]
    )
    np.testing.assert_allclose(
        scalarized.scalarize(jnp.asarray([0.3, 0.9, 0.1]), [0.0, 0.0, 0.5]),
        [0.3, 0.9, 10.5],
    )


def _optimum_and_random_gaps(budget, n_seeds=20):
    every = np.asarray(list(itertools.product(range(3), repeat=8)))
    objective, violation = _numpy_problem(every)
    optimum = objective[violation <= 0].min()
    gaps = []
    for seed in range(n_seeds):  # random search over `budget` distinct genomes
        chosen = np.random.default_rng(seed).permutation(len(every))[:budget]
        o, v = objective[chosen], violation[chosen]
        gaps.append(o[v <= 0].min() - optimum)
    return optimum, np.asarray(gaps)


@pytest.mark.parametrize("name", ["simple_ga", "de"])
def test_driver_at_paper_budget_against_random_search(name):
    """190 distinct evaluations (MOHAQ's budget) by the one driver, against random
    search's 190; the driver's scores are the numpy reference's."""
    optimum, random_gaps = _optimum_and_random_gaps(190)
    gaps = []
    for seed in range(2):
        problem = _toy_search_problem(seed)
        result = mohaq.run_search(problem, progress=False, algorithm=name)
        genomes = result.genomes
        assert len(genomes) == 190 == len({g.tobytes() for g in genomes})
        objective, violation = _numpy_problem(genomes)
        fitness, _ = problem.fitness(result.metrics)
        chex.assert_shape(fitness, (190, 2))
        np.testing.assert_allclose(fitness[:, 1], objective, rtol=1e-5, atol=1e-6)
        np.testing.assert_array_equal(result.feasible, violation <= 0)
        gaps.append(objective[violation <= 0].min() - optimum)
    print(
        f"{name}: median gap {np.median(gaps):.3f} (random search "
        f"{np.median(random_gaps):.3f}, worst {random_gaps.max():.3f})"
    )
    assert np.median(gaps) <= random_gaps.max()


def test_nsga2_is_an_evosax_algorithm(key):
    strategy = nsga2.NSGA2(10, 6, UPPER)
    assert isinstance(strategy, PopulationBasedAlgorithm)
    assert strategy.population_size == 6 and strategy.num_dims == 8
    params = strategy.default_params
    population = strategy.sample(key)
    objective, violation = _jax_problem(population)
    fitness = (jnp.stack([objective, -objective * objective], 1), violation[:, None])
    state = strategy.init(key, population, fitness, params)
    for generation in range(1, 4):
        key_ask, key_tell = nsga2.generation_keys(key, generation)
        offspring, state = strategy.ask(key_ask, state, params)  # evosax's ask
        chex.assert_shape(offspring, (6, 8))
        objective, violation = _jax_problem(offspring)
        fitness = (
            jnp.stack([objective, -objective * objective], 1),
            violation[:, None],
        )
        state, metrics = strategy.tell(key_tell, offspring, fitness, state, params)
    # best_solution: feasible first, then the smallest first objective (numpy check).
    genomes, objectives, violations, valid = (
        np.asarray(a) for a in nsga2.archive(state)
    )
    order = np.lexsort((objectives[valid, 1], objectives[valid, 0], violations[valid]))
    np.testing.assert_array_equal(
        strategy.get_best_solution(state), genomes[valid][order[0]]
    )
    np.testing.assert_allclose(metrics["best_fitness"], objectives[valid][order[0]])
