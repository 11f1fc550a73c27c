"""Switching-aware retraining of MOHAQ's acoustic models (Kim et al. 2021).

The weight sites are the model's :mod:`mohaq_jax.models.sites` (any registered model); their
clipping values come from the MOHAQ calibration tables (:mod:`mohaq_jax.models.qmodel`) at
the base bits and stay fixed, as in :func:`mohaq_jax.train.qat_finetune`. Activations
are fake-quantized by the model at ``bits_a`` exactly as in MOHAQ's QAT. The loss is
:func:`mohaq_jax.train.make_loss`, called with already-quantized kernels and float
weight bits (``FLOAT_BITS`` makes the model's own weight quantizer an identity), and
batches and dropout keys follow :func:`mohaq_jax.train.qat_finetune` (batch order of
epoch ``e`` from ``numpy.random.default_rng((seed, e))``, dropout key of step ``s``
from ``fold_in(split(key(seed))[1], s)``).

:func:`switching_finetune` takes the inputs of :func:`~mohaq_jax.train.qat_finetune`
(params, config, calib, genome bits, corpus), so it can retrain beacons.
"""

from __future__ import annotations

import dataclasses
from typing import Any

import jax
import jax.numpy as jnp
import numpy as np

from mohaq_jax import train
from mohaq_jax.hardware import reconfig
from mohaq_jax.models import model_of, qmodel, sites
from mohaq_jax.numerics import metrics, quantize
from mohaq_jax.retrain import switching


def kernel_paths(config):
    """Params paths of the model's weight sites, in site order."""
    return sites.weight_paths(model_of(config).sites(config))


_DEFAULT_SWITCHING = switching.SwitchingConfig()
_DEFAULT_TRAIN = train.TrainConfig()


def weight_grid(
    params, config, calib: qmodel.Calibration, bits_w
) -> switching.WeightGrid:
    """The base grid of the SRU kernels at ``bits_w`` with the calibrated clips."""
    bits = quantize.check_bits(bits_w, "bits_w")
    idx = np.asarray(quantize.bits_index(jnp.asarray(bits)))
    clips = [calib.w_clip[i][idx[i]] for i in range(len(bits))]
    kernels = switching.site_kernels(params, kernel_paths(config))
    return switching.make_grid(kernels, bits, clips)


def float_bits(config) -> jax.Array:
    """``FLOAT_BITS`` for every layer: the model leaves the kernels as they are."""
    return jnp.full(
        (len(model_of(config).sites(config)),), quantize.FLOAT_BITS, jnp.int32
    )


def make_loss(config):
    """``loss(qparams, batch, key, aux=(bits_a, calib))`` for
    :func:`switching.make_step`."""
    loss = train.make_loss(config)
    fbits = float_bits(config)

    def loss_fn(qparams, batch, key, aux):
        bits_a, calib = aux
        return loss(qparams, batch, key, fbits, bits_a, calib)

    return loss_fn


def quantized_params(params, config, wgrid: switching.WeightGrid, grid: str = "nested"):
    """Params with the kernels on their mixed grid; evaluate them with float weight
    bits (:func:`float_bits`) and the genome's activation bits."""
    return switching.quantize_sites(params, kernel_paths(config), wgrid, grid)


