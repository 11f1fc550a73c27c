"""The Flax adapter: sites found in any Linen model, searched end to end, exported to qwix.

Four worked examples (an MLP, a CNN, a Transformer encoder with attention einsums and
a custom einsum head, an LSTM of flax's own ``OptimizedLSTMCell`` in ``nn.RNN``) are
each adapted and searched by the CLI-free API in a few lines; their sites and MACs are
checked against hand counts, the MLP's searched errors against a numpy forward. The
repository's SRU through the adapter gives the hand-written contract's errors on the
same genomes. The qwix export is checked on a tiny MLP: qwix's PTQ weights are the
search's quantized weights.
"""

import flax.linen as nn
import jax
import jax.numpy as jnp
import numpy as np
import pytest

from mohaq_jax import adapt
from mohaq_jax.adapt import flax_model, qwix_export
from mohaq_jax.evaluation import evaluate, genome
from mohaq_jax.models import qmodel, sru
from mohaq_jax.numerics import quantize

#: The MLP runs one NSGA-II generation; the other examples score their initial
#: population and take its front (each NSGA-II generation compiles per genome length).
TINY_SEARCH = dict(pop_size=4, n_offspring=2, n_generations=0)


# ------------------------------------------------------------------ the examples


class MLP(nn.Module):
    @nn.compact
    def __call__(self, x):
        x = nn.relu(nn.Dense(16, name="hidden")(x))
        return nn.Dense(3, name="out")(x)


class CNN(nn.Module):
    @nn.compact
    def __call__(self, x):  # (B, 8, 8, 1)
        x = nn.relu(nn.Conv(4, (3, 3), padding="SAME", name="conv1")(x))
        x = nn.relu(nn.Conv(8, (3, 3), strides=(2, 2), name="conv2")(x))  # (B,4,4,8)
        return nn.Dense(3, name="head")(jnp.mean(x, axis=(1, 2)))


class EinsumHead(nn.Module):
    """A custom module: ``jnp.einsum`` on its own parameter."""

    n_classes: int

    @nn.compact
    def __call__(self, x):
        w = self.param("w", nn.initializers.lecun_normal(), (x.shape[-1], 3))
        return jnp.einsum("bd,dc->bc", x, w)


class Encoder(nn.Module):
    @nn.compact
    def __call__(self, x):  # (B, L=6, d=8)
        h = nn.MultiHeadDotProductAttention(num_heads=2, name="attn")(x, x)
        x = nn.LayerNorm(name="ln1")(x + h)
        h = nn.Dense(8, name="mlp_out")(nn.gelu(nn.Dense(16, name="mlp_in")(x)))
        x = nn.LayerNorm(name="ln2")(x + h)
        return EinsumHead(3, name="head")(jnp.mean(x, axis=1))


class LSTMTagger(nn.Module):
    @nn.compact
    def __call__(self, x):  # (B, T, 4) -> (B, T, 3)
        h = nn.RNN(nn.OptimizedLSTMCell(5, name="cell"), name="lstm")(x)
        return nn.Dense(3, name="fc")(h)


def _classes_data(module, shape, n, seed):
    k_x, k_p, k_n = jax.random.split(jax.random.key(seed), 3)
    x = jax.random.normal(k_x, (n,) + shape)
    params = module.init(k_p, x)["params"]
    # Labels from the float model on perturbed inputs: an error neither 0 nor 1.
    noisy = x + 0.5 * jax.random.normal(k_n, x.shape)
    y = jnp.argmax(module.apply({"params": params}, noisy), -1).astype(jnp.int32)
    return params, (x, y)


def _search(model, params, batch, **kwargs):
    calib = adapt.calibrate(model, params, batch)
    settings = {**TINY_SEARCH, **kwargs}
    return adapt.search(model, params, batch, calib, **settings), calib


def _by_name(model):
    return {s.name: s for s in model.sites}


# ------------------------------------------------------------------------- MLP


