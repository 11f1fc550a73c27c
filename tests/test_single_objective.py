"""Single-objective evosax searches and NSGA-II as an evosax algorithm."""

import itertools

import jax
import jax.numpy as jnp
import numpy as np
import pytest
from evosax.algorithms.population_based.base import PopulationBasedAlgorithm

from mohaq_jax.search import nsga2, scalarized, single_objective

UPPER = np.full(8, 2)  # 3^8 = 6561 genomes, the SiLago space's shape
SPEED = np.asarray([3.0, 1.0, 2.0, 5.0, 1.0, 4.0, 2.0, 1.0], np.float32)
HARM = np.asarray([0.02, 0.01, 0.05, 0.03, 0.01, 0.04, 0.02, 0.01], np.float32)


def _numpy_problem(genomes):
    """Reference: normalized -speedup (minimized) and the error constraint's violation."""
    low = UPPER - genomes  # lower level = fewer bits = faster, less accurate
    speedup = low @ SPEED
    error = 0.1 + (low * low) @ HARM
    return 1.0 - speedup / (2.0 * SPEED.sum()), np.maximum(error - 0.25, 0.0) / 0.25


def _jax_problem(genomes):
    low = jnp.asarray(UPPER, jnp.float32)[None, :] - genomes.astype(jnp.float32)
    speedup = low @ jnp.asarray(SPEED)
    error = 0.1 + (low * low) @ jnp.asarray(HARM)
    objective = 1.0 - speedup / jnp.float32(2.0 * SPEED.sum())
    return objective, jnp.maximum(error - 0.25, 0.0) / 0.25


def test_levels_and_scalarization_by_hand():
    x = jnp.asarray([[-0.7, 0.5, 1.5, 2.6], [0.49, 1.51, 3.0, -0.2]])
    np.testing.assert_array_equal(
        scalarized.levels_from(x, [2, 2, 2, 2]), [[0, 0, 2, 2], [0, 2, 2, 0]]
    )
    np.testing.assert_allclose(
        scalarized.scalarize(jnp.asarray([0.3, 0.9, 0.1]), [0.0, 0.0, 0.5]),
        [0.3, 0.9, 10.5],
    )
    with pytest.raises(ValueError, match="--algorithm"):
        single_objective.make_algorithm("cmaes", 3, 10)


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


@pytest.mark.parametrize("name", single_objective.ALGORITHMS)
def test_scan_run_is_consistent(name):
    run = single_objective.make_run(name, UPPER, _jax_problem, budget=200)
    out = jax.jit(jax.vmap(run))(jax.vmap(jax.random.key)(jnp.arange(2)))
    assert out["genomes"].shape == (2, 200, 8)
    for seed in range(2):
        genomes = np.asarray(out["genomes"][seed])
        ref_objective, ref_violation = _numpy_problem(genomes)
        np.testing.assert_allclose(out["objective"][seed], ref_objective, rtol=1e-5)
        fitness = np.where(ref_violation <= 0, ref_objective, 10.0 + ref_violation)
        assert float(out["best_fitness"][seed]) == pytest.approx(fitness.min(), 1e-5)
        best = np.asarray(out["best_genome"][seed])
        np.testing.assert_allclose(
            _numpy_problem(best[None])[0], fitness.min(), rtol=1e-5
        )


@pytest.mark.parametrize("name", single_objective.ALGORITHMS)
def test_search_at_paper_budget_against_random_search(name):
    """190 distinct evaluations (MOHAQ's budget) against random search's 190."""
    optimum, random_gaps = _optimum_and_random_gaps(190)
    gaps = []
    for seed in range(4):
        out = single_objective.search(
            name, UPPER, _numpy_problem, 190, jax.random.key(seed)
        )
        genomes = out["genomes"]
        assert len(genomes) == 190 == len({g.tobytes() for g in genomes})
        objective, violation = _numpy_problem(genomes)
        np.testing.assert_allclose(out["objective"], objective, rtol=1e-6)
        fitness = np.where(violation <= 0, objective, 10.0 + violation)
        assert out["best_fitness"] == pytest.approx(fitness.min(), rel=1e-5)
        assert _numpy_problem(out["best_genome"][None])[1][0] <= 0  # feasible
        gaps.append(out["best_fitness"] - optimum)
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


def test_comparison_lines():
    lines = single_objective.comparison_lines(
        {"nsga2": [0.9, 0.8, 1.0], "de": [0.5, 0.7, 0.6]}, 190
    )
    assert lines[0].startswith("| method (190 evaluations)")
    assert lines[2] == "| nsga2 | 3 | 0.900 | 0.800 – 1.000 |"
    assert lines[3] == "| de | 3 | 0.600 | 0.500 – 0.700 |"
