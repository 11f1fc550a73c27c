"""SRU acoustic model (Flax) with fake-quantized layer inputs.

The Simple Recurrent Unit follows the reference implementation (Lei et al., "Simple
Recurrent Units for Highly Parallelizable Recurrence", EMNLP 2018; taolei87/sru 2.x):

    U = x W                       (one matmul for all frames, hoisted out of the scan)
    x~_t, uf_t, ur_t [, x'_t] = slices of U_t
    f_t = sigmoid(uf_t + v_f * c_{t-1} + b_f)
    r_t = sigmoid(ur_t + v_r * c_{t-1} + b_r)          (b_r starts at highway_bias)
    c_t = f_t * c_{t-1} + (1 - f_t) * x~_t
    h_t = r_t * c_t + (1 - r_t) * x'_t * scale_x        (scale_x from ``rescale``)

``x'`` is the layer input itself when its size equals the output size, a fourth
projection slice of ``U`` when it differs and ``skip="project"``; with
``skip="drop"`` a mismatched layer has no highway term (``h_t = r_t * c_t``), which is
what the MOHAQ authors' MAC counts (3 matrices in layer 1) imply. With ``n_proj``
(sru 2.x ``n_proj``) the input is first projected to ``n_proj`` features by a low-rank
matrix; MOHAQ quantizes that projection as a layer of its own.

The model is written for one utterance, time-major ``(T, features)``; callers vmap over
utterances and genomes. Padding frames (``t >= length``) never influence valid frames:
the backward direction runs over the valid frames reversed by length.

Every quantizable layer (SRU kernels, projections, the output layer) quantizes its
*input activation* here, with the bit-width and clip passed in as arrays; its *weight* is
quantized by the caller (``mohaq_jax.evaluate``), which replaces the kernel leaves of
the params tree, so a weight is quantized once per (site, bit-width) for a population.
"""

from __future__ import annotations

import dataclasses
import math
from collections.abc import Sequence

import flax.linen as nn
import jax
import jax.numpy as jnp

from mohaq_jax import quantize


@dataclasses.dataclass(frozen=True)
class ModelConfig:
    """Static structure of the SRU acoustic model (hashable, closed over by jit)."""

    n_features: int  # input feature dimension per frame (e.g. 23 fbank, 69 with deltas)
    n_classes: int  # output classes (phones, or context-dependent states)
    hidden: int = 128  # hidden units per direction
    n_layers: int = 2  # stacked SRU layers
    bidirectional: bool = True  # forward + backward recurrence, outputs concatenated
    n_proj: int = 0  # low-rank input projection size (0 = none); used where smaller
    highway_bias: float = -1.0  # initial reset-gate bias (sru 2.x highway_bias)
    rescale: bool = True  # scale the skip term by sqrt(1 + 2 exp(highway_bias))
    skip: str = "project"  # mismatched sizes: "project" (4th matrix) or "drop"
    dropout: float = 0.1  # dropout on each SRU layer's output during training

    def __post_init__(self):
        for field in ("n_features", "n_classes", "hidden", "n_layers"):
            if getattr(self, field) < 1:
                raise ValueError(f"ModelConfig.{field} must be >= 1")
        if self.skip not in ("project", "drop"):
            raise ValueError(
                f"ModelConfig.skip must be 'project' or 'drop', got {self.skip!r}"
            )
        if not 0.0 <= self.dropout < 1.0:
            raise ValueError("ModelConfig.dropout must be in [0, 1)")

    @property
    def n_dirs(self) -> int:
        return 2 if self.bidirectional else 1

    @property
    def output_size(self) -> int:
        """Output size of every SRU layer (hidden per direction x directions)."""
        return self.hidden * self.n_dirs

    def to_dict(self) -> dict:
        return dataclasses.asdict(self)


@dataclasses.dataclass(frozen=True)
class LayerSpec:
    """One quantizable layer: a weight site and the site of its input activation.

    ``macs_per_frame`` counts the multiply-accumulates of the layer's matmul for one
    frame (both directions of a bidirectional SRU). ``n_bias`` counts the parameters
    kept at 16 bits that cost models add to memory (SRU b_f/b_r, output bias);
    ``n_vector`` counts the SRU recurrent vectors v_f/v_r (elementwise, not MACs).
    """

    name: str  # "sru1", "proj1", "fc" ...: also the key of its params
    kind: str  # "sru" | "proj" | "fc"
    n_in: int  # input features of the matmul
    n_out: int  # output columns of the kernel (all slices, all directions)
    n_bias: int = 0
    n_vector: int = 0

    @property
    def n_weights(self) -> int:
        return self.n_in * self.n_out

    @property
    def macs_per_frame(self) -> int:
        return self.n_in * self.n_out