def numpy_class_errors(params, calib, space, genomes, x, y):
    """Class error of each genome by a plain numpy forward of the MLP."""
    idx = {b: i for i, b in enumerate(quantize.BIT_OPTIONS)}

    def fq(v, bits, clip):
        levels = 2.0 ** (bits - 1) - 1
        clip = np.maximum(np.broadcast_to(clip, v.shape), np.finfo(np.float32).tiny)
        step = clip / levels
        return np.clip(np.round(np.clip(v, -clip, clip) / step), -levels, levels) * step

    out = []
    for g in genomes:
        bits_w, bits_a = (np.asarray(b) for b in space.decode(jnp.asarray(g)))
        h = np.asarray(x, np.float64)
        for i, name in enumerate(("hidden", "out")):
            w = np.asarray(params[name]["kernel"], np.float64)
            w = fq(w, bits_w[i], np.asarray(calib.w_clip[i])[idx[int(bits_w[i])]])
            a_clip = np.asarray(calib.a_clip)[i, idx[int(bits_a[i])]]
            h = fq(h, bits_a[i], a_clip) @ w + np.asarray(params[name]["bias"])
            h = np.maximum(h, 0.0) if name == "hidden" else h
        out.append(np.mean(np.argmax(h, -1) != np.asarray(y)))
    return np.asarray(out)


def test_mlp_searched_end_to_end_against_numpy():
    module = MLP()
    params, batch = _classes_data(module, (8,), 48, 0)
    model = adapt.adapt(module, params, batch)  # the user's few lines: adapt,
    searched, calib = _search(model, params, batch, n_generations=1)  # and search
    sites = _by_name(model)
    assert list(sites) == ["hidden", "out"]
    assert (sites["hidden"].macs_per_frame, sites["out"].macs_per_frame) == (128, 48)
    assert (sites["hidden"].n_bias, sites["out"].n_bias) == (16, 3)
    assert (sites["hidden"].n_in, sites["hidden"].n_out) == (8, 16)
    res = searched.result
    assert len(res.genomes) == 4 + 2  # initial population + one generation
    want = numpy_class_errors(params, calib, searched.space, res.genomes, *batch)
    np.testing.assert_allclose(res.metrics["error"], want, atol=1e-6)
    assert len(set(np.round(want, 6))) > 1  # the bits matter
    assert searched.front() and "speedup" in searched.front()[0]


# ------------------------------------------------------------------------- CNN


def test_cnn_conv_sites_and_macs():
    module = CNN()
    params, batch = _classes_data(module, (8, 8, 1), 16, 1)
    model = adapt.adapt(module, params, batch)
    sites = _by_name(model)
    assert list(sites) == ["conv1", "conv2", "head"]
    # conv1: 8x8 outputs x 4 channels x (3x3x1) window; conv2 (stride 2): 4x4 x 8 x
    # (3x3x4); head: 8 -> 3.
    assert sites["conv1"].macs_per_frame == 8 * 8 * 4 * 9
    assert sites["conv2"].macs_per_frame == 4 * 4 * 8 * 36
    assert sites["head"].macs_per_frame == 24
    assert (sites["conv2"].n_in, sites["conv2"].n_out, sites["conv2"].kind) == (
        36,
        8,
        "conv",
    )
    assert model.channel_shapes[1] == (8,)
    searched, _ = _search(model, params, batch, platform="silago")
    assert searched.space.gene_names == ("conv1", "conv2", "head")
    assert np.isfinite(searched.result.metrics["error"]).all()


# ------------------------------------------------------------------ Transformer


