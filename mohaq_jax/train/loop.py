"""The one training loop: quantization-aware training, retraining and float training.

Every QAT run of the project goes through :func:`qat_loop`: beacon retraining and
uniform QAT of ``k`` genomes at once (:func:`mohaq_jax.train.qat_finetune`, MOHAQ
Sec. IV-C) and switching-aware mixed-precision retraining of the SRU and the VGG
(:func:`mohaq_jax.retrain.switching.retrain`, Kim et al., IEEE TNNLS 2021); float
training of the baseline (:func:`mohaq_jax.train.fit`) runs in it too, resumed from
a :class:`LoopState` and checkpointed in :meth:`QATStrategy.end_epoch`. The loop
owns what they share: epochs of deterministic batches (``batches(epoch)``), the
dropout key of step ``s`` (``fold_in(key, s)``), the optimizer step, the dev error
after every epoch and what it decides (:class:`DevMonitor`: keep the best params,
halve the learning rate, stop), the history and the progress bar. What differs is a
:class:`QATStrategy`: the jitted step (vmapped over genomes with a mask of active
genomes, or the switching-aware step that counts switches and damps updates near
quantization thresholds, or the plain float step), the dev evaluation (every epoch,
or every ``eval_every``), per-epoch phase changes (the selection of extra-bit
weights), the history record and what happens after an epoch (a checkpoint).

The monitor works per genome with masks (fixed shapes); a strategy of one model has
``k = 1``.
"""

from __future__ import annotations

import dataclasses
import time
from collections.abc import Callable, Iterable
from typing import Any

import jax
import jax.numpy as jnp
import numpy as np
from tqdm.auto import tqdm


@dataclasses.dataclass(frozen=True)
class DevMonitor:
    """What the dev error decides after each epoch (per genome).

    A genome *improves* when its ``metric`` falls below ``(1 - improvement_threshold)``
    times its best so far (the starting error when the loop evaluates the start).

    Attributes:
      metric: key of the strategy's rates that is monitored ("fer", "per", "error").
      improvement_threshold: relative gain that counts as an improvement.
      keep_best: return the params of the best evaluation (else the last ones).
      halving_patience: evaluations without improvement before the learning rate is
        halved; None keeps it constant.
      patience: evaluations without improvement before a genome stops (its updates
        masked out); None never stops early.
      min_lr: a genome stops once halving takes its learning rate below this.
    """

    metric: str = "fer"
    improvement_threshold: float = 0.001
    keep_best: bool = True
    halving_patience: int | None = 1
    patience: int | None = 2
    min_lr: float = 0.0

    @classmethod
    def of(cls, train_config, patience: int | None) -> DevMonitor:
        """QAT's monitor: keep the best, halve and stop as ``train_config`` says."""
        return cls(
            metric=train_config.monitor,
            improvement_threshold=train_config.improvement_threshold,
            keep_best=True,
            halving_patience=train_config.lr_halving_patience,
            patience=patience,
            min_lr=train_config.min_lr,
        )


#: A fixed schedule: report the dev error, keep the last params, constant learning
#: rate, no early stop (switching-aware retraining's default).
FIXED_SCHEDULE = DevMonitor(keep_best=False, halving_patience=None, patience=None)


class QATStrategy:
    """What one kind of QAT run does inside :func:`qat_loop`.

    ``carry`` is the strategy's training state (params, optimizer state and whatever
    else its step updates); the loop only passes it along. Subclasses define
    :meth:`step` and usually :meth:`evaluate` and :meth:`record`.

    Attributes:
      k: number of genomes trained together (the length of every per-genome array).
    """

    k: int = 1

    def begin_epoch(self, epoch: int, carry) -> Any:
        """Called before the batches of ``epoch`` (0-based); returns the carry."""
        del epoch
        return carry

    def step(self, carry, active: jax.Array, batch, key: jax.Array) -> tuple[Any, Any]:
        """One optimizer step; ``active`` is bool ``(k,)``. Returns ``(carry, loss)``
        with ``loss`` a scalar or ``(k,)``."""
        raise NotImplementedError

    def evaluate(self, carry) -> dict | None:
        """Dev error rates of the current params, ``{name: (k,) array}`` (None: no
        dev evaluation)."""
        del carry
        return None

    def model(self, carry) -> Any:
        """What :class:`DevMonitor` keeps when a genome improves."""
        raise NotImplementedError

    def select(self, improved: np.ndarray, new, old) -> Any:
        """``new`` for the genomes that improved, ``old`` for the others."""
        if self.k != 1:
            raise NotImplementedError("a strategy of k > 1 genomes defines select")
        return jax.tree_util.tree_map(jnp.copy, new) if improved[0] else old

    def set_learning_rate(self, carry, lrs: np.ndarray) -> Any:
        """The carry with the learning rates ``(k,)`` (called after halving)."""
        raise NotImplementedError(
            f"{type(self).__name__} keeps a constant learning rate"
        )

    def end_epoch(self, epoch: int, carry, state: LoopState) -> None:
        """Called after the record of ``epoch`` is in ``state.history`` (e.g. to
        write a checkpoint)."""
        del epoch, carry, state

    def record(self, epoch: int, carry, losses: list, rates, lrs, active) -> dict:
        """The history entry of ``epoch`` (0-based); ``losses`` are on the host."""
        del carry, lrs, active
        rec = {"epoch": epoch + 1, "loss": _mean_loss(losses)}
        if rates is not None:
            rec.update({name: np.asarray(v).tolist() for name, v in rates.items()})
        return rec


