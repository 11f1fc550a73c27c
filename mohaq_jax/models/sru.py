"""SRU acoustic model with fake-quantized layer inputs.

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
matrix; MOHAQ quantizes that projection as a layer of its own. As in the authors'
model, layers 2.. are projected and layer 1 is not (``proj_first`` adds one there).

The equations live in one function, :func:`~mohaq_jax.models.sru_cell.sru_layer`
(re-exported here), time-major over a batch: the Flax model (training, calibration;
one utterance) calls it with a batch of one, the population evaluator
(:func:`first_stage`, :func:`rest_stages`) with whole batches.
Padding frames never influence valid frames. Every site quantizes its *input
activation* here (bits and clips are arrays); its *weight* is quantized by the caller
(:mod:`mohaq_jax.models.qmodel`, :mod:`mohaq_jax.evaluation.evaluate`). Implements the model contract of
:mod:`mohaq_jax.models`.
"""

from __future__ import annotations

import dataclasses
import math
from collections.abc import Sequence

import flax.linen as nn
import jax
import jax.numpy as jnp

from mohaq_jax.models.sites import Site
from mohaq_jax.models.sru_cell import sru_layer
from mohaq_jax.numerics import quantize

#: Gene groups: the MOHAQ paper's gene order [sru1..4, proj1..3, fc].
_GROUP = {"sru": 0, "proj": 1, "fc": 2}


@dataclasses.dataclass(frozen=True)
class Config:
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
    # also project layer 1's input (when n_proj is smaller than it); the paper's model
    # projects before layers 2.. only: 4 SRU + 3 projection + output = 8 sites
    proj_first: bool = False

    def __post_init__(self):
        for field in ("n_features", "n_classes", "hidden", "n_layers"):
            if getattr(self, field) < 1:
                raise ValueError(f"Config.{field} must be >= 1")
        if self.skip not in ("project", "drop"):
            raise ValueError(
                f"Config.skip must be 'project' or 'drop', got {self.skip!r}"
            )
        if not 0.0 <= self.dropout < 1.0:
            raise ValueError("Config.dropout must be in [0, 1)")

    @property
    def n_dirs(self) -> int:
        return 2 if self.bidirectional else 1

    @property
    def output_size(self) -> int:
        """Output size of every SRU layer (hidden per direction x directions)."""
        return self.hidden * self.n_dirs

    def to_dict(self) -> dict:
        return dataclasses.asdict(self)


def _sru_layout(config: Config, index: int):
    """(cell input size, matmul input size, projection size or 0, matrices k)."""
    d_in = config.n_features if index == 0 else config.output_size
    projected = index > 0 or config.proj_first
    n_proj = (
        config.n_proj
        if projected and 0 < config.n_proj < min(d_in, config.output_size)
        else 0
    )
    k = 4 if (d_in != config.output_size and config.skip == "project") else 3
    return d_in, (n_proj or d_in), n_proj, k


def sites(config: Config) -> tuple[Site, ...]:
    """The quantizable layers of the model, in forward order, derived from its config.

    Projections are named ``proj1, proj2, ...`` in the order they occur (in the paper's
    model ``proj1`` feeds ``sru2``, as the MOHAQ paper numbers them).
    """
    out, n_proj_layers = [], 0
    for i in range(config.n_layers):
        d_in, m_in, n_proj, k = _sru_layout(config, i)
        if n_proj:
            n_proj_layers += 1
            out.append(
                Site(f"proj{n_proj_layers}", "proj", d_in, n_proj, group=_GROUP["proj"])
            )
        two_h = 2 * config.output_size
        out.append(
            Site(f"sru{i + 1}", "sru", m_in, k * config.output_size, two_h, two_h)
        )
    n_out = config.n_classes
    # The authors' compute_mem counts the SRU biases only (8 800 in the paper model):
    # the output bias exists but is left out of the reference memory formula.
    out.append(
        Site(
            "fc",
            "fc",
            config.output_size,
            n_out,
            n_out,
            group=_GROUP["fc"],
            bias_counted=False,
        )
    )
    return tuple(out)


def paper_config(n_classes: int = 1904, n_features: int = 23) -> Config:
    """The MOHAQ authors' TIMIT SRU: 4 bidirectional layers of 550, projection 256.

    ``skip="drop"`` keeps layer 1 at three matrices (23 -> 3 x 2 x 550 = 75 900 MACs per
    frame), as in the authors' published MAC counts.
    """
    return Config(
        n_features, n_classes, 550, 4, True, 256, -1.0, True, "drop", 0.1
    )  # hidden, layers, bidirectional, n_proj, highway_bias, rescale, skip, dropout


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


