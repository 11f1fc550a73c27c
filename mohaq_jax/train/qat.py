"""Quantization-aware fine-tuning of ``k`` genomes at once (MOHAQ Sec. IV-C beacons).

The genomes' params, optimizer states and bits are stacked on a leading axis and one
compiled, vmapped step trains them all (:func:`qat_finetune`); a mask of active genomes
freezes the ones that stopped. The epochs, the dev monitoring and the history are the
project's one QAT loop, :func:`mohaq_jax.train.loop.qat_loop`, with the
:class:`GenomesStrategy` defined here.
"""

from __future__ import annotations

import dataclasses
import functools
from typing import Any

import jax
import jax.numpy as jnp
import numpy as np

from mohaq_jax.data.batching import iterate_batches, pad_rows
from mohaq_jax.models import (
    ContractConfig,  # the model contract (type hints)
    qmodel,
)
from mohaq_jax.numerics import metrics, quantize
from mohaq_jax.train.core import (
    TrainConfig,
    _as_key,
    _check_sizes,
    _epoch_rng,
    dev_rates,
    eval_batches,
    make_error_counts,
    make_optimizer,
    make_step,
    set_learning_rate,
)
from mohaq_jax.train.loop import DevMonitor, QATStrategy, qat_loop


def _where_tree(mask, new, old):
    return jax.tree_util.tree_map(lambda a, b: jnp.where(mask, a, b), new, old)


def _select_genomes(mask, new, old):
    """Per genome (leading axis), ``new`` where ``mask`` else ``old``."""
    mask = jnp.asarray(mask)

    def pick(a, b):
        return jnp.where(mask.reshape(mask.shape + (1,) * (a.ndim - 1)), a, b)

    return jax.tree_util.tree_map(pick, new, old)


def stack_params(params, k: int):
    """``k`` copies of a pytree stacked on a new leading axis."""
    return jax.tree_util.tree_map(
        lambda x: jnp.broadcast_to(x, (k,) + jnp.shape(x)), params
    )


def unstack_params(stacked, index: int):
    """Genome ``index`` of stacked params."""
    return jax.tree_util.tree_map(lambda x: x[index], stacked)


# jit caches compiled code per function object: QAT calls with the same model and
# update rule reuse one compilation.
@functools.lru_cache(maxsize=32)
def _jitted_qat(
    config: ContractConfig,
    grad_clip: float,
    weight_decay: float,
    fold39: tuple,
    per_mode: str | None = None,
):
    optimizer = make_optimizer(
        TrainConfig(grad_clip=grad_clip, weight_decay=weight_decay)
    )
    step = make_step(config, optimizer)

    def masked_step(params, opt_state, active, batch, key, bits_w, bits_a, calib):
        new_p, new_o, loss = step(params, opt_state, batch, key, bits_w, bits_a, calib)
        return (
            _where_tree(active, new_p, params),
            _where_tree(active, new_o, opt_state),
            loss,
        )

    vstep = jax.jit(
        jax.vmap(masked_step, in_axes=(0, 0, 0, None, None, 0, 0, None)),
        donate_argnums=(0, 1),
    )
    vcounts = jax.jit(
        jax.vmap(
            make_error_counts(config, np.asarray(fold39, np.int32), per_mode),
            in_axes=(0, None, 0, 0, None, None),
        )
    )
    return vstep, vcounts


class GenomesStrategy(QATStrategy):
    """``k`` genomes in one vmapped step; carry = ``(stacked_params, opt_state)``.

    Args:
      vstep, vcounts: the vmapped step and error counter (``_jitted_qat``).
      dev_batches: dev batches (re-iterable).
      bits_w, bits_a: int ``(k, n_layers)`` bits per genome.
      calib: clipping tables (shared by the genomes).
      decoder: the baseline's :class:`mohaq_jax.decode.Decoder` when PER is read
        decoded (the search's reading), else None.
    """

    def __init__(
        self, vstep, vcounts, dev_batches, bits_w, bits_a, calib, decoder=None
    ):
        self.vstep, self.vcounts = vstep, vcounts
        self.dev_batches = dev_batches
        self.bits_w, self.bits_a, self.calib = bits_w, bits_a, calib
        self.decoder = decoder
        self.k = int(bits_w.shape[0])

    def step(self, carry, active, batch, key):
        stacked, opt_state = carry
        stacked, opt_state, loss = self.vstep(
            stacked, opt_state, active, batch, key, self.bits_w, self.bits_a, self.calib
        )
        return (stacked, opt_state), loss

    def evaluate(self, carry):
        stacked = carry[0]
        return dev_rates(
            lambda b: self.vcounts(
                stacked, b, self.bits_w, self.bits_a, self.calib, self.decoder
            ),
            self.dev_batches,
        )  # {"per": (k,), "fer": (k,)}

    def model(self, carry):
        return carry[0]

    def select(self, improved, new, old):
        return _select_genomes(improved, new, old)

    def set_learning_rate(self, carry, lrs):
        return carry[0], set_learning_rate(carry[1], lrs)

    def record(self, epoch, carry, losses, rates, lrs, active):
        return {
            "epoch": epoch + 1,
            "loss": np.mean(np.stack(losses), axis=0).tolist(),
            "dev_per": rates["per"].tolist(),
            "dev_fer": rates["fer"].tolist(),
            "lr": lrs.tolist(),
            "active": active.tolist(),
        }


