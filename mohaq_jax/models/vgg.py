"""VGG-9-style CNN (6 conv + 3 FC) with fake-quantized layer inputs.

The CIFAR-10 network of Kim et al. (IEEE TNNLS 2021, switching-aware mixed precision):
three blocks of two 3x3 convolutions (same padding, ReLU) each followed by 2x2 max
pooling, then three fully connected layers. The widths are config fields; the
defaults are scaled down so the model trains in seconds on 8x8 digits upsampled to
16x16 (:func:`digits_config`), and :func:`cifar_config` gives the wider CIFAR variant.
There is no batch normalization (it would add running statistics to the QAT loop).

As in :mod:`mohaq_jax.models.sru`, the model is written for one example ``(H, W, C)``
(callers vmap), every quantizable layer fake-quantizes its *input activation* with the
bit-width and clip passed in as arrays, and its *weight* is quantized by the caller,
which replaces the kernel leaves of the params tree. Implements the model contract
of :mod:`mohaq_jax.models` for the ``"classification"`` task: the float forward is the
Flax module :class:`VGG` (training, calibration), the population evaluator's path
(:func:`first_stage`, :func:`rest_stages`) is a plain batched function of the params
(``lax.conv`` over ``(B, H, W, C)``), checked against it in the tests.
"""

from __future__ import annotations

import dataclasses
import functools
import math
from collections.abc import Sequence

import flax.linen as nn
import jax
import jax.numpy as jnp

from mohaq_jax.models.sites import Site
from mohaq_jax.numerics import quantize


@dataclasses.dataclass(frozen=True)
class Config:
    """Static structure of the VGG (hashable, closed over by jit)."""

    image_size: int = 16  # input height = width (divisible by 8: three 2x2 poolings)
    channels: int = 1  # input channels (1 grey, 3 RGB)
    n_classes: int = 10  # output classes
    conv_widths: tuple[int, ...] = (16, 16, 32, 32, 64, 64)  # six 3x3 conv layers
    fc_widths: tuple[int, ...] = (128, 128)  # hidden FC layers before the output layer

    def __post_init__(self):
        if len(self.conv_widths) != 6 or len(self.fc_widths) != 2:
            raise ValueError("VGG-9 has 6 conv widths and 2 hidden FC widths")
        if self.image_size % 8 or self.image_size < 8:
            raise ValueError("image_size must be a positive multiple of 8")

    def to_dict(self) -> dict:
        return dataclasses.asdict(self)


def digits_config() -> Config:
    """Small VGG-9 for the 16x16 upsampled scikit-learn digits."""
    return Config()


def cifar_config() -> Config:
    """VGG-9 for CIFAR-10 (32x32x3), widths halved from the common 64..256 / 1024."""
    return Config(
        image_size=32,
        channels=3,
        n_classes=10,
        conv_widths=(32, 32, 64, 64, 128, 128),
        fc_widths=(512, 512),
    )


def sites(config: Config) -> tuple[Site, ...]:
    """The nine quantizable layers in forward order (:class:`mohaq_jax.models.sites.Site`).

    A conv site's weight is ``(3, 3, c_in, c_out)``, its matmul ``n_in`` is the
    im2col patch ``9 c_in`` and its MACs per image are its weights times its output
    positions; genes are grouped conv (0), then fc (1).
    """
    out, size, c_in = [], config.image_size, config.channels
    for i, width in enumerate(config.conv_widths):
        shape = (3, 3, c_in, width)
        n_weights = 9 * c_in * width
        out.append(
            Site(
                f"conv{i + 1}",
                "conv",
                9 * c_in,  # im2col: the matmul reduces over a 3x3 patch of c_in
                width,
                n_bias=width,
                shape=shape,
                macs=n_weights * size * size,
            )
        )
        c_in = width
        if i % 2 == 1:
            size //= 2
    n_in = size * size * c_in
    for i, width in enumerate(config.fc_widths + (config.n_classes,)):
        out.append(Site(f"fc{i + 1}", "fc", n_in, width, n_bias=width, group=1))
        n_in = width
    return tuple(out)


def kernel_paths(config: Config) -> Sequence[tuple[str, str]]:
    """Params paths of the weight sites, in :func:`sites` order."""
    return tuple((spec.name, "kernel") for spec in sites(config))


class VGG(nn.Module):
    """VGG-9 for one image ``(H, W, C)``; returns logits ``(n_classes,)``.

    ``act_bits``/``act_clip`` (``(9,)``, :func:`sites` order) fake-quantize every
    layer's input; ``capture=True`` sows the inputs under ``intermediates``.
    """

    config: Config

    @nn.compact
    def __call__(self, image, act_bits=None, act_clip=None, capture=False):
        cfg = self.config
        x = image
        index = 0

        def act(x, name):
            nonlocal index
            if capture:
                self.sow("intermediates", f"{name}_input", x)
            if act_bits is not None:
                x = quantize.fake_quant(x, act_bits[index], act_clip[index])
            index += 1
            return x

        for i, width in enumerate(cfg.conv_widths):
            name = f"conv{i + 1}"
            x = nn.Conv(width, (3, 3), padding="SAME", name=name)(act(x, name))
            x = nn.relu(x)
            if i % 2 == 1:
                x = nn.max_pool(x, (2, 2), strides=(2, 2))
        x = x.reshape(-1)
        n_fc = len(cfg.fc_widths) + 1
        for i, width in enumerate(cfg.fc_widths + (cfg.n_classes,)):
            name = f"fc{i + 1}"
            x = nn.Dense(width, name=name)(act(x, name))
            if i < n_fc - 1:
                x = nn.relu(x)
        return x


