"""Racing evaluation: genomes certain to exceed the error bound stop early.

A completed genome's metrics equal the full evaluation's exactly (integer counts) and
its floats to rounding; a stopped genome is infeasible on the whole split (checked
against the full evaluation); the work counted is the work the device ran.
"""

import numpy as np
import pytest

from mohaq_jax.data.batching import bucketed_batches
from mohaq_jax.evaluation import evaluate, genome
from mohaq_jax.models import sru
from tests.conftest import SPLIT_FOLD, split_sru

# many short utterances: the last batches hold a small share of the phones, so the
# worst genomes are certain to exceed a bound near the best genome's error early
LENGTHS = [int(n) for n in np.random.default_rng(0).integers(4, 20, 48)]


@pytest.fixture(scope="module")
def setup():
    cfg, params, calib, split, _ = split_sru(LENGTHS)
    stream = bucketed_batches(split, batch_frames=64, max_buckets=2, pad_multiple=8)
    assert len(stream) >= 4
    space = genome.bitfusion_space(sru.sites(cfg))
    ev = evaluate.PopulationEvaluator(
        cfg, space, SPLIT_FOLD, params, calib, chunk_size=2, genome_batch=8
    )
    genomes = np.random.default_rng(1).integers(0, space.upper + 1, (8, space.n_genes))
    genomes[0] = space.upper  # all 16-bit
    return ev, stream, genomes


def test_race_completed_equals_full_and_stopped_are_infeasible(setup):
    ev, stream, genomes = setup
    full = ev(genomes, stream)
    metric = "phone_error"
    # a bound just above the best genome's error: it completes, the worst stop
    max_error = float(np.min(full[metric])) + 1e-4
    race = ev.race(genomes, stream, metric, max_error)
    done = race.completed
    assert done.any() and (~done).any()
    for name in ("phone_edits", "n_phones", "phone_error", "frame_error"):
        np.testing.assert_array_equal(race.results[name][done], full[name][done])
    # the loss is a float sum: the batches' random order may change its last bit
    np.testing.assert_allclose(race.results["loss"][done], full["loss"][done], 1e-6)
    # nothing feasible was stopped: every stopped genome really exceeds the bound
    assert np.all(full[metric][~done] > max_error)
    assert np.all(race.batches_seen[~done] < len(stream))
    assert race.work_done < race.work_full


@pytest.mark.parametrize("confidence", [1.0, 0.95])
def test_race_stops_where_a_plain_loop_says(setup, confidence):
    """Plain-loop reference: genome by genome, batch by batch in the race's order,
    the bound recomputed in float64 numpy from one-genome evaluations."""
    from scipy import stats

    ev, stream, genomes = setup
    max_error = float(np.min(ev(genomes, stream)["phone_error"])) + 1e-4
    race = ev.race(genomes, stream, "phone_error", max_error, confidence, seed=3)
    visit = np.random.default_rng(3).permutation(len(stream))
    phones = [int(ev(genomes[:1], [stream[i]])["n_phones"][0]) for i in visit]
    total, n_batches = sum(phones), len(stream)
    for g, seen in zip(genomes, race.batches_seen, strict=True):
        edits, expected = [], n_batches
        for j, i in enumerate(visit[:-1]):
            edits.append(int(ev(g[None], [stream[i]])["phone_edits"][0]))
            k = j + 1
            bound = sum(edits) / total
            if confidence < 1 and k >= 2:
                ratio = sum(edits) / sum(phones[:k])
                s = np.std(
                    [e - ratio * n for e, n in zip(edits, phones[:k], strict=True)],
                    ddof=1,
                )
                se = np.sqrt(n_batches * (n_batches - k) / k) * s
                t = stats.t.ppf(1 - 0.05 / (n_batches - 1), k - 1)
                rest = max(ratio * (total - sum(phones[:k])) - t * se, 0.0)
                bound = max(bound, (sum(edits) + rest) / total)
            if bound > max_error:
                expected = k
                break
        assert seen == expected


