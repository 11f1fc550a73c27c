"""Streaming evaluation: a split scored as bucketed batches == one padded batch.

Every path that scores a split (population evaluator, beacon errors, train.evaluate)
adds up per-batch metric sums; integer sums must match the one-batch evaluation
exactly and rates to float tolerance, and each bucket shape compiles once.
"""

import dataclasses

import jax
import jax.numpy as jnp
import numpy as np
import pytest

from mohaq_jax import hardware, train
from mohaq_jax.data.batching import BucketedSplit, bucketed_batches
from mohaq_jax.evaluation import evaluate, genome
from mohaq_jax.models import sru
from mohaq_jax.search import beacon, mohaq
from mohaq_jax.train import core
from tests.conftest import SPLIT_FOLD, split_sru
from tests.tracing import counting_jit

LENGTHS = [5, 23, 9, 14, 30, 7, 18, 26, 11, 3, 21, 16]
# 72 frames per batch, times in multiples of 8: 2 shapes, several batches each
STREAM = dict(batch_frames=72, max_buckets=2, pad_multiple=8)


@pytest.fixture(scope="module")
def setup():
    cfg, params, calib, split, whole = split_sru(LENGTHS)
    one = BucketedSplit((whole,), split.n_frames, len(split))
    stream = bucketed_batches(split, **STREAM)
    assert len(stream.shapes) == 2 and len(stream) > len(stream.shapes)
    return cfg, params, calib, split, one, stream


def assert_same_metrics(streamed, whole):
    np.testing.assert_array_equal(streamed["phone_edits"], whole["phone_edits"])
    np.testing.assert_array_equal(streamed["n_phones"], whole["n_phones"])
    np.testing.assert_allclose(streamed["loss"], whole["loss"], rtol=1e-5)
    np.testing.assert_allclose(streamed["frame_error"], whole["frame_error"], atol=1e-7)
    np.testing.assert_allclose(streamed["phone_error"], whole["phone_error"], atol=1e-7)


def test_population_evaluator_streaming_equals_one_batch(setup, monkeypatch):
    cfg, params, calib, _, one, stream = setup
    traced = []
    original = evaluate.evaluate_genome

    def counting(*args, **kwargs):
        traced.append(kwargs["batch"][0].shape[:2])
        return original(*args, **kwargs)

    monkeypatch.setattr(evaluate, "evaluate_genome", counting)
    space = genome.silago_space(sru.sites(cfg))
    rng = np.random.default_rng(1)
    genomes = rng.integers(0, space.upper + 1, (6, space.n_genes))
    ev = evaluate.PopulationEvaluator(
        cfg, space, SPLIT_FOLD, params, calib, genome_batch=6
    )
    whole = ev(genomes, one)
    assert_same_metrics(ev(genomes, stream), whole)
    # a bare (features, labels, lengths) batch is still accepted
    assert_same_metrics(ev(genomes, tuple(one[0])), whole)
    assert len(set(np.round(whole["loss"], 5))) > 1  # genomes really differ
    # a second population: no new compilation; each bucket shape compiled once
    ev(rng.integers(0, space.upper + 1, (5, space.n_genes)), stream)
    assert sorted(traced) == sorted([one[0].labels.shape, *stream.shapes])


def test_beacon_errors_streaming_equals_one_batch(setup):
    cfg, params, calib, _, one, stream = setup
    space = genome.bitfusion_space(sru.sites(cfg))
    evaluator = evaluate.PopulationEvaluator(
        cfg, space, SPLIT_FOLD, params, calib, chunk_size=2, genome_batch=4
    )
    config = mohaq.SearchConfig(
        objectives=("error", "speedup"), pop_size=4, n_offspring=4, max_error=10.0
    )
    problem = beacon.BeaconProblem(
        evaluator,
        hardware.get_platform("bitfusion").make_cost_fn(space),
        stream,
        config,
        ideal=[0.0, -64.0],
        nadir=[10.0, -1.0],
        beacon_config=beacon.BeaconConfig(max_beacons=2),
        corpus=None,
    )
    key = jax.random.key(9)
    slot = jnp.arange(3).reshape(-1, 1, 1)  # slots 1, 2: perturbed "retrained"

    def perturb(leaf):
        noise = 0.1 * jax.random.normal(key, leaf.shape)
        return jnp.where(
            slot.reshape((-1,) + (1,) * (leaf.ndim - 1)) > 0, leaf + noise, leaf
        )

    beacons = problem.initial_state().extra
    beacons = dataclasses.replace(
        beacons, stacked=jax.tree.map(perturb, beacons.stacked)
    )
    genomes = np.random.default_rng(4).integers(0, 4, (6, space.n_genes))
    index = np.asarray([0, 1, 2, 1, 0, 2], np.int32)
    # default: the dev data (stream)
    streamed = problem.beacon_errors(beacons, genomes, index)
    whole = problem.beacon_errors(beacons, genomes, index, one)
    np.testing.assert_allclose(streamed, whole, atol=1e-7)
    assert len(set(np.round(whole, 6))) > 1


def test_train_evaluate_streaming_equals_one_batch(setup, monkeypatch):
    cfg, params, calib, split, one, _ = setup
    bits = jnp.full((len(sru.sites(cfg)),), 4, jnp.int32)
    counts, traces = counting_jit(
        train._jitted_counts(cfg, train._as_key(SPLIT_FOLD), None)
    )
    monkeypatch.setattr(core, "_jitted_counts", lambda *args: counts)
    own = train.eval_batches(split, 72, 8)  # what train.evaluate streams
    assert len(own) > 1
    whole = train.evaluate(params, cfg, one, SPLIT_FOLD, bits, bits, calib)
    streamed = train.evaluate(params, cfg, split, SPLIT_FOLD, bits, bits, calib, 72, 8)
    assert streamed == pytest.approx(whole, abs=1e-12)  # ratios of equal integers
    assert whole["per"] > 0 and whole["fer"] > 0
    # each shape compiled once
    assert len(traces) == len({one[0].labels.shape, *own.shapes})


def test_fit_monitors_dev_in_buckets(setup):
    """fit() scores dev in bucketed batches (QAT shares eval_batches and the sums)."""
    cfg, params, calib, split, one, _ = setup
    from mohaq_jax.data.corpus import Corpus

    corpus = Corpus(
        name="tiny",
        train=split,
        dev=split,
        test=split,
        classes=tuple(f"c{i}" for i in range(cfg.n_classes)),
        fold39=SPLIT_FOLD,
        n_features=cfg.n_features,
        synthetic=True,
        notice="",
        settings={},
    )
    # times of 32 (one training shape); dev in 6 batches of 2 x 32 frames
    tc = train.TrainConfig(
        epochs=1, batch_size=4, pad_multiple=32, eval_batch_frames=72
    )
    assert len(train.eval_batches(corpus.dev, 72, 32)) == 6
    trained, info = train.fit(corpus, cfg, tc, progress=False)
    rates = train.evaluate(trained, cfg, one, SPLIT_FOLD)
    assert info["best_dev_per"] == pytest.approx(rates["per"], abs=1e-12)
    assert info["best_dev_fer"] == pytest.approx(rates["fer"], abs=1e-12)
