"""The MOHAQ search driver: caching, constraints, resume == uninterrupted, outputs."""

import csv
import json
import os

import numpy as np
import pytest

from mohaq_jax.search import mohaq, report
from tests.conftest import make_problem


def test_cache_skips_known_genomes(problem_parts):
    problem = make_problem(problem_parts)
    g = np.asarray([[0, 1, 2, 0, 1], [2, 2, 2, 2, 2]])
    empty = problem.initial_state()
    state, first = problem.evaluate(empty, g)
    assert state.n_evaluated == 2 and empty.n_evaluated == 0  # a new value
    state2, again = problem.evaluate(state, g[::-1])
    assert state2.n_evaluated == 2
    np.testing.assert_array_equal(again["error"], first["error"][::-1])
    # the cached errors are the evaluator's, genome by genome
    direct = problem.errors(g)["phone_error"]
    np.testing.assert_array_equal(first["error"], direct)


def test_problem_is_immutable(problem_parts):
    problem = make_problem(problem_parts)
    with pytest.raises(AttributeError, match="immutable"):
        problem.config = None


def test_step_by_step_equals_run_search(problem_parts):
    """The pure driver: init + steps reproduce run_search, and a step never changes
    the state it was given."""
    problem = make_problem(problem_parts)
    searcher = mohaq.Searcher(problem)
    state = searcher.init()
    first = state
    while not searcher.done(state):
        state = searcher.step(state)
    assert first.generation == 0 and len(first.history) == 1
    assert first.problem.n_evaluated == 6
    stepped = searcher.result(state)
    full = mohaq.run_search(make_problem(problem_parts), None, progress=False)
    np.testing.assert_array_equal(stepped.genomes, full.genomes)
    np.testing.assert_array_equal(stepped.front, full.front)
    assert stepped.state.n_evaluated == full.state.n_evaluated == len(full.genomes)


def test_fitness_constraints_by_hand(problem_parts):
    problem = make_problem(problem_parts, max_error=0.5, memory_limit_mb=2.0)
    results = {
        "error": np.asarray([0.25, 0.75]),
        "speedup": np.asarray([2.0, 4.0]),
        "energy_pj": np.asarray([5e4, 1e4]),
        "memory_mb": np.asarray([1.0, 3.0]),
    }
    objectives, constraints = problem.fitness(results)
    # error 0.25 -> 0.25/10; -speedup -2 -> (-2 + 4)/3; energy 5e4 -> 0.5
    np.testing.assert_allclose(objectives[0], [0.025, 2 / 3, 0.5], rtol=1e-6)
    # memory (1-2)/2 = -0.5, error (0.25-0.5)/0.5 = -0.5; second: 0.5 and 0.5
    np.testing.assert_allclose(constraints, [[-0.5, -0.5], [0.5, 0.5]], rtol=1e-6)


def test_resume_gives_same_front_as_uninterrupted(problem_parts, tmp_path):
    full = mohaq.run_search(make_problem(problem_parts), tmp_path / "a", progress=False)
    crashed = mohaq.run_search(
        make_problem(problem_parts), tmp_path / "b", progress=False, stop_after=2
    )
    assert crashed.history[-1]["generation"] == 2
    fresh_problem = make_problem(problem_parts)
    resumed = mohaq.run_search(
        fresh_problem, tmp_path / "b", resume=True, progress=False
    )
    assert resumed.resumed
    # the restored cache counts every genome once: none was evaluated twice
    assert resumed.state.n_evaluated == len(full.genomes)
    assert len(crashed.genomes) < len(full.genomes)
    np.testing.assert_array_equal(resumed.genomes, full.genomes)
    np.testing.assert_array_equal(resumed.front, full.front)
    np.testing.assert_allclose(resumed.metrics["error"], full.metrics["error"])
    assert [h["generation"] for h in resumed.history] == list(range(5))


def test_resume_refuses_other_settings(problem_parts, tmp_path):
    mohaq.run_search(
        make_problem(problem_parts), tmp_path, progress=False, stop_after=1
    )
    with pytest.raises(ValueError, match="seed"):
        mohaq.run_search(
            make_problem(problem_parts, seed=2), tmp_path, resume=True, progress=False
        )


