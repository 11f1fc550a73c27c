"""Surrogate-assisted search: the ridge fit, the features, determinism, real budget."""

import jax
import jax.numpy as jnp
import numpy as np
import pytest

from mohaq_jax.search import mohaq, nsga2, pareto, sensitivity, surrogate
from tests.conftest import make_problem


def test_ridge_against_numpy_closed_form():
    """w = (X'X + lambda I)^-1 X'y over the masked rows; a masked row changes nothing."""
    x = np.asarray([[1.0, 0.0], [1.0, 1.0], [1.0, 2.0], [1.0, 3.0], [5.0, 5.0]])
    y = np.asarray([1.0, 3.0, 5.0, 7.5, 100.0])
    mask = np.asarray([True, True, True, True, False])
    weights, covariance, noise = surrogate.fit_ridge(
        jnp.asarray(x, jnp.float32), jnp.asarray(y, jnp.float32), jnp.asarray(mask), 0.5
    )
    xs, ys = x[:4], y[:4]
    inverse = np.linalg.inv(xs.T @ xs + 0.5 * np.eye(2))
    expected = inverse @ xs.T @ ys
    np.testing.assert_allclose(weights, expected, rtol=1e-5)
    np.testing.assert_allclose(covariance, inverse, rtol=1e-5)
    residual = ys - xs @ expected
    assert float(noise) == pytest.approx(np.sum(residual**2) / 3, rel=1e-4)


def test_design_matrix_by_hand():
    proxy = sensitivity.Proxy(
        base=jnp.float32(0.5),
        increase=jnp.asarray([[0.25, 0.0, 0.0], [0.125, 0.0, 0.0]], jnp.float32),
    )
    features = surrogate.design_matrix([2, 1], proxy, jnp.asarray([[0, 1], [2, 0]]))
    # [1, proxy, proxy^2, gene 0 at 0/1/2, gene 1 at 0/1]
    np.testing.assert_allclose(
        features,
        [[1, 0.75, 0.5625, 1, 0, 0, 0, 1], [1, 0.625, 0.390625, 0, 0, 1, 1, 0]],
    )


class CountingEvaluator:
    """The problem's evaluator, counting every genome it is asked to score."""

    def __init__(self, evaluator):
        self.evaluator, self.space, self.genome_batch = (
            evaluator,
            evaluator.space,
            evaluator.genome_batch,
        )
        self.rows = []

    def __call__(self, genomes, batch, params=None):
        self.rows.extend(map(tuple, np.asarray(genomes).tolist()))
        return self.evaluator(genomes, batch, params)


def assisted_problem(parts, **overrides):
    plain = make_problem(
        parts, pop_size=14, n_offspring=3, n_generations=3, surrogate=True,
        seed_proxy=True, **overrides,
    )  # fmt: skip
    counting = CountingEvaluator(plain.evaluator)
    problem = mohaq.QuantizationProblem(
        counting, _cost_fn(plain),
        plain.batch, plain.config, plain.ideal, plain.nadir,
    )  # fmt: skip
    return problem, counting


def _cost_fn(problem):
    from mohaq_jax import hardware

    return hardware.get_platform("silago").make_cost_fn(problem.space)


def test_assisted_run_is_deterministic_and_counts_real_evaluations(problem_parts):
    problem, counting = assisted_problem(problem_parts)
    first = mohaq.run_search(problem, progress=False)
    n_calls = len(counting.rows)
    again = mohaq.run_search(problem, progress=False)
    np.testing.assert_array_equal(first.genomes, again.genomes)
    np.testing.assert_array_equal(first.metrics["error"], again.metrics["error"])
    # Every genome the evaluator scored is a distinct archived one, and the budget
    # (population + generations x offspring) holds: screened candidates cost nothing.
    scored = counting.rows[:n_calls]
    assert len(scored) == len(set(scored)) == first.state.n_evaluated
    assert set(scored) == set(map(tuple, first.genomes.tolist()))
    cfg = problem.config
    assert len(first.genomes) == cfg.pop_size + cfg.n_generations * cfg.n_offspring
    # The sensitivity genomes lead the initial population.
    sens = sensitivity.genomes(problem.space.upper)
    np.testing.assert_array_equal(first.genomes[: len(sens)], sens)


