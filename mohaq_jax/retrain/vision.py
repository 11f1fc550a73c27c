"""Float training, calibration and switching-aware retraining of the VGG-9.

The image counterpart of :mod:`mohaq_jax.retrain.speech` for the CIFAR-10 experiment
of Kim et al. (IEEE TNNLS 2021): Adam with global-norm clipping, softmax
cross-entropy, batch order of epoch ``e`` from ``numpy.random.default_rng((seed,
e))``. Weight clips are MSE-optimal per output channel at the base bits, activation
clips MSE-optimal per layer on a calibration batch; both stay fixed during QAT.

:func:`qat_finetune` is the VGG's counterpart of :func:`mohaq_jax.train.qat_finetune`
for MOHAQ's beacons (Rashed et al. 2021, Sec. IV-D): ``k`` genomes retrained at once
through the fake quantizer with the straight-through estimator, in the project's one
QAT loop, the dev classification error deciding per genome.
"""

from __future__ import annotations

import dataclasses
import functools
import time

import jax
import jax.numpy as jnp
import numpy as np
import optax
from flax import struct
from tqdm.auto import tqdm

from mohaq_jax import train
from mohaq_jax.data.batching import accumulate_sums
from mohaq_jax.data.images import ImageDataset, ImageSplit, iterate_image_batches
from mohaq_jax.evaluation.evaluate_tasks import classification_counts
from mohaq_jax.hardware import reconfig
from mohaq_jax.models import qmodel, sites, vgg
from mohaq_jax.models.qmodel import Calibration
from mohaq_jax.numerics import quantize
from mohaq_jax.retrain import switching


@dataclasses.dataclass(frozen=True)
class ImageTrainConfig:
    """Float training settings of the VGG."""

    epochs: int = 15  # passes over the training split
    batch_size: int = 64  # images per step
    lr: float = 2e-3  # Adam learning rate (cosine decay to 0 over the epochs)
    grad_clip: float = 5.0  # global-norm clipping (0 = off)
    seed: int = 0  # init and batch order

    def to_dict(self) -> dict:
        return dataclasses.asdict(self)


@struct.dataclass
class ActCalibration:
    """Activation clipping table of the VGG: ``(n_layers, n_bit_options)``."""

    a_clip: jax.Array


def loss_fn(
    params, config: vgg.Config, images, labels, act_bits=None, act_clip=None
) -> jax.Array:
    """Mean softmax cross-entropy of a batch."""
    logits = vgg.apply_batch(params, config, images, act_bits, act_clip)
    return jnp.mean(optax.softmax_cross_entropy_with_integer_labels(logits, labels))


@functools.lru_cache(maxsize=16)
def _predict_fn(config: vgg.Config):
    return jax.jit(
        lambda p, x, bits, clip: jnp.argmax(
            vgg.apply_batch(p, config, x, bits, clip), axis=-1
        )
    )


def wrong_images(
    params,
    config: vgg.Config,
    split: ImageSplit,
    act_bits=None,
    act_clip=None,
    batch_size: int = 512,
) -> np.ndarray:
    """bool ``(N,)``: which images of a split the (weight-quantized) params get wrong.

    The per-image record that paired bootstrap intervals resample.
    """
    predict = _predict_fn(config)
    wrong = []
    for start in range(0, len(split), batch_size):
        x = jnp.asarray(split.images[start : start + batch_size])
        pred = np.asarray(predict(params, x, act_bits, act_clip))
        wrong.append(pred != split.labels[start : start + batch_size])
    return np.concatenate(wrong) if wrong else np.zeros((0,), bool)


def error_rate(
    params,
    config: vgg.Config,
    split: ImageSplit,
    act_bits=None,
    act_clip=None,
    batch_size: int = 512,
) -> float:
    """Classification error of (already weight-quantized) params on a split."""
    wrong = wrong_images(params, config, split, act_bits, act_clip, batch_size)
    return int(np.sum(wrong)) / max(len(split), 1)


