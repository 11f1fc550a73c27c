"""Tests of the VGG-9 model: shapes, layer table, quantized forward."""

import chex
import jax
import jax.numpy as jnp
import numpy as np
import pytest

from mohaq_jax.models import vgg
from tests.conftest import TINY_VGG


def test_forward_shape_single_and_batch(key):
    params = jax.jit(vgg.init_params, static_argnums=1)(key, TINY_VGG)
    image = jax.random.uniform(key, (8, 8, 2))
    one = jax.eval_shape(
        lambda p, x: vgg.VGG(TINY_VGG).apply({"params": p}, x), params, image
    )
    chex.assert_shape(one, (3,))
    batch = jax.jit(vgg.apply_batch, static_argnums=1)
    chex.assert_shape(batch(params, TINY_VGG, jnp.stack([image] * 4)), (4, 3))
    # digits default: 16x16x1 -> 10 classes (shapes only, nothing compiled)
    cfg = vgg.digits_config()
    p = jax.eval_shape(lambda k: vgg.init_params(k, cfg), key)
    out = jax.eval_shape(
        lambda p, x: vgg.apply_batch(p, cfg, x),
        p,
        jax.ShapeDtypeStruct((2, 16, 16, 1), jnp.float32),
    )
    chex.assert_shape(out, (2, 10))


def test_sites_hand_counts(key):
    specs = vgg.sites(TINY_VGG)
    assert [s.name for s in specs] == [
        "conv1",
        "conv2",
        "conv3",
        "conv4",
        "conv5",
        "conv6",
        "fc1",
        "fc2",
        "fc3",
    ]
    # conv1: 3x3x2x2 = 36 weights at 8x8 = 64 positions; conv3 at 4x4; conv5 at 2x2
    assert (specs[0].n_weights, specs[0].macs_per_frame) == (36, 36 * 64)
    assert (specs[2].n_weights, specs[2].macs_per_frame) == (54, 54 * 16)
    assert (specs[4].n_weights, specs[4].macs_per_frame) == (108, 108 * 4)
    # after three poolings: 1x1x4 features into fc1
    assert (specs[6].n_in, specs[6].n_out) == (4, 5)
    params = jax.eval_shape(lambda k: vgg.init_params(k, TINY_VGG), key)
    for s in specs:
        assert params[s.name]["kernel"].size == s.n_weights


def test_quantized_forward_and_capture(key):
    params = jax.jit(vgg.init_params, static_argnums=1)(key, TINY_VGG)
    images = jax.random.uniform(key, (3, 8, 8, 2))
    inputs = jax.jit(vgg.capture_inputs, static_argnums=1)(params, TINY_VGG, images)
    assert len(inputs) == 9
    assert inputs[0].size == 3 * 8 * 8 * 2
    clips = jnp.ones((9,), jnp.float32)
    apply = jax.jit(vgg.apply_batch, static_argnums=1)
    float_out = apply(params, TINY_VGG, images, jnp.full((9,), 32, jnp.int32), clips)
    np.testing.assert_array_equal(
        np.asarray(
            jax.jit(vgg.apply_batch, static_argnums=1)(params, TINY_VGG, images)
        ),
        np.asarray(float_out),
    )
    q = apply(params, TINY_VGG, images, jnp.full((9,), 2, jnp.int32), clips)
    assert not np.allclose(np.asarray(q), np.asarray(float_out))


def test_config_validation():
    with pytest.raises(ValueError):
        vgg.Config(conv_widths=(1, 2, 3))
    with pytest.raises(ValueError):
        vgg.Config(image_size=12)


def test_sites_feed_genome_spaces_and_cost_models():
    """VGG-9 describes itself with the model-neutral sites: spaces and costs apply."""
    from mohaq_jax import hardware
    from mohaq_jax.evaluation import genome

    space = genome.bitfusion_space(vgg.sites(TINY_VGG))
    assert space.gene_names[:7] == ("w_conv1",) + tuple(
        f"w_conv{i}" for i in range(2, 7)
    ) + ("a_conv1",)
    assert space.gene_names[-6:] == (
        "w_fc1",
        "w_fc2",
        "w_fc3",
        "a_fc1",
        "a_fc2",
        "a_fc3",
    )
    cost = hardware.get_platform("bitfusion").make_cost_fn(space)
    low, high = cost(space.uniform(4)), cost(space.uniform(16))
    assert float(low["memory_mb"]) < float(high["memory_mb"])
    assert float(low["speedup"]) > float(high["speedup"])
