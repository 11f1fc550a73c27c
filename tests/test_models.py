"""The model contract, checked for every registered model (mohaq_jax.models.MODELS)."""

import chex
import jax
import jax.numpy as jnp
import numpy as np
import pytest

from mohaq_jax.models import MODELS, get_model, model_of, sites
from mohaq_jax.numerics import quantize

CONTRACT = (
    "Config",
    "sites",
    "init_params",
    "apply",
    "capture",
    "first_stage_sites",
    "first_stage",
    "rest_stages",
)


#: The speech models (task "frames"); the image model's contract is in test_vgg_mohaq.
SPEECH = [
    m for m in sorted(MODELS) if getattr(get_model(m), "TASK", "frames") == "frames"
]


def test_every_model_has_the_contract():
    for name in MODELS:
        assert all(hasattr(get_model(name), attr) for attr in CONTRACT), name


@pytest.fixture(params=SPEECH, scope="module")
def tiny(request):
    model = get_model(request.param)
    # Fields every speech model shares; n_proj=2 puts a projection before layer 2.
    config = model.Config(
        n_features=3, n_classes=4, hidden=4, n_layers=2, n_proj=2, dropout=0.0
    )
    return model, config, model.init_params(jax.random.key(0), config)


def test_contract_and_registry(tiny):
    model, config, params = tiny
    assert all(hasattr(model, name) for name in CONTRACT)
    assert model_of(config) is model
    for site in model.sites(config):
        chex.assert_shape(sites.get_weight(params, site), site.weight_shape)
    with pytest.raises(ValueError, match="unknown model 'nope'"):
        get_model("nope")


def test_population_path_equals_one_utterance_forward(tiny):
    """first_stage + rest_stages on a padded batch == apply per utterance."""
    model, config, params = tiny
    n_sites = len(model.sites(config))
    feats = jax.random.normal(jax.random.key(1), (2, 7, config.n_features))
    lengths = jnp.asarray([7, 4], jnp.int32)
    batch = (feats, jnp.zeros((2, 7), jnp.int32), lengths)
    bits = jnp.asarray([8] * n_sites, jnp.int32)
    clips = jnp.ones((n_sites,), jnp.float32)
    hidden = model.first_stage(config, params, bits, clips, batch)
    logits = model.rest_stages(config, params, bits, clips, hidden, batch)
    for b in range(2):
        ref = model.apply(params, config, feats[b], lengths[b], bits, clips)
        n = int(lengths[b])
        np.testing.assert_allclose(logits[b, :n], ref[:n], atol=1e-5)
    # float bits leave the activations alone
    float_bits = jnp.full((n_sites,), quantize.FLOAT_BITS, jnp.int32)
    np.testing.assert_allclose(
        model.apply(params, config, feats[0], lengths[0], float_bits, clips),
        model.apply(params, config, feats[0], lengths[0]),
        atol=1e-6,
    )


def test_capture_gives_every_site_input(tiny):
    model, config, params = tiny
    feats = jax.random.normal(jax.random.key(2), (5, config.n_features))
    inputs = model.capture(params, config, feats, jnp.asarray(5))
    layers = model.sites(config)
    assert len(inputs) == len(layers)
    for x, site in zip(inputs, layers, strict=True):
        # (T, n_in), or for a recurrent kernel (T, dirs * n_in): h of every direction
        assert x.shape[0] == 5 and x.reshape(5, -1).shape[1] % site.n_in == 0