def test_front_is_feasible_and_nondominated(problem_parts):
    result = mohaq.run_search(
        make_problem(problem_parts, memory_limit_mb=0.01), None, progress=False
    )
    assert len(result.genomes) == 6 + 4 * 3
    assert len({g.tobytes() for g in result.genomes}) == len(result.genomes)
    m = result.metrics
    pts = np.stack([m["error"], -m["speedup"], m["energy_pj"]], 1)
    for i in np.flatnonzero(result.front):
        assert result.feasible[i] and m["memory_mb"][i] <= 0.01
        others = pts[result.feasible]
        dominated = np.all(others <= pts[i], 1) & np.any(others < pts[i], 1)
        assert not dominated.any()


def test_outputs_written(problem_parts, tmp_path):
    _, _, _, space, batch = problem_parts
    problem = make_problem(problem_parts)
    result = mohaq.run_search(problem, tmp_path, progress=False)
    front = np.flatnonzero(result.front)
    test = problem.errors(result.genomes[front], batch)
    paths = report.write_outputs(
        str(tmp_path),
        space,
        result,
        ("error", "speedup", "energy_pj"),
        {"error": test["phone_error"]},
        [{"name": "float32", "dev_error": 0.5, "test_error": 0.6}],
        {"seed": 1},
        notice="SYNTHETIC",
        title="t",
    )
    with open(paths["pareto.csv"]) as f:
        rows = list(csv.DictReader(f))
    assert len(rows) == len(front) > 0
    with open(paths["archive.csv"]) as f:
        assert len(list(csv.DictReader(f))) == len(result.genomes)
    doc = json.load(open(paths["pareto.json"]))
    assert doc["notice"] == "SYNTHETIC" and len(doc["solutions"]) == len(front)
    assert "sru1" in doc["solutions"][0]["layers"]
    text = open(paths["report.md"]).read()
    assert "SYNTHETIC" in text and "Pareto set" in text
    for name in ("hypervolume.png", "pareto_error_vs_speedup.png"):
        assert os.path.getsize(tmp_path / name) > 1000
    assert len(os.listdir(tmp_path / "configs")) == len(front)


@pytest.mark.parametrize("algorithm", ["simple_ga", "de"])
def test_single_objective_mode_at_the_same_budget(problem_parts, algorithm):
    problem = make_problem(problem_parts, memory_limit_mb=0.02)
    result = mohaq.run_search(problem, progress=False, algorithm=algorithm)
    budget = 6 + 4 * 3  # NSGA-II's: pop_size + n_generations * n_offspring
    assert len(result.genomes) == budget == result.state.n_evaluated
    assert len({g.tobytes() for g in result.genomes}) == budget
    m = result.metrics
    np.testing.assert_array_equal(
        result.feasible, (m["memory_mb"] <= 0.02) & (m["error"] <= 10.0)
    )
    assert np.all(result.feasible[result.front])
    # Started from an NSGA-II search's state (same problem): the same search, the
    # shared genomes scored once.
    nsga = mohaq.run_search(problem, None, progress=False)
    warm = mohaq.run_search(
        problem, progress=False, algorithm=algorithm, problem_state=nsga.state
    )
    np.testing.assert_array_equal(warm.genomes, result.genomes)
    np.testing.assert_array_equal(warm.metrics["error"], m["error"])
    np.testing.assert_array_equal(warm.front, result.front)
    shared = {g.tobytes() for g in nsga.genomes} & {g.tobytes() for g in result.genomes}
    assert warm.state.n_evaluated == len(nsga.genomes) + budget - len(shared)


def test_initial_population_holds_every_uniform_genome(problem_parts):
    """--seed-uniform (default): all-4, all-8, all-16 are scored in generation 0, so
    the search's archive is never worse than the best uniform genome."""
    from mohaq_jax.search import seeding

    seeded = mohaq.Searcher(make_problem(problem_parts)).init()
    scored = set(seeded.problem.scores.entries)  # keyed by the genomes' bytes
    uniform = seeding.uniform_genomes(problem_parts[3])
    assert len(uniform) == 3
    assert all(u.tobytes() in scored for u in uniform)
    random = mohaq.Searcher(make_problem(problem_parts, seed_uniform=False)).init()
    assert random.problem.n_evaluated == seeded.problem.n_evaluated == 6
    # the same seed, the same seeded population (deterministic)
    again = mohaq.Searcher(make_problem(problem_parts)).init()
    assert set(again.problem.scores.entries) == scored
