"""Symmetric uniform fake quantization with traced bit-widths.

The bit-width is a ``jax.Array`` leaf, never a Python int, so one compiled program
serves every genome of a population (``jax.vmap`` over bit-widths works and nothing
recompiles when bits change). This is where mohaq_jax deliberately differs from AQT's
``IntSymmetric(bits: int)`` and qwix's static ``qtype``.

Quantizer (MOHAQ, Rashed et al. 2021, Sec. III-A: post-training symmetric linear
quantization): for ``b`` bits and clipping value ``c``, ``qmax = 2**(b-1) - 1``,
``step = c / qmax`` and ``q(x) = step * clip(round(x / step), -qmax, qmax)``. Two bits
give the ternary levels ``{-c, 0, c}``. ``round`` is round-half-to-even (numpy and
``jnp.round``). ``FLOAT_BITS`` (32) means "not quantized": ``x`` passes through.

The straight-through estimator: the gradient of ``fake_quant`` with respect to ``x`` is
the identity inside ``[-c, c]`` and zero outside, so the same function serves
quantization-aware training.
"""

from __future__ import annotations

import jax
import jax.numpy as jnp
import numpy as np

#: Bit-widths a site may take. ``FLOAT_BITS`` means "no quantization" (float32).
FLOAT_BITS = 32
BIT_OPTIONS: tuple[int, ...] = (2, 3, 4, 5, 6, 8, 16, FLOAT_BITS)

# bits -> index into BIT_OPTIONS (or -1), as an array so a traced bit-width can index
# per-(site, bits) tables such as MSE-optimal clipping values.
_BITS_TO_INDEX = np.full(FLOAT_BITS + 1, -1, dtype=np.int32)
for _i, _b in enumerate(BIT_OPTIONS):
    _BITS_TO_INDEX[_b] = _i

#: Clip ratios searched by MSE-optimal calibration (fractions of max-abs).
DEFAULT_CLIP_RATIOS = tuple(np.round(np.linspace(0.2, 1.0, 33), 4).tolist())


def check_bits(bits, what: str = "bits") -> np.ndarray:
    """Validates bit-widths at the Python boundary (outside jit).

    Args:
      bits: int array-like of bit-widths.
      what: name used in the error message.

    Returns:
      ``bits`` as an int32 numpy array.

    Raises:
      ValueError: a value is not in ``BIT_OPTIONS``, naming the value and position.
    """
    arr = np.asarray(bits)
    if arr.dtype.kind == "f":
        if not np.all(np.isfinite(arr)) or np.any(arr != np.round(arr)):
            raise ValueError(f"{what} must be integers, got {arr!r}")
    arr = arr.astype(np.int64)
    bad = ~np.isin(arr, BIT_OPTIONS)
    if np.any(bad):
        pos = tuple(int(i) for i in np.argwhere(bad)[0])
        raise ValueError(
            f"unsupported bit-width {int(arr[pos])} in {what} at index {pos}; "
            f"supported values are {BIT_OPTIONS[:-1]} and {FLOAT_BITS} (no quantization)"
        )
    return arr.astype(np.int32)


def bits_index(bits: jax.Array) -> jax.Array:
    """Index of each bit-width in ``BIT_OPTIONS`` (traceable; assumes valid bits)."""
    return jnp.asarray(_BITS_TO_INDEX)[jnp.asarray(bits, jnp.int32)]


def qmax(bits: jax.Array) -> jax.Array:
    """Largest integer level ``2**(bits-1) - 1`` as float32 (traceable)."""
    bits = jnp.asarray(bits, jnp.float32)
    return jnp.exp2(bits - 1.0) - 1.0


def _quantize_clipped(x: jax.Array, bits: jax.Array, clip: jax.Array) -> jax.Array:
    levels = qmax(bits)
    clip = jnp.maximum(clip, jnp.finfo(jnp.float32).tiny)
    step = clip / levels
    return jnp.clip(jnp.round(x / step), -levels, levels) * step