def _sru_layout(config: ModelConfig, index: int):
    """(cell input size, matmul input size, projection size or 0, matrices k)."""
    d_in = config.n_features if index == 0 else config.output_size
    n_proj = config.n_proj if 0 < config.n_proj < min(d_in, config.output_size) else 0
    k = 4 if (d_in != config.output_size and config.skip == "project") else 3
    return d_in, (n_proj or d_in), n_proj, k


def layer_specs(config: ModelConfig) -> tuple[LayerSpec, ...]:
    """The quantizable layers of the model, in forward order, derived from its config.

    Projections are named ``proj1, proj2, ...`` in the order they occur (in the paper's
    model ``proj1`` feeds ``sru2``, as the MOHAQ paper numbers them).
    """
    specs, n_proj_layers = [], 0
    for i in range(config.n_layers):
        d_in, m_in, n_proj, k = _sru_layout(config, i)
        if n_proj:
            n_proj_layers += 1
            specs.append(LayerSpec(f"proj{n_proj_layers}", "proj", d_in, n_proj))
        two_h = 2 * config.output_size
        specs.append(
            LayerSpec(f"sru{i + 1}", "sru", m_in, k * config.output_size, two_h, two_h)
        )
    specs.append(
        LayerSpec("fc", "fc", config.output_size, config.n_classes, config.n_classes)
    )
    return tuple(specs)


def paper_config(n_classes: int = 1904, n_features: int = 23) -> ModelConfig:
    """The MOHAQ authors' TIMIT SRU: 4 bidirectional layers of 550, projection 256.

    ``skip="drop"`` keeps layer 1 at three matrices (23 -> 3 x 2 x 550 = 75 900 MACs per
    frame), as in the authors' published MAC counts.
    """
    return ModelConfig(
        n_features=n_features,
        n_classes=n_classes,
        hidden=550,
        n_layers=4,
        bidirectional=True,
        n_proj=256,
        highway_bias=-1.0,
        rescale=True,
        skip="drop",
        dropout=0.1,
    )


class ActQuant(nn.Module):
    """Fake-quantizes a layer input when activation bits/clips are given."""

    @nn.compact
    def __call__(self, x, index, act_bits, act_clip, capture):
        if capture:
            self.sow("intermediates", "input", x)
        if act_bits is None:
            return x
        return quantize.fake_quant(x, act_bits[index], act_clip[index])


def _uniform_init(bound: float):
    def init(key, shape, dtype=jnp.float32):
        return jax.random.uniform(key, shape, dtype, -bound, bound)

    return init


def sru_recurrence(
    u: jax.Array, v: jax.Array, b: jax.Array, skip: jax.Array | None, length: jax.Array
) -> jax.Array:
    """Runs the SRU recurrence of one layer over one utterance, all directions at once.

    Args:
      u: ``(T, dirs, 3, hidden)`` slices x~, uf, ur of the hoisted matmul.
      v: ``(dirs, 2, hidden)`` recurrent vectors v_f, v_r.
      b: ``(dirs, 2, hidden)`` biases b_f, b_r.
      skip: ``(T, dirs, hidden)`` scaled skip term x', or None (no highway term).
      length: scalar int, valid frames.

    Returns:
      ``(T, dirs, hidden)`` outputs h; zero at padding frames.
    """
    n_time, n_dirs = u.shape[0], u.shape[1]
    t = jnp.arange(n_time)
    valid = t < length
    # Backward direction = forward recurrence over the valid frames reversed by length;
    # padding frames stay after the valid ones so they never reach a valid state.
    rev = jnp.where(valid, length - 1 - t, t)
    order = jnp.stack([t, rev][:n_dirs], axis=1)  # (T, dirs)
    dir_idx = jnp.arange(n_dirs)[None, :]
    u_seq = u[order, dir_idx]  # (T, dirs, 3, hidden)
    skip_seq = None if skip is None else skip[order, dir_idx]

    def step(c_prev, inputs):
        u_t, s_t = inputs
        f = jax.nn.sigmoid(u_t[:, 1] + v[:, 0] * c_prev + b[:, 0])
        r = jax.nn.sigmoid(u_t[:, 2] + v[:, 1] * c_prev + b[:, 1])
        c = f * c_prev + (1.0 - f) * u_t[:, 0]
        h = r * c if s_t is None else r * c + (1.0 - r) * s_t
        return c, h

    c0 = jnp.zeros(u.shape[1:2] + u.shape[3:], u.dtype)
    if skip_seq is None:
        _, h_seq = jax.lax.scan(lambda c, x: step(c, (x, None)), c0, u_seq)
    else:
        _, h_seq = jax.lax.scan(step, c0, (u_seq, skip_seq))
    # Undo the per-direction reordering (rev is its own inverse on valid frames).
    h = h_seq[order, dir_idx]
    return jnp.where(valid[:, None, None], h, 0.0)