def train_batches(corpus, train_config: TrainConfig):
    """``batches(epoch)``: the training batches of QAT, padded to full rows.

    The batch order of epoch ``e`` comes from ``numpy.random.default_rng((seed, e))``.
    """
    tc = train_config

    def batches(epoch):
        rng = _epoch_rng(tc.seed, epoch)
        for batch in iterate_batches(corpus.train, tc.batch_size, rng, tc.pad_multiple):
            yield pad_rows(batch, tc.batch_size)

    return batches


def qat_key(train_config: TrainConfig) -> jax.Array:
    """The dropout key of QAT (step ``s`` uses ``fold_in(qat_key, s)``)."""
    return jax.random.split(jax.random.key(train_config.seed))[1]


_DEFAULT_TRAIN = TrainConfig()


def qat_finetune(
    params,
    config: ContractConfig,
    calib: qmodel.Calibration,
    genomes_bits_w,
    genomes_bits_a,
    corpus,
    epochs: int,
    lr: float,
    train_config: TrainConfig = _DEFAULT_TRAIN,
    patience: int = 2,
    progress: bool = False,
    decoder=None,
    per_mode: str | None = None,
) -> tuple[Any, dict]:
    """Quantization-aware fine-tuning of ``k`` genomes at once (vmap over genomes).

    Every genome starts from the same float ``params`` and trains through the fake
    quantizer at its own bits with the straight-through estimator; the clipping tables
    ``calib`` stay fixed. All genomes see the same batches and dropout keys, so genome
    ``i`` of a batched call equals a call with that genome alone. After each epoch
    the dev error of each genome (``train_config.monitor``) decides, per genome and
    with masks (fixed shapes): keep params that improved on the best so far (the
    starting point is the post-training quantized model, so the result is never
    worse on dev), halve the learning rate
    after ``train_config.lr_halving_patience`` evaluations without improvement, and
    stop a genome (its updates masked out) after ``patience`` evaluations without
    improvement or when its learning rate drops below ``train_config.min_lr``
    (:class:`~mohaq_jax.train.loop.DevMonitor` in :func:`~mohaq_jax.train.loop.qat_loop`).

    Args:
      params: float params of the model (unstacked).
      config: model config.
      calib: clipping tables of the float model.
      genomes_bits_w: int ``(k, n_layers)`` weight bits per genome.
      genomes_bits_a: int ``(k, n_layers)`` activation bits per genome.
      corpus: data (train split for training, dev split for early stopping).
      epochs: maximum epochs.
      lr: initial learning rate.
      train_config: batch size, clipping, weight decay, seed, halving settings.
      patience: dev evaluations without improvement before a genome stops.
      progress: tqdm bar.
      decoder, per_mode: how the dev PER reads phones, as in the search's evaluator
        (:func:`mohaq_jax.numerics.metrics.resolve_per_mode`: decoded with a decoder, else
        smoothed), so that the monitored and reported errors are the search's.

    Returns:
      ``(stacked_params, info)``: the best params per genome, leaves shaped
      ``(k, ...)`` (quantize them with ``calib`` at the genome's bits to use them);
      info has ``dev_per`` and ``dev_fer`` (k,) of those params, ``ptq_dev_per`` and
      ``ptq_dev_fer`` (k,) before retraining, ``per_mode`` (how PER was read),
      ``epochs_run`` (k,) and ``history``.
    """
    _check_sizes(corpus, config)
    bits_w = jnp.asarray(quantize.check_bits(genomes_bits_w, "genomes_bits_w"))
    bits_a = jnp.asarray(quantize.check_bits(genomes_bits_a, "genomes_bits_a"))
    if bits_w.ndim != 2 or bits_w.shape != bits_a.shape:
        raise ValueError(
            f"genome bits must both be (k, n_layers), got {bits_w.shape} and "
            f"{bits_a.shape}"
        )
    k = bits_w.shape[0]
    tc = dataclasses.replace(train_config, lr=lr, epochs=epochs)
    per_mode = metrics.resolve_per_mode(per_mode, decoder)
    vstep, vcounts = _jitted_qat(
        config, tc.grad_clip, tc.weight_decay, _as_key(corpus.fold39), per_mode
    )
    strategy = GenomesStrategy(
        vstep,
        vcounts,
        eval_batches(corpus.dev, tc.eval_batch_frames, tc.pad_multiple),
        bits_w,
        bits_a,
        calib,
        decoder,
    )
    stacked = stack_params(params, k)
    opt_state = jax.vmap(make_optimizer(tc).init)(stacked)
    out = qat_loop(
        strategy,
        (stacked, opt_state),
        train_batches(corpus, tc),
        qat_key(tc),
        epochs,
        lr,
        DevMonitor.of(tc, patience),
        evaluate_start=True,
        progress=progress,
    )
    info = {
        "dev_per": out.rates["per"],
        "dev_fer": out.rates["fer"],
        "ptq_dev_per": out.start_rates["per"],
        "ptq_dev_fer": out.start_rates["fer"],
        "per_mode": per_mode,
        "epochs_run": out.epochs_run,
        "history": out.history,
    }
    return out.model, info
