"""Beacons: distances, batched beacon evaluation == per-genome loop, policy, resume."""

import jax
import jax.numpy as jnp
import numpy as np
import pytest

from mohaq_jax import hardware
from mohaq_jax.evaluation import evaluate, genome
from mohaq_jax.models import qmodel, sru
from mohaq_jax.search import beacon, mohaq


def test_level_distance_and_nearest_by_hand():
    mask = np.asarray([True, True, False])  # third gene not counted
    beacons = np.asarray([[0, 0, 0], [3, 3, 0], [1, 0, 3], [0, 0, 0]])  # slot 0 = float
    genomes = np.asarray([[1, 1, 0], [3, 2, 3], [3, 3, 3], [0, 3, 0]])
    dist = beacon.level_distance(jnp.asarray(genomes), jnp.asarray(beacons), mask)
    # genome 0: |1-3|+|1-3| = 4 to slot 1, |1-1|+|1-0| = 1 to slot 2
    np.testing.assert_array_equal(dist[0], [2, 4, 1, 2])
    index, d = beacon.nearest_beacon(genomes, beacons, 2, mask, threshold=2)
    # slot 3 is unfilled and slot 0 is never a neighbour.
    np.testing.assert_array_equal(index, [2, 1, 1, 0])  # last: 3 to s1, 4 to s2; > 2
    np.testing.assert_array_equal(d, [1, 1, 0, 3])


@pytest.fixture(scope="module")
def parts():
    cfg = sru.Config(
        n_features=5, n_classes=6, hidden=6, n_layers=2, n_proj=3, proj_first=True
    )
    k_p, k_x, k_y, k_b = jax.random.split(jax.random.key(7), 4)
    params = sru.init_params(k_p, cfg)
    feats = jax.random.normal(k_x, (3, 12, 5))
    lengths = jnp.asarray([12, 9, 6], jnp.int32)
    labels = jnp.repeat(jax.random.randint(k_y, (3, 4), 0, 6), 3, axis=1)
    labels = jnp.where(jnp.arange(12)[None] < lengths[:, None], labels, -1)
    calib = qmodel.calibrate(params, cfg, feats, lengths)
    space = genome.bitfusion_space(sru.sites(cfg))
    # three "retrained" param sets: perturbations of the float params
    others = [
        jax.tree.map(
            lambda a, i=i: (
                a + 0.1 * jax.random.normal(jax.random.fold_in(k_b, i), a.shape)
            ),
            params,
        )
        for i in range(3)
    ]
    return cfg, params, calib, space, (feats, labels, lengths), others


def test_batched_beacon_eval_equals_per_genome_loop(parts):
    cfg, params, calib, space, batch, others = parts
    stacked = jax.tree.map(lambda *xs: jnp.stack(xs), params, *others)
    fn = beacon.make_beacon_eval(cfg, space, np.arange(6), chunk_size=2)
    rng = np.random.default_rng(0)
    genomes = rng.integers(0, 4, (6, space.n_genes)).astype(np.int32)
    index = np.asarray([0, 1, 2, 3, 1, 0], np.int32)
    res = fn(stacked, calib, jnp.asarray(genomes), jnp.asarray(index), batch)
    all_params = [params] + others
    for i in range(6):
        alone = evaluate.PopulationEvaluator(
            cfg, space, np.arange(6), all_params[index[i]], calib, chunk_size=None
        )
        ref = alone(genomes[i : i + 1], batch)
        np.testing.assert_allclose(res.loss[i], ref["loss"][0], rtol=1e-5)
        np.testing.assert_allclose(res.phone_error[i], ref["phone_error"][0], atol=1e-6)


def test_beacon_eval_shares_first_stage_per_beacon(parts):
    """2 slots x 4 first-stage settings < 12 genomes: shared first stages, same result."""
    cfg, params, calib, _, batch, others = parts
    space = genome.tied_space(sru.sites(cfg), (4, 8), "two")
    stacked = jax.tree.map(lambda *xs: jnp.stack(xs), params, others[0])
    rng = np.random.default_rng(3)
    genomes = rng.integers(0, 2, (12, space.n_genes)).astype(np.int32)
    index = rng.integers(0, 2, 12).astype(np.int32)
    fn = beacon.make_beacon_eval(cfg, space, np.arange(6), chunk_size=4)
    res = fn(stacked, calib, jnp.asarray(genomes), jnp.asarray(index), batch)
    for slot, p in enumerate([params, others[0]]):
        alone = evaluate.PopulationEvaluator(
            cfg, space, np.arange(6), p, calib, chunk_size=None
        )
        mine = index == slot
        ref = alone(genomes[mine], batch)
        np.testing.assert_allclose(res.loss[mine], ref["loss"], rtol=1e-5)


