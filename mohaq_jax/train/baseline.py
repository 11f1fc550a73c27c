"""Float training of the baseline acoustic model, with checkpoints and resume.

Training follows the MOHAQ authors' recipe (Rashed et al. 2021, Sec. V-A; see
:mod:`mohaq_jax.train.core`): training ends after ``epochs`` or when the learning rate
falls below ``min_lr``, and the params with the best dev error are kept.

Determinism: the batch order of epoch ``e`` comes from ``numpy.random.default_rng((seed,
e))`` and the dropout key of step ``s`` from ``fold_in(key, s)``, so a run resumed
from a checkpoint repeats the uninterrupted run exactly.
"""

from __future__ import annotations

import functools
import os
import time
from typing import Any

import jax
import jax.numpy as jnp
import numpy as np
from flax import struct
from tqdm.auto import tqdm

from mohaq_jax import checkpoint
from mohaq_jax.data.batching import accumulate_sums, iterate_batches, pad_rows
from mohaq_jax.models import get_model, model_of
from mohaq_jax.models.sru import ModelConfig  # the default model's config (type hints)
from mohaq_jax.train.core import (
    TrainConfig,
    _as_key,
    _check_sizes,
    _epoch_rng,
    _jitted_counts,
    _jitted_step,
    _logits_fn,
    _rates,
    eval_batches,
    learning_rate,
    make_optimizer,
    set_learning_rate,
)

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


@struct.dataclass
class TrainState:
    """Everything a resumed training needs (all arrays, so it serializes as is)."""

    params: Any
    opt_state: Any  # optax InjectHyperparamsState; lr in hyperparams["learning_rate"]
    best_params: Any  # params with the best dev error so far
    epoch: jax.Array  # int32 scalar: completed epochs
    step: jax.Array  # int32 scalar: completed optimizer steps
    bad_evals: jax.Array  # int32 scalar: evaluations without improvement since halving


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