class SRULayer(nn.Module):
    """One (bi)directional SRU layer; the kernel is the weight quantization site."""

    config: Config
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
        valid = (jnp.arange(x_in.shape[0]) < length)[:, None]  # (T, 1)
        layer = {"kernel": kernel, "v": v, "bias": b}
        return sru_layer(cfg, layer, x_in[:, None], x_cell[:, None], valid)[:, 0]


class AcousticModel(nn.Module):
    """Stacked SRU layers (with optional projections) and a linear output layer.

    Call with one utterance: ``features (T, n_features)``, ``length`` (valid frames);
    returns logits ``(T, n_classes)``. ``act_bits``/``act_clip`` (shape
    ``(n_quant_layers,)``, in :func:`sites` order) fake-quantize each layer's input;
    ``capture=True`` sows each layer's input under ``intermediates`` for calibration.
    """

    config: Config

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


def init_params(key: jax.Array, config: Config, n_time: int = 8) -> dict:
    """Initial float params of :class:`AcousticModel` (a plain nested dict)."""
    model = AcousticModel(config)
    feats = jnp.zeros((n_time, config.n_features), jnp.float32)
    return model.init(key, feats, jnp.asarray(n_time))["params"]


def kernel_paths(config: Config) -> Sequence[tuple[str, str]]:
    """Params paths of the weight sites, in :func:`sites` order."""
    return tuple((spec.name, "kernel") for spec in sites(config))


# --------------------------------------------------------------------------------------
# The model contract (mohaq_jax.models): one-utterance forward, calibration capture and
# the population evaluator's time-major path, one stage (projection + SRU) at a time.
# --------------------------------------------------------------------------------------


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
    """Logits ``(T, n_classes)`` of one utterance ``(T, n_features)``.

    ``act_bits``/``act_clip`` (``(n_sites,)``) fake-quantize each site's input; the
    weights are used as given (quantize them first for a quantized forward).
    """
    return AcousticModel(config).apply(
        {"params": params}, features, length, act_bits, act_clip, train=train, rngs=rngs
    )


def capture(params, config: Config, features, length) -> list[jax.Array]:
    """Float input of every site for one utterance, ``(T, n_in)`` each, site order."""
    _, state = AcousticModel(config).apply(
        {"params": params}, features, length, capture=True, mutable=["intermediates"]
    )
    inter = state["intermediates"]
    return [inter[f"{site.name}_act"]["input"][0] for site in sites(config)]


def _stages(config: Config) -> tuple[tuple[int | None, int], ...]:
    """``(proj site or None, sru site)`` per layer, forward order (sites() indices)."""
    layers = sites(config)
    return tuple(
        (i - 1 if i and layers[i - 1].kind == "proj" else None, i)
        for i, site in enumerate(layers)
        if site.kind == "sru"
    )


def _run_stage(config, stage, qparams, bits_a, clips, x, valid):
    """Projection (if any) and SRU layer of one stage, time-major ``(T, B, .)``."""
    layers = sites(config)
    (proj, s), x_mm = stage, x
    if proj is not None:
        x_q = quantize.fake_quant(x, bits_a[proj], clips[proj])
        x_mm = x_q @ qparams[layers[proj].name]["kernel"]
    x_mm = quantize.fake_quant(x_mm, bits_a[s], clips[s])
    return sru_layer(config, qparams[layers[s].name], x_mm, x, valid)


def _time_major(batch):
    features, _, lengths = batch
    x = jnp.swapaxes(features, 0, 1)  # (T, B, F)
    valid = jnp.arange(features.shape[1])[:, None] < lengths[None, :]  # (T, B)
    return x, valid


def first_stage_sites(config: Config) -> tuple[int, ...]:
    """Sites whose bits decide :func:`first_stage`'s output (SRU layer 1 + its proj)."""
    return tuple(s for s in _stages(config)[0] if s is not None)


def first_stage(config: Config, qparams, bits_a, clips, batch) -> jax.Array:
    """Time-major output ``(T, B, n_out)`` of the first stage for a batch.

    Args:
      qparams: params with the genome's quantized weights.
      bits_a, clips: ``(n_sites,)`` activation bits and clips.
      batch: ``(features (B, T, F), labels (B, T), lengths (B,))``.
    """
    x, valid = _time_major(batch)
    return _run_stage(config, _stages(config)[0], qparams, bits_a, clips, x, valid)


def rest_stages(config: Config, qparams, bits_a, clips, hidden, batch):
    """Logits ``(B, T, n_classes)`` from the first stage's output ``hidden``."""
    _, valid = _time_major(batch)
    x, fc_site = hidden, len(sites(config)) - 1
    for stage in _stages(config)[1:]:
        x = _run_stage(config, stage, qparams, bits_a, clips, x, valid)
    fc = qparams[sites(config)[fc_site].name]
    x = quantize.fake_quant(x, bits_a[fc_site], clips[fc_site])
    return jnp.swapaxes(x @ fc["kernel"] + fc["bias"][None, None], 0, 1)
