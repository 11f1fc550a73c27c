"""Mixed quantization grids of switching-aware retraining (Kim et al., TNNLS 2021).

The base grid of a weight site and its extra-bit grid (``"nested"``: halved step;
``"uniform"``: plain ``b + 1`` bits with the same clip), defined in
:mod:`mohaq_jax.retrain.switching`; the fake quantizer with a per-weight extra bit;
and the params paths of the weight sites.
"""

from __future__ import annotations

from collections.abc import Sequence

import jax
import jax.numpy as jnp
import numpy as np
from flax import struct

from mohaq_jax.numerics import quantize

GRIDS = ("nested", "uniform")

Path = tuple[str, ...]


@struct.dataclass
class WeightGrid:
    """Quantization grid of the retrained weight sites.

    Attributes:
      bits: base weight bits of each site, int32 ``(n_sites,)``.
      clips: per site the clipping value, a scalar or ``(out_channels,)`` (broadcast
        against the kernel's last axis).
      extra: per site a bool array of the kernel's shape: True = extra-bit weight.
    """

    bits: jax.Array  # shape=(n_sites,), int32
    clips: tuple[jax.Array, ...]
    extra: tuple[jax.Array, ...]


def make_grid(kernels: Sequence[jax.Array], bits, clips) -> WeightGrid:
    """A grid with no extra-bit weight.

    Args:
      kernels: the weight arrays of the sites (only their shapes are used).
      bits: int ``(n_sites,)`` base bits (validated: :data:`quantize.BIT_OPTIONS`).
      clips: per site clipping value(s).

    Returns:
      The :class:`WeightGrid`.
    """
    bits = quantize.check_bits(bits, "bits_w")
    if bits.shape != (len(kernels),):
        raise ValueError(
            f"need one weight bit-width per site ({len(kernels)}), "
            f"got shape {bits.shape}"
        )
    if np.any(bits >= quantize.FLOAT_BITS):
        raise ValueError("switching-aware retraining needs quantized sites (bits < 32)")
    return WeightGrid(
        bits=jnp.asarray(bits),
        clips=tuple(jnp.asarray(c, jnp.float32) for c in clips),
        extra=tuple(jnp.zeros(k.shape, bool) for k in kernels),
    )


def grid_params(bits, clip, extra, grid: str = "nested"):
    """Step size and largest level of every weight (traceable).

    Args:
      bits: base bits (scalar array).
      clip: clipping value(s), broadcastable to ``extra``.
      extra: bool mask, the kernel's shape.
      grid: ``"nested"`` or ``"uniform"`` (module docstring).

    Returns:
      ``(step, level_max)``, float32 arrays of ``extra``'s shape.
    """
    if grid not in GRIDS:
        raise ValueError(f"unknown grid {grid!r}; one of {GRIDS}")
    extra = jnp.asarray(extra, bool)
    clip = jnp.broadcast_to(
        jnp.maximum(jnp.asarray(clip, jnp.float32), jnp.finfo(jnp.float32).tiny),
        extra.shape,
    )
    qmax = quantize.qmax(bits)
    qmax_extra = (
        2.0 * qmax
        if grid == "nested"
        else quantize.qmax(jnp.asarray(bits, jnp.int32) + 1)
    )
    level_max = jnp.where(extra, qmax_extra, qmax)
    return clip / level_max, level_max


def levels(w, bits, clip, extra, grid: str = "nested") -> jax.Array:
    """Integer level of every weight on its grid (base or extra-bit), int32."""
    step, level_max = grid_params(bits, clip, extra, grid)
    return jnp.clip(jnp.round(w / step), -level_max, level_max).astype(jnp.int32)


def mixed_fake_quant(w, bits, clip, extra, grid: str = "nested") -> jax.Array:
    """Fake quantization with a per-weight extra bit and a straight-through estimator.

    Where ``extra`` is False this computes exactly :func:`quantize.fake_quant` (same
    operations, so the same float32 numbers); where True, the extra-bit grid.

    Args:
      w: weights, any shape.
      bits: base bits (scalar array, < 32).
      clip: clipping value(s) broadcastable to ``w``.
      extra: bool mask of ``w``'s shape.
      grid: ``"nested"`` or ``"uniform"``.

    Returns:
      Quantized ``w``; its gradient is 1 where ``|w| <= clip``, else 0.
    """
    step, level_max = grid_params(bits, clip, extra, grid)
    clip_b = jnp.broadcast_to(jnp.asarray(clip, w.dtype), w.shape)
    w_clipped = jnp.clip(w, -clip_b, clip_b)
    q = jnp.clip(jnp.round(w_clipped / step), -level_max, level_max) * step
    return w_clipped + jax.lax.stop_gradient(q - w_clipped)


# ----------------------------------------------------------------------------- sites


def get_path(tree, path: Path):
    for name in path:
        tree = tree[name]
    return tree


def set_path(tree: dict, path: Path, value) -> dict:
    """A copy of the nested dict ``tree`` with ``path`` replaced (others shared)."""
    if not path:
        return value
    new = dict(tree)
    new[path[0]] = set_path(tree[path[0]], path[1:], value)
    return new


def site_kernels(params, paths: Sequence[Path]) -> list[jax.Array]:
    return [get_path(params, p) for p in paths]


def quantize_sites(
    params, paths: Sequence[Path], wgrid: WeightGrid, grid: str = "nested"
):
    """Params with every weight site fake-quantized on its mixed grid (STE)."""
    for i, path in enumerate(paths):
        kernel = get_path(params, path)
        params = set_path(
            params,
            path,
            mixed_fake_quant(
                kernel, wgrid.bits[i], wgrid.clips[i], wgrid.extra[i], grid
            ),
        )
    return params


def step_tree(
    params, paths: Sequence[Path], wgrid: WeightGrid, grid: str = "nested", enabled=True
):
    """Per-weight ``(step, clip)`` pairs as a pytree like ``params``.

    This is the ``grid`` argument of :func:`threshold_lr_scale`. Unquantized leaves
    (and every leaf when ``enabled`` is False, a traced bool) get step 0: unscaled.
    """
    zero = jnp.zeros((), jnp.float32)
    out = jax.tree_util.tree_map(lambda x: (zero, zero), params)
    enabled = jnp.asarray(enabled, bool)
    for i, path in enumerate(paths):
        step, _ = grid_params(wgrid.bits[i], wgrid.clips[i], wgrid.extra[i], grid)
        clip = jnp.broadcast_to(jnp.asarray(wgrid.clips[i], jnp.float32), step.shape)
        out = set_path(out, path, (jnp.where(enabled, step, 0.0), clip))
    return out