def test_race_lower_bound_hand_numbers():
    # certain part only: 30 errors seen, 200 reference units in all
    bound = evaluate.race_lower_bound(
        np.array([[10.0], [20.0]]), np.array([40, 60]), 200, 4, confidence=1.0
    )
    np.testing.assert_allclose(bound, [30 / 200])
    # statistical: ratio 0.3, residuals (-2, 2), s = 2.828, se = sqrt(4*2/2)*s
    # = 5.657, t(1 df, 1 - 0.05/3) = 19.08; rest = 0.3 * 100 - 19.08 * 5.657 < 0
    bound = evaluate.race_lower_bound(
        np.array([[10.0], [20.0]]), np.array([40, 60]), 200, 4, confidence=0.95
    )
    np.testing.assert_allclose(bound, [30 / 200])
    # 3 of 4 batches, very consistent errors: the estimate of the rest counts
    numerators = np.array([[30.0], [30.0], [31.0]])
    bound = evaluate.race_lower_bound(
        numerators, np.array([100, 100, 100]), 400, 4, confidence=0.95
    )
    assert 91 / 400 < bound[0] < 121 / 400


def test_race_lower_bound_covers_at_its_confidence():
    """Simulation: batches of a split in random order; the bound exceeds the true
    whole-split error in at most ~5 % of the genomes over all looks together."""
    rng = np.random.default_rng(0)
    n_batches, misses, trials = 12, 0, 400
    for _ in range(trials):
        n = rng.integers(50, 150, n_batches)
        rate = rng.uniform(0.2, 0.8)
        e = rng.binomial(n, np.clip(rate + rng.normal(0, 0.05, n_batches), 0, 1))
        truth = e.sum() / n.sum()
        order = rng.permutation(n_batches)
        for k in range(1, n_batches):
            seen = order[:k]
            bound = evaluate.race_lower_bound(
                e[seen][:, None].astype(float), n[seen], int(n.sum()), n_batches
            )[0]
            if bound > truth:
                misses += 1
                break
    assert misses / trials <= 0.06


def test_race_with_a_loose_bound_is_the_full_evaluation(setup):
    ev, stream, genomes = setup
    full = ev(genomes, stream)
    race = ev.race(genomes, stream, "phone_error", 10.0)
    assert race.completed.all()
    assert race.work_done == race.work_full
    for name, values in full.items():
        np.testing.assert_array_equal(race.results[name], values)


def test_race_unknown_metric_is_one_line(setup):
    ev, stream, genomes = setup
    with pytest.raises(ValueError, match="no metric 'class_error'"):
        ev.race(genomes, stream, "class_error", 0.5)


def test_problem_race_marks_partial_genomes_infeasible(setup):
    from mohaq_jax import hardware
    from mohaq_jax.search import mohaq

    ev, stream, genomes = setup
    cost_fn = hardware.get_platform("bitfusion").make_cost_fn(ev.space)
    full = ev(genomes, stream)["phone_error"]
    max_error = float(np.min(full)) + 1e-4
    settings = dict(
        objectives=("error", "speedup"),
        maximize=("speedup",),
        pop_size=8,
        n_offspring=8,
        max_error=max_error,
        memory_limit_mb=None,
    )
    plain = mohaq.QuantizationProblem(
        ev, cost_fn, stream, mohaq.SearchConfig(**settings)
    )
    raced = mohaq.QuantizationProblem(
        ev, cost_fn, stream, mohaq.SearchConfig(**settings, race=True)
    )
    _, res_plain = plain.evaluate(plain.initial_state(), genomes)
    _, res_race = raced.evaluate(raced.initial_state(), genomes)
    partial = res_race["error_partial"] > 0
    assert partial.any() and (~partial).any()
    np.testing.assert_array_equal(
        res_race["error"][~partial], res_plain["error"][~partial]
    )
    # a partial estimate is errors so far over the frames seen: above the bound too
    assert np.all(res_race["error"][partial] > max_error)
    _, g_race = raced.fitness(res_race)
    _, g_plain = plain.fitness(res_plain)
    np.testing.assert_array_equal(
        np.asarray(g_race[:, 1]) > 0, np.asarray(g_plain[:, 1]) > 0
    )
    assert np.all(res_race["dev_frames"][partial] < stream.n_frames)
    assert np.all(res_race["dev_frames"][~partial] == stream.n_frames)
    assert "error_partial" not in res_plain  # archives without racing unchanged


