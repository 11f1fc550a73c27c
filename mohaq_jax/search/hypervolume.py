"""Exact hypervolume for 1, 2 and 3 objectives, under jit, with fixed shapes.

The hypervolume indicator (Zitzler & Thiele 1998) is the measure of the objective-space
region dominated by a point set and bounded by a reference point. MOHAQ (Rashed et al.
2021) compares searches by their Pareto fronts; the hypervolume turns a front into one
number, so NSGA-II (:mod:`mohaq_jax.search.nsga2`) reports it every generation.

Convention: every objective is **minimized**. A point contributes only where it
strictly dominates the reference point (``points < ref`` in every objective); points
outside that box, and points whose ``mask`` entry is False, contribute nothing. So a
fixed-size array with a validity mask serves every front size, and one compiled
function serves every generation.

Algorithms:
  * 2 objectives: sort by the first objective and sweep, keeping the running minimum of
    the second (O(n log n)).
  * 3 objectives: slice along the third objective; each slice is the 2-objective area of
    the points below it. The areas of all ``n`` slices come from one ``(n, n)``
    running-minimum matrix over a single sort by the first objective (O(n^2) time and
    memory, fine for the population sizes here: 2 000 points is 4M entries).
"""

from __future__ import annotations

import jax
import jax.numpy as jnp

__all__ = ["hypervolume", "hypervolume_2d", "hypervolume_3d"]


def _prepare(points, ref, mask):
    points = jnp.asarray(points, jnp.float32)
    ref = jnp.asarray(ref, jnp.float32)
    if points.ndim != 2 or ref.shape != points.shape[-1:]:
        raise ValueError(
            f"points must be (n, n_obj) and ref (n_obj,), "
            f"got {points.shape} and {ref.shape}"
        )
    valid = jnp.all(points < ref[None, :], axis=1)
    if mask is not None:
        valid = valid & jnp.asarray(mask, bool)
    # Invalid points sit on the reference point, where they dominate nothing.
    points = jnp.where(valid[:, None], points, ref[None, :])
    return points, ref, valid


def hypervolume_2d(points: jax.Array, ref: jax.Array, mask: jax.Array | None = None):
    """Area dominated by 2-objective points (minimized) up to ``ref``.

    Args:
      points: float ``(n, 2)``, minimized objectives.
      ref: float ``(2,)`` reference point.
      mask: optional bool ``(n,)``; False entries are ignored.

    Returns:
      float32 scalar.
    """
    points, ref, _ = _prepare(points, ref, mask)
    x, y = points[:, 0], points[:, 1]
    order = jnp.lexsort((y, x))
    xs, ys = x[order], y[order]
    # Between consecutive x values the dominated height is set by the lowest y so far.
    y_min = jax.lax.cummin(ys)
    widths = jnp.concatenate([xs[1:], ref[:1]]) - xs
    return jnp.sum(widths * (ref[1] - y_min))


def hypervolume_3d(points: jax.Array, ref: jax.Array, mask: jax.Array | None = None):
    """Volume dominated by 3-objective points (minimized) up to ``ref``.

    Args:
      points: float ``(n, 3)``, minimized objectives.
      ref: float ``(3,)`` reference point.
      mask: optional bool ``(n,)``; False entries are ignored.

    Returns:
      float32 scalar.
    """
    points, ref, _ = _prepare(points, ref, mask)
    n = points.shape[0]
    x, y, z = points[:, 0], points[:, 1], points[:, 2]
    # Slice k lies between the k-th and (k+1)-th smallest z; the points below it are
    # those of z-rank <= k.
    z_order = jnp.argsort(z, stable=True)
    z_rank = jnp.zeros(n, jnp.int32).at[z_order].set(jnp.arange(n, dtype=jnp.int32))
    zs = z[z_order]
    thickness = jnp.concatenate([zs[1:], ref[2:]]) - zs

    x_order = jnp.lexsort((y, x))
    xs, ys = x[x_order], y[x_order]
    widths = jnp.concatenate([xs[1:], ref[:1]]) - xs
    # A point not yet in slice k still splits a strip in x but adds no height.
    in_slice = z_rank[x_order][None, :] <= jnp.arange(n, dtype=jnp.int32)[:, None]
    y_min = jax.lax.cummin(jnp.where(in_slice, ys[None, :], ref[1]), axis=1)
    areas = jnp.sum(widths[None, :] * (ref[1] - y_min), axis=1)
    return jnp.sum(areas * thickness)


def hypervolume(points: jax.Array, ref: jax.Array, mask: jax.Array | None = None):
    """Exact hypervolume of minimized objectives, for 1, 2 or 3 objectives.

    Args:
      points: float ``(n, n_obj)``, every objective minimized (negate maximized ones).
      ref: float ``(n_obj,)`` reference point; only points strictly below it in every
        objective count.
      mask: optional bool ``(n,)`` marking the points that belong to the set.

    Returns:
      float32 scalar.

    Raises:
      NotImplementedError: for more than 3 objectives.
    """
    n_obj = jnp.shape(points)[-1]
    if n_obj == 1:
        points, ref, valid = _prepare(points, ref, mask)
        return jnp.max(jnp.where(valid, ref[0] - points[:, 0], 0.0))
    if n_obj == 2:
        return hypervolume_2d(points, ref, mask)
    if n_obj == 3:
        return hypervolume_3d(points, ref, mask)
    raise NotImplementedError(
        f"exact hypervolume implemented for 1-3 objectives, not {n_obj}"
    )