def test_report_counts_the_stage_run_inside_the_search(problem_parts):
    from mohaq_jax.search import sensitivity_report

    problem, counting = assisted_problem(problem_parts)
    result = mohaq.run_search(problem, progress=False)
    n_scored = len(counting.rows)
    stage_seconds = result.history[0]["sensitivity_seconds"]
    assert 0 < stage_seconds <= result.seconds
    report = sensitivity_report.sensitivity_section(problem, result, None, True, True)
    summary = report.summary
    # Every stage genome was scored by the search: the report evaluates nothing more.
    assert len(counting.rows) == n_scored
    assert summary["in_search"] and summary["n_scored_for_report"] == 0
    n_stage = len(sensitivity.genomes(problem.space.upper))
    assert summary["share_of_evaluations"] == n_stage / len(result.genomes)
    assert stage_seconds <= summary["seconds"] < stage_seconds + 1.0
    assert summary["share_of_search_seconds"] == summary["seconds"] / result.seconds


def test_screening_prefers_predicted_front():
    """With an exact model (additive error, proxy = truth), every chosen offspring is
    non-dominated among the candidates the wrapped algorithm proposed."""
    upper = np.asarray([2, 2, 2, 2])
    weights = np.asarray([[0.3, 0.1, 0.0], [0.2, 0.05, 0.0], [0.4, 0.2, 0.0],
                          [0.1, 0.02, 0.0]])  # fmt: skip

    def true_error(genomes):
        return jnp.asarray(weights)[jnp.arange(4)[None], genomes].sum(1)

    def fitness_fn(genomes, error):
        size = genomes.sum(1).astype(jnp.float32) / 8.0
        objectives = jnp.stack([error, size], axis=1)
        return objectives, jnp.zeros((genomes.shape[0], 1)) - 1.0

    def evaluate_fn(genomes):
        return fitness_fn(genomes, true_error(genomes))

    strategy = nsga2.NSGA2(12, 4, upper)
    options = surrogate.SurrogateOptions(candidates=6, explore=0.0, ridge=1e-3)
    wrapped = surrogate.assisted(strategy, fitness_fn, options)
    run = surrogate.make_run(wrapped, evaluate_fn, 2)
    state, metrics = jax.jit(run)(jax.random.key(0))
    # The model (proxy prior, additive truth) predicts the archive exactly.
    valid = np.arange(state.errors.shape[0]) < int(state.count)
    mean, _ = wrapped.predict(state, state.genomes)
    np.testing.assert_allclose(
        np.asarray(mean)[valid], np.asarray(state.errors)[valid], atol=1e-3
    )
    key = jax.random.key(5)
    offspring, asked = jax.jit(wrapped.ask)(key, state, wrapped.default_params)
    keys = jax.random.split(key, options.candidates)
    pools = jnp.concatenate([strategy.ask(k, state.inner, strategy.default_params)[0]
                             for k in keys])  # fmt: skip
    pool_objectives, _ = evaluate_fn(pools)
    chosen_objectives, _ = evaluate_fn(offspring)
    dominated = jax.vmap(
        lambda o: jnp.any(jax.vmap(lambda p: pareto.dominates(p, o))(pool_objectives))
    )(chosen_objectives)
    # Chosen ones are on the pool's front unless the front is smaller than n_offspring.
    pool_front = int(pareto.pareto_mask(pool_objectives).sum())
    assert int(dominated.sum()) <= max(0, 4 - pool_front)
    assert int(asked.n_screened) > 4
    assert metrics["n_screened"].shape == (2,)