def test_transformer_attention_and_einsum_sites():
    module = Encoder()
    params, batch = _classes_data(module, (6, 8), 16, 2)
    model = adapt.adapt(module, params, batch)
    sites = _by_name(model)
    projections = ["attn/query", "attn/key", "attn/value", "attn/out"]
    # q.k and attention.v multiply activations only: not sites.
    assert sorted(sites) == sorted(projections + ["mlp_in", "mlp_out", "head/w"])
    for name in projections:  # 6 tokens x 8 x 8 per sequence
        assert sites[name].macs_per_frame == 6 * 8 * 8
    assert sites["mlp_in"].macs_per_frame == 6 * 8 * 16
    assert sites["head/w"].macs_per_frame == 8 * 3
    assert sites["attn/query"].weight_shape == (8, 2, 4)
    assert model.channel_shapes[list(sites).index("attn/query")] == (2, 4)
    assert model.channel_shapes[list(sites).index("attn/out")] == (8,)

    grouped = adapt.adapt(
        module,
        params,
        batch,
        groups=("attn/.*",),
        exclude=("head/w",),
        keep_float=("mlp_out",),
    )
    assert "head/w" not in _by_name(grouped)
    space = adapt.genome_space(grouped, "bitfusion")
    # attention: one w and one a gene; mlp_in: two; mlp_out pinned: two of 1 value.
    assert space.n_genes == 6
    pinned = [
        n
        for n, v in zip(space.gene_names, space.gene_values, strict=True)
        if len(v) == 1
    ]
    assert sorted(pinned) == ["a_mlp_out", "w_mlp_out"]
    assert space.gene_values[space.gene_names.index("w_mlp_out")] == (16,)
    attn = [i for i, s in enumerate(grouped.sites) if s.name.startswith("attn/")]
    assert len({space.w_gene[i] for i in attn}) == 1
    searched, _ = _search(grouped, params, batch)
    bits = searched.front()[0]["bits"]
    assert len({(bits[n]["w"], bits[n]["a"]) for n in projections}) == 1
    assert bits["mlp_out"] == {"w": 16, "a": 16}


# ------------------------------------------------------------------------- LSTM


def test_lstm_of_flax_cells_frames():
    module = LSTMTagger()
    b, t = 3, 6
    k_x, k_p, k_y = jax.random.split(jax.random.key(3), 3)
    x = jax.random.normal(k_x, (b, t, 4))
    params = module.init(k_p, x)["params"]
    lengths = jnp.asarray([6, 4, 5], jnp.int32)
    labels = jax.random.randint(k_y, (b, t), 0, 3)
    labels = jnp.where(jnp.arange(t)[None] < lengths[:, None], labels, -1)
    batch = (x, labels, lengths)
    model = adapt.adapt(module, params, batch, error="frames")
    sites = _by_name(model)
    inputs = [f"cell/i{g}" for g in "ifgo"]
    hidden = [f"cell/h{g}" for g in "ifgo"]
    assert sorted(sites) == sorted(inputs + hidden + ["fc"])
    # MACs per frame: each gate's input kernel 4 x 5, hidden kernel 5 x 5; fc 5 x 3.
    assert all(sites[n].macs_per_frame == 20 for n in inputs)
    assert all(sites[n].macs_per_frame == 25 for n in hidden)
    assert sites["fc"].macs_per_frame == 15
    assert all(sites[n].n_bias == 5 for n in hidden)  # the h* Dense carry the biases
    # The cell concatenates the four gate kernels into one matmul: one precision.
    names = [s.name for s in model.sites]
    assert sorted(sorted(names[i] for i in g) for g in model.ties) == sorted(
        [sorted(inputs), sorted(hidden)]
    )
    # The interpreter rebuilds nn.RNN's scan: float bits give the model's outputs.
    n = len(model.sites)
    floats = jnp.full((n,), quantize.FLOAT_BITS, jnp.int32)
    got = flax_model.apply(params, model, batch, floats, jnp.ones((n,)))
    want = module.apply({"params": params}, x)
    np.testing.assert_allclose(got, want, rtol=1e-6, atol=1e-6)
    searched, _ = _search(model, params, batch, fold=np.arange(3))
    assert searched.space.n_genes == 6  # w/a x (inputs, hidden, fc)
    m = searched.result.metrics
    assert np.all((m["frame_error"] >= 0) & (m["frame_error"] <= 1))


# -------------------------------------------------------------------------- SRU


def _reencode(space_from, space_to, genomes):
    """The same bits per site, as genomes of another space over the same sites."""
    out = []
    for g in genomes:
        bits = space_from.describe(g)
        new = np.zeros(space_to.n_genes, np.int32)
        for i, site in enumerate(space_to.layers):
            for which, genes in (("w", space_to.w_gene), ("a", space_to.a_gene)):
                new[genes[i]] = space_to.gene_values[genes[i]].index(
                    bits[site.name][which]
                )
        out.append(new)
    return np.stack(out)


