"""The population benchmark's anchor (PyTorch + the sru package) computes our SRU.

Skipped where torch or sru is not installed (they are in the ``bench`` extra only).
"""

import jax
import jax.numpy as jnp
import numpy as np
import pytest

from benchmarks import torch_sru
from mohaq_jax.evaluation import evaluate, genome
from mohaq_jax.models import qmodel, sru

pytestmark = pytest.mark.skipif(
    not torch_sru.available(), reason="torch and sru not installed (bench extra)"
)


@pytest.fixture(scope="module")
def tiny():
    # 2 bidirectional layers; projection 6 < 7 features and < 8 outputs, so both
    # layers have one: 4 matrices in layer 1 (7 != 8), 3 in layer 2.
    config = sru.Config(
        n_features=7,
        n_classes=5,
        hidden=4,
        n_layers=2,
        n_proj=6,
        proj_first=True,
        dropout=0.0,
    )
    key_p, key_x = jax.random.split(jax.random.key(3))
    params = sru.init_params(key_p, config)
    # Non-zero biases and highway weights, so the layout of v and bias is tested.
    params = {name: dict(layer) for name, layer in params.items()}
    for layer in ("sru1", "sru2"):
        shape = params[layer]["bias"].shape
        params[layer]["bias"] = jax.random.normal(jax.random.fold_in(key_p, 1), shape)
    features = jax.random.normal(key_x, (3, 9, 7))
    lengths = jnp.asarray([9, 6, 4], jnp.int32)
    return config, params, features, lengths


def _reference_logits(config, params, features, lengths, bits_a=None, clips=None):
    """Our model, one utterance at a time (the Flax forward), time-major."""
    out = []
    for b in range(features.shape[0]):
        logits = sru.apply(params, config, features[b], lengths[b], bits_a, clips)
        out.append(np.asarray(logits))
    return np.stack(out, axis=1)


def test_float_forward_matches_our_sru(tiny):
    config, params, features, lengths = tiny
    sites = sru.sites(config)
    assert [s.kind for s in sites] == ["proj", "sru", "proj", "sru", "fc"]
    model = torch_sru.build(config, sites, params)
    n = len(sites)
    model.set_genome([32] * n, [32] * n, [1.0] * n, [1.0] * n)
    feats, pad = torch_sru.inputs(features, lengths)
    import torch

    with torch.no_grad():
        got = model(feats, pad).numpy()
    want = _reference_logits(config, params, features, lengths)
    valid = np.arange(9)[:, None] < np.asarray(lengths)[None, :]
    np.testing.assert_allclose(got[valid], want[valid], rtol=1e-4, atol=1e-5)


def test_quantized_genome_matches_our_evaluator_path(tiny):
    config, params, features, lengths = tiny
    sites = sru.sites(config)
    calib = qmodel.calibrate(params, config, features, lengths, "max", "max")
    space = genome.get_space("bitfusion", sites)
    one = np.asarray(
        [space.n_levels[g] - 1 - (g % 2) for g in range(space.n_genes)], np.int32
    )  # 16-bit and 8-bit genes alternate
    bits_w, bits_a, w_clip, a_clip = torch_sru.genome_clips(calib, space, one)
    assert set(bits_w) | set(bits_a) == {8, 16}
    tables = evaluate.weight_tables(params, calib, space)
    qparams = evaluate.genome_params(params, tables, space, jnp.asarray(one))
    clips = qmodel.act_clips(calib, jnp.asarray(bits_a))
    want = _reference_logits(
        config, qparams, features, lengths, jnp.asarray(bits_a), clips
    )
    model = torch_sru.build(config, sites, params)
    model.set_genome(bits_w, bits_a, w_clip, a_clip)
    feats, pad = torch_sru.inputs(features, lengths)
    import torch

    with torch.no_grad():
        got = model(feats, pad).numpy()
    valid = np.arange(9)[:, None] < np.asarray(lengths)[None, :]
    # 8-bit steps are ~1 % of the clip: a rounding flip moves a logit by about that.
    np.testing.assert_allclose(got[valid], want[valid], rtol=0, atol=0.05)
    assert np.mean(np.abs(got[valid] - want[valid])) < 1e-3