def test_make_run_vmaps_over_seeds():
    upper = np.asarray([2, 2, 2])

    def evaluate_fn(genomes):
        error = (2 - genomes).astype(jnp.float32).sum(1) ** 2 / 10.0
        size = genomes.sum(1).astype(jnp.float32)
        return jnp.stack([error, size], 1), jnp.zeros((genomes.shape[0], 1)) - 1.0

    def fitness_fn(genomes, error):
        return jnp.stack([error, genomes.sum(1).astype(jnp.float32)], 1), jnp.zeros(
            (genomes.shape[0], 1)
        ) - 1.0

    wrapped = surrogate.assisted(nsga2.NSGA2(10, 3, upper), fitness_fn)
    run = jax.jit(jax.vmap(surrogate.make_run(wrapped, evaluate_fn, 2)))
    keys = jax.vmap(jax.random.key)(jnp.arange(2))
    states, _ = run(keys)
    again, _ = run(keys)
    np.testing.assert_array_equal(
        states.inner.archive_genomes, again.inner.archive_genomes
    )
    one, _ = jax.jit(surrogate.make_run(wrapped, evaluate_fn, 2))(jax.random.key(1))
    np.testing.assert_array_equal(
        one.inner.archive_genomes, states.inner.archive_genomes[1]
    )


def test_assisted_search_refused_with_beacons():
    from mohaq_jax.settings import config as config_lib

    cfg = config_lib.ExperimentConfig(
        search=config_lib.SearchSettings(surrogate=True),
        beacons=config_lib.BeaconSettings(enabled=True),
    )
    with pytest.raises(config_lib.ConfigError, match="without --beacons"):
        config_lib.validate(cfg, ("search", "beacons"))


@pytest.mark.parametrize(
    "argv, beacons, expected",
    [
        ([], False, (True, True)),  # auto: an inference-only NSGA-II search
        ([], True, (False, False)),  # auto: beacon-based
        (["--algorithm", "moead"], False, (False, False)),  # auto: not NSGA-II
        (["--no-surrogate"], False, (False, True)),
        (["--no-seed-proxy", "--no-surrogate"], False, (False, False)),
        (["--surrogate", "--no-seed-proxy"], False, (True, False)),
    ],
)
def test_assistance_flags(argv, beacons, expected):
    from mohaq_jax.orchestration import cli
    from mohaq_jax.settings import config as config_lib

    parser = cli.build_parser("t", ["search"])
    search = cli.config_from_args(parser.parse_args(argv)).search
    assert config_lib.assistance(search, beacons) == expected


def test_assisted_search_refused_with_other_algorithms():
    from mohaq_jax.settings import config as config_lib

    for flags in ({"surrogate": True}, {"seed_proxy": True}):
        cfg = config_lib.ExperimentConfig(
            search=config_lib.SearchSettings(algorithm="de", **flags)
        )
        with pytest.raises(config_lib.ConfigError, match="wrap NSGA-II"):
            config_lib.validate(cfg, ("search",))
    # not asked for: nothing to refuse (auto turns assistance off for DE)
    plain = config_lib.SearchSettings(algorithm="de")
    config_lib.validate(config_lib.ExperimentConfig(search=plain), ("search",))


def test_assisted_resume_gives_same_front(problem_parts, tmp_path):
    problem = make_problem(
        problem_parts, pop_size=14, n_generations=3, surrogate=True, seed_proxy=True
    )
    full = mohaq.run_search(problem, progress=False)
    mohaq.run_search(problem, tmp_path, progress=False, stop_after=1)
    resumed = mohaq.run_search(problem, tmp_path, resume=True, progress=False)
    assert resumed.resumed
    np.testing.assert_array_equal(full.genomes, resumed.genomes)


