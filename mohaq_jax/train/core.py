"""Training pieces shared by float training and QAT: settings, optimizer, loss, step.

Training follows the MOHAQ authors' recipe (Rashed et al. 2021, Sec. V-A: the SRU
model of pytorch-kaldi trained on framewise phone targets): framewise cross-entropy
over the valid frames, Adam, and the learning rate halved whenever the dev error stops
improving by a relative ``improvement_threshold`` (pytorch-kaldi's
``arch_halving_factor=0.5``, ``arch_improvement_threshold=0.001``).

The training step is one pure function

    step(params, opt_state, batch, key, bits_w, bits_a, calib)
        -> (params, opt_state, loss)

with ``bits_w = bits_a = calib = None`` for float training. With bit-widths it trains
through :func:`mohaq_jax.models.qmodel.apply_quantized`, whose fake quantizer passes gradients
straight through (QAT). Bit-widths are arrays and the learning rate lives in the
optimizer state (``optax.inject_hyperparams``), so ``jax.vmap`` over stacked params,
optimizer states and bits retrains several genomes with one compiled step.

Dev errors are counted in streaming, length-bucketed batches (:func:`evaluate`,
:func:`dev_rates`).
"""

from __future__ import annotations

import dataclasses
import functools
from collections.abc import Callable
from typing import Any

import jax
import jax.numpy as jnp
import numpy as np
import optax

from mohaq_jax.data.batching import (
    DEFAULT_BATCH_FRAMES,
    BucketedSplit,
    accumulate_sums,
    bucketed_batches,
)
from mohaq_jax.models import (
    ContractConfig,  # the model contract (type hints)
    model_of,
    qmodel,
)
from mohaq_jax.numerics import metrics


@dataclasses.dataclass(frozen=True)
class TrainConfig:
    """Settings of float training (and the defaults of QAT fine-tuning)."""

    epochs: int = 12  # maximum passes over the training split
    batch_size: int = 16  # utterances per step (short batches get empty rows)
    lr: float = 2e-3  # initial Adam learning rate
    lr_halving_patience: int = 1  # dev evaluations without improvement before halving
    improvement_threshold: float = 0.001  # relative dev-error gain that counts as one
    min_lr: float = 1e-5  # stop once halving takes the learning rate below this
    grad_clip: float = 5.0  # global-norm gradient clipping (0 = off)
    weight_decay: float = 0.0  # decoupled weight decay (AdamW); 0 = plain Adam
    seed: int = 0  # params init, dropout and batch order
    eval_every: int = 1  # epochs between dev evaluations (the last epoch always is one)
    pad_multiple: int = 64  # batch time is rounded up to this (fewer compilations)
    # frames (rows x padded time) per dev-evaluation batch; changes no result, so it
    # is left out of to_dict (a run's identity in checkpoints and the baseline cache)
    eval_batch_frames: int = DEFAULT_BATCH_FRAMES
    # dev error that drives lr halving, best-params selection and QAT early stopping:
    # "fer" (frame error, pytorch-kaldi's err_dev; smooth) or "per" (phone error)
    monitor: str = "fer"
    # wall-clock bound of one training call in minutes (None: none): training stops
    # after the step that passes it, evaluates dev and is marked finished. Not
    # reproducible (it depends on the machine's speed); kept out of to_dict when None
    # so the identity of runs without it is unchanged.
    max_minutes: float | None = None

    def __post_init__(self):
        for name in (
            "epochs",
            "batch_size",
            "lr_halving_patience",
            "eval_every",
            "pad_multiple",
            "eval_batch_frames",
        ):
            if getattr(self, name) < 1:
                raise ValueError(f"TrainConfig.{name} must be >= 1")
        if not self.lr > 0:
            raise ValueError("TrainConfig.lr must be > 0")
        if self.max_minutes is not None and not self.max_minutes > 0:
            raise ValueError("TrainConfig.max_minutes must be > 0 (or None)")
        if self.monitor not in ("fer", "per"):
            raise ValueError(
                f"TrainConfig.monitor must be 'fer' or 'per', got {self.monitor!r}"
            )

    def to_dict(self) -> dict:
        fields = dataclasses.asdict(self)
        del fields["eval_batch_frames"]
        if fields["max_minutes"] is None:
            del fields["max_minutes"]
        return fields


#: The rate of :func:`evaluate` (and of the QAT history) that is each search error.
RATE_OF_METRIC = {"phone_error": "per", "frame_error": "fer"}


def rate_of(error_metric: str) -> str:
    """The rate key ("per" or "fer") that is the search's ``error_metric``.

    QAT monitors, keeps and reports the rate a search selects on, so that every
    error of one run is read the same way.
    """
    if error_metric not in RATE_OF_METRIC:
        raise ValueError(
            f"QAT counts {sorted(RATE_OF_METRIC)} only, not {error_metric!r}"
        )
    return RATE_OF_METRIC[error_metric]