def init_params(key: jax.Array, config: Config) -> dict:
    """Initial float params of :class:`VGG` (a plain nested dict).

    Flax's defaults, LeCun-normal kernels (truncated to 2 standard deviations, std
    ``sqrt(1 / fan_in) / 0.8796``, ``fan_in`` = every axis but the last) and zero
    biases, drawn as ONE vector of truncated normals that is cut into the kernels:
    one random draw per shape (as Flax's ``init`` does) costs seconds of XLA compile.
    """
    return _init_fn(config)(key)


@functools.lru_cache(maxsize=16)
def _init_fn(config: Config):
    shapes = [site.weight_shape for site in sites(config)]
    sizes = [math.prod(shape) for shape in shapes]

    def init(key):
        draws = jax.random.truncated_normal(key, -2.0, 2.0, (sum(sizes),), jnp.float32)
        params, start = {}, 0
        for site, shape, size in zip(sites(config), shapes, sizes, strict=True):
            # 0.8796: std of a standard normal truncated to [-2, 2] (flax/JAX value)
            std = math.sqrt(1.0 / math.prod(shape[:-1])) / 0.87962566103423978
            kernel = draws[start : start + size].reshape(shape) * jnp.float32(std)
            params[site.name] = {
                "kernel": kernel,
                "bias": jnp.zeros((shape[-1],), jnp.float32),
            }
            start += size
        return params

    return jax.jit(init)


def apply_batch(params, config: Config, images, act_bits=None, act_clip=None):
    """Logits ``(B, n_classes)`` of images ``(B, H, W, C)`` (vmap over the batch)."""
    model = VGG(config)
    return jax.vmap(lambda im: model.apply({"params": params}, im, act_bits, act_clip))(
        images
    )


def capture_inputs(params, config: Config, images) -> list[jax.Array]:
    """Float inputs of every quantizable layer on a batch, flattened per layer."""
    model = VGG(config)

    def one(im):
        _, state = model.apply(
            {"params": params}, im, capture=True, mutable=["intermediates"]
        )
        return state["intermediates"]

    inter = jax.vmap(one)(images)
    return [inter[f"{s.name}_input"][0].reshape(-1) for s in sites(config)]


# --------------------------------------------------------------------------------------
# The model contract (mohaq_jax.models), task "classification": one image ``(H, W, C)``
# for the float forward, batches ``(images (B, H, W, C), labels (B,))`` for the
# population evaluator.
# --------------------------------------------------------------------------------------

#: What the population evaluator measures (:mod:`mohaq_jax.evaluation.evaluate_tasks`).
TASK = "classification"


def apply(
    params,
    config: Config,
    image,
    act_bits=None,
    act_clip=None,
    train: bool = False,
    rngs=None,
) -> jax.Array:
    """Logits ``(n_classes,)`` of one image ``(H, W, C)`` (no dropout: ``train``,
    ``rngs`` are accepted for the contract and unused)."""
    del train, rngs
    return VGG(config).apply({"params": params}, image, act_bits, act_clip)


def capture(params, config: Config, image) -> list[jax.Array]:
    """Float input of every site for one image, forward order (site input shapes)."""
    _, state = VGG(config).apply(
        {"params": params}, image, capture=True, mutable=["intermediates"]
    )
    inter = state["intermediates"]
    return [inter[f"{site.name}_input"][0] for site in sites(config)]


def _run_sites(config: Config, qparams, bits_a, clips, x, indices) -> jax.Array:
    """Sites ``indices`` (consecutive, forward order) over a batch ``(B, ...)``.

    Each site fake-quantizes its input at ``bits_a[i]``/``clips[i]`` and applies its
    (already quantized) weight; ReLU after every layer but the last, 2x2 max pooling
    after every second conv, flattening (row-major ``H, W, C``) before the first FC.
    """
    layers = sites(config)
    n_conv = len(config.conv_widths)
    for i in indices:
        layer = qparams[layers[i].name]
        if i >= n_conv and x.ndim == 4:
            x = x.reshape(x.shape[0], -1)
        x = quantize.fake_quant(x, bits_a[i], clips[i])
        if i < n_conv:
            x = jax.lax.conv_general_dilated(
                x,
                layer["kernel"],
                (1, 1),
                "SAME",
                dimension_numbers=("NHWC", "HWIO", "NHWC"),
            )
            x = nn.relu(x + layer["bias"][None, None, None])
            if i % 2 == 1:
                x = jax.lax.reduce_window(
                    x,
                    jnp.array(-jnp.inf, x.dtype),
                    jax.lax.max,
                    (1, 2, 2, 1),
                    (1, 2, 2, 1),
                    "VALID",
                )
        else:
            x = x @ layer["kernel"] + layer["bias"][None]
            if i < len(layers) - 1:
                x = nn.relu(x)
    return x


def first_stage_sites(config: Config) -> tuple[int, ...]:
    """Sites whose bits decide :func:`first_stage`'s output: conv1."""
    del config
    return (0,)


def first_stage(config: Config, qparams, bits_a, clips, batch) -> jax.Array:
    """conv1 (quantized input and weight, ReLU) of a batch: ``(B, H, W, c1)``.

    Args:
      qparams: params with the genome's quantized weights.
      bits_a, clips: ``(9,)`` activation bits and clips.
      batch: ``(images (B, H, W, C), labels (B,))``.
    """
    return _run_sites(config, qparams, bits_a, clips, batch[0], (0,))


def rest_stages(config: Config, qparams, bits_a, clips, hidden, batch):
    """Logits ``(B, n_classes)`` from :func:`first_stage`'s output ``hidden``."""
    del batch
    n_sites = len(sites(config))
    return _run_sites(config, qparams, bits_a, clips, hidden, range(1, n_sites))