@pytest.fixture(scope="module")
def sru_setup():
    cfg = sru.Config(  # a projection before layer 1 too: a 2-site first stage
        n_features=5,
        n_classes=6,
        hidden=8,
        n_layers=2,
        n_proj=4,
        proj_first=True,
        dropout=0.0,
    )
    params = sru.init_params(jax.random.key(0), cfg)
    b, t = 6, 12
    feats = jax.random.normal(jax.random.key(1), (b, t, 5))
    lengths = jnp.asarray([12, 10, 7, 12, 3, 9], jnp.int32)
    labels = jax.random.randint(jax.random.key(2), (b, t), 0, 6)
    labels = jnp.where(jnp.arange(t)[None] < lengths[:, None], labels, -1)
    model = adapt.adapt(
        sru.AcousticModel(cfg),
        params,
        (feats, labels, lengths),
        inputs=lambda batch: (batch[0], batch[2]),
        per_example=True,
        error="frames",
    )
    return cfg, params, (feats, labels, lengths), model


def test_sru_through_the_adapter_equals_its_contract(sru_setup):
    cfg, params, batch, model = sru_setup
    for ours, theirs in zip(model.sites, sru.sites(cfg), strict=True):
        assert ours.name == theirs.name
        assert ours.weight_path == theirs.weight_path
        for field in ("n_in", "n_out", "n_weights", "macs_per_frame", "n_bias"):
            assert getattr(ours, field) == getattr(theirs, field), (ours.name, field)
        assert ours.n_vector == theirs.n_vector
    calib = qmodel.calibrate(params, cfg, batch[0], batch[2], "mse", "mse")
    space_c = genome.get_space("bitfusion", sru.sites(cfg))
    space_a = adapt.genome_space(model, "bitfusion")
    genomes = np.random.default_rng(0).integers(0, 4, (8, space_c.n_genes))
    same = _reencode(space_c, space_a, genomes)
    fold = np.arange(6)
    ev_c = evaluate.PopulationEvaluator(
        cfg, space_c, fold, params, calib, genome_batch=8
    )
    ev_a = adapt.evaluator(model, space_a, params, calib, fold, genome_batch=8)
    got, want = ev_a(same, batch), ev_c(genomes, batch)
    for key in ("phone_edits", "n_phones"):
        np.testing.assert_array_equal(got[key], want[key])
    np.testing.assert_array_equal(
        np.round(got["frame_error"] * 53), np.round(want["frame_error"] * 53)
    )
    np.testing.assert_allclose(got["loss"], want["loss"], rtol=1e-5)
    assert len(set(want["phone_edits"])) > 1


def test_sru_population_compiles_once_and_calibrates_as_the_contract(sru_setup):
    cfg, params, batch, model = sru_setup
    full = (batch[0], batch[1], jnp.full((6,), 12, jnp.int32))  # no padding frames
    ours = adapt.calibrate(model, params, full, "mse", "mse")
    theirs = qmodel.calibrate(params, cfg, full[0], full[2], "mse", "mse")
    np.testing.assert_allclose(ours.a_clip, theirs.a_clip, rtol=1e-5)
    for a, b in zip(ours.w_clip, theirs.w_clip, strict=True):
        np.testing.assert_allclose(a, b, rtol=1e-6)
    space = adapt.genome_space(model, "silago")
    # First stage by hand: savings (32 - settings) x MACs of proj1 (3 settings, 20
    # MACs) 580, + sru1 (9, 276) 6348, + proj2 (27, 340) 1700, + sru2 (81): none.
    # The best is the contract's hand-written first stage.
    shared = adapt.for_population(model, space, 32)
    assert shared.first_sites == sru.first_stage_sites(cfg) == (0, 1)
    assert adapt.for_population(model, space, 3).first_sites == ()
    fn = evaluate.make_population_eval(shared, space, np.arange(6), 2)
    rng = np.random.default_rng(1)
    space_c = genome.get_space("silago", sru.sites(cfg))
    want = evaluate.make_population_eval(cfg, space_c, np.arange(6), 2)
    for _ in range(2):  # 12 genomes > 9 settings: the first stage is shared
        genomes = rng.integers(0, 3, (12, space.n_genes)).astype(np.int32)
        got = fn(params, theirs, jnp.asarray(genomes), full)
        same = jnp.asarray(_reencode(space, space_c, genomes))
        np.testing.assert_array_equal(
            got.phone_edits, want(params, theirs, same, full).phone_edits
        )
    assert fn._cache_size() == 1  # new bits, same program