def fake_quant(x: jax.Array, bits: jax.Array, clip: jax.Array) -> jax.Array:
    """Symmetric uniform fake quantization with a straight-through estimator.

    Args:
      x: tensor to quantize, any shape.
      bits: bit-width, a scalar array (traced), one of ``BIT_OPTIONS``;
        ``FLOAT_BITS`` returns ``x`` unchanged.
      clip: clipping value(s), broadcastable to ``x`` (a scalar for per-tensor,
        shape ``(out_channels,)`` against the last axis of a kernel for per-channel).

    Returns:
      The quantized tensor, same shape and dtype as ``x``. Its gradient with respect to
      ``x`` is 1 where ``|x| <= clip`` and 0 elsewhere.
    """
    clip = jnp.broadcast_to(jnp.asarray(clip, x.dtype), x.shape)
    x_clipped = jnp.clip(x, -clip, clip)
    q = _quantize_clipped(x_clipped, bits, clip)
    q_ste = x_clipped + jax.lax.stop_gradient(q - x_clipped)
    return jnp.where(jnp.asarray(bits) >= FLOAT_BITS, x, q_ste)


def max_abs(x: jax.Array, channel_axis: int | None = None) -> jax.Array:
    """Max-abs calibration: the clipping value is the tensor's largest magnitude.

    Args:
      x: calibration tensor.
      channel_axis: ``None`` for one per-tensor scale, else the axis kept (one clip
        per output channel, e.g. ``-1`` for a ``(in, out)`` kernel).

    Returns:
      A scalar, or shape ``(x.shape[channel_axis],)``.
    """
    if channel_axis is None:
        return jnp.max(jnp.abs(x))
    axis = channel_axis % x.ndim
    other = tuple(a for a in range(x.ndim) if a != axis)
    return jnp.max(jnp.abs(x), axis=other)


def mse_clip(
    x: jax.Array,
    bits: jax.Array,
    channel_axis: int | None = None,
    ratios=DEFAULT_CLIP_RATIOS,
) -> jax.Array:
    """MSE-optimal clipping: the clip ratio of max-abs with the least quantization MSE.

    The ratios are tried one after the other (``lax.map``), per tensor or per channel:
    a calibration tensor of activations can hold millions of values, and trying every
    ratio at once would hold one quantized copy per ratio (gigabytes).

    Args:
      x: calibration tensor.
      bits: bit-width (scalar array).
      channel_axis: as in :func:`max_abs`.
      ratios: candidate fractions of max-abs.

    Returns:
      Clipping value(s), shaped as :func:`max_abs` returns them.
    """
    amax = max_abs(x, channel_axis)
    ratios = jnp.asarray(ratios, jnp.float32)
    if channel_axis is None:
        axis, other = None, None
    else:
        axis = channel_axis % x.ndim
        other = tuple(a for a in range(x.ndim) if a != axis)

    def err(ratio):
        clip = amax * ratio
        clip_b = clip if axis is None else jnp.expand_dims(clip, other)
        q = _quantize_clipped(jnp.clip(x, -clip_b, clip_b), bits, clip_b)
        return jnp.mean(jnp.square(q - x), axis=other)

    errs = jax.lax.map(err, ratios)  # shape=(n_ratios,) or (n_ratios, channels)
    best = jnp.argmin(errs, axis=0)
    clip = amax * ratios[best]
    return jnp.where(jnp.asarray(bits) >= FLOAT_BITS, amax, clip)


def clip_table(
    x: jax.Array, method: str = "max", channel_axis: int | None = None
) -> jax.Array:
    """Clipping values of ``x`` for every bit-width of ``BIT_OPTIONS``.

    Args:
      x: calibration tensor (a kernel, or activations gathered on a calibration batch).
      method: ``"max"`` (max-abs) or ``"mse"`` (MSE-optimal clip ratio per bit-width).
      channel_axis: as in :func:`max_abs`.

    Returns:
      shape ``(len(BIT_OPTIONS),)`` or ``(len(BIT_OPTIONS), channels)``; index it with
      :func:`bits_index`.
    """
    if method == "max":
        amax = max_abs(x, channel_axis)
        return jnp.broadcast_to(amax, (len(BIT_OPTIONS),) + amax.shape)
    if method == "mse":
        bits = jnp.asarray(BIT_OPTIONS, jnp.int32)
        # One bit-width at a time: memory stays at one copy of ``x``.
        return jax.lax.map(lambda b: mse_clip(x, b, channel_axis), bits)
    raise ValueError(f"unknown calibration method {method!r}; use 'max' or 'mse'")
