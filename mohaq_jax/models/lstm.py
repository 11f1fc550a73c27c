"""Bidirectional LSTM acoustic model with fake-quantized matmul inputs.

The standard LSTM (Hochreiter & Schmidhuber 1997; gate order i, f, g, o as in
``torch.nn.LSTM``), per direction:

    z_t = x_t W + q(h_{t-1}) U + b
    i, f, o = sigmoid(z_i), sigmoid(z_f), sigmoid(z_o);  g = tanh(z_g)
    c_t = f * c_{t-1} + i * g;  h_t = o * tanh(c_t)

Layers are stacked and the directions' outputs concatenated, with the same optional
low-rank input projection as :mod:`mohaq_jax.models.sru` (``n_proj`` used before
layers 2.., and before layer 1 with ``proj_first``, where it is smaller than both the
layer input and output). Quantization sites, forward order:
``proj<j>`` (projection), ``lstm<i>`` (input kernel ``W``, its input ``x``), ``rec<i>``
(recurrent kernel ``U`` ``(dirs, hidden, 4 hidden)``, its input ``h_{t-1}``, quantized
inside the recurrence), ``fc``. Genes are grouped lstm, rec, proj, fc.

Everything is plain functions of a params dict, written once, time-major over a batch
``(T, B, ...)``: one utterance is a batch of one. The backward direction runs in
reversed time with its state reset to zero on padding frames, so padding never reaches
a valid frame. Implements the model contract of :mod:`mohaq_jax.models`.
"""

from __future__ import annotations

import dataclasses
import math

import jax
import jax.numpy as jnp

from mohaq_jax.models.sites import Site
from mohaq_jax.numerics import quantize


@dataclasses.dataclass(frozen=True)
class Config:
    """Static structure of the LSTM acoustic model (hashable, closed over by jit)."""

    n_features: int  # input feature dimension per frame
    n_classes: int  # output classes
    hidden: int = 128  # hidden units per direction
    n_layers: int = 2  # stacked LSTM layers
    bidirectional: bool = True  # forward + backward, outputs concatenated
    n_proj: int = 0  # low-rank input projection size (0 = none); used where smaller
    forget_bias: float = 1.0  # initial forget-gate bias
    dropout: float = 0.1  # dropout on each LSTM layer's output during training
    proj_first: bool = False  # also project layer 1's input (as the SRU's field)

    def __post_init__(self):
        for field in ("n_features", "n_classes", "hidden", "n_layers"):
            if getattr(self, field) < 1:
                raise ValueError(f"lstm.Config.{field} must be >= 1")
        if not 0.0 <= self.dropout < 1.0:
            raise ValueError("lstm.Config.dropout must be in [0, 1)")

    @property
    def n_dirs(self) -> int:
        return 2 if self.bidirectional else 1

    @property
    def output_size(self) -> int:
        return self.hidden * self.n_dirs

    def to_dict(self) -> dict:
        return dataclasses.asdict(self)


@dataclasses.dataclass(frozen=True)
class _Layer:
    d_in: int  # layer input size
    m_in: int  # matmul input size (n_proj when projected)
    proj: int | None  # site index of the projection
    lstm: int  # site index of W
    rec: int  # site index of U


def _layout(config: Config) -> tuple[tuple[_Layer, ...], int]:
    """Layers with their site indices, and the site index of the output layer."""
    layers, site = [], 0
    for i in range(config.n_layers):
        d_in = config.n_features if i == 0 else config.output_size
        projected = i > 0 or config.proj_first
        n_proj = (
            config.n_proj
            if projected and 0 < config.n_proj < min(d_in, config.output_size)
            else 0
        )
        proj = None
        if n_proj:
            proj, site = site, site + 1
        layers.append(_Layer(d_in, n_proj or d_in, proj, site, site + 1))
        site += 2
    return tuple(layers), site


