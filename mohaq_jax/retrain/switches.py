"""Switch counting and the selection of extra-bit weights (Kim et al., TNNLS 2021).

A *switch* is a change of a weight's integer level on its grid by exactly one between
two consecutive optimizer steps; counts accumulate as JAX arrays over a window of
steps, and the weights that switch most get one more bit
(:mod:`mohaq_jax.retrain.switching` states the definitions).
"""

from __future__ import annotations

import jax
import jax.numpy as jnp
import numpy as np
from flax import struct

from mohaq_jax.retrain.grid import WeightGrid, levels


@struct.dataclass
class SwitchState:
    """Switch counters of the weight sites (all arrays, jittable)."""

    levels: tuple[jax.Array, ...]  # per site, int32, kernel shape: last seen level
    counts: tuple[jax.Array, ...]  # per site, int32, kernel shape: switches counted
    steps_counted: jax.Array  # int32 scalar: steps during which switches were counted


def init_switches(kernels, wgrid: WeightGrid, grid: str = "nested") -> SwitchState:
    """Counters at zero, levels of ``kernels`` on ``wgrid``."""
    lv = tuple(
        levels(k, wgrid.bits[i], wgrid.clips[i], wgrid.extra[i], grid)
        for i, k in enumerate(kernels)
    )
    return SwitchState(
        levels=lv,
        counts=tuple(jnp.zeros(k.shape, jnp.int32) for k in kernels),
        steps_counted=jnp.zeros((), jnp.int32),
    )


def count_switches(state: SwitchState, new_levels, track) -> SwitchState:
    """Adds one to every weight whose level moved to a contiguous level.

    Args:
      state: counters.
      new_levels: per site int32 levels after the step.
      track: bool scalar; False only records the levels (outside the window).

    Returns:
      The updated :class:`SwitchState`.
    """
    track = jnp.asarray(track, bool)
    counts = tuple(
        c + jnp.where(track & (jnp.abs(new - old) == 1), 1, 0).astype(jnp.int32)
        for c, new, old in zip(state.counts, new_levels, state.levels, strict=True)
    )
    return SwitchState(
        levels=tuple(new_levels),
        counts=counts,
        steps_counted=state.steps_counted + track.astype(jnp.int32),
    )


def select_extra(
    counts, switch_threshold: int | None = None, top_fraction: float | None = None
) -> tuple[jax.Array, ...]:
    """Extra-bit masks from switch counts.

    Args:
      counts: per site int32 switch counts.
      switch_threshold: weights with ``count >= max(switch_threshold, 1)`` are chosen.
      top_fraction: else, this share of all weights (over every site together,
        ``floor(top_fraction * n)`` weights) with the most switches; ties are broken
        by position (site order, then row-major); zero-count weights are never chosen.
        Exactly one of the two must be given.

    Returns:
      Per site bool masks.
    """
    if (switch_threshold is None) == (top_fraction is None):
        raise ValueError("give exactly one of switch_threshold and top_fraction")
    if switch_threshold is not None:
        thr = max(int(switch_threshold), 1)
        return tuple(c >= thr for c in counts)
    if not 0.0 <= top_fraction <= 1.0:
        raise ValueError("top_fraction must lie in [0, 1]")
    flat = jnp.concatenate([c.reshape(-1) for c in counts])
    n_pick = int(np.floor(top_fraction * flat.shape[0]))
    order = jnp.argsort(-flat, stable=True)
    rank = (
        jnp.zeros(flat.shape, jnp.int32)
        .at[order]
        .set(jnp.arange(flat.shape[0], dtype=jnp.int32))
    )
    chosen = (rank < n_pick) & (flat >= 1)
    out, start = [], 0
    for c in counts:
        out.append(chosen[start : start + c.size].reshape(c.shape))
        start += c.size
    return tuple(out)
