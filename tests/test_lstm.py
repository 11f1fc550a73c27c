"""LSTM model: numpy reference, padding, sites, batched population == per-genome loop."""

import chex
import jax
import jax.numpy as jnp
import numpy as np
import pytest

from mohaq_jax import hardware, train
from mohaq_jax.data.batching import Batch
from mohaq_jax.evaluation import evaluate, genome
from mohaq_jax.models import get_model, lstm, model_of, sites
from tests.conftest import loop_reference, tiny_speech


def sigmoid(x):
    return 1.0 / (1.0 + np.exp(-x))


def np_fake_quant(x, bits, clip):
    if bits is None:
        return x
    levels = 2.0 ** (bits - 1) - 1
    step = clip / levels
    return np.clip(np.round(np.clip(x, -clip, clip) / step), -levels, levels) * step


def numpy_lstm_layer(x_mm, length, p, cfg, rec_q, dtype):
    """Plain loops over directions and frames (gate order i, f, g, o)."""
    h, n_dirs = cfg.hidden, cfg.n_dirs
    w = np.asarray(p["kernel"], dtype).reshape(-1, n_dirs, 4 * h)
    u = np.asarray(p["recurrent"], dtype)
    b = np.asarray(p["bias"], dtype)
    out = np.zeros((x_mm.shape[0], n_dirs, h), dtype)
    for d in range(n_dirs):
        frames = range(length) if d == 0 else range(length - 1, -1, -1)
        h_prev, c = np.zeros(h, dtype), np.zeros(h, dtype)
        for t in frames:
            z = x_mm[t] @ w[:, d] + np_fake_quant(h_prev, *rec_q) @ u[d] + b[d]
            i, f, g, o = (z[j * h : (j + 1) * h] for j in range(4))
            c = sigmoid(f) * c + sigmoid(i) * np.tanh(g)
            h_prev = sigmoid(o) * np.tanh(c)
            out[t, d] = h_prev
    return out.reshape(x_mm.shape[0], n_dirs * h)


def numpy_model(params, cfg, feats, length, bits=None, clips=None, dtype=np.float64):
    """Independent forward over the sites; ``bits``/``clips`` quantize activations."""
    p = jax.tree.map(lambda a: np.asarray(a, dtype), params)
    names = [s.name for s in lstm.sites(cfg)]

    def q(x, name):
        i = names.index(name)
        return x if bits is None else np_fake_quant(x, bits[i], clips[i])

    x = np.asarray(feats, dtype)
    for name in names:
        if name.startswith("proj"):
            x = q(x, name) @ p[name]["kernel"]
        elif name.startswith("lstm"):
            rec = "rec" + name[4:]
            rec_q = (None, None)
            if bits is not None:
                rec_q = (bits[names.index(rec)], clips[names.index(rec)])
            x = numpy_lstm_layer(q(x, name), length, p[name], cfg, rec_q, dtype)
    return q(x, "fc") @ p["fc"]["kernel"] + p["fc"]["bias"]


CONFIGS = {
    "bi_proj": lstm.Config(n_features=6, n_classes=5, hidden=4, n_layers=2, n_proj=3),
    "bi_proj_first": lstm.Config(
        n_features=6, n_classes=5, hidden=4, n_layers=2, n_proj=3, proj_first=True
    ),
    "uni_noproj": lstm.Config(
        n_features=5, n_classes=3, hidden=6, n_layers=2, bidirectional=False
    ),
}


@pytest.mark.parametrize("name", sorted(CONFIGS))
def test_forward_matches_numpy_with_padding(name, key):
    cfg = CONFIGS[name]
    key_p, key_x = jax.random.split(key)
    params = lstm.init_params(key_p, cfg)
    n_time, length = 9, 6
    feats = jax.random.normal(key_x, (n_time, cfg.n_features))
    out = lstm.apply(params, cfg, feats, jnp.asarray(length))
    chex.assert_shape(out, (n_time, cfg.n_classes))
    ref = numpy_model(params, cfg, np.asarray(feats), length)
    np.testing.assert_allclose(out[:length], ref[:length], atol=2e-5, rtol=1e-4)
    junk = lstm.apply(params, cfg, feats.at[length:].set(100.0), jnp.asarray(length))
    np.testing.assert_allclose(junk[:length], out[:length], atol=1e-6)


def test_quantized_activations_match_numpy(key):
    """Every site's input, h_{t-1} inside the recurrence included, is quantized."""
    cfg = CONFIGS["bi_proj"]
    key_p, key_x = jax.random.split(key)
    params = lstm.init_params(key_p, cfg)
    feats = jax.random.normal(key_x, (7, cfg.n_features))
    n_sites = len(lstm.sites(cfg))
    bits = np.asarray([4, 6] * n_sites, np.int32)[:n_sites]
    clips = np.linspace(0.3, 0.9, n_sites).astype(np.float32)
    out = lstm.apply(params, cfg, feats, jnp.asarray(7), bits, jnp.asarray(clips))
    ref = numpy_model(params, cfg, feats, 7, bits, clips, dtype=np.float32)
    np.testing.assert_allclose(out, ref, atol=1e-4)
    float_out = lstm.apply(params, cfg, feats, jnp.asarray(7))
    assert np.abs(np.asarray(out) - np.asarray(float_out)).max() > 1e-3