class SRULayer(nn.Module):
    """One (bi)directional SRU layer; the kernel is the weight quantization site."""

    config: ModelConfig
    n_in: int  # matmul input size
    k: int  # 3 or 4 matrices

    @nn.compact
    def __call__(self, x_in, x_cell, length):
        cfg = self.config
        h, d = cfg.hidden, cfg.n_dirs
        kernel = self.param(
            "kernel",
            _uniform_init(math.sqrt(3.0 / self.n_in)),
            (self.n_in, d * self.k * h),
        )
        v = self.param("v", _uniform_init(math.sqrt(3.0 / h) * 0.5), (d, 2, h))

        def bias_init(key, shape, dtype=jnp.float32):
            return jnp.zeros(shape, dtype).at[:, 1].set(cfg.highway_bias)

        b = self.param("bias", bias_init, (d, 2, h))
        n_time = x_in.shape[0]
        u = (x_in @ kernel).reshape(n_time, d, self.k, h)
        scale_x = (
            math.sqrt(1.0 + 2.0 * math.exp(cfg.highway_bias)) if cfg.rescale else 1.0
        )
        if self.k == 4:
            skip = u[:, :, 3] * scale_x
        elif x_cell.shape[-1] == cfg.output_size:
            skip = x_cell.reshape(n_time, d, h) * scale_x
        else:
            skip = None
        return sru_recurrence(u[:, :, :3], v, b, skip, length).reshape(n_time, d * h)


class AcousticModel(nn.Module):
    """Stacked SRU layers (with optional projections) and a linear output layer.

    Call with one utterance: ``features (T, n_features)``, ``length`` (valid frames);
    returns logits ``(T, n_classes)``. ``act_bits``/``act_clip`` (shape
    ``(n_quant_layers,)``, in :func:`layer_specs` order) fake-quantize each layer's input;
    ``capture=True`` sows each layer's input under ``intermediates`` for calibration.
    """

    config: ModelConfig

    @nn.compact
    def __call__(
        self,
        features: jax.Array,
        length: jax.Array,
        act_bits: jax.Array | None = None,
        act_clip: jax.Array | None = None,
        train: bool = False,
        capture: bool = False,
    ) -> jax.Array:
        cfg = self.config
        x = features
        index, n_proj_layers = 0, 0

        def act(x, name):
            nonlocal index
            out = ActQuant(name=f"{name}_act")(x, index, act_bits, act_clip, capture)
            index += 1
            return out

        for i in range(cfg.n_layers):
            d_in, m_in, n_proj, k = _sru_layout(cfg, i)
            x_cell = x
            if n_proj:
                n_proj_layers += 1
                name = f"proj{n_proj_layers}"
                x_q = act(x, name)
                x_mm = nn.Dense(n_proj, use_bias=False, name=name)(x_q)
            else:
                x_mm = x
            x_mm = act(x_mm, f"sru{i + 1}")
            x = SRULayer(cfg, m_in, k, name=f"sru{i + 1}")(x_mm, x_cell, length)
            if cfg.dropout > 0:
                x = nn.Dropout(cfg.dropout, deterministic=not train)(x)
        x = act(x, "fc")
        return nn.Dense(cfg.n_classes, name="fc")(x)


def init_params(key: jax.Array, config: ModelConfig, n_time: int = 8) -> dict:
    """Initial float params of :class:`AcousticModel` (a plain nested dict)."""
    model = AcousticModel(config)
    feats = jnp.zeros((n_time, config.n_features), jnp.float32)
    return model.init(key, feats, jnp.asarray(n_time))["params"]


def kernel_paths(config: ModelConfig) -> Sequence[tuple[str, str]]:
    """Params paths of the weight sites, in :func:`layer_specs` order."""
    return tuple((spec.name, "kernel") for spec in layer_specs(config))
