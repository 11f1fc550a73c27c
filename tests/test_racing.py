"""Racing evaluation: genomes certain to exceed the error bound stop early.

A completed genome's metrics equal the full evaluation's exactly (integer counts) and
its floats to rounding; a stopped genome is infeasible on the whole split (checked
against the full evaluation); the work counted is the work the device ran.
"""

import jax
import jax.numpy as jnp
import numpy as np
import pytest

from mohaq_jax import evaluate, genome, qmodel
from mohaq_jax.data.batching import bucketed_batches, pad_batch
from mohaq_jax.data.corpus import Split
from mohaq_jax.models import sru

N_CLASSES = 7
FOLD = np.asarray([0, 1, 2, 2, 3, -1, 4], np.int32)
# many short utterances: the last batches hold a small share of the phones, so the
# worst genomes are certain to exceed a bound near the best genome's error early
LENGTHS = [int(n) for n in np.random.default_rng(0).integers(4, 20, 48)]


@pytest.fixture(scope="module")
def setup():
    cfg = sru.ModelConfig(
        n_features=6, n_classes=N_CLASSES, hidden=8, n_layers=2, n_proj=4
    )
    rng = np.random.default_rng(3)
    feats, labels = [], []
    for n in LENGTHS:
        feats.append(rng.standard_normal((n, cfg.n_features)).astype(np.float32))
        runs = rng.integers(0, N_CLASSES, -(-n // 3))
        labels.append(np.repeat(runs, 3)[:n].astype(np.int32))
    split = Split(feats, labels, ["s"] * len(LENGTHS), [f"u{i}" for i in LENGTHS])
    params = sru.init_params(jax.random.key(5), cfg)
    whole = pad_batch(split, range(len(split)))
    calib = qmodel.calibrate(
        params, cfg, jnp.asarray(whole.features), jnp.asarray(whole.lengths)
    )
    stream = bucketed_batches(split, batch_frames=64, max_buckets=2, pad_multiple=8)
    assert len(stream) >= 4
    space = genome.bitfusion_space(sru.layer_specs(cfg))
    ev = evaluate.PopulationEvaluator(
        cfg, space, FOLD, params, calib, chunk_size=2, pop_size=8
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
    for name in ("phone_edits", "n_phones"):
        np.testing.assert_array_equal(race.results[name][done], full[name][done])
    for name in ("phone_error", "frame_error", "loss"):
        np.testing.assert_array_equal(race.results[name][done], full[name][done])
    # nothing feasible was stopped: every stopped genome really exceeds the bound
    assert np.all(full[metric][~done] > max_error)
    assert np.all(race.batches_seen[~done] < len(stream))
    assert race.work_done < race.work_full


def test_race_bound_never_stops_a_feasible_genome(setup):
    """Plain-loop reference: the rule stops g after batch j iff its summed errors of
    batches 1..j over the whole split's reference phones exceed the bound."""
    ev, stream, genomes = setup
    max_error = float(np.min(ev(genomes, stream)["phone_error"])) + 1e-4
    race = ev.race(genomes, stream, "phone_error", max_error)
    total_phones = sum(int(ev(genomes[:1], [b])["n_phones"][0]) for b in stream)
    for g, seen in zip(genomes, race.batches_seen, strict=True):
        edits = 0
        expected = len(stream)
        for j, b in enumerate(stream):
            edits += int(ev(g[None], [b])["phone_edits"][0])
            if edits / total_phones > max_error:
                expected = j + 1
                break
        assert seen == expected


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
