"""The SRU equations, in one function over a time-major batch (Lei et al., EMNLP 2018).

Per direction, with ``U = x W`` computed for all frames at once (taolei87/sru 2.x)::

    f_t = sigmoid(uf_t + v_f * c_{t-1} + b_f)
    r_t = sigmoid(ur_t + v_r * c_{t-1} + b_r)
    c_t = f_t * c_{t-1} + (1 - f_t) * x~_t
    h_t = r_t * c_t + (1 - r_t) * x'_t * scale_x

:func:`sru_layer` is the only implementation: the Flax model of
:mod:`mohaq_jax.models.sru` (training, one utterance) calls it with a batch of one,
the population evaluator's stages with whole batches. It depends on the model config
only through ``hidden``, ``n_dirs``, ``output_size``, ``highway_bias`` and ``rescale``.
"""

from __future__ import annotations

import math

import jax
import jax.numpy as jnp


def sru_layer(config, layer, x_mm, x_cell, valid) -> jax.Array:
    """One SRU layer over a batch of utterances, time-major, both directions in one scan.

    The only implementation of the SRU equations: :class:`SRULayer` (training, one
    utterance) calls it with a batch of one, the population evaluator with whole
    batches. The inputs stay ``(T, B, ...)`` so the scan needs no transposes, and the
    backward direction is a plain reversed scan whose state is reset to zero on
    padding frames (equivalent to reversing each utterance by its length).

    Args:
      config: the SRU's ``Config`` (reads ``hidden``, ``n_dirs``,
        ``highway_bias``, ``rescale``, ``output_size``).
      layer: the layer's params (``kernel`` already quantized, ``v``, ``bias``).
      x_mm: ``(T, B, n_in)`` matmul input (activation already quantized).
      x_cell: ``(T, B, d_in)`` the layer's float input (the highway term).
      valid: bool ``(T, B)``.

    Returns:
      ``(T, B, dirs * hidden)``, zero at padding frames.
    """
    n_time, n_batch = x_mm.shape[:2]
    h, d = config.hidden, config.n_dirs
    kernel = layer["kernel"]
    k = kernel.shape[-1] // (d * h)
    # an einsum (not ``@``): qwix intercepts einsums, so a deployed SRU layer is
    # quantized by qwix too (``mohaq_jax.adapt.qwix_export``); same dot_general
    u = jnp.einsum("tbi,io->tbo", x_mm, kernel).reshape(n_time, n_batch, d, k, h)
    scale_x = (
        math.sqrt(1.0 + 2.0 * math.exp(config.highway_bias)) if config.rescale else 1.0
    )
    if k == 4:
        skip = u[:, :, :, 3] * scale_x
    elif x_cell.shape[-1] == config.output_size:
        skip = x_cell.reshape(n_time, n_batch, d, h) * scale_x
    else:
        skip = None

    def directions(a):
        """Forward direction as is, backward direction reversed in time."""
        if d == 1:
            return a
        return jnp.stack([a[:, :, 0], jnp.flip(a[:, :, 1], axis=0)], axis=2)

    v, b = layer["v"], layer["bias"]  # (dirs, 2, hidden)
    mask = directions(
        jnp.broadcast_to(valid[:, :, None, None], (n_time, n_batch, d, 1))
    )
    u = directions(u[:, :, :, :3])
    # Only the forget gate and the cell state are sequential; the reset gate and the
    # output are computed for all frames at once after the scan (same arithmetic).
    gate_f = u[:, :, :, 1] + b[None, None, :, 0]
    x_tilde = u[:, :, :, 0]
    v_f = v[None, :, 0]

    def step(carry, t):
        c_prev, c_seq = carry
        f = jax.nn.sigmoid(
            jax.lax.dynamic_index_in_dim(gate_f, t, 0, False) + v_f * c_prev
        )
        c = f * c_prev + (1.0 - f) * jax.lax.dynamic_index_in_dim(x_tilde, t, 0, False)
        # Zero state on padding frames: the reversed direction starts clean.
        c = jnp.where(jax.lax.dynamic_index_in_dim(mask, t, 0, False), c, 0.0)
        return (c, jax.lax.dynamic_update_index_in_dim(c_seq, c, t, 0)), None

    # Indexing by t (not scanning over xs) keeps a vmapped population axis in front,
    # so batching the scan inserts no transposes.
    c0 = jnp.zeros((n_batch, d, h), u.dtype)
    (_, c_seq), _ = jax.lax.scan(
        step, (c0, jnp.zeros_like(x_tilde)), jnp.arange(n_time)
    )
    c_prev = jnp.concatenate([jnp.zeros_like(c_seq[:1]), c_seq[:-1]])
    r = jax.nn.sigmoid(
        u[:, :, :, 2] + v[None, None, :, 1] * c_prev + b[None, None, :, 1]
    )
    h_seq = r * c_seq if skip is None else r * c_seq + (1.0 - r) * directions(skip)
    h_seq = jnp.where(mask, h_seq, 0.0)
    return directions(h_seq).reshape(n_time, n_batch, d * h)
