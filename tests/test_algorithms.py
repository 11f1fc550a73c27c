"""The algorithm registry and the one driver: every algorithm searched end to end,
budget in distinct genomes, resume == uninterrupted; MOEA/D's selection against a
plain numpy loop and its weights by hand."""

import chex
import jax
import jax.numpy as jnp
import numpy as np
import pytest

from mohaq_jax.search import moead, mohaq
from mohaq_jax.search.algorithms import ALGORITHMS
from mohaq_jax.search.scalarized import levels_from
from tests.conftest import make_problem


@pytest.mark.parametrize("name", sorted(ALGORITHMS))
def test_every_algorithm_searches_within_the_budget(problem_parts, name):
    problem = make_problem(problem_parts, memory_limit_mb=0.02)
    result = mohaq.run_search(problem, progress=False, algorithm=name)
    budget = 6 + 4 * 3  # pop_size + n_generations * n_offspring
    keys = [g.tobytes() for g in result.genomes]
    assert len(keys) == len(set(keys)) == result.state.n_evaluated <= budget
    if name != "nsga2":  # the others run until the budget is spent
        assert len(keys) == budget
    # every reported metric is the evaluator's for that genome
    direct = problem.errors(result.genomes)["phone_error"]
    np.testing.assert_array_equal(result.metrics["error"], direct)
    np.testing.assert_array_equal(result.feasible, result.metrics["memory_mb"] <= 0.02)
    assert np.all(result.feasible[result.front])
    assert [h["generation"] for h in result.history] == list(range(len(result.history)))


@pytest.mark.parametrize("name", ["moead", "cma_es"])
def test_resume_gives_the_same_search(problem_parts, tmp_path, name):
    full = mohaq.run_search(
        make_problem(problem_parts), tmp_path / "a", progress=False, algorithm=name
    )
    mohaq.run_search(
        make_problem(problem_parts),
        tmp_path / "b",
        progress=False,
        algorithm=name,
        stop_after=1,
    )
    resumed = mohaq.run_search(
        make_problem(problem_parts),
        tmp_path / "b",
        resume=True,
        progress=False,
        algorithm=name,
    )
    assert resumed.resumed
    np.testing.assert_array_equal(resumed.genomes, full.genomes)
    np.testing.assert_array_equal(resumed.generation, full.generation)
    np.testing.assert_array_equal(resumed.front, full.front)


def test_resume_refuses_another_algorithm(problem_parts, tmp_path):
    mohaq.run_search(make_problem(problem_parts), tmp_path, progress=False)
    with pytest.raises(Exception, match="algorithm"):
        mohaq.run_search(
            make_problem(problem_parts),
            tmp_path,
            resume=True,
            progress=False,
            algorithm="moead",
        )


def test_unknown_algorithm_names_the_choices(problem_parts):
    with pytest.raises(ValueError, match="nsga2"):
        mohaq.Searcher(make_problem(problem_parts), "cmaes")


def test_budget_spent_leaves_the_rest_unscored(problem_parts):
    """A budget that is not a whole number of generations: exactly that many."""
    problem = make_problem(problem_parts, budget=10)
    result = mohaq.run_search(problem, progress=False, algorithm="moead")
    assert len(result.genomes) == result.state.n_evaluated == 10


def test_levels_round_half_to_even_and_clip():
    x = jnp.asarray([[0.5, 1.5, 2.5, -3.0]])
    np.testing.assert_array_equal(levels_from(x, [2, 2, 3, 2]), [[0, 2, 2, 0]])


# ---- MOEA/D ----------------------------------------------------------------------


def test_weights_by_hand():
    # 2 objectives, 5 subproblems: the lattice of 4 divisions, zeros as 1e-6
    np.testing.assert_allclose(
        moead.weights(5, 2),
        [[1e-6, 1], [0.25, 0.75], [0.5, 0.5], [0.75, 0.25], [1, 1e-6]],
        rtol=1e-6,
    )
    w = moead.weights(40, 3)  # 45-point lattice (8 divisions) thinned to 40
    assert w.shape == (40, 3) and len(np.unique(w, axis=0)) == 40
    np.testing.assert_allclose(np.round(w.sum(1), 4), 1.0)
    hoods = moead.neighbours(moead.weights(5, 2), 2)
    np.testing.assert_array_equal(hoods[:, 0], np.arange(5))  # itself first
    np.testing.assert_array_equal(hoods[2], [2, 1])  # ties: the lower index


def _replace_reference(
    population,
    objectives,
    violation,
    ideal,
    subproblems,
    child_objectives,
    child_violation,
    children,
    weights,
    hoods,
):
    """MOEA/D's replacement as a plain numpy loop (Zhang & Li 2007, Alg. 1 step 2.4,
    with Deb's rule for constraints)."""
    population, objectives = population.copy(), objectives.copy()
    violation = violation.copy()
    ideal = np.minimum(ideal, child_objectives.min(axis=0))
    for c in range(len(children)):
        for j in hoods[subproblems[c]]:
            g_child = np.max(weights[j] * np.abs(child_objectives[c] - ideal))
            g_kept = np.max(weights[j] * np.abs(objectives[j] - ideal))
            if child_violation[c] < violation[j] or (
                child_violation[c] == violation[j] and g_child < g_kept
            ):
                population[j] = children[c]
                objectives[j] = child_objectives[c]
                violation[j] = child_violation[c]
    return population, objectives, violation, ideal


def test_replacement_equals_a_numpy_loop():
    rng = np.random.default_rng(0)
    pop, n_obj, n_genes, n_children = 12, 3, 5, 6
    weights = moead.weights(pop, n_obj)
    hoods = moead.neighbours(weights, 4)
    population = rng.integers(0, 3, (pop, n_genes)).astype(np.int32)
    objectives = rng.random((pop, n_obj)).astype(np.float32)
    violation = np.where(rng.random(pop) < 0.3, rng.random(pop), 0).astype(np.float32)
    children = rng.integers(0, 3, (n_children, n_genes)).astype(np.int32)
    child_objectives = rng.random((n_children, n_obj)).astype(np.float32)
    child_violation = np.where(
        rng.random(n_children) < 0.3, rng.random(n_children), 0
    ).astype(np.float32)
    subproblems = np.asarray([3, 4, 3, 10, 11, 0], np.int32)  # overlapping hoods
    ideal = objectives.min(axis=0)
    state = moead.State(
        jnp.asarray(population),
        jnp.asarray(objectives),
        jnp.asarray(violation),
        jnp.asarray(ideal),
        jnp.int32(0),
    )
    replace = chex.assert_max_traces(moead.replace, n=1)
    got = jax.jit(replace)(
        state,
        jnp.asarray(subproblems),
        jnp.asarray(child_objectives),
        jnp.asarray(child_violation),
        jnp.asarray(children),
        jnp.asarray(weights),
        jnp.asarray(hoods),
    )
    want = _replace_reference(
        population, objectives, violation, ideal, subproblems,
        child_objectives, child_violation, children, weights, hoods,
    )  # fmt: skip
    np.testing.assert_array_equal(got.population, want[0])
    np.testing.assert_array_equal(got.objectives, want[1])
    np.testing.assert_array_equal(got.violation, want[2])
    np.testing.assert_array_equal(got.ideal, want[3])
    assert (got.population != population).any()  # the case replaces something
    chex.assert_shape(got.population, (pop, n_genes))
