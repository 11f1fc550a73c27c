"""The one QAT loop (mohaq_jax.train.loop): the dev monitor against a hand trace.

A scripted strategy (no model) makes the loop's decisions visible: its "params" count
the steps each genome took, its dev errors are a fixed table, so which params are
kept, when the learning rate halves and when a genome stops are computed by hand
below. That the real runs (``train.qat_finetune`` and switching-aware retraining)
share this loop is checked in ``tests/test_train.py``.
"""

import time

import jax
import numpy as np
import pytest

from mohaq_jax.train import loop

# dev FER per epoch (rows) and genome (columns); the start (PTQ) error is 0.5 for both
ERRORS = np.asarray(
    [[0.40, 0.60], [0.45, 0.60], [0.30, 0.20], [0.35, 0.20], [0.36, 0.20], [0.1, 0.1]]
)
BATCHES = 3


class Scripted(loop.QATStrategy):
    """carry = (steps taken per genome, epoch evaluated); records keys and lrs."""

    k = 2

    def __init__(self):
        self.keys, self.lrs_set = [], []

    def begin_epoch(self, epoch, carry):
        return carry[0], epoch

    def step(self, carry, active, batch, key):
        self.keys.append(jax.random.key_data(key))
        return (carry[0] + np.asarray(active), carry[1]), np.float32(batch)

    def evaluate(self, carry):
        row = np.full(2, 0.5) if carry[1] is None else ERRORS[carry[1]]
        return {"fer": row, "per": 2 * row}

    def model(self, carry):
        return carry[0].copy()

    def select(self, improved, new, old):
        return np.where(improved, new, old)

    def set_learning_rate(self, carry, lrs):
        self.lrs_set.append(lrs.copy())
        return carry


def _run(monitor, epochs=6):
    strategy = Scripted()
    key = jax.random.key(3)
    out = loop.qat_loop(
        strategy,
        (np.zeros(2, np.int64), None),
        lambda epoch: range(BATCHES),
        key,
        epochs,
        lr=1.0,
        monitor=monitor,
        evaluate_start=True,
    )
    return strategy, key, out


def test_monitor_matches_the_hand_trace():
    monitor = loop.DevMonitor(
        metric="fer",
        improvement_threshold=0.0,
        halving_patience=1,
        patience=2,
        min_lr=0.2,
    )
    strategy, key, out = _run(monitor)
    # genome 0: improves at epochs 1 and 3; no gain at 2 (halve: 0.5), 4 (0.25) and 5
    # (0.125 < min_lr: stops, also two evaluations without gain). Kept: epoch 3.
    # genome 1: no gain at 1 (halve 0.5) and 2 (0.25, patience 2: stops). Kept: start.
    np.testing.assert_array_equal(out.epochs_run, [5, 2])
    np.testing.assert_array_equal(out.model, [3 * BATCHES, 0])
    np.testing.assert_array_equal(out.carry[0], [5 * BATCHES, 2 * BATCHES])
    np.testing.assert_allclose(out.rates["fer"], [0.30, 0.5])
    np.testing.assert_allclose(out.rates["per"], [0.60, 1.0])
    np.testing.assert_allclose(out.start_rates["fer"], [0.5, 0.5])
    np.testing.assert_allclose(out.state.lrs, [0.125, 0.25])
    np.testing.assert_allclose(
        np.stack(strategy.lrs_set),
        [[1.0, 0.5], [0.5, 0.25], [0.5, 0.25], [0.25, 0.25], [0.125, 0.25]],
    )
    # epoch 6 never runs: both genomes stopped
    assert [h["epoch"] for h in out.history] == [1, 2, 3, 4, 5]
    assert out.steps == 5 * BATCHES
    # dropout key of step s: fold_in(key, s)
    want = [jax.random.key_data(jax.random.fold_in(key, s)) for s in range(out.steps)]
    np.testing.assert_array_equal(np.stack(strategy.keys), np.stack(want))
    assert out.history[0]["loss"] == pytest.approx(1.0)  # mean of batches 0, 1, 2


def test_fixed_schedule_keeps_the_last_params_and_never_stops():
    strategy, _, out = _run(loop.FIXED_SCHEDULE)
    np.testing.assert_array_equal(out.epochs_run, [6, 6])
    np.testing.assert_array_equal(out.model, [6 * BATCHES, 6 * BATCHES])
    np.testing.assert_allclose(out.rates["fer"], ERRORS[-1])
    assert strategy.lrs_set == []  # constant learning rate


def test_a_passed_deadline_ends_training_after_one_step():
    """A deadline already passed: one step, then the partial epoch is evaluated,
    recorded as such, and every genome stops (hand count: 1 of 6 x 3 steps)."""
    strategy = Scripted()
    out = loop.qat_loop(
        strategy,
        (np.zeros(2, np.int64), None),
        lambda epoch: range(BATCHES),
        jax.random.key(3),
        6,
        lr=1.0,
        monitor=loop.DevMonitor(improvement_threshold=0.0),
        deadline=time.perf_counter() - 1.0,
    )
    assert out.steps == 1 and len(strategy.keys) == 1
    np.testing.assert_array_equal(out.model, [1, 1])
    assert not out.state.active.any()
    assert [r["epoch"] for r in out.history] == [1]
    assert out.history[0]["steps"] == 1 and out.history[0]["partial"]
    np.testing.assert_allclose(out.rates["fer"], ERRORS[0])


def test_a_far_deadline_changes_nothing():
    far = loop.qat_loop(
        Scripted(),
        (np.zeros(2, np.int64), None),
        lambda epoch: range(BATCHES),
        jax.random.key(3),
        2,
        lr=1.0,
        deadline=time.perf_counter() + 3600.0,
    )
    assert far.steps == 2 * BATCHES and "partial" not in far.history[-1]