def fit(
    data: ImageDataset,
    config: vgg.Config,
    tc: ImageTrainConfig,
    progress: bool = True,
) -> tuple[dict, dict]:
    """Float training; returns ``(params, info)`` with the dev error per epoch."""
    key_init = jax.random.split(jax.random.key(tc.seed))[0]
    params = vgg.init_params(key_init, config)
    n_steps = tc.epochs * (len(data.train) // tc.batch_size)
    parts = [optax.clip_by_global_norm(tc.grad_clip)] if tc.grad_clip > 0 else []
    optimizer = optax.chain(
        *parts, optax.adam(optax.cosine_decay_schedule(tc.lr, n_steps))
    )
    opt_state = optimizer.init(params)

    @jax.jit
    def step(params, opt_state, images, labels):
        loss, grads = jax.value_and_grad(loss_fn)(params, config, images, labels)
        with jax.numpy_dtype_promotion("standard"):
            updates, opt_state = optimizer.update(grads, opt_state, params)
        return optax.apply_updates(params, updates), opt_state, loss

    history, started = [], time.perf_counter()
    for epoch in tqdm(range(tc.epochs), desc="float VGG", disable=not progress):
        rng = np.random.default_rng((tc.seed, epoch))
        losses = []
        for images, labels in iterate_image_batches(data.train, tc.batch_size, rng):
            params, opt_state, loss = step(
                params, opt_state, jnp.asarray(images), jnp.asarray(labels)
            )
            losses.append(loss)
        history.append(
            {
                "epoch": epoch + 1,
                "loss": float(np.mean(jax.device_get(losses))),
                "dev_error": error_rate(params, config, data.dev),
            }
        )
    return params, {"history": history, "seconds": time.perf_counter() - started}


def calibrate(
    params, config: vgg.Config, images, method: str = "mse"
) -> ActCalibration:
    """Activation clips of every layer for every bit-width on a calibration batch."""
    inputs = vgg.capture_inputs(params, config, jnp.asarray(images))
    return ActCalibration(
        a_clip=jnp.stack([quantize.clip_table(x, method, None) for x in inputs])
    )


def calibration(
    params,
    config: vgg.Config,
    images,
    weight_method: str = "mse",
    act_method: str = "mse",
    per_channel: bool = True,
) -> Calibration:
    """Clipping tables of the float VGG for the population evaluator (every bit-width).

    Weight clips per output channel (the kernel's last axis) unless ``per_channel`` is
    False; activation clips per layer on the calibration images ``(B, H, W, C)``.

    Returns:
      A :class:`mohaq_jax.models.qmodel.Calibration`, as the speech models' for MOHAQ.
    """
    if weight_method not in ("max", "mse") or act_method not in ("max", "mse"):
        raise ValueError("calibration methods must be 'max' or 'mse'")
    fn = _calibration_fn(config, weight_method, act_method, per_channel)
    return fn(params, jnp.asarray(images))


@functools.lru_cache(maxsize=16)
def _calibration_fn(config, weight_method, act_method, per_channel):
    """One compiled program for every table (not one dispatch per layer)."""
    axis = -1 if per_channel else None

    def tables(params, images):
        w_clip = tuple(
            quantize.clip_table(sites.get_weight(params, site), weight_method, axis)
            for site in vgg.sites(config)
        )
        a_clip = calibrate(params, config, images, act_method).a_clip
        return Calibration(w_clip=w_clip, a_clip=a_clip)

    return jax.jit(tables)


def act_clips(calib: ActCalibration, bits_a) -> jax.Array:
    idx = quantize.bits_index(jnp.asarray(bits_a, jnp.int32))
    return calib.a_clip[jnp.arange(calib.a_clip.shape[0]), idx]


def weight_grid(
    params, config: vgg.Config, bits_w, method: str = "mse"
) -> switching.WeightGrid:
    """Base grid: per-output-channel weight clips at ``bits_w``."""
    bits = quantize.check_bits(bits_w, "bits_w")
    kernels = switching.site_kernels(params, vgg.kernel_paths(config))
    clips = [
        quantize.max_abs(k, -1)
        if method == "max"
        else quantize.mse_clip(k, jnp.asarray(b), -1)
        for k, b in zip(kernels, bits, strict=True)
    ]
    return switching.make_grid(kernels, bits, clips)


def switching_finetune(
    params,
    config: vgg.Config,
    calib: ActCalibration,
    bits_w,
    bits_a,
    data: ImageDataset,
    switching_config: switching.SwitchingConfig,
    lr: float = 5e-4,
    batch_size: int = 64,
    grad_clip: float = 5.0,
    seed: int = 0,
    progress: bool = False,
) -> tuple[dict, dict]:
    """Switching-aware retraining of the VGG at base bits ``bits_w`` ``(9,)``.

    Returns:
      ``(params, info)`` as :func:`mohaq_jax.retrain.speech.switching_finetune` for
      one genome: info has ``grid``, ``quantized_params``, ``dev_error``,
      ``test_error``, ``dev_wrong``/``test_wrong`` (bool ``(N,)`` per image),
      ``history``, switch counts and ``compression``.
    """
    bits_w = quantize.check_bits(bits_w, "bits_w")
    bits_a = quantize.check_bits(bits_a, "bits_a")
    paths = vgg.kernel_paths(config)
    wgrid = weight_grid(params, config, bits_w)
    aux = (jnp.asarray(bits_a), act_clips(calib, bits_a))

    def loss(qparams, batch, key, aux):
        del key
        return loss_fn(qparams, config, batch[0], batch[1], aux[0], aux[1])

    def batches(epoch):
        rng = np.random.default_rng((seed, epoch))
        for images, labels in iterate_image_batches(data.train, batch_size, rng):
            yield jnp.asarray(images), jnp.asarray(labels)

    parts = [optax.clip_by_global_norm(grad_clip)] if grad_clip > 0 else []
    optimizer = optax.chain(*parts, optax.adam(lr))
    new_params, wgrid, info = switching.retrain(
        params,
        paths,
        wgrid,
        loss,
        aux,
        optimizer,
        batches,
        jax.random.key(seed),
        switching_config,
        evaluate=lambda q: error_rate(q, config, data.dev, *aux),
        progress=progress,
        desc=f"switching QAT w{int(bits_w[0])}",
    )
    qparams = switching.quantize_sites(new_params, paths, wgrid, switching_config.grid)
    specs = vgg.sites(config)
    dev_wrong = wrong_images(qparams, config, data.dev, *aux)
    test_wrong = wrong_images(qparams, config, data.test, *aux)
    info.update(
        grid=wgrid,
        quantized_params=qparams,
        dev_wrong=dev_wrong,
        test_wrong=test_wrong,
        dev_error=float(np.sum(dev_wrong)) / max(len(data.dev), 1),
        test_error=float(np.sum(test_wrong)) / max(len(data.test), 1),
        compression=reconfig.retrained_costs(
            [s.n_weights for s in specs],
            bits_w,
            info["extra_counts"],
            bits_a=bits_a,
            macs=[s.macs_per_frame for s in specs],
        ),
    )
    return new_params, info


def quantized_logits(
    params, config: vgg.VGGConfig, calib: Calibration, bits_w, bits_a, images
):
    """Logits ``(B, n_classes)`` with weights and activations fake-quantized (STE).

    ``bits_w``/``bits_a``: int ``(n_sites,)``; ``calib``: the float model's clipping
    tables (:func:`calibration`), fixed.
    """
    qparams = qmodel.quantize_params(params, config, bits_w, calib)
    return vgg.apply_batch(
        qparams, config, images, bits_a, qmodel.act_clips(calib, bits_a)
    )


@functools.lru_cache(maxsize=16)
def _jitted_genomes_qat(config: vgg.VGGConfig, grad_clip: float):
    """The vmapped masked step and dev counter of :func:`qat_finetune` (one compile
    per model and update rule; the learning rate is a leaf of the optimizer state)."""
    optimizer = train.make_optimizer(train.TrainConfig(grad_clip=grad_clip))

    def loss(params, batch, bits_w, bits_a, calib):
        logits = quantized_logits(params, config, calib, bits_w, bits_a, batch[0])
        return jnp.mean(
            optax.softmax_cross_entropy_with_integer_labels(logits, batch[1])
        )

    def masked_step(params, opt_state, active, batch, key, bits_w, bits_a, calib):
        del key  # the VGG has no dropout
        value, grads = jax.value_and_grad(loss)(params, batch, bits_w, bits_a, calib)
        with jax.numpy_dtype_promotion("standard"):  # optax's Adam bias correction
            updates, new_opt = optimizer.update(grads, opt_state, params)
        new_params = optax.apply_updates(params, updates)
        keep = functools.partial(jax.tree.map, lambda a, b: jnp.where(active, a, b))
        return keep(new_params, params), keep(new_opt, opt_state), value

    def counts(params, batch, bits_w, bits_a, calib):
        logits = quantized_logits(params, config, calib, bits_w, bits_a, batch[0])
        _, n_scored, n_wrong = classification_counts(logits, batch[1])
        return jnp.stack([n_wrong, n_scored])

    vstep = jax.jit(
        jax.vmap(masked_step, in_axes=(0, 0, 0, None, None, 0, 0, None)),
        donate_argnums=(0, 1),
    )
    vcounts = jax.jit(jax.vmap(counts, in_axes=(0, None, 0, 0, None)))
    return optimizer, vstep, vcounts


class ImageGenomesStrategy(train.GenomesStrategy):
    """``k`` VGG genomes in one vmapped step; dev rate ``"error"`` (classification).

    Args: as :class:`mohaq_jax.train.GenomesStrategy`; ``dev_batches`` are
    ``(images, labels)`` batches, label -1 not scored.
    """

    def evaluate(self, carry):
        stacked = carry[0]
        total = accumulate_sums(
            lambda b: self.vcounts(stacked, b, self.bits_w, self.bits_a, self.calib),
            self.dev_batches,
        )
        total = np.asarray(total, np.int64)
        return {"error": total[:, 0] / np.maximum(total[:, 1], 1)}

    def record(self, epoch, carry, losses, rates, lrs, active):
        return {
            "epoch": epoch + 1,
            "loss": np.mean(np.stack(losses), axis=0).tolist() if losses else None,
            "dev_error": rates["error"].tolist(),
            "lr": lrs.tolist(),
            "active": active.tolist(),
        }


def qat_finetune(
    params,
    config: vgg.VGGConfig,
    calib: Calibration,
    genomes_bits_w,
    genomes_bits_a,
    train_split: ImageSplit,
    dev_batches,
    epochs: int,
    lr: float,
    batch_size: int = 64,
    grad_clip: float = 5.0,
    seed: int = 0,
    patience: int = 2,
    progress: bool = False,
) -> tuple[dict, dict]:
    """Quantization-aware fine-tuning of ``k`` VGG genomes at once (MOHAQ's beacons).

    As :func:`mohaq_jax.train.qat_finetune` for the speech models: every genome
    starts from the float ``params`` and trains through the fake quantizer at its own
    bits (straight-through estimator; the clipping tables ``calib`` stay fixed), all
    genomes on the same batches (epoch ``e``'s order from
    ``numpy.random.default_rng((seed, e))``, the last partial batch dropped). After
    each epoch the dev classification error of each genome decides (the same
    :class:`~mohaq_jax.train.DevMonitor` rules as the speech QAT, ``TrainConfig``'s
    defaults): keep the best params so far (the start is the post-training quantized
    model, so the result is never worse on dev), halve the learning rate after one
    evaluation without improvement, stop after ``patience``.

    Args:
      params: float params (unstacked).
      config: the VGG.
      calib: clipping tables of the float model (:func:`calibration`).
      genomes_bits_w, genomes_bits_a: int ``(k, n_sites)`` bits per genome.
      train_split: training images.
      dev_batches: ``(images, labels)`` dev batches (label -1: padding), e.g. the
        search's, so the monitored error is the search's.
      epochs: maximum epochs; lr: initial Adam learning rate.
      batch_size, grad_clip, seed: training settings.
      patience: dev evaluations without improvement before a genome stops.
      progress: tqdm bar.

    Returns:
      ``(stacked_params, info)``: the best params per genome, leaves ``(k, ...)``;
      info has ``dev_error`` and ``ptq_dev_error`` (k,) (after and before
      retraining), ``epochs_run`` (k,) and ``history``.
    """
    bits_w = jnp.asarray(quantize.check_bits(genomes_bits_w, "genomes_bits_w"))
    bits_a = jnp.asarray(quantize.check_bits(genomes_bits_a, "genomes_bits_a"))
    if bits_w.ndim != 2 or bits_w.shape != bits_a.shape:
        raise ValueError(
            f"genome bits must both be (k, n_sites), got {bits_w.shape} and "
            f"{bits_a.shape}"
        )
    k = int(bits_w.shape[0])
    defaults = train.TrainConfig()
    optimizer, vstep, vcounts = _jitted_genomes_qat(config, float(grad_clip))
    strategy = ImageGenomesStrategy(
        vstep, vcounts, list(dev_batches), bits_w, bits_a, calib
    )
    stacked = train.stack_params(params, k)
    opt_state = jax.vmap(optimizer.init)(stacked)
    opt_state = train.set_learning_rate(opt_state, np.full(k, lr, np.float32))

    def batches(epoch):
        rng = np.random.default_rng((seed, epoch))
        for images, labels in iterate_image_batches(train_split, batch_size, rng):
            yield jnp.asarray(images), jnp.asarray(labels)

    monitor = train.DevMonitor(
        metric="error",
        improvement_threshold=defaults.improvement_threshold,
        keep_best=True,
        halving_patience=defaults.lr_halving_patience,
        patience=patience,
        min_lr=defaults.min_lr,
    )
    out = train.qat_loop(
        strategy,
        (stacked, opt_state),
        batches,
        jax.random.key(seed),
        epochs,
        lr,
        monitor,
        evaluate_start=True,
        progress=progress,
        desc="VGG QAT",
    )
    info = {
        "dev_error": out.rates["error"],
        "ptq_dev_error": out.start_rates["error"],
        "epochs_run": out.epochs_run,
        "history": out.history,
    }
    return out.model, info
