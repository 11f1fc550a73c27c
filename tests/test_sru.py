"""SRU forward vs an independent numpy implementation of the equations."""

import math

import chex
import jax
import jax.numpy as jnp
import numpy as np
import pytest

from mohaq_jax.models import sru


def sigmoid(x):
    return 1.0 / (1.0 + np.exp(-x))


def numpy_sru_layer(x_mm, x_cell, length, p, cfg, k):
    """Plain per-frame loops over time and directions (float64)."""
    h_size, n_dirs = cfg.hidden, cfg.n_dirs
    kernel = np.asarray(p["kernel"], np.float64).reshape(-1, n_dirs, k, h_size)
    v, b = np.asarray(p["v"], np.float64), np.asarray(p["bias"], np.float64)
    scale = math.sqrt(1 + 2 * math.exp(cfg.highway_bias)) if cfg.rescale else 1.0
    out = np.zeros((x_mm.shape[0], n_dirs, h_size))
    for d in range(n_dirs):
        frames = range(length) if d == 0 else range(length - 1, -1, -1)
        c = np.zeros(h_size)
        for t in frames:
            u = [x_mm[t] @ kernel[:, d, j] for j in range(k)]
            f = sigmoid(u[1] + v[d, 0] * c + b[d, 0])
            r = sigmoid(u[2] + v[d, 1] * c + b[d, 1])
            c = f * c + (1 - f) * u[0]
            if k == 4:
                skip = u[3] * scale
            elif x_cell.shape[1] == n_dirs * h_size:
                skip = x_cell[t, d * h_size : (d + 1) * h_size] * scale
            else:
                skip = None
            out[t, d] = r * c if skip is None else r * c + (1 - r) * skip
    return out.reshape(x_mm.shape[0], n_dirs * h_size)


def numpy_model(params, cfg, feats, length):
    p = jax.tree.map(lambda a: np.asarray(a, np.float64), params)
    x = np.asarray(feats, np.float64)
    n_proj_layers = 0
    for i in range(cfg.n_layers):
        d_in, m_in, n_proj, k = sru._sru_layout(cfg, i)
        x_cell = x
        if n_proj:
            n_proj_layers += 1
            x_mm = x @ p[f"proj{n_proj_layers}"]["kernel"]
        else:
            x_mm = x
        x = numpy_sru_layer(x_mm, x_cell, length, p[f"sru{i + 1}"], cfg, k)
    return x @ p["fc"]["kernel"] + p["fc"]["bias"]


CONFIGS = {
    "bi_proj_skipproject": sru.Config(
        n_features=6, n_classes=5, hidden=4, n_layers=3, n_proj=3, dropout=0.0
    ),
    "bi_proj_first": sru.Config(
        n_features=6,
        n_classes=5,
        hidden=4,
        n_layers=2,
        n_proj=3,
        dropout=0.0,
        proj_first=True,
    ),
    "uni_noproj": sru.Config(
        n_features=8,
        n_classes=3,
        hidden=8,
        n_layers=2,
        bidirectional=False,
        dropout=0.0,
    ),
    "bi_skipdrop_norescale": sru.Config(
        n_features=5,
        n_classes=4,
        hidden=3,
        n_layers=2,
        skip="drop",
        rescale=False,
        highway_bias=0.5,
        dropout=0.0,
    ),
}


@pytest.mark.parametrize("name", sorted(CONFIGS))
def test_forward_matches_numpy_with_padding(name, key):
    cfg = CONFIGS[name]
    key_p, key_x, key_v = jax.random.split(key, 3)
    params = sru.init_params(key_p, cfg)
    # random v so the recurrent terms matter
    for i in range(cfg.n_layers):
        layer = params[f"sru{i + 1}"]
        layer["v"] = jax.random.normal(jax.random.fold_in(key_v, i), layer["v"].shape)
    n_time, length = 9, 6
    feats = jax.random.normal(key_x, (n_time, cfg.n_features))
    out = sru.AcousticModel(cfg).apply({"params": params}, feats, jnp.asarray(length))
    chex.assert_shape(out, (n_time, cfg.n_classes))
    ref = numpy_model(params, cfg, np.asarray(feats), length)
    np.testing.assert_allclose(out[:length], ref[:length], atol=2e-5, rtol=1e-4)
    # Padding frames never change valid outputs.
    feats_junk = feats.at[length:].set(100.0)
    out_junk = sru.AcousticModel(cfg).apply(
        {"params": params}, feats_junk, jnp.asarray(length)
    )
    np.testing.assert_allclose(out_junk[:length], out[:length], atol=1e-6)


def test_paper_layers_match_published_macs():
    specs = sru.sites(sru.paper_config())
    macs = {s.name: s.macs_per_frame for s in specs}
    assert macs == {
        "sru1": 75_900,
        "proj1": 281_600,
        "sru2": 844_800,
        "proj2": 281_600,
        "sru3": 844_800,
        "proj3": 281_600,
        "sru4": 844_800,
        "fc": 2_094_400,
    }
    assert sum(s.n_bias for s in specs if s.kind == "sru") == 8_800


def test_bad_config_rejected():
    with pytest.raises(ValueError, match="skip"):
        sru.Config(n_features=3, n_classes=2, skip="identity")
    with pytest.raises(ValueError, match="hidden"):
        sru.Config(n_features=3, n_classes=2, hidden=0)


def test_default_experiment_model_has_the_papers_eight_sites():
    """4 SRU layers, projections before layers 2-4 only, output: 8 sites, 3**8
    SiLago genomes, even when --proj (64) is below the 69 input features."""
    from mohaq_jax.evaluation import genome
    from mohaq_jax.orchestration.prepare import model_config
    from mohaq_jax.settings.config import ModelSettings

    class Corpus:  # the default corpus' sizes (69 features, 39 phones)
        n_features, n_classes = 69, 39

    cfg = model_config(ModelSettings(), Corpus())
    names = [s.name for s in sru.sites(cfg)]
    assert names == ["sru1", "proj1", "sru2", "proj2", "sru3", "proj3", "sru4", "fc"]
    space = genome.silago_space(sru.sites(cfg))
    assert int(np.prod(space.n_levels)) == 6561
    with_first = model_config(ModelSettings(proj_first=True), Corpus())
    assert [s.name for s in sru.sites(with_first)][:2] == ["proj1", "sru1"]
    assert len(sru.sites(with_first)) == 9