# ----------------------------------------------------------------------- spaces


def test_tie_space_hand_case():
    sites = [s for s in sru.sites(sru.Config(3, 4, hidden=2, n_layers=2, n_proj=2))]
    space = genome.get_space("bitfusion", sites)  # w/a per proj, sru, fc
    names = [s.name for s in sites]  # proj1, sru1, proj2, sru2, fc
    tied = adapt.tie_space(space, ((0, 1),), pinned=(len(sites) - 1,))
    assert tied.n_genes == space.n_genes - 2
    assert tied.w_gene[0] == tied.w_gene[1] and tied.a_gene[0] == tied.a_gene[1]
    fc_w = tied.gene_values[tied.w_gene[names.index("fc")]]
    assert fc_w == (16,)
    assert any(n.endswith("+1") for n in tied.gene_names)


def test_adapt_rejects_bad_input():
    module = MLP()
    params, batch = _classes_data(module, (8,), 4, 0)
    with pytest.raises(ValueError, match="error must be one of"):
        adapt.adapt(module, params, batch, error="words")
    with pytest.raises(ValueError, match="no weight op"):
        adapt.adapt(module, params, batch, exclude=(".*",))


# ------------------------------------------------------------------------- qwix


def test_qwix_export_reproduces_the_search_quantization():
    qwix = pytest.importorskip("qwix")
    module = MLP()
    params, batch = _classes_data(module, (8,), 64, 4)
    model = adapt.adapt(module, params, batch)
    calib = adapt.calibrate(model, params, batch)
    space = adapt.genome_space(model, "wide")
    genome_ = space.encode({"w_hidden": 3, "a_hidden": 5, "w_out": 16, "a_out": 16})
    rules, sites = qwix_export.export(model, space, genome_, calib, params)
    assert len(rules) == 1 and rules[0].module_path == "hidden"
    assert (rules[0].weight_qtype, rules[0].act_qtype) == ("int3", "int5")
    assert sites[1].weight_qtype is None and sites[1].exact  # 16 bits: float
    assert qwix_export.qtype(8) == jnp.int8 and qwix_export.qtype(4) == jnp.int4
    with pytest.raises(ValueError, match="no qtype"):
        qwix_export.qtype(1)
    # qwix's quantized weight is the search's quantized weight, value for value.
    _, qparams, seen = qwix_export.ptq(model, params, rules, batch)
    assert seen == (True, False)
    theirs = qwix.dequantize(qparams["hidden"]["kernel"].array)
    ours = qmodel.quantize_kernel(
        params["hidden"]["kernel"], jnp.int32(3), calib.w_clip[0]
    )
    np.testing.assert_allclose(theirs, ours, rtol=1e-6, atol=1e-7)
    # A float weight with quantized activations is said, not dropped silently.
    other = space.encode({"w_hidden": 8, "a_hidden": 8, "w_out": 16, "a_out": 4})
    _, sites = qwix_export.export(model, space, other, calib, params)
    assert "qwix skips the op" in sites[1].notes[0]
    rows = qwix_export.compare(
        model,
        params,
        calib,
        space,
        np.stack([space.uniform(8), genome_]),
        {"dev": (batch[0][:32], batch[1][:32]), "test": (batch[0][32:], batch[1][32:])},
        n_resamples=200,
    )
    assert [r["split"] for r in rows] == ["dev", "test"] * 2
    assert all(r["inside"] for r in rows)
    assert rows[0]["qwix"][0] == pytest.approx(rows[0]["search"][0])
    assert "inside" in qwix_export.format_rows(rows)
