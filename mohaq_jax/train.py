"""Float training and quantization-aware training (QAT) of the acoustic models.

Training follows the MOHAQ authors' recipe (Rashed et al. 2021, Sec. V-A: the SRU
model of pytorch-kaldi trained on framewise phone targets): framewise cross-entropy
over the valid frames, Adam, and the learning rate halved whenever the dev error stops
improving by a relative ``improvement_threshold`` (pytorch-kaldi's
``arch_halving_factor=0.5``, ``arch_improvement_threshold=0.001``); training ends
after ``epochs`` or when the learning rate falls below ``min_lr``. The params with the
best dev phone error rate are kept.

The training step is one pure function

    step(params, opt_state, batch, key, bits_w, bits_a, calib)
        -> (params, opt_state, loss)

with ``bits_w = bits_a = calib = None`` for float training. With bit-widths it trains
through :func:`mohaq_jax.qmodel.apply_quantized`, whose fake quantizer passes gradients
straight through (QAT). Bit-widths are arrays, the learning rate lives in the optimizer
state (``optax.inject_hyperparams``), so ``jax.vmap`` over stacked params, optimizer
states and bits retrains several genomes with one compiled step
(:func:`qat_finetune`, used for beacon retraining, MOHAQ Sec. IV-C).

Determinism: the batch order of epoch ``e`` comes from ``numpy.random.default_rng((seed,
e))`` and the dropout key of step ``s`` from ``fold_in(key, s)``, so a run resumed
from a checkpoint repeats the uninterrupted run exactly.
"""

from __future__ import annotations

import dataclasses
import functools
import os
import time
from collections.abc import Callable
from typing import Any

import jax
import jax.numpy as jnp
import numpy as np
import optax
from flax import struct
from tqdm.auto import tqdm

from mohaq_jax import checkpoint, metrics, qmodel, quantize
from mohaq_jax.data.batching import (
    DEFAULT_BATCH_FRAMES,
    BucketedSplit,
    accumulate_sums,
    bucketed_batches,
    iterate_batches,
    pad_rows,
)
from mohaq_jax.models import get_model, model_of
from mohaq_jax.models.sru import ModelConfig  # the default model's config (type hints)

#: File name of the baseline checkpoint inside a checkpoint folder.
BASELINE_FILE = "baseline.msgpack"

#: Structure of the default baseline (the corpus gives n_features and n_classes): a
#: 2-layer bidirectional SRU of 128 units per direction. On the default eSpeak corpus
#: (480 training utterances) one epoch takes about 13 s on two idle CPU cores (31 s
#: when the cores are shared), and the default TrainConfig (12 epochs) reaches dev PER
#: 0.58 / frame error 0.235 (test 0.77 / 0.28) in about 3 minutes. Dropout 0.25 beat
#: 0.1 there (dev PER 0.60 vs 0.68 after 12 epochs).
BASELINE_MODEL = {
    "hidden": 128,
    "n_layers": 2,
    "n_proj": 0,
    "dropout": 0.25,
    "bidirectional": True,
}


def baseline_model_config(corpus, model: str = "sru", **overrides):
    """The default baseline structure of a registered model (``mohaq_jax.models``)
    for a corpus, with fields overridden by name."""
    fields = {**BASELINE_MODEL, **overrides}
    return get_model(model).Config(
        n_features=corpus.n_features, n_classes=corpus.n_classes, **fields
    )


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
        if self.monitor not in ("fer", "per"):
            raise ValueError(
                f"TrainConfig.monitor must be 'fer' or 'per', got {self.monitor!r}"
            )

    def to_dict(self) -> dict:
        fields = dataclasses.asdict(self)
        del fields["eval_batch_frames"]
        return fields


@struct.dataclass
class TrainState:
    """Everything a resumed training needs (all arrays, so it serializes as is)."""

    params: Any
    opt_state: Any  # optax InjectHyperparamsState; lr in hyperparams["learning_rate"]
    best_params: Any  # params with the best dev error so far
    epoch: jax.Array  # int32 scalar: completed epochs
    step: jax.Array  # int32 scalar: completed optimizer steps
    bad_evals: jax.Array  # int32 scalar: evaluations without improvement since halving


# ----------------------------------------------------------------------------- pieces


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