def make_optimizer(train_config: TrainConfig) -> optax.GradientTransformation:
    """Adam(W) with gradient clipping; the learning rate is a state leaf.

    ``optax.inject_hyperparams`` keeps the learning rate in
    ``opt_state.hyperparams["learning_rate"]``, so halving it changes an array, not
    the compiled step, and a vmapped state holds one learning rate per genome.
    """
    clip, decay = train_config.grad_clip, train_config.weight_decay

    def factory(learning_rate):
        parts = [optax.clip_by_global_norm(clip)] if clip > 0 else []
        if decay > 0:
            parts.append(optax.adamw(learning_rate, weight_decay=decay))
        else:
            parts.append(optax.adam(learning_rate))
        return optax.chain(*parts)

    return optax.inject_hyperparams(factory)(learning_rate=train_config.lr)


def learning_rate(opt_state) -> jax.Array:
    """The current learning rate(s) stored in an optimizer state."""
    return opt_state.hyperparams["learning_rate"]


def set_learning_rate(opt_state, lr) -> Any:
    """The optimizer state with its learning rate replaced (same dtype and shape)."""
    old = opt_state.hyperparams["learning_rate"]
    hyper = dict(opt_state.hyperparams)
    hyper["learning_rate"] = jnp.asarray(lr, old.dtype).reshape(old.shape)
    return opt_state._replace(hyperparams=hyper)


def _logits_fn(config):
    model = model_of(config)

    def logits(params, features, length, bits_w, bits_a, calib, train, key):
        rngs = None if key is None else {"dropout": key}
        if bits_w is None:
            return model.apply(params, config, features, length, train=train, rngs=rngs)
        return qmodel.apply_quantized(
            params,
            config,
            calib,
            bits_w,
            bits_a,
            features,
            length,
            train=train,
            rngs=rngs,
        )

    return logits


def make_loss(config: ContractConfig) -> Callable:
    """``loss(params, batch, key, bits_w, bits_a, calib) -> mean frame cross-entropy``.

    The mean is over the valid frames of the batch (padding frames and empty padding
    rows count for nothing). ``key`` drives dropout, one subkey per utterance.
    """
    logits_fn = _logits_fn(config)

    def loss(params, batch, key, bits_w=None, bits_a=None, calib=None):
        keys = jax.random.split(key, batch.features.shape[0])
        logits = jax.vmap(
            lambda f, n, k: logits_fn(params, f, n, bits_w, bits_a, calib, True, k)
        )(batch.features, batch.lengths, keys)
        nll, n_valid = metrics.masked_cross_entropy(logits, batch.labels, batch.lengths)
        count = jnp.maximum(jnp.sum(n_valid), 1).astype(jnp.float32)
        return jnp.sum(nll) / count

    return loss


def make_step(
    config: ContractConfig, optimizer: optax.GradientTransformation
) -> Callable:
    """The pure training step (not jitted; jit or vmap it where it is called).

    Returns:
      ``step(params, opt_state, batch, key, bits_w=None, bits_a=None, calib=None)
      -> (params, opt_state, loss)``. ``bits_w``/``bits_a`` are int ``(n_layers,)``
      arrays (``None`` = float training) and ``calib`` a
      :class:`~mohaq_jax.models.qmodel.Calibration`; gradients pass the fake quantizer
      straight through.
    """
    loss_fn = make_loss(config)

    def step(params, opt_state, batch, key, bits_w=None, bits_a=None, calib=None):
        loss, grads = jax.value_and_grad(loss_fn)(
            params, batch, key, bits_w, bits_a, calib
        )
        # optax's Adam bias correction computes ``b1 ** count`` (Python float ** int32),
        # which the tests' strict dtype promotion would refuse.
        with jax.numpy_dtype_promotion("standard"):
            updates, opt_state = optimizer.update(grads, opt_state, params)
        return optax.apply_updates(params, updates), opt_state, loss

    return step


def make_predict(config: ContractConfig) -> Callable:
    """``predict(params, features (B,T,F), lengths (B,), bits_w, bits_a, calib)``.

    Returns the argmax class per frame, int32 ``(B, T)`` (no dropout).
    """
    logits_fn = _logits_fn(config)

    def predict(params, features, lengths, bits_w=None, bits_a=None, calib=None):
        logits = jax.vmap(
            lambda f, n: logits_fn(params, f, n, bits_w, bits_a, calib, False, None)
        )(features, lengths)
        return jnp.argmax(logits, axis=-1).astype(jnp.int32)

    return predict


def eval_batches(
    split, batch_frames: int = DEFAULT_BATCH_FRAMES, pad_multiple: int = 16
) -> BucketedSplit:
    """Dev/test batches: length buckets of a few fixed shapes, ``batch_frames`` each.

    See :func:`mohaq_jax.data.batching.bucketed_batches`; a jitted counter compiles
    once per bucket shape.
    """
    return bucketed_batches(split, batch_frames, pad_multiple=pad_multiple)