def _mean_loss(losses: list):
    if not losses:
        return None
    mean = np.mean(np.stack(losses), axis=0)
    return float(mean) if mean.ndim == 0 else mean.tolist()


@dataclasses.dataclass
class LoopState:
    """Where a run stands between epochs: all a resumed loop needs besides the carry.

    Per-genome arrays have shape ``(k,)``.

    Attributes:
      epoch: completed epochs.
      steps: optimizer steps taken.
      lrs: float learning rates.
      best: best dev rates so far ``{name: (k,)}`` (None before any evaluation).
      best_model: the kept model (``keep_best``), else None.
      since_best: evaluations without improvement.
      since_halving: evaluations without improvement since the last halving.
      active: bool, genomes still training.
      epochs_run: int, epochs each genome trained.
      history: one record per epoch (:meth:`QATStrategy.record`).
    """

    epoch: int
    steps: int
    lrs: np.ndarray
    best: dict | None
    best_model: Any
    since_best: np.ndarray
    since_halving: np.ndarray
    active: np.ndarray
    epochs_run: np.ndarray
    history: list

    @classmethod
    def start(cls, k: int, lr: float, best=None, best_model=None) -> LoopState:
        """Fresh state of ``k`` genomes at learning rate ``lr``."""
        return cls(
            epoch=0,
            steps=0,
            lrs=np.full(k, lr),
            best=best,
            best_model=best_model,
            since_best=np.zeros(k, np.int64),
            since_halving=np.zeros(k, np.int64),
            active=np.ones(k, bool),
            epochs_run=np.zeros(k, np.int64),
            history=[],
        )


@dataclasses.dataclass
class LoopResult:
    """What :func:`qat_loop` returns.

    Attributes:
      carry: the strategy's final training state.
      model: the kept model (the best when ``keep_best``, else ``strategy.model`` of
        the final carry).
      rates: dev rates of ``model`` (``{name: (k,)}``; None without evaluation).
      start_rates: dev rates before training (None unless ``evaluate_start``).
      state: the final :class:`LoopState` (``epochs_run``, ``lrs``, ``history``,
        ``steps`` ...).
    """

    carry: Any
    model: Any
    rates: dict | None
    start_rates: dict | None
    state: LoopState

    @property
    def epochs_run(self) -> np.ndarray:
        return self.state.epochs_run

    @property
    def history(self) -> list:
        return self.state.history

    @property
    def steps(self) -> int:
        return self.state.steps


def _monitor(monitor: DevMonitor, strategy, st: LoopState, carry, rates: dict):
    """The dev monitor's decisions after one evaluation; returns the carry."""
    k = strategy.k
    if st.best is None:
        st.best = {n: np.full(k, np.inf) for n in rates}
    best = st.best[monitor.metric]
    gain = 1.0 - monitor.improvement_threshold
    value = np.asarray(rates[monitor.metric])
    improved = st.active & ((value < best * gain) | ~np.isfinite(best))
    st.best = {n: np.where(improved, rates[n], st.best[n]) for n in st.best}
    if monitor.keep_best:
        st.best_model = strategy.select(improved, strategy.model(carry), st.best_model)
    st.since_best = np.where(improved, 0, st.since_best + st.active)
    st.since_halving = np.where(improved, 0, st.since_halving + st.active)
    if monitor.halving_patience is not None:
        halve = st.active & (st.since_halving >= monitor.halving_patience)
        st.lrs = np.where(halve, st.lrs * 0.5, st.lrs)
        st.since_halving = np.where(halve, 0, st.since_halving)
        carry = strategy.set_learning_rate(carry, st.lrs)
        st.active = st.active & (st.lrs >= monitor.min_lr)
    if monitor.patience is not None:
        st.active = st.active & (st.since_best < monitor.patience)
    return carry