def make_problem(parts, monkeypatch, calls, **bc):
    cfg, params, calib, space, batch, others = parts

    def fake_qat(p, config, c, bits_w, bits_a, corpus, epochs, lr, **kw):
        """Stands in for QAT (tested in test_train): returns known param sets."""
        k = len(bits_w)
        calls.append(k)
        chosen = others[len(calls) % len(others)]
        stacked = jax.tree.map(lambda a: jnp.stack([a] * k), chosen)
        return stacked, {
            "dev_per": np.zeros(k),
            "ptq_dev_per": np.ones(k),
            "epochs_run": np.ones(k, int),
        }

    monkeypatch.setattr(beacon.train, "qat_finetune", fake_qat)
    config = mohaq.SearchConfig(
        objectives=("error", "speedup"),
        pop_size=6,
        n_offspring=3,
        n_generations=3,
        seed=0,
        max_error=10.0,
    )
    evaluator = evaluate.PopulationEvaluator(
        cfg, space, np.arange(6), params, calib, chunk_size=3, genome_batch=3
    )
    cost_fn = hardware.get_platform("bitfusion").make_cost_fn(space)
    settings = dict(threshold=3, max_beacons=2, per_generation=1)
    settings.update(bc)
    return mohaq.QuantizationProblem, beacon.BeaconProblem(
        evaluator,
        cost_fn,
        batch,
        config,
        ideal=[0.0, -64.0],
        nadir=[10.0, -1.0],
        beacon_config=beacon.BeaconConfig(**settings),
        corpus=None,
    )


def test_policy_creates_beacons_and_takes_min_error(parts, monkeypatch):
    calls = []
    _, problem = make_problem(parts, monkeypatch, calls)
    space = problem.space
    g = np.asarray([space.uniform(2), space.uniform(16), space.uniform(4)])
    state, res = problem.evaluate(problem.initial_state(), g)
    np.testing.assert_array_equal(res["beacon"], 0)
    np.testing.assert_array_equal(res["error"], res["ptq_error"])
    # one beacon (per_generation=1), lowest PTQ error first
    updated = problem.update(state, g, res)
    assert problem.changed(state, updated) and state.extra.count == 0
    state = updated
    assert state.extra.count == 1 and calls == [1]
    chosen = int(np.argmin(res["ptq_error"]))
    np.testing.assert_array_equal(state.extra.genomes[1], g[chosen])
    state, after = problem.evaluate(state, g)
    assert after["beacon"][chosen] == 1
    assert after["error"][chosen] == min(
        after["ptq_error"][chosen], after["beacon_error"][chosen]
    )
    # genomes farther than the threshold keep their PTQ error
    far = np.flatnonzero(after["beacon"] == 0)
    np.testing.assert_array_equal(after["error"][far], res["ptq_error"][far])
    # budget: max_beacons=2
    state = problem.update(state, g, after)
    state = problem.update(state, g, problem.evaluate(state, g)[1])
    assert state.extra.count <= 2


def test_beacons_saved_and_not_retrained_on_resume(parts, monkeypatch, tmp_path):
    calls = []
    _, problem = make_problem(parts, monkeypatch, calls)
    full = mohaq.run_search(problem, tmp_path / "full", progress=False)
    assert full.state.extra.count >= 1
    calls_a = []
    _, crashed = make_problem(parts, monkeypatch, calls_a)
    made = mohaq.run_search(
        crashed, tmp_path / "b", progress=False, stop_after=2
    ).state.extra.count
    calls_b = []
    _, resumed_problem = make_problem(parts, monkeypatch, calls_b)
    resumed = mohaq.run_search(
        resumed_problem, tmp_path / "b", resume=True, progress=False
    )
    count = resumed.state.extra.count
    assert count >= made
    assert sum(calls_b) == count - made  # old beacons not retrained
    np.testing.assert_array_equal(resumed.genomes, full.genomes)


def test_switching_retrain_option_dispatches(parts, monkeypatch):
    from mohaq_jax.retrain import speech

    cfg, params, calib, space, batch, others = parts
    seen = []

    def fake_switching(p, config, c, bits_w, bits_a, corpus, **kw):
        """Stands in for switching-aware retraining (tested in test_switching)."""
        seen.append((np.asarray(bits_w).shape, kw["switching_config"].retrain_epochs))
        k = len(bits_w)
        return jax.tree.map(lambda a: jnp.stack([a] * k), others[0]), {
            "dev_per": np.zeros(k),
            "ptq_dev_per": np.ones(k),
            "epochs_run": np.full(k, 2),
        }

    monkeypatch.setattr(speech, "switching_finetune", fake_switching)
    _, problem = make_problem(parts, monkeypatch, [], retrain="switching", epochs=2)
    g = np.asarray([space.uniform(2)])
    state = problem.add_beacons(problem.initial_state(), g)
    assert seen == [((1, len(space.layers)), 2)]
    leaf = jax.tree.leaves(state.extra.stacked)[0]
    np.testing.assert_array_equal(leaf[1], jax.tree.leaves(others[0])[0])
    with pytest.raises(ValueError, match="retrain"):
        beacon.BeaconConfig(retrain="full")
