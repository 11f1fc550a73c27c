"""Calibration and the fake-quantized forward pass of any registered model.

MOHAQ (Rashed et al. 2021, Sec. III) evaluates a genome by post-training fake
quantization: every layer's weight and input activation is quantized at the genome's
bits, with clipping values calibrated once. Clipping values are tabulated for *every*
supported bit-width (``quantize.BIT_OPTIONS``) so that a traced bit-width simply indexes
the table: one compiled program serves all genomes, and MSE-optimal clipping (which
depends on the bit-width) costs nothing per genome. The model is found from its config
(:func:`mohaq_jax.models.model_of`); only its sites and contract functions are used.
"""

from __future__ import annotations

import jax
import jax.numpy as jnp
from flax import struct

from mohaq_jax.models import model_of, sites
from mohaq_jax.numerics import quantize


@struct.dataclass
class Calibration:
    """Clipping tables of a float model.

    Attributes:
      w_clip: per layer (forward order), ``(n_bit_options,)`` for per-tensor scales or
        ``(n_bit_options, out_channels)`` for per-channel scales.
      a_clip: activation clips, ``(n_layers, n_bit_options)`` (per-tensor).
    """

    w_clip: tuple[jax.Array, ...]
    a_clip: jax.Array  # shape=(n_layers, n_bit_options), float32


def _kernels(params: dict, config) -> list[jax.Array]:
    return [sites.get_weight(params, s) for s in model_of(config).sites(config)]


def capture_inputs(params, config, features, lengths) -> list[jax.Array]:
    """Float inputs of every quantizable layer on a batch (valid frames only).

    Args:
      params: float params.
      config: model config.
      features: ``(B, T, F)``; lengths: ``(B,)``.

    Returns:
      One ``(n_valid_frames, n_in)`` array per site, forward order.
    """
    model = model_of(config)
    inter = jax.vmap(lambda f, n: model.capture(params, config, f, n))(
        features, lengths
    )
    valid = jnp.arange(features.shape[1])[None, :] < lengths[:, None]
    flat_valid = valid.reshape(-1)
    out = []
    for x in inter:  # (B, T, ...)
        x = x.reshape(flat_valid.shape[0], -1)
        out.append(x[flat_valid])
    return out


def calibrate(
    params: dict,
    config,
    features: jax.Array,
    lengths: jax.Array,
    weight_method: str = "mse",
    act_method: str = "mse",
    per_channel: bool = True,
) -> Calibration:
    """Calibrates clipping values for weights and activations once.

    Args:
      params: float params of the model.
      config: its config.
      features: calibration batch ``(B, T, F)``; lengths ``(B,)``.
      weight_method: ``"max"`` or ``"mse"``.
      act_method: ``"max"`` or ``"mse"``.
      per_channel: one weight scale per output channel (else per tensor).

    Returns:
      The :class:`Calibration` tables.
    """
    if weight_method not in ("max", "mse") or act_method not in ("max", "mse"):
        raise ValueError("calibration methods must be 'max' or 'mse'")
    axis = -1 if per_channel else None
    w_clip = tuple(
        quantize.clip_table(k, weight_method, axis) for k in _kernels(params, config)
    )
    inputs = capture_inputs(params, config, features, lengths)
    a_clip = jnp.stack([quantize.clip_table(x, act_method, None) for x in inputs])
    return Calibration(w_clip=w_clip, a_clip=a_clip)


def quantize_kernel(kernel, bits, w_clip_table) -> jax.Array:
    """Fake-quantizes one kernel at ``bits`` with its calibrated clip (STE gradient)."""
    return quantize.fake_quant(kernel, bits, w_clip_table[quantize.bits_index(bits)])


def quantize_params(params, config, bits_w, calib: Calibration) -> dict:
    """Params with every weight site fake-quantized at ``bits_w`` (``(n_layers,)``)."""
    new = params
    for i, site in enumerate(model_of(config).sites(config)):
        kernel = sites.get_weight(params, site)
        new = sites.set_weight(
            new, site, quantize_kernel(kernel, bits_w[i], calib.w_clip[i])
        )
    return new


def act_clips(calib: Calibration, bits_a) -> jax.Array:
    """Activation clip of each layer at its bits, ``(n_layers,)``."""
    idx = quantize.bits_index(bits_a)
    return calib.a_clip[jnp.arange(calib.a_clip.shape[0]), idx]


def apply_quantized(
    params,
    config,
    calib: Calibration,
    bits_w,
    bits_a,
    features,
    length,
    train: bool = False,
    rngs=None,
) -> jax.Array:
    """Logits of one utterance with weights and activations fake-quantized.

    Args:
      params: float params (weights are quantized here, with the STE).
      config: model config.
      calib: clipping tables.
      bits_w, bits_a: int ``(n_layers,)`` bits per layer (``FLOAT_BITS`` = float).
      features: ``(T, F)``; length: valid frames.
      train: dropout on.
      rngs: flax rngs for dropout.

    Returns:
      Logits ``(T, n_classes)``.
    """
    qparams = quantize_params(params, config, bits_w, calib)
    return model_of(config).apply(
        qparams,
        config,
        features,
        length,
        bits_a,
        act_clips(calib, bits_a),
        train=train,
        rngs=rngs,
    )
