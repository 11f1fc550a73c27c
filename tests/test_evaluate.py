"""Population evaluator: batched pass == per-genome loop, one compile, bad input."""

import chex
import jax
import jax.numpy as jnp
import numpy as np
import pytest

from mohaq_jax.evaluation import evaluate, genome
from mohaq_jax.models import qmodel, sru
from tests.conftest import loop_reference

N_CLASSES = 7


@pytest.fixture(scope="module")
def setup():
    cfg = sru.Config(
        n_features=6,
        n_classes=N_CLASSES,
        hidden=8,
        n_layers=2,
        n_proj=4,
        proj_first=True,  # a projected first stage (shared per setting of its genes)
    )
    key = jax.random.key(42)
    k_p, k_x, k_y = jax.random.split(key, 3)
    params = sru.init_params(k_p, cfg)
    n_b, n_t = 3, 16
    feats = jax.random.normal(k_x, (n_b, n_t, cfg.n_features))
    lengths = jnp.asarray([16, 11, 5], jnp.int32)
    labels = jnp.repeat(
        jax.random.randint(k_y, (n_b, n_t // 4), 0, N_CLASSES), 4, axis=1
    )
    labels = jnp.where(jnp.arange(n_t)[None] < lengths[:, None], labels, -1)
    calib = qmodel.calibrate(params, cfg, feats, lengths)
    fold = np.asarray([0, 1, 2, 2, 3, -1, 4], np.int32)
    return cfg, params, calib, (feats, labels, lengths), fold


@pytest.mark.parametrize("space_name", ["bitfusion", "silago", "wide"])
@pytest.mark.parametrize("chunk_size", [None, 1, 3])
def test_batched_equals_loop(setup, space_name, chunk_size):
    cfg, params, calib, batch, fold = setup
    space = genome.get_space(space_name, sru.sites(cfg))
    rng = np.random.default_rng(1)
    genomes = rng.integers(0, space.upper + 1, (6, space.n_genes))
    ev = evaluate.PopulationEvaluator(
        cfg, space, fold, params, calib, chunk_size=chunk_size
    )
    res = ev(genomes, batch)
    ref = loop_reference(cfg, params, calib, batch, fold, space, genomes)
    np.testing.assert_allclose(res["loss"], ref[:, 0], rtol=2e-5, atol=1e-5)
    np.testing.assert_allclose(res["frame_error"], ref[:, 1], atol=1e-6)
    np.testing.assert_allclose(res["phone_error"], ref[:, 2], atol=1e-6)
    assert len(set(np.round(res["loss"], 5))) > 1  # genomes really differ


def test_compiles_once_across_populations(setup, monkeypatch):
    cfg, params, calib, batch, fold = setup
    space = genome.bitfusion_space(sru.sites(cfg))
    monkeypatch.setattr(
        evaluate,
        "evaluate_genome",
        chex.assert_max_traces(evaluate.evaluate_genome, n=1),
    )
    fn = evaluate.make_population_eval(cfg, space, fold, chunk_size=2)
    rng = np.random.default_rng(2)
    for _ in range(3):
        genomes = jnp.asarray(rng.integers(0, 4, (4, space.n_genes)), jnp.int32)
        out = fn(params, calib, genomes, batch)
        chex.assert_shape(out.phone_error, (4,))


def test_duplicates_evaluated_once_and_scattered_back(setup):
    cfg, params, calib, batch, fold = setup
    space = genome.silago_space(sru.sites(cfg))
    ev = evaluate.PopulationEvaluator(cfg, space, fold, params, calib, genome_batch=4)
    g = np.asarray([[0, 1, 2, 0, 1], [2, 2, 2, 2, 2], [0, 1, 2, 0, 1]])
    res = ev(g, batch)
    assert res["loss"][0] == res["loss"][2] and res["loss"][0] != res["loss"][1]
    high = ev(space.uniform(16)[None], batch)
    low = ev(space.uniform(4)[None], batch)
    float_like = loop_reference(
        cfg,
        params,
        calib,
        batch,
        fold,
        genome.tied_space(space.layers, (32,), "f"),
        np.zeros((1, 5), np.int32),
    )
    # 16-bit is indistinguishable from float; 4-bit is not.
    np.testing.assert_allclose(high["loss"], float_like[:, 0], rtol=1e-3)
    assert abs(low["loss"][0] - float_like[0, 0]) > abs(
        high["loss"][0] - float_like[0, 0]
    )


@pytest.mark.parametrize(
    "genomes,match",
    [
        (np.zeros((2, 4), int), "length 5"),
        (np.full((2, 5), 3), "outside levels 0..2"),
        (np.full((2, 5), 1.5), "integer"),
    ],
)
def test_bad_genomes_rejected(setup, genomes, match):
    cfg, params, calib, batch, fold = setup
    space = genome.silago_space(sru.sites(cfg))
    ev = evaluate.PopulationEvaluator(cfg, space, fold, params, calib)
    with pytest.raises(ValueError, match=match):
        ev(genomes, batch)


def test_nan_features_rejected(setup):
    cfg, params, calib, (feats, labels, lengths), fold = setup
    space = genome.silago_space(sru.sites(cfg))
    ev = evaluate.PopulationEvaluator(cfg, space, fold, params, calib)
    bad = feats.at[1, 3, 2].set(jnp.nan)
    with pytest.raises(ValueError, match="NaN or inf.*utterance 1, frame 3, feature 2"):
        ev(np.zeros((1, 5), int), (bad, labels, lengths))