def make_loss(config: ModelConfig) -> Callable:
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


def make_step(config: ModelConfig, optimizer: optax.GradientTransformation) -> Callable:
    """The pure training step (not jitted; jit or vmap it where it is called).

    Returns:
      ``step(params, opt_state, batch, key, bits_w=None, bits_a=None, calib=None)
      -> (params, opt_state, loss)``. ``bits_w``/``bits_a`` are int ``(n_layers,)``
      arrays (``None`` = float training) and ``calib`` a
      :class:`~mohaq_jax.qmodel.Calibration`; gradients pass the fake quantizer
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


def make_predict(config: ModelConfig) -> Callable:
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


def make_error_counts(config: ModelConfig, fold39, per_mode=None) -> Callable:
    """``counts(params, batch, bits_w, bits_a, calib, decoder) -> int32 (4,)``.

    The four counts are (phone errors, reference phones, frame errors, valid frames)
    summed over the batch; PER and frame error rate are ratios of them. ``decoder``
    (a :class:`mohaq_jax.decode.Decoder`) and ``per_mode`` choose how phones are read
    (:func:`mohaq_jax.metrics.error_counts`).
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
def _jitted_counts(config: ModelConfig, fold39: tuple, per_mode=None) -> Callable:
    return jax.jit(make_error_counts(config, np.asarray(fold39, np.int32), per_mode))


@functools.lru_cache(maxsize=32)
def _jitted_step(config: ModelConfig, grad_clip: float, weight_decay: float):
    # Only the update rule matters here; the learning rate is read from the state.
    optimizer = make_optimizer(
        TrainConfig(grad_clip=grad_clip, weight_decay=weight_decay)
    )
    return jax.jit(make_step(config, optimizer), donate_argnums=(0, 1))


@functools.lru_cache(maxsize=32)
def _jitted_qat(
    config: ModelConfig, grad_clip: float, weight_decay: float, fold39: tuple
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
            make_error_counts(config, np.asarray(fold39, np.int32)),
            in_axes=(0, None, 0, 0, None),
        )
    )
    return vstep, vcounts