def test_race_stops_genomes_doomed_by_an_exact_constraint_after_one_batch(setup):
    """A genome known infeasible (over memory) is scored on the first batch of the
    race's order only: its metrics are that batch's (plain one-batch evaluation);
    the others race as without it."""
    ev, stream, genomes = setup
    full = ev(genomes, stream)
    loose = float(np.max(full["phone_error"])) + 1.0  # no error stop
    doomed = np.arange(len(genomes)) % 2 == 0
    race = ev.race(genomes, stream, "phone_error", loose, seed=5, doomed=doomed)
    first = stream[int(np.random.default_rng(5).permutation(len(stream))[0])]
    one = ev(genomes, [first])
    assert np.all(race.batches_seen[doomed] == 1)
    assert np.all(race.completed[~doomed])
    for name in ("phone_edits", "n_phones", "phone_error"):
        np.testing.assert_array_equal(race.results[name][doomed], one[name][doomed])
        np.testing.assert_array_equal(race.results[name][~doomed], full[name][~doomed])


def test_problem_race_stops_memory_infeasible_genomes(setup):
    from mohaq_jax import hardware
    from mohaq_jax.search import mohaq

    ev, stream, genomes = setup
    cost_fn = hardware.get_platform("bitfusion").make_cost_fn(ev.space)
    memory = np.asarray([float(cost_fn(g)["memory_mb"]) for g in genomes])
    limit = float(np.median(memory))
    config = mohaq.SearchConfig(
        objectives=("error", "speedup"),
        maximize=("speedup",),
        pop_size=8,
        n_offspring=8,
        max_error=10.0,  # no error stop: only memory decides
        memory_limit_mb=limit,
        race=True,
    )
    problem = mohaq.QuantizationProblem(ev, cost_fn, stream, config)
    over = memory.astype(np.float32) > np.float32(limit)
    assert over.any() and (~over).any()
    np.testing.assert_array_equal(problem.memory_infeasible(genomes), over)
    _, res = problem.evaluate(problem.initial_state(), genomes)
    np.testing.assert_array_equal(res["error_partial"] > 0, over)
    assert np.all(res["dev_frames"][over] < res["dev_frames_full"][over])
    np.testing.assert_array_equal(
        res["dev_frames"][~over], res["dev_frames_full"][~over]
    )
    _, g = problem.fitness(res)
    assert np.all(np.asarray(g[over, 0]) > 0)


def test_assisted_search_fits_its_surrogate_on_full_measurements_only(setup):
    """With racing, a stopped genome's partial estimate steers NSGA-II (as in a plain
    raced search) but the surrogate's error model stores NaN for it and skips it."""
    from mohaq_jax import hardware
    from mohaq_jax.search import mohaq

    ev, stream, genomes = setup
    cost_fn = hardware.get_platform("bitfusion").make_cost_fn(ev.space)
    full = ev(genomes, stream)["phone_error"]
    config = mohaq.SearchConfig(
        objectives=("error", "speedup"),
        maximize=("speedup",),
        pop_size=40,
        n_offspring=4,
        n_generations=1,
        max_error=float(np.median(full)),
        memory_limit_mb=None,
        race=True,
        surrogate=True,
        seed_proxy=True,
    )
    problem = mohaq.QuantizationProblem(ev, cost_fn, stream, config)
    searcher = mohaq.Searcher(problem)
    state = searcher.step(searcher.init())
    result, strategy = searcher.result(state), state.strategy  # the assisted state
    count = int(strategy.count)
    stored = np.asarray(strategy.genomes)[:count]
    errors = np.asarray(strategy.errors)[:count]
    partial = dict(
        zip(
            map(tuple, result.genomes.tolist()),
            result.metrics["error_partial"] > 0,
            strict=True,
        )
    )
    expected = np.asarray([partial[tuple(g)] for g in stored.tolist()])
    assert expected.any() and (~expected).any()  # the run raced some genomes
    np.testing.assert_array_equal(np.isnan(errors), expected)
