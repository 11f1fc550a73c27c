"""Threshold learning-rate scale of switching-aware retraining (Kim et al. 2021).

Gradient noise near the quantization thresholds makes weights switch; the update of a
weight within ``band * step`` of the midpoint between two contiguous levels is
multiplied by ``scale`` (an optax transformation that reads the current params).
"""

from __future__ import annotations

from typing import NamedTuple

import jax
import jax.numpy as jnp
import optax


class ThresholdLRState(NamedTuple):
    """Fraction of quantized weights scaled down at the last update (diagnostic)."""

    near_fraction: jax.Array  # float32 scalar


def near_threshold(w, step, clip, band) -> jax.Array:
    """True where ``w`` is within ``band * step`` of a threshold of its grid.

    Thresholds are the midpoints ``(k + 1/2) * step`` between contiguous levels inside
    ``[-clip, clip]``; a weight beyond the clip is measured from the clip (the top
    level), so it is never near. ``step == 0`` marks an unquantized weight (never
    near).
    """
    step = jnp.asarray(step, jnp.float32)
    safe = jnp.where(step > 0, step, 1.0)
    u = jnp.clip(w, -clip, clip) / safe
    dist = 0.5 - jnp.abs(u - jnp.round(u))  # distance to the nearest midpoint, in steps
    return (step > 0) & (dist < band)


def threshold_lr_scale(
    band: float = 0.1, scale: float = 0.1
) -> optax.GradientTransformationExtraArgs:
    """Multiplies the update of weights near a quantization threshold by ``scale``.

    Chain it after the optimizer (``optax.chain(adam, threshold_lr_scale(...))``): the
    step size of a weight within ``band * step`` of the midpoint between two
    contiguous levels becomes ``scale`` times smaller.

    ``update(updates, state, params, *, grid)``: ``params`` are the current (latent,
    float) params and ``grid`` a pytree like them holding at each leaf a
    ``(step, clip)`` pair, both broadcastable to the leaf (:func:`step_tree`;
    step 0 = not quantized, left unscaled). Without ``grid`` the updates pass
    unchanged.

    Args:
      band: half-width of the band, a fraction of the step (0 turns it off).
      scale: learning-rate multiplier inside the band.

    Returns:
      An optax transformation with extra-args support.
    """
    if band < 0 or not 0 <= scale:
        raise ValueError("band and scale must be >= 0")

    def init_fn(params):
        del params
        return ThresholdLRState(near_fraction=jnp.zeros((), jnp.float32))

    def update_fn(updates, state, params=None, *, grid=None, **extra_args):
        del extra_args
        if grid is None or band == 0:
            return updates, state
        if params is None:
            raise ValueError("threshold_lr_scale needs the current params")
        near = jax.tree_util.tree_map(
            lambda w, g: near_threshold(w, g[0], g[1], band), params, grid
        )
        new = jax.tree_util.tree_map(
            lambda u, m: jnp.where(m, u * jnp.asarray(scale, u.dtype), u), updates, near
        )
        leaves_near = jax.tree_util.tree_leaves(near)
        leaves_step = jax.tree_util.tree_leaves(
            jax.tree_util.tree_map(lambda w, g: g[0], params, grid)
        )
        n_near = sum(jnp.sum(m) for m in leaves_near)
        n_quant = sum(
            jnp.sum(jnp.broadcast_to(s > 0, m.shape))
            for m, s in zip(leaves_near, leaves_step, strict=True)
        )
        frac = n_near.astype(jnp.float32) / jnp.maximum(n_quant, 1).astype(jnp.float32)
        return new, ThresholdLRState(near_fraction=frac)

    return optax.GradientTransformationExtraArgs(init_fn, update_fn)