def qat_loop(
    strategy: QATStrategy,
    carry,
    batches: Callable[[int], Iterable],
    key: jax.Array,
    epochs: int,
    lr: float,
    monitor: DevMonitor = FIXED_SCHEDULE,
    evaluate_start: bool = False,
    progress: bool = False,
    desc: str = "QAT",
    state: LoopState | None = None,
    deadline: float | None = None,
) -> LoopResult:
    """Trains up to epoch ``epochs`` with ``strategy``, monitoring the dev error.

    Args:
      strategy: the step, evaluation and records of this kind of run.
      carry: initial training state of the strategy.
      batches: ``batches(epoch) -> iterable of batches`` (deterministic per epoch).
      key: dropout keys; step ``s`` uses ``fold_in(key, s)``.
      epochs: the loop stops after this many completed epochs.
      lr: initial learning rate (what halving starts from).
      monitor: what the dev error decides.
      evaluate_start: evaluate before training; the best so far starts there, so a
        kept-best result is never worse on dev than the start.
      progress: tqdm bar over steps with the loss and the dev error.
      desc: bar label.
      state: where a resumed run stands (None: a fresh start; ``lr`` is then unused).
      deadline: a ``time.perf_counter()`` value: the epoch under way ends after the
        step that passes it (a partial epoch, recorded with ``"steps"`` and
        ``"partial": True``), is evaluated as usual, and every genome stops.

    Returns:
      A :class:`LoopResult`.
    """
    k = strategy.k
    start_rates = strategy.evaluate(carry) if evaluate_start else None
    if state is None:
        state = LoopState.start(
            k,
            lr,
            best=None
            if start_rates is None
            else {n: np.array(v) for n, v in start_rates.items()},
            best_model=jax.tree_util.tree_map(jnp.copy, strategy.model(carry))
            if monitor.keep_best
            else None,
        )
    st, rates = state, start_rates
    bar = tqdm(total=None, desc=desc, disable=not progress, leave=False, unit="step")
    for epoch in range(st.epoch, epochs):
        if not st.active.any():
            break
        carry = strategy.begin_epoch(epoch, carry)
        active_j = jnp.asarray(st.active)
        losses, timed_out = [], False
        for batch in batches(epoch):
            carry, loss = strategy.step(
                carry, active_j, batch, jax.random.fold_in(key, st.steps)
            )
            losses.append(loss)
            st.steps += 1
            bar.update(1)
            if deadline is not None and time.perf_counter() > deadline:
                jax.block_until_ready(loss)
                timed_out = True
                break
        losses = jax.device_get(losses)
        st.epochs_run = st.epochs_run + st.active
        rates = strategy.evaluate(carry)
        if rates is not None:
            carry = _monitor(monitor, strategy, st, carry, rates)
        st.epoch = epoch + 1
        if timed_out:
            st.active = np.zeros_like(st.active)
        record = strategy.record(epoch, carry, losses, rates, st.lrs, st.active)
        if timed_out:
            record.update(steps=len(losses), partial=True, stop="time bound")
        st.history.append(record)
        strategy.end_epoch(epoch, carry, st)
        if bar.total is None and losses:  # steps per epoch known now: show an ETA
            bar.total = bar.n + len(losses) * (epochs - epoch - 1)
            bar.refresh()
        shown = {"epoch": epoch + 1}
        if losses:
            shown["loss"] = f"{float(np.min(np.mean(np.stack(losses), axis=0))):.3f}"
        if rates is not None:
            shown[monitor.metric] = f"{float(np.min(rates[monitor.metric])):.3f}"
        bar.set_postfix(**shown)
    bar.close()
    if monitor.keep_best:
        model, final = st.best_model, st.best
    else:
        model, final = strategy.model(carry), rates
    return LoopResult(
        carry=carry, model=model, rates=final, start_rates=start_rates, state=st
    )
