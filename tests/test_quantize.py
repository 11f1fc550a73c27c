"""Fake quantizer vs a numpy reference, STE gradients, calibration, bad input."""

import chex
import jax
import jax.numpy as jnp
import numpy as np
import pytest

from mohaq_jax.numerics import quantize


def numpy_fake_quant(x, bits, clip):
    """Independent reference: explicit level grid, nearest level, ties to even."""
    x = np.asarray(x, np.float64)
    if bits >= 32:
        return x
    qmax = 2 ** (bits - 1) - 1
    step = clip / qmax
    levels = np.clip(np.round(np.clip(x, -clip, clip) / step), -qmax, qmax)
    return levels * step


@pytest.mark.parametrize(
    "name,x,bits,clip,expected",
    [
        # 2 bits: ternary {-c, 0, c}; threshold at c/2 (tie 0.5 rounds to even 0).
        ("ternary", [-1.0, -0.4, 0.5, 0.51, 2.0], 2, 1.0, [-1.0, 0.0, 0.0, 1.0, 1.0]),
        # 3 bits, clip 3: qmax 3, step 1; 1.5 -> 2 (even), 2.5 -> 2 (even), 7 clipped.
        ("3bit_ties", [1.5, 2.5, -0.5, 7.0, -7.0], 3, 3.0, [2.0, 2.0, -0.0, 3.0, -3.0]),
        # 4 bits, clip 7: step 1, so values round to integers, clipped to +-7.
        ("4bit_levels", [0.49, 0.51, 6.6, 8.0], 4, 7.0, [0.0, 1.0, 7.0, 7.0]),
        # 8 bits, clip 127: step 1.
        ("8bit", [100.4, -126.6, 300.0], 8, 127.0, [100.0, -127.0, 127.0]),
        # float passthrough.
        ("float", [0.123, -9.0], 32, 1.0, [0.123, -9.0]),
    ],
)
def test_fake_quant_named_cases(name, x, bits, clip, expected):
    out = quantize.fake_quant(
        jnp.asarray(x, jnp.float32), jnp.asarray(bits), jnp.float32(clip)
    )
    np.testing.assert_allclose(out, expected, rtol=0, atol=1e-6)
    np.testing.assert_allclose(out, numpy_fake_quant(x, bits, clip), atol=1e-6)


@pytest.mark.parametrize("bits", [2, 3, 4, 5, 6, 8, 16])
def test_levels_count_and_random_match(bits, key):
    x = jax.random.normal(key, (4000,)) * 2
    out = np.asarray(quantize.fake_quant(x, jnp.asarray(bits), jnp.float32(1.5)))
    ref = numpy_fake_quant(np.asarray(x), bits, 1.5)
    step = 1.5 / (2 ** (bits - 1) - 1)
    # float32 division may land a value right at a rounding threshold on the other
    # side than float64 does: at most one step off, and rarely.
    np.testing.assert_allclose(out, ref, atol=step * 1.001 + 1e-6)
    assert np.mean(np.abs(out - ref) < 1e-5) > 0.99
    assert len(np.unique(np.asarray(out))) <= 2**bits - 1


def test_per_channel_scales():
    kernel = jnp.asarray(
        [[0.5, -4.0], [1.0, 2.0], [-0.2, 1.1]], jnp.float32
    )  # (in=3, out=2)
    clip = quantize.max_abs(kernel, channel_axis=-1)
    np.testing.assert_allclose(clip, [1.0, 4.0])
    out = quantize.fake_quant(kernel, jnp.asarray(3), clip)
    # column 0: step 1/3; column 1: step 4/3.
    expected = np.stack(
        [
            numpy_fake_quant(kernel[:, 0], 3, 1.0),
            numpy_fake_quant(kernel[:, 1], 3, 4.0),
        ],
        1,
    )
    np.testing.assert_allclose(out, expected, atol=1e-6)


def test_ste_gradient_identity_inside_zero_outside():
    x = jnp.asarray([-2.0, -0.7, 0.1, 0.9, 1.5], jnp.float32)
    grad = jax.grad(
        lambda v: jnp.sum(quantize.fake_quant(v, jnp.asarray(4), jnp.float32(1.0)))
    )(x)
    np.testing.assert_array_equal(grad, [0.0, 1.0, 1.0, 1.0, 0.0])
    grad_float = jax.grad(
        lambda v: jnp.sum(quantize.fake_quant(v, jnp.asarray(32), 1.0))
    )(x)
    np.testing.assert_array_equal(grad_float, np.ones(5))


def test_traced_bits_compile_once(key):
    x = jax.random.normal(key, (64,))

    @jax.jit
    @chex.assert_max_traces(n=1)
    def f(bits):
        return quantize.fake_quant(x, bits, jnp.float32(1.0))

    for bits in (2, 4, 8, 16, 32):
        f(jnp.asarray(bits))
    per_genome = jax.vmap(lambda b: quantize.fake_quant(x, b, 1.0))(
        jnp.asarray([2, 3, 4])
    )
    chex.assert_shape(per_genome, (3, 64))


def test_mse_clip_beats_max_and_matches_brute_force(key):
    x = jax.random.laplace(key, (5000,))
    for bits in (2, 4):
        clip = quantize.mse_clip(x, jnp.asarray(bits))
        amax = float(np.max(np.abs(x)))
        errs = {
            r: np.mean(
                (numpy_fake_quant(np.asarray(x), bits, amax * r) - np.asarray(x)) ** 2
            )
            for r in quantize.DEFAULT_CLIP_RATIOS
        }
        best = min(errs, key=errs.get)
        np.testing.assert_allclose(float(clip), amax * best, rtol=1e-5)
        assert errs[best] < errs[1.0]


def test_clip_table_shapes(key):
    kernel = jax.random.normal(key, (6, 5))
    chex.assert_shape(quantize.clip_table(kernel, "max"), (len(quantize.BIT_OPTIONS),))
    chex.assert_shape(
        quantize.clip_table(kernel, "mse", channel_axis=-1),
        (len(quantize.BIT_OPTIONS), 5),
    )
    with pytest.raises(ValueError, match="unknown calibration method"):
        quantize.clip_table(kernel, "kl")


@pytest.mark.parametrize("bad", [7, 1, 0, 33, 12])
def test_unsupported_bits_rejected(bad):
    with pytest.raises(ValueError, match=f"unsupported bit-width {bad}"):
        quantize.check_bits([4, bad, 8])
    np.testing.assert_array_equal(quantize.check_bits([2, 16, 32]), [2, 16, 32])


def test_bits_index_roundtrip():
    idx = quantize.bits_index(jnp.asarray(quantize.BIT_OPTIONS))
    np.testing.assert_array_equal(idx, np.arange(len(quantize.BIT_OPTIONS)))