def test_sensitivity_genomes_outside_a_small_population(problem_parts):
    """More sensitivity genomes than the population holds: they are scored first
    (real evaluations, counted by the problem), the population is the proxy's front."""
    problem = make_problem(problem_parts, surrogate=True, seed_proxy=True)
    n_sens = len(sensitivity.genomes(problem.space.upper))
    assert n_sens > problem.config.pop_size
    result = mohaq.run_search(problem, progress=False)
    cfg = problem.config
    n_search = cfg.pop_size + cfg.n_generations * cfg.n_offspring
    assert len(result.genomes) == n_search
    assert n_search < result.state.n_evaluated <= n_search + n_sens


def test_neighbours_of_the_best_evaluations_by_hand():
    """The one-gene, one-level neighbours of the best stored genome (feasible, not
    dominated), clipped to the gene ranges."""
    upper = np.asarray([2, 1, 2])

    def fitness_fn(genomes, error):
        size = genomes.sum(1).astype(jnp.float32)
        return jnp.stack([error, size], 1), jnp.zeros((genomes.shape[0], 1)) - 1.0

    options = surrogate.SurrogateOptions(neighbours=1, archive_size=4)
    wrapped = surrogate.assisted(nsga2.NSGA2(4, 2, upper), fitness_fn, options)
    state = wrapped.empty_state(2)
    stored = jnp.asarray([[2, 1, 2], [1, 0, 1], [2, 1, 1], [0, 0, 0]], jnp.int32)
    # [1, 0, 1] dominates [2, 1, 2] and [2, 1, 1] (lower error and size); [0, 0, 0]
    # is not stored (count 3), so it must not count as the best.
    state = state.replace(
        genomes=stored, errors=jnp.asarray([0.5, 0.1, 0.3, 0.0]), count=jnp.int32(3)
    )
    objectives, constraints = fitness_fn(state.genomes, state.errors)
    known = jnp.arange(4) < state.count
    violation = jnp.where(known, jnp.max(constraints, axis=1).clip(0), 1e30)
    got = np.asarray(wrapped._neighbours(state, objectives, violation))
    expected = [[2, 0, 1], [1, 1, 1], [1, 0, 2], [0, 0, 1], [1, 0, 1], [1, 0, 0]]
    np.testing.assert_array_equal(got, expected)
    with pytest.raises(ValueError, match="neighbours"):
        surrogate.SurrogateOptions(neighbours=-1)


def test_unreliable_rows_do_not_move_the_model():
    """Rows told as not reliable (a raced partial estimate) are stored as NaN and
    left out of the fit: their errors change nothing; told as reliable they do."""
    upper = np.asarray([2, 2, 2])

    def fitness_fn(genomes, error):
        size = genomes.sum(1).astype(jnp.float32)
        return jnp.stack([error, size], 1), jnp.zeros((genomes.shape[0], 1)) - 1.0

    wrapped = surrogate.assisted(nsga2.NSGA2(8, 4, upper), fitness_fn)
    params = wrapped.default_params
    population = jnp.asarray(sensitivity.genomes(upper)[:7].tolist() + [[0, 0, 0]])
    errors = jnp.linspace(0.1, 0.8, 8)
    state = wrapped.init(
        jax.random.key(0), population, fitness_fn(population, errors), params
    )
    offspring = jnp.asarray([[0, 1, 0], [1, 0, 1], [0, 0, 1], [1, 1, 0]])
    reliable = jnp.asarray([True, False, True, False])

    def told(offspring_errors, mask):
        fitness = fitness_fn(offspring, offspring_errors)
        return wrapped.tell(jax.random.key(1), offspring, fitness, state, params, mask)[
            0
        ]

    a = told(jnp.asarray([0.3, 0.2, 0.5, 0.4]), reliable)
    b = told(jnp.asarray([0.3, 9.0, 0.5, -9.0]), reliable)  # other partial errors
    c = told(jnp.asarray([0.3, 9.0, 0.5, -9.0]), None)  # all reliable
    np.testing.assert_array_equal(np.isnan(np.asarray(a.errors)[8:12]), ~reliable)
    np.testing.assert_allclose(np.asarray(a.weights), np.asarray(b.weights))
    assert not np.allclose(np.asarray(a.weights), np.asarray(c.weights))