def make_error_counts(config: ContractConfig, fold39, per_mode=None) -> Callable:
    """``counts(params, batch, bits_w, bits_a, calib, decoder) -> int32 (4,)``.

    The four counts are (phone errors, reference phones, frame errors, valid frames)
    summed over the batch; PER and frame error rate are ratios of them. ``decoder``
    (a :class:`mohaq_jax.decode.Decoder`) and ``per_mode`` choose how phones are read
    (:func:`mohaq_jax.numerics.metrics.error_counts`).
    """
    logits_fn = _logits_fn(config)
    fold = jnp.asarray(fold39, jnp.int32)

    def counts(params, batch, bits_w=None, bits_a=None, calib=None, decoder=None):
        logits = jax.vmap(
            lambda f, n: logits_fn(params, f, n, bits_w, bits_a, calib, False, None)
        )(batch.features, batch.lengths)
        _, valid, wrong, errs, refs = metrics.error_counts(
            logits,
            batch.labels,
            batch.lengths,
            fold,
            decoder=decoder,
            per_mode=per_mode,
        )
        return jnp.stack([errs, refs, wrong, valid])

    return counts


def _rates(counts) -> dict:
    counts = np.asarray(counts, np.int64)
    return {
        "per": float(counts[..., 0].sum() / max(counts[..., 1].sum(), 1))
        if counts.ndim == 1
        else counts[..., 0] / np.maximum(counts[..., 1], 1),
        "fer": float(counts[..., 2].sum() / max(counts[..., 3].sum(), 1))
        if counts.ndim == 1
        else counts[..., 2] / np.maximum(counts[..., 3], 1),
    }


def _as_key(fold39) -> tuple:
    return tuple(int(c) for c in np.asarray(fold39).reshape(-1))


# jit caches compiled code per function object, so the jitted functions are kept per
# (static structure) here: fits and QAT calls with the same model reuse one compilation.
@functools.lru_cache(maxsize=32)
def _jitted_counts(config: ContractConfig, fold39: tuple, per_mode=None) -> Callable:
    return jax.jit(make_error_counts(config, np.asarray(fold39, np.int32), per_mode))


@functools.lru_cache(maxsize=32)
def _jitted_step(config: ContractConfig, grad_clip: float, weight_decay: float):
    # Only the update rule matters here; the learning rate is read from the state.
    optimizer = make_optimizer(
        TrainConfig(grad_clip=grad_clip, weight_decay=weight_decay)
    )
    return jax.jit(make_step(config, optimizer), donate_argnums=(0, 1))


def evaluate(
    params,
    config: ContractConfig,
    split,
    fold39,
    bits_w=None,
    bits_a=None,
    calib=None,
    batch_frames: int = DEFAULT_BATCH_FRAMES,
    pad_multiple: int = 16,
    decoder=None,
    per_mode: str | None = None,
) -> dict:
    """Phone and frame error rates of float or fake-quantized params on a split.

    ``decoder``/``per_mode``: how PER reads phones (decoded by default when a
    :class:`mohaq_jax.decode.Decoder` is given, else smoothed).

    The split is streamed in length-bucketed batches of ``batch_frames`` frames
    (:func:`eval_batches`), so memory does not grow with the split.

    Returns:
      ``{"per": float, "fer": float}``.
    """
    metrics.resolve_per_mode(per_mode, decoder)
    counts = _jitted_counts(config, _as_key(fold39), per_mode)
    batches = (
        split
        if isinstance(split, BucketedSplit)
        else eval_batches(split, batch_frames, pad_multiple)
    )
    total = accumulate_sums(
        lambda b: counts(params, b, bits_w, bits_a, calib, decoder), batches
    )
    return _rates(total)


def baseline_decoder(params, config: ContractConfig, corpus, ckpt_dir, **kwargs):
    """The float baseline's phone-loop decoder, cached beside its checkpoint.

    See :func:`mohaq_jax.decode.get_or_fit` (``kwargs`` go there); returns
    ``(decoder, info)``.
    """
    from mohaq_jax import decode

    logits_fn = _logits_fn(config)
    batch_logits = jax.jit(
        lambda f, n: jax.vmap(
            lambda a, b: logits_fn(params, a, b, None, None, None, False, None)
        )(f, n)
    )
    return decode.get_or_fit(ckpt_dir, params, corpus, batch_logits, **kwargs)


def dev_rates(counts_fn: Callable, batches) -> dict:
    """Streaming error rates: ``counts_fn(batch)`` summed exactly over ``batches``.

    Args:
      counts_fn: batch -> int ``(..., 4)`` counts (:func:`make_error_counts`).
      batches: dev batches (e.g. :func:`eval_batches`), consumed once.

    Returns:
      ``{"per": ..., "fer": ...}``: floats for ``(4,)`` counts, ``(k,)`` arrays for
      ``(k, 4)`` counts.
    """
    return _rates(accumulate_sums(counts_fn, batches))


def _check_sizes(corpus, model_config: ContractConfig) -> None:
    if (model_config.n_features, model_config.n_classes) != (
        corpus.n_features,
        corpus.n_classes,
    ):
        raise ValueError(
            f"model expects {model_config.n_features} features / "
            f"{model_config.n_classes} classes but corpus {corpus.name!r} has "
            f"{corpus.n_features} / {corpus.n_classes}"
        )


def _epoch_rng(seed: int, epoch: int) -> np.random.Generator:
    return np.random.default_rng((seed, epoch))