def sites(config: Config) -> tuple[Site, ...]:
    """The quantizable layers, forward order (see the module docstring)."""
    h, d = config.hidden, config.n_dirs
    out, n_proj = [], 0
    for i, layer in enumerate(_layout(config)[0]):
        if layer.proj is not None:
            n_proj += 1
            out.append(Site(f"proj{n_proj}", "proj", layer.d_in, layer.m_in, group=2))
        out.append(Site(f"lstm{i + 1}", "lstm", layer.m_in, d * 4 * h, d * 4 * h))
        out.append(
            Site(
                f"rec{i + 1}",
                "rec",
                h,
                d * 4 * h,
                group=1,
                path=(f"lstm{i + 1}", "recurrent"),
                shape=(d, h, 4 * h),
            )
        )
    out.append(
        Site(
            "fc", "fc", config.output_size, config.n_classes, config.n_classes, group=3
        )
    )
    return tuple(out)


def _uniform(key, shape, bound):
    return jax.random.uniform(key, shape, jnp.float32, -bound, bound)


def init_params(key: jax.Array, config: Config) -> dict:
    """Initial float params: uniform(+-1/sqrt(fan)) as ``torch.nn.LSTM``/``Linear``."""
    h, d = config.hidden, config.n_dirs
    params, n_proj = {}, 0
    keys = iter(jax.random.split(key, 3 * config.n_layers + 2))
    for i, layer in enumerate(_layout(config)[0]):
        if layer.proj is not None:
            n_proj += 1
            bound = 1.0 / math.sqrt(layer.d_in)
            params[f"proj{n_proj}"] = {
                "kernel": _uniform(next(keys), (layer.d_in, layer.m_in), bound)
            }
        bound = 1.0 / math.sqrt(h)
        bias = jnp.zeros((d, 4, h), jnp.float32).at[:, 1].set(config.forget_bias)
        params[f"lstm{i + 1}"] = {
            "kernel": _uniform(next(keys), (layer.m_in, d * 4 * h), bound),
            "recurrent": _uniform(next(keys), (d, h, 4 * h), bound),
            "bias": bias.reshape(d, 4 * h),
        }
    bound = 1.0 / math.sqrt(config.output_size)
    params["fc"] = {
        "kernel": _uniform(next(keys), (config.output_size, config.n_classes), bound),
        "bias": _uniform(next(keys), (config.n_classes,), bound),
    }
    return params


def _directions(a, n_dirs):
    """``(T, B, dirs, ...)``: forward direction as is, backward reversed in time."""
    if n_dirs == 1:
        return a
    return jnp.stack([a[:, :, 0], jnp.flip(a[:, :, 1], axis=0)], axis=2)


def lstm_layer(config: Config, layer, x_mm, valid, rec_bits=None, rec_clip=None):
    """One (bi)directional LSTM layer over a batch, time-major.

    Args:
      config: model config.
      layer: ``kernel (n_in, dirs*4h)``, ``recurrent (dirs, h, 4h)``, ``bias (dirs,
        4h)`` (kernels already quantized).
      x_mm: ``(T, B, n_in)`` matmul input (already quantized).
      valid: bool ``(T, B)``.
      rec_bits, rec_clip: activation bits/clip of ``h_{t-1}`` (None = float).

    Returns:
      ``(T, B, dirs * hidden)``, zero at padding frames.
    """
    n_time, n_batch = x_mm.shape[:2]
    h, d = config.hidden, config.n_dirs
    zx = (x_mm @ layer["kernel"]).reshape(n_time, n_batch, d, 4 * h)
    zx = _directions(zx + layer["bias"][None, None], d)
    mask = _directions(
        jnp.broadcast_to(valid[:, :, None, None], (n_time, n_batch, d, 1)), d
    )
    u = layer["recurrent"]

    def step(carry, inputs):
        h_prev, c_prev = carry
        z_t, m_t = inputs
        if rec_bits is not None:
            h_prev = quantize.fake_quant(h_prev, rec_bits, rec_clip)
        z = z_t + jnp.einsum("bdh,dhk->bdk", h_prev, u)
        z = z.reshape(n_batch, d, 4, h)
        i, f, g, o = (z[:, :, j] for j in range(4))
        c = jax.nn.sigmoid(f) * c_prev + jax.nn.sigmoid(i) * jnp.tanh(g)
        h_t = jax.nn.sigmoid(o) * jnp.tanh(c)
        # Zero state on padding frames: the reversed direction starts clean.
        c, h_t = jnp.where(m_t, c, 0.0), jnp.where(m_t, h_t, 0.0)
        return (h_t, c), h_t

    zeros = jnp.zeros((n_batch, d, h), zx.dtype)
    _, h_seq = jax.lax.scan(step, (zeros, zeros), (zx, mask))
    return _directions(h_seq, d).reshape(n_time, n_batch, d * h)