def test_sites_hand_counts(key):
    cfg = CONFIGS["bi_proj_first"]
    s = lstm.sites(cfg)
    # layer 1: 6 -> proj 3 -> W (3, 2*4*4); U (2, 4, 16); layer 2: 8 -> proj 3; fc 8->5
    assert [(x.name, x.kind, x.n_weights, x.macs_per_frame, x.n_bias) for x in s] == [
        ("proj1", "proj", 18, 18, 0),
        ("lstm1", "lstm", 96, 96, 32),
        ("rec1", "rec", 128, 128, 0),
        ("proj2", "proj", 24, 24, 0),
        ("lstm2", "lstm", 96, 96, 32),
        ("rec2", "rec", 128, 128, 0),
        ("fc", "fc", 40, 40, 5),
    ]
    # without proj_first (the default) layer 1 reads the features unprojected
    default = [x.name for x in lstm.sites(CONFIGS["bi_proj"])]
    assert default == ["lstm1", "rec1", "proj1", "lstm2", "rec2", "fc"]
    params = lstm.init_params(key, cfg)
    for site in s:
        chex.assert_shape(sites.get_weight(params, site), site.weight_shape)
    space = genome.bitfusion_space(s)
    assert space.gene_names[:4] == ("w_lstm1", "w_lstm2", "a_lstm1", "a_lstm2")
    assert space.gene_names[4:8] == ("w_rec1", "w_rec2", "a_rec1", "a_rec2")
    assert space.gene_names[-2:] == ("w_fc", "a_fc")
    assert get_model("lstm") is lstm and model_of(cfg) is lstm


@pytest.fixture(scope="module")
def setup():
    # no projection in layer 1 (n_features <= n_proj), one before layer 2
    cfg = lstm.Config(n_features=3, n_classes=6, hidden=4, n_layers=2, n_proj=3)
    params, calib, batch = tiny_speech(lstm, cfg, [10, 7, 3], 2)
    fold = np.asarray([0, 1, 2, 2, 3, -1], np.int32)
    return cfg, params, calib, batch, fold


@pytest.mark.parametrize(
    "space_name,chunk_size", [("bitfusion", None), ("silago", 2), ("shared", 3)]
)
def test_batched_equals_loop(setup, space_name, chunk_size):
    cfg, params, calib, batch, fold = setup
    layers = lstm.sites(cfg)
    if space_name == "shared":
        # 2 levels x 2 first-stage genes = 4 combos < 9 genomes: first stage shared
        space = genome.tied_space(layers, (4, 8), "shared")
        n = 9
    else:
        space = genome.get_space(space_name, layers)
        n = 5
    rng = np.random.default_rng(1)
    genomes = rng.integers(0, space.upper + 1, (n, space.n_genes))
    ev = evaluate.PopulationEvaluator(
        cfg, space, fold, params, calib, chunk_size=chunk_size
    )
    res = ev(genomes, batch)
    ref = loop_reference(cfg, params, calib, batch, fold, space, genomes)
    np.testing.assert_allclose(res["loss"], ref[:, 0], rtol=2e-5, atol=1e-5)
    np.testing.assert_allclose(res["phone_error"], ref[:, 2], atol=1e-6)
    assert len(set(np.round(res["loss"], 5))) > 1


@pytest.mark.parametrize("platform", ["silago", "bitfusion"])
def test_searchable_cost_models(setup, platform):
    cfg = setup[0]
    plat = hardware.get_platform(platform)
    space = genome.get_space(plat.space_name, lstm.sites(cfg))
    cost = jax.vmap(plat.make_cost_fn(space))(
        jnp.asarray(np.stack([space.uniform(4), space.uniform(16)]))
    )
    mem = np.asarray(cost["memory_mb"])
    assert np.all(np.isfinite(mem)) and mem[0] < mem[1]


def test_qat_step_trains(setup):
    cfg, params, calib, (feats, labels, lengths), _ = setup
    opt = train.make_optimizer(train.TrainConfig(lr=1e-2))
    step = jax.jit(train.make_step(cfg, opt))
    bits = jnp.full((len(lstm.sites(cfg)),), 8, jnp.int32)
    batch = Batch(np.asarray(feats), np.asarray(labels), np.asarray(lengths))
    state, losses = opt.init(params), []
    for i in range(5):
        params, state, loss = step(
            params, state, batch, jax.random.key(i), bits, bits, calib
        )
        losses.append(float(loss))
    assert np.isfinite(losses).all() and losses[-1] < losses[0]


def test_mohaq_search_runs_on_the_lstm(setup):
    """The LSTM is searchable as is: a short NSGA-II search on the Bitfusion space."""
    from mohaq_jax.search import mohaq

    cfg, params, calib, batch, fold = setup
    space = genome.bitfusion_space(lstm.sites(cfg))
    config = mohaq.SearchConfig(
        objectives=("error", "speedup"),
        pop_size=4,
        n_offspring=2,
        n_generations=2,
        seed=0,
        max_error=10.0,
    )
    evaluator = evaluate.PopulationEvaluator(
        cfg, space, fold, params, calib, chunk_size=2, genome_batch=4
    )
    cost_fn = hardware.get_platform("bitfusion").make_cost_fn(space)
    problem = mohaq.QuantizationProblem(evaluator, cost_fn, batch, config)
    result = mohaq.run_search(problem, progress=False)
    assert result.genomes.shape == (8, space.n_genes)
    assert result.front.any() and np.all(result.feasible[result.front])
    # the archive's errors are the evaluator's
    again = evaluator(result.genomes[:2], batch)
    np.testing.assert_allclose(result.metrics["error"][:2], again["phone_error"])