def switching_finetune(
    params,
    config,
    calib: qmodel.Calibration,
    bits_w,
    bits_a,
    corpus,
    switching_config: switching.SwitchingConfig = _DEFAULT_SWITCHING,
    lr: float = 5e-4,
    train_config: train.TrainConfig = _DEFAULT_TRAIN,
    split: str = "dev",
    progress: bool = False,
    patience: int | None = None,
    decoder=None,
    per_mode: str | None = None,
) -> tuple[Any, dict]:
    """Switching-aware mixed-precision retraining of one or ``k`` genomes.

    Args:
      params: float params (unstacked).
      config: model config.
      calib: clipping tables of the float model.
      bits_w: int ``(n_layers,)`` or ``(k, n_layers)`` base weight bits (< 32).
      bits_a: activation bits, same shape.
      corpus: training data (``train`` split) and the split used for the error.
      switching_config: schedule, selection rule, LR damping.
      lr: Adam learning rate (constant).
      train_config: batch size, gradient clipping, weight decay, seed.
      split: split whose phone error rate is reported after every epoch.
      progress: tqdm bar.
      patience: None (default): the fixed schedule, every epoch runs at the constant
        ``lr`` and the last params are returned. An int: the dev monitoring of
        :func:`~mohaq_jax.train.qat_finetune` on ``split`` (keep the best, halve the
        learning rate after ``train_config.lr_halving_patience`` evaluations without
        improvement, stop after ``patience``), so that with
        :func:`switching.uniform_config` this is ``qat_finetune``'s run through the
        switching-aware step.
      decoder, per_mode: how PER reads phones, as in
        :func:`~mohaq_jax.train.qat_finetune` (decoded with a decoder, else
        smoothed).

    Returns:
      ``(params, info)``. For one genome: the latent params, and info with ``grid``
      (the :class:`~switching.WeightGrid` with the extra-bit masks),
      ``quantized_params`` (kernels on the mixed grid: evaluate them with
      ``bits_w = float_bits(config)`` and the genome's ``bits_a``), ``per``/``fer``
      on ``split``, ``history``, switch counts, ``epochs_run`` and ``compression``
      (storage and reconfigurable-accelerator energy,
      :func:`mohaq_jax.hardware.reconfig.retrained_costs`). For ``k``
      genomes (2-D bits, as :func:`~mohaq_jax.train.qat_finetune`): params stacked on
      a leading axis, ``info["genomes"]`` the list of per-genome infos and the keys
      of :func:`~mohaq_jax.train.qat_finetune` (``dev_per``, ``dev_fer``,
      ``ptq_dev_per``, ``ptq_dev_fer``, ``epochs_run``, ``history``), ``(k,)`` each.
    """
    bits_w_np = quantize.check_bits(bits_w, "bits_w")
    bits_a_np = quantize.check_bits(bits_a, "bits_a")
    if bits_w_np.shape != bits_a_np.shape:
        raise ValueError(
            f"bits_w {bits_w_np.shape} and bits_a {bits_a_np.shape} differ"
        )
    if bits_w_np.ndim == 2:
        outs = [
            switching_finetune(
                params,
                config,
                calib,
                bw,
                ba,
                corpus,
                switching_config,
                lr,
                train_config,
                split,
                progress,
                patience,
                decoder,
                per_mode,
            )
            for bw, ba in zip(bits_w_np, bits_a_np, strict=True)
        ]
        stacked = jax.tree_util.tree_map(
            lambda *xs: jnp.stack(xs), *[o[0] for o in outs]
        )
        infos = [o[1] for o in outs]
        # The info keys of train.qat_finetune, so callers (beacons) take either.
        return stacked, {
            "genomes": infos,
            "dev_per": np.asarray([i["per"] for i in infos]),
            "dev_fer": np.asarray([i["fer"] for i in infos]),
            "ptq_dev_per": np.asarray([i["ptq_per"] for i in infos]),
            "ptq_dev_fer": np.asarray([i["ptq_fer"] for i in infos]),
            "per_mode": infos[0]["per_mode"],
            "epochs_run": np.asarray([i["epochs_run"] for i in infos]),
            "history": [i["history"] for i in infos],
        }
    train._check_sizes(corpus, config)
    tc = dataclasses.replace(train_config, lr=lr)
    paths = kernel_paths(config)
    wgrid = weight_grid(params, config, calib, bits_w_np)
    aux = (jnp.asarray(bits_a_np), calib)
    per_mode = metrics.resolve_per_mode(per_mode, decoder)
    counts_fn = train._jitted_counts(config, train._as_key(corpus.fold39), per_mode)
    fbits = float_bits(config)
    eval_split = corpus.splits()[split]
    eval_batches = train.eval_batches(eval_split, tc.eval_batch_frames, tc.pad_multiple)

    def rates(qparams):
        return train.dev_rates(
            lambda b: counts_fn(qparams, b, fbits, aux[0], calib, decoder),
            eval_batches,
        )

    new_params, wgrid, info = switching.retrain(
        params,
        paths,
        wgrid,
        make_loss(config),
        aux,
        train.make_optimizer(tc),
        train.train_batches(corpus, tc),
        train.qat_key(tc),
        switching_config,
        evaluate=rates,
        progress=progress,
        desc=f"switching QAT w{bits_w_np.tolist()}",
        monitor=None if patience is None else train.DevMonitor.of(tc, patience),
        lr=lr,
        evaluate_start=True,
        error_key="per",
    )
    qparams = quantized_params(new_params, config, wgrid, switching_config.grid)
    final, ptq = info["rates"], info["start_rates"]
    specs = model_of(config).sites(config)
    info.update(
        grid=wgrid,
        quantized_params=qparams,
        per=final["per"],
        fer=final["fer"],
        ptq_per=ptq["per"],
        ptq_fer=ptq["fer"],
        per_mode=per_mode,
        compression=reconfig.retrained_costs(
            [s.n_weights for s in specs],
            bits_w_np,
            info["extra_counts"],
            bits_a=bits_a_np,
            macs=[s.macs_per_frame for s in specs],
        ),
    )
    return new_params, info


def uniform_qat(
    params,
    config,
    calib,
    bits_w,
    bits_a,
    corpus,
    epochs: int,
    lr: float = 5e-4,
    train_config: train.TrainConfig = _DEFAULT_TRAIN,
    patience: int = 2,
    progress: bool = False,
):
    """Plain uniform QAT of one genome (``(n_layers,)`` bits) or ``k`` (``(k, n)``).

    :func:`mohaq_jax.train.qat_finetune` (the project's one QAT loop,
    :func:`mohaq_jax.train.loop.qat_loop`, with dev early stopping and learning-rate
    halving); returns its ``(params, info)``, with the params unstacked for one
    genome.
    """
    single = np.ndim(bits_w) == 1
    stacked, info = train.qat_finetune(
        params,
        config,
        calib,
        np.atleast_2d(bits_w),
        np.atleast_2d(bits_a),
        corpus,
        epochs,
        lr,
        train_config,
        patience,
        progress,
    )
    return (train.unstack_params(stacked, 0) if single else stacked), info


__all__ = [
    "float_bits",
    "make_loss",
    "quantized_params",
    "switching_finetune",
    "uniform_qat",
    "weight_grid",
]