def _act(x, s, bits_a, clips):
    return x if bits_a is None else quantize.fake_quant(x, bits_a[s], clips[s])


def _run_layer(config, index, params, x, valid, bits_a, clips, captured=None):
    """Projection (if any) and LSTM layer ``index``, time-major ``(T, B, .)``."""
    layer = _layout(config)[0][index]
    all_sites = sites(config)
    if layer.proj is not None:
        if captured is not None:
            captured.append(x)
        proj = all_sites[layer.proj].name
        x = _act(x, layer.proj, bits_a, clips) @ params[proj]["kernel"]
    if captured is not None:
        captured.append(x)
    x = _act(x, layer.lstm, bits_a, clips)
    rec_bits = None if bits_a is None else bits_a[layer.rec]
    rec_clip = None if bits_a is None else clips[layer.rec]
    out = lstm_layer(config, params[f"lstm{index + 1}"], x, valid, rec_bits, rec_clip)
    if captured is not None:
        captured.append(out)  # the values h_{t-1} the recurrent kernel sees
    return out


def _output(config, params, x, bits_a, clips):
    fc_site = _layout(config)[1]
    x = _act(x, fc_site, bits_a, clips)
    return x @ params["fc"]["kernel"] + params["fc"]["bias"][None, None]


def _dropout(config, x, key, index):
    keep = 1.0 - config.dropout
    mask = jax.random.bernoulli(jax.random.fold_in(key, index), keep, x.shape)
    return jnp.where(mask, x / keep, 0.0)


def apply(
    params,
    config: Config,
    features,
    length,
    act_bits=None,
    act_clip=None,
    train: bool = False,
    rngs=None,
) -> jax.Array:
    """Logits ``(T, n_classes)`` of one utterance ``(T, n_features)``."""
    x = features[:, None]
    valid = (jnp.arange(features.shape[0]) < length)[:, None]
    for i in range(config.n_layers):
        x = _run_layer(config, i, params, x, valid, act_bits, act_clip)
        if train and config.dropout > 0:
            x = _dropout(config, x, rngs["dropout"], i)
    return _output(config, params, x, act_bits, act_clip)[:, 0]


def capture(params, config: Config, features, length) -> list[jax.Array]:
    """Float input of every site for one utterance, ``(T, n)`` each, site order."""
    x = features[:, None]
    valid = (jnp.arange(features.shape[0]) < length)[:, None]
    captured = []
    for i in range(config.n_layers):
        x = _run_layer(config, i, params, x, valid, None, None, captured)
    captured.append(x)
    return [c[:, 0] for c in captured]


def _time_major(batch):
    features, _, lengths = batch
    valid = jnp.arange(features.shape[1])[:, None] < lengths[None, :]  # (T, B)
    return jnp.swapaxes(features, 0, 1), valid


def first_stage_sites(config: Config) -> tuple[int, ...]:
    """Sites whose bits decide :func:`first_stage` (layer 1, its projection)."""
    layer = _layout(config)[0][0]
    return tuple(s for s in (layer.proj, layer.lstm, layer.rec) if s is not None)


def first_stage(config: Config, qparams, bits_a, clips, batch) -> jax.Array:
    """Time-major output ``(T, B, dirs * hidden)`` of layer 1 for a batch."""
    x, valid = _time_major(batch)
    return _run_layer(config, 0, qparams, x, valid, bits_a, clips)


def rest_stages(config: Config, qparams, bits_a, clips, hidden, batch) -> jax.Array:
    """Logits ``(B, T, n_classes)`` from layer 1's output ``hidden``."""
    _, valid = _time_major(batch)
    x = hidden
    for i in range(1, config.n_layers):
        x = _run_layer(config, i, qparams, x, valid, bits_a, clips)
    return jnp.swapaxes(_output(config, qparams, x, bits_a, clips), 0, 1)