def evaluate(
    params,
    config: ModelConfig,
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


def baseline_decoder(params, config: ModelConfig, corpus, ckpt_dir, **kwargs):
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


def data_settings(corpus) -> dict:
    """What identifies a corpus in a checkpoint: name, sizes, classes and settings."""
    return {
        "name": corpus.name,
        "n_features": int(corpus.n_features),
        "n_classes": int(corpus.n_classes),
        "classes": list(corpus.classes),
        "settings": dict(corpus.settings),
    }


def _meta_sections(corpus, model_config, train_config) -> dict:
    return {
        "model_config": model_config.to_dict(),
        "data_settings": data_settings(corpus),
        "train_config": train_config.to_dict(),
    }


def _check_sizes(corpus, model_config: ModelConfig) -> None:
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


# ----------------------------------------------------------------------------- float


def init_state(model_config: ModelConfig, train_config: TrainConfig) -> TrainState:
    """Fresh training state: params from ``key(seed)``, lr = ``train_config.lr``."""
    key_init, _ = jax.random.split(jax.random.key(train_config.seed))
    params = model_of(model_config).init_params(key_init, model_config)
    opt_state = make_optimizer(train_config).init(params)
    return TrainState(
        params=params,
        opt_state=opt_state,
        best_params=params,
        epoch=jnp.zeros((), jnp.int32),
        step=jnp.zeros((), jnp.int32),
        bad_evals=jnp.zeros((), jnp.int32),
    )


def fit(
    corpus,
    model_config: ModelConfig,
    train_config: TrainConfig,
    ckpt_path: str | os.PathLike | None = None,
    resume: bool = False,
    until_epoch: int | None = None,
    progress: bool = True,
) -> tuple[dict, dict]:
    """Trains the float model, checkpointing after every epoch.

    Args:
      corpus: a :class:`mohaq_jax.data.corpus.Corpus`.
      model_config: model structure (its sizes must match the corpus).
      train_config: training settings.
      ckpt_path: checkpoint file written after every epoch (None = none).
      resume: continue from ``ckpt_path`` if it exists (its model config, data
        settings and training config must match, else
        :class:`~mohaq_jax.checkpoint.CheckpointMismatch`).
      until_epoch: stop after this many completed epochs (an interruption that a
        later ``resume=True`` call continues; the checkpoint is marked unfinished).
      progress: show a tqdm bar with the loss and the dev PER.

    Returns:
      ``(best_params, info)``; info has ``history`` (one dict per epoch: epoch, loss,
      lr, dev_per, dev_fer), ``best_dev_per`` and ``best_dev_fer`` (dev rates of the
      returned params, chosen by ``train_config.monitor``), ``epoch``, ``finished``,
      ``resumed_from``, ``seconds`` and ``epoch_seconds`` (wall time of this call and
      of each epoch it ran, dev evaluation and compilation included).
    """
    _check_sizes(corpus, model_config)
    sections = _meta_sections(corpus, model_config, train_config)
    state = init_state(model_config, train_config)
    history: list[dict] = []
    resumed_from, finished = None, False
    # Kept in the JSON meta, not as float32 arrays, so a resumed run compares exactly
    # the float64 values the uninterrupted run compares.
    best_rates = {"per": float("inf"), "fer": float("inf")}
    if resume and ckpt_path is not None and os.path.exists(ckpt_path):
        meta = checkpoint.read_meta(ckpt_path)
        checkpoint.check_compatible(meta, sections, os.fspath(ckpt_path))
        state, meta = checkpoint.load(ckpt_path, target=state)
        state = jax.tree_util.tree_map(jnp.asarray, state)
        history = list(meta["history"])
        resumed_from, finished = int(state.epoch), bool(meta["finished"])
        best_rates = meta["best_dev_rates"]

    step_fn = _jitted_step(
        model_config, train_config.grad_clip, train_config.weight_decay
    )
    counts_fn = _jitted_counts(model_config, _as_key(corpus.fold39))
    key_train = jax.random.split(jax.random.key(train_config.seed))[1]
    dev_batches = eval_batches(
        corpus.dev, train_config.eval_batch_frames, train_config.pad_multiple
    )
    n_batches = -(-len(corpus.train) // train_config.batch_size)
    last = (
        train_config.epochs
        if until_epoch is None
        else min(until_epoch, train_config.epochs)
    )
    started = time.perf_counter()
    params, opt_state, step = state.params, state.opt_state, int(state.step)
    # Donation consumes the buffers passed in; best_params must not alias them.
    best_params = jax.tree_util.tree_map(jnp.copy, state.best_params)
    bad_evals = int(state.bad_evals)
    monitor = train_config.monitor
    epoch = int(state.epoch)

    epoch_seconds = []
    while epoch < last and not finished:
        epoch_start = time.perf_counter()
        rng = _epoch_rng(train_config.seed, epoch)
        losses = []
        bar = tqdm(
            total=n_batches,
            desc=f"epoch {epoch + 1}/{train_config.epochs}",
            disable=not progress,
            leave=False,
        )
        for batch in iterate_batches(
            corpus.train, train_config.batch_size, rng, train_config.pad_multiple
        ):
            batch = pad_rows(batch, train_config.batch_size)
            key = jax.random.fold_in(key_train, step)
            params, opt_state, loss = step_fn(params, opt_state, batch, key)
            losses.append(loss)
            step += 1
            bar.update(1)
            if step % 10 == 0:
                # cli13: no "dev_per=inf" before the first dev evaluation
                shown = {"loss": f"{float(loss):.3f}"}
                if np.isfinite(best_rates["per"]):
                    shown["dev_per"] = f"{best_rates['per']:.3f}"
                bar.set_postfix(**shown)
        bar.close()
        epoch += 1
        lr = float(learning_rate(opt_state))
        record = {
            "epoch": epoch,
            "loss": float(np.mean(jax.device_get(losses))),
            "lr": lr,
        }
        if epoch % train_config.eval_every == 0 or epoch == train_config.epochs:
            rates = _rates(
                accumulate_sums(functools.partial(counts_fn, params), dev_batches)
            )
            record.update(dev_per=rates["per"], dev_fer=rates["fer"])
            gain = 1.0 - train_config.improvement_threshold
            improved = rates[monitor] < best_rates[monitor] * gain
            if improved or not np.isfinite(best_rates[monitor]):
                best_rates, bad_evals = rates, 0
                best_params = jax.tree_util.tree_map(jnp.copy, params)
            else:
                bad_evals += 1
                if bad_evals >= train_config.lr_halving_patience:
                    lr *= 0.5
                    opt_state = set_learning_rate(opt_state, lr)
                    bad_evals = 0
                    if lr < train_config.min_lr:
                        record["stop"] = "lr below min_lr"
                        finished = True
        if epoch >= train_config.epochs:
            finished = True
        history.append(record)
        epoch_seconds.append(time.perf_counter() - epoch_start)
        if progress:
            tqdm.write(
                f"epoch {epoch}: loss {record['loss']:.4f} lr {record['lr']:.2e}"
                + (
                    f" dev PER {record['dev_per']:.4f} FER {record['dev_fer']:.4f}"
                    if "dev_per" in record
                    else ""
                )
            )
        state = TrainState(
            params=params,
            opt_state=opt_state,
            best_params=best_params,
            epoch=jnp.asarray(epoch, jnp.int32),
            step=jnp.asarray(step, jnp.int32),
            bad_evals=jnp.asarray(bad_evals, jnp.int32),
        )
        if ckpt_path is not None:
            checkpoint.save(
                ckpt_path,
                state,
                {
                    **sections,
                    "kind": "baseline",
                    "epoch": epoch,
                    "finished": finished,
                    "best_dev_rates": best_rates,
                    "history": history,
                },
            )

    info = {
        "history": history,
        "best_dev_per": best_rates["per"],
        "best_dev_fer": best_rates["fer"],
        "epoch": epoch,
        "finished": finished,
        "resumed_from": resumed_from,
        "seconds": time.perf_counter() - started,
        "epoch_seconds": epoch_seconds,
        "path": None if ckpt_path is None else os.fspath(ckpt_path),
    }
    return best_params, info


def load_params(path, corpus=None, model_config=None, train_config=None) -> tuple:
    """Best params of a checkpoint, optionally checked against the expected setup.

    Args:
      path: checkpoint file.
      corpus, model_config, train_config: when given, the checkpoint's recorded data
        settings / model config / training config must equal them.

    Returns:
      ``(params, meta)``.

    Raises:
      CheckpointMismatch: naming the differing fields.
    """
    meta = checkpoint.read_meta(path)
    expected = {}
    if model_config is not None:
        expected["model_config"] = model_config.to_dict()
    if corpus is not None:
        expected["data_settings"] = data_settings(corpus)
    if train_config is not None:
        expected["train_config"] = train_config.to_dict()
    checkpoint.check_compatible(meta, expected, os.fspath(path))
    state, meta = checkpoint.load(path)
    params = jax.tree_util.tree_map(jnp.asarray, state["best_params"])
    return params, meta


def get_or_train_baseline(
    corpus,
    model_config: ModelConfig,
    train_config: TrainConfig,
    ckpt_dir: str | os.PathLike,
    retrain: bool = False,
    progress: bool = True,
) -> tuple[dict, dict]:
    """The float baseline: loaded from ``ckpt_dir`` if trained before, else trained.

    An unfinished checkpoint (an interrupted run) is resumed. A checkpoint written for
    another model config, corpus or training config is refused with an error naming
    the differing fields, unless ``retrain`` (then it is overwritten).

    Args:
      corpus: the data.
      model_config: model structure.
      train_config: training settings.
      ckpt_dir: folder of the checkpoint (``baseline.msgpack``).
      retrain: train from scratch even if a checkpoint exists.
      progress: progress bar while training.

    Returns:
      ``(params, info)``; info as :func:`fit` returns it plus ``loaded`` (True when
      nothing was trained).

    Raises:
      CheckpointMismatch: the checkpoint belongs to another setup.
    """
    path = os.path.join(os.fspath(ckpt_dir), BASELINE_FILE)
    if os.path.exists(path) and not retrain:
        meta = checkpoint.read_meta(path)
        checkpoint.check_compatible(
            meta, _meta_sections(corpus, model_config, train_config), path
        )
        if meta.get("finished"):
            params, meta = load_params(path)
            info = {key: meta[key] for key in ("history", "epoch", "finished")}
            info["best_dev_per"] = meta["best_dev_rates"]["per"]
            info["best_dev_fer"] = meta["best_dev_rates"]["fer"]
            return params, {
                **info,
                "loaded": True,
                "path": path,
                "resumed_from": None,
                "seconds": 0.0,
                "epoch_seconds": [],
            }
    params, info = fit(
        corpus, model_config, train_config, path, resume=not retrain, progress=progress
    )
    return params, {**info, "loaded": False}


# ----------------------------------------------------------------------------- QAT


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


def qat_finetune(
    params,
    config: ModelConfig,
    calib: qmodel.Calibration,
    genomes_bits_w,
    genomes_bits_a,
    corpus,
    epochs: int,
    lr: float,
    train_config: TrainConfig = TrainConfig(),
    patience: int = 2,
    progress: bool = False,
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
    improvement or when its learning rate drops below ``train_config.min_lr``.

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

    Returns:
      ``(stacked_params, info)``: the best params per genome, leaves shaped
      ``(k, ...)`` (quantize them with ``calib`` at the genome's bits to use them);
      info has ``dev_per`` and ``dev_fer`` (k,) of those params, ``ptq_dev_per`` and
      ``ptq_dev_fer`` (k,) before retraining, ``epochs_run`` (k,) and ``history``.
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
    optimizer = make_optimizer(tc)
    vstep, vcounts = _jitted_qat(
        config, tc.grad_clip, tc.weight_decay, _as_key(corpus.fold39)
    )
    dev_batches = eval_batches(corpus.dev, tc.eval_batch_frames, tc.pad_multiple)

    def dev_rates(stacked):
        total = accumulate_sums(
            lambda b: vcounts(stacked, b, bits_w, bits_a, calib), dev_batches
        )
        return _rates(total)  # {"per": (k,), "fer": (k,)}

    stacked = stack_params(params, k)
    opt_state = jax.vmap(optimizer.init)(stacked)
    best_params = jax.tree_util.tree_map(jnp.copy, stacked)
    ptq = dev_rates(stacked)
    best = {name: rate.copy() for name, rate in ptq.items()}
    lrs = np.full(k, lr)
    since_best = np.zeros(k, np.int64)
    since_halving = np.zeros(k, np.int64)
    active = np.ones(k, bool)
    epochs_run = np.zeros(k, np.int64)
    key_train = jax.random.split(jax.random.key(tc.seed))[1]
    history = []
    n_step = 0
    for epoch in tqdm(range(epochs), desc="QAT", disable=not progress):
        if not active.any():
            break
        rng = _epoch_rng(tc.seed, epoch)
        losses = []
        active_j = jnp.asarray(active)
        for batch in iterate_batches(corpus.train, tc.batch_size, rng, tc.pad_multiple):
            batch = pad_rows(batch, tc.batch_size)
            key = jax.random.fold_in(key_train, n_step)
            stacked, opt_state, loss = vstep(
                stacked, opt_state, active_j, batch, key, bits_w, bits_a, calib
            )
            losses.append(loss)
            n_step += 1
        epochs_run += active
        rates = dev_rates(stacked)
        gain = 1.0 - tc.improvement_threshold
        improved = active & (rates[tc.monitor] < best[tc.monitor] * gain)
        best = {name: np.where(improved, rates[name], best[name]) for name in best}
        best_params = _select_genomes(improved, stacked, best_params)
        since_best = np.where(improved, 0, since_best + active)
        since_halving = np.where(improved, 0, since_halving + active)
        halve = active & (since_halving >= tc.lr_halving_patience)
        lrs = np.where(halve, lrs * 0.5, lrs)
        since_halving = np.where(halve, 0, since_halving)
        opt_state = set_learning_rate(opt_state, lrs)
        active = active & (since_best < patience) & (lrs >= tc.min_lr)
        history.append(
            {
                "epoch": epoch + 1,
                "loss": np.mean(np.stack(jax.device_get(losses)), axis=0).tolist(),
                "dev_per": rates["per"].tolist(),
                "dev_fer": rates["fer"].tolist(),
                "lr": lrs.tolist(),
                "active": active.tolist(),
            }
        )
    info = {
        "dev_per": best["per"],
        "dev_fer": best["fer"],
        "ptq_dev_per": ptq["per"],
        "ptq_dev_fer": ptq["fer"],
        "epochs_run": epochs_run,
        "history": history,
    }
    return best_params, info
