"""Float training of the baseline acoustic model, with checkpoints and resume.

Training follows the MOHAQ authors' recipe (Rashed et al. 2021, Sec. V-A; see
:mod:`mohaq_jax.train.core`): training ends after ``epochs`` or when the learning rate
falls below ``min_lr``, and the params with the best dev error are kept. The epochs
run in the project's one training loop, :func:`mohaq_jax.train.loop.qat_loop` (float
params, no quantizer), which also serves QAT and switching-aware retraining.

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

from mohaq_jax.data.batching import accumulate_sums
from mohaq_jax.models import (
    ContractConfig,  # the model contract (type hints)
    get_model,
    model_of,
)
from mohaq_jax.runtime import checkpoint
from mohaq_jax.train.core import (
    TrainConfig,
    _as_key,
    _check_sizes,
    _jitted_counts,
    _jitted_step,
    _rates,
    eval_batches,
    learning_rate,
    make_optimizer,
    set_learning_rate,
)
from mohaq_jax.train.loop import DevMonitor, LoopState, QATStrategy, qat_loop
from mohaq_jax.train.qat import qat_key, train_batches

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


def init_state(model_config: ContractConfig, train_config: TrainConfig) -> TrainState:
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
    model_config: ContractConfig,
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
        :class:`~mohaq_jax.runtime.checkpoint.CheckpointMismatch`).
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
    tc = train_config
    sections = _meta_sections(corpus, model_config, tc)
    state = init_state(model_config, tc)
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

    strategy = _FloatStrategy(
        _jitted_step(model_config, tc.grad_clip, tc.weight_decay),
        _jitted_counts(model_config, _as_key(corpus.fold39)),
        eval_batches(corpus.dev, tc.eval_batch_frames, tc.pad_multiple),
        tc,
        ckpt_path,
        {**sections, "kind": "baseline"},
        progress,
    )
    # The learning rate as the state holds it (float32), so halving and the min_lr
    # test see the numbers an uninterrupted run sees.
    lr = float(learning_rate(state.opt_state))
    loop_state = LoopState.start(1, lr)
    loop_state.epoch, loop_state.steps = int(state.epoch), int(state.step)
    loop_state.best = {name: np.asarray([v]) for name, v in best_rates.items()}
    # Donation consumes the buffers passed in; best_params must not alias them.
    loop_state.best_model = jax.tree_util.tree_map(jnp.copy, state.best_params)
    loop_state.since_halving = np.asarray([int(state.bad_evals)])
    loop_state.active = np.asarray([not finished])
    loop_state.history = history
    monitor = DevMonitor(
        metric=tc.monitor,
        improvement_threshold=tc.improvement_threshold,
        keep_best=True,
        halving_patience=tc.lr_halving_patience,
        patience=None,
        # float training stops only when a halving takes the rate below min_lr (a
        # start below it trains on until the first halving)
        min_lr=min(tc.min_lr, lr),
    )
    last = tc.epochs if until_epoch is None else min(until_epoch, tc.epochs)
    started = time.perf_counter()
    out = qat_loop(
        strategy,
        (state.params, state.opt_state),
        train_batches(corpus, tc),
        qat_key(tc),
        last,
        lr,
        monitor,
        progress=progress,
        desc="float training",
        state=loop_state,
        deadline=None if tc.max_minutes is None else started + 60 * tc.max_minutes,
    )
    best = out.state.best
    info = {
        "history": out.history,
        "best_dev_per": float(best["per"][0]),
        "best_dev_fer": float(best["fer"][0]),
        "epoch": out.state.epoch,
        "finished": finished or strategy.finished,
        "resumed_from": resumed_from,
        "seconds": time.perf_counter() - started,
        "epoch_seconds": strategy.epoch_seconds,
        "path": None if ckpt_path is None else os.fspath(ckpt_path),
    }
    return out.model, info


class _FloatStrategy(QATStrategy):
    """Float training in :func:`~mohaq_jax.train.loop.qat_loop`: carry =
    ``(params, opt_state)``, dev evaluation every ``eval_every`` epochs and at the
    last, a checkpoint after every epoch."""

    def __init__(self, step_fn, counts_fn, dev_batches, tc, ckpt_path, meta, progress):
        self.step_fn, self.counts_fn, self.dev_batches = step_fn, counts_fn, dev_batches
        self.tc, self.ckpt_path, self.meta, self.progress = (
            tc,
            ckpt_path,
            meta,
            progress,
        )
        self.finished, self.epoch_seconds = False, []

    def begin_epoch(self, epoch, carry):
        self.epoch_start = time.perf_counter()
        self.epoch = epoch
        self.lr = float(learning_rate(carry[1]))  # the rate this epoch trains with
        return carry

    def step(self, carry, active, batch, key):
        params, opt_state, loss = self.step_fn(carry[0], carry[1], batch, key)
        return (params, opt_state), loss

    def evaluate(self, carry):
        epoch = self.epoch + 1
        if epoch % self.tc.eval_every and epoch != self.tc.epochs:
            return None
        rates = _rates(
            accumulate_sums(
                functools.partial(self.counts_fn, carry[0]), self.dev_batches
            )
        )
        return {name: np.asarray([v]) for name, v in rates.items()}

    def model(self, carry):
        return carry[0]

    def set_learning_rate(self, carry, lrs):
        return carry[0], set_learning_rate(carry[1], float(lrs[0]))

    def record(self, epoch, carry, losses, rates, lrs, active):
        rec = {"epoch": epoch + 1, "loss": float(np.mean(losses)), "lr": self.lr}
        if rates is not None:
            rec.update(dev_per=float(rates["per"][0]), dev_fer=float(rates["fer"][0]))
            if not active[0]:  # the only way float training stops early
                rec["stop"] = "lr below min_lr"
        return rec

    def end_epoch(self, epoch, carry, state):
        epoch += 1
        self.finished = (not state.active[0]) or epoch >= self.tc.epochs
        self.epoch_seconds.append(time.perf_counter() - self.epoch_start)
        rec = state.history[-1]
        if self.progress:
            tqdm.write(
                f"epoch {epoch}: loss {rec['loss']:.4f} lr {rec['lr']:.2e}"
                + (
                    f" dev PER {rec['dev_per']:.4f} FER {rec['dev_fer']:.4f}"
                    if "dev_per" in rec
                    else ""
                )
            )
        if self.ckpt_path is None:
            return
        best = {name: float(v[0]) for name, v in state.best.items()}
        train_state = TrainState(
            params=carry[0],
            opt_state=carry[1],
            best_params=state.best_model,
            epoch=jnp.asarray(epoch, jnp.int32),
            step=jnp.asarray(state.steps, jnp.int32),
            bad_evals=jnp.asarray(int(state.since_halving[0]), jnp.int32),
        )
        checkpoint.save(
            self.ckpt_path,
            train_state,
            {
                **self.meta,
                "epoch": epoch,
                "finished": self.finished,
                "best_dev_rates": best,
                "history": state.history,
            },
        )


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
    model_config: ContractConfig,
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
