"""The switching-aware QAT step and its strategy in the one QAT loop (Kim et al. 2021).

:func:`make_step` is the pure step (weights fake-quantized on their mixed grid,
threshold learning-rate scale, switch counting); :class:`SwitchingStrategy` runs it
inside :func:`mohaq_jax.train.loop.qat_loop`, selecting the extra-bit weights at the
end of the warm-up. Definitions: :mod:`mohaq_jax.retrain.switching`.
"""

from __future__ import annotations

from collections.abc import Callable, Sequence
from typing import Any, NamedTuple

import jax
import jax.numpy as jnp
import numpy as np
import optax

from mohaq_jax.retrain.grid import (
    Path,
    WeightGrid,
    get_path,
    levels,
    quantize_sites,
    site_kernels,
    step_tree,
)
from mohaq_jax.retrain.switches import (
    SwitchState,
    count_switches,
    init_switches,
    select_extra,
)
from mohaq_jax.train.core import set_learning_rate
from mohaq_jax.train.loop import QATStrategy


def make_step(
    loss_fn: Callable,
    optimizer: optax.GradientTransformation,
    paths: Sequence[Path],
    grid: str = "nested",
) -> Callable:
    """The pure switching-aware QAT step (jit it where it is called).

    Args:
      loss_fn: ``loss_fn(qparams, batch, key, aux) -> scalar``; ``qparams`` has the
        weight sites already fake-quantized (the model must not quantize them again),
        ``aux`` is passed through (activation bits, clips ...).
      optimizer: an optax transformation; one that accepts the ``grid`` extra
        argument (:func:`threshold_lr_scale` in a chain) damps near thresholds.
      paths: params paths of the weight sites.
      grid: extra-bit grid.

    Returns:
      ``step(params, opt_state, switches, batch, key, wgrid, aux, track, damp)
      -> (params, opt_state, switches, loss)``; ``track`` (bool array) says whether
      this step's level changes are counted, ``damp`` (bool array) whether the
      threshold LR scale acts in this step.
    """
    paths = tuple(tuple(p) for p in paths)
    extra_args = isinstance(optimizer, optax.GradientTransformationExtraArgs)

    def step(params, opt_state, switches, batch, key, wgrid, aux, track, damp=True):
        def objective(p):
            return loss_fn(quantize_sites(p, paths, wgrid, grid), batch, key, aux)

        loss, grads = jax.value_and_grad(objective)(params)
        # optax's Adam bias correction computes ``b1 ** count`` (float ** int32),
        # which strict dtype promotion refuses.
        with jax.numpy_dtype_promotion("standard"):
            if extra_args:
                updates, opt_state = optimizer.update(
                    grads,
                    opt_state,
                    params,
                    grid=step_tree(params, paths, wgrid, grid, damp),
                )
            else:
                updates, opt_state = optimizer.update(grads, opt_state, params)
        params = optax.apply_updates(params, updates)
        new_levels = [
            levels(
                get_path(params, p), wgrid.bits[i], wgrid.clips[i], wgrid.extra[i], grid
            )
            for i, p in enumerate(paths)
        ]
        switches = count_switches(switches, new_levels, track)
        return params, opt_state, switches, loss

    return step


class SwitchingCarry(NamedTuple):
    """Training state of switching-aware retraining inside the QAT loop."""

    params: Any  # latent (float) params
    opt_state: Any
    switches: SwitchState
    wgrid: WeightGrid  # current grid (extra-bit masks set after the warm-up)


def _as_rates(value) -> dict:
    """An evaluation result as ``{name: (1,) array}`` (a bare number is "error")."""
    if not isinstance(value, dict):
        value = {"error": value}
    return {name: np.asarray([float(v)]) for name, v in value.items()}


class SwitchingStrategy(QATStrategy):
    """The switching-aware step of one model in :func:`~mohaq_jax.train.loop.qat_loop`.

    Before epoch ``warmup_epochs`` the extra-bit weights are selected from the switch
    counts and the counters restart on the new grid; each epoch sets whether switches
    are counted (``track``) and whether the threshold learning-rate scale acts
    (``damp``). The kept model is ``(params, wgrid)``.

    Args:
      step_fn: the jitted :func:`make_step`.
      paths: params paths of the weight sites.
      aux: passed through to the loss.
      config: the schedule.
      evaluate: optional ``evaluate(qparams) -> float or {name: float}``.
      error_key: which rate the history records as ``error``.
      damp: whether the optimizer has :func:`threshold_lr_scale` chained (its state
        is then ``(base_state, ThresholdLRState)``).
    """

    def __init__(self, step_fn, paths, aux, config, evaluate, error_key, damp):
        self.step_fn, self.paths, self.aux = step_fn, paths, aux
        self.config, self.evaluate_fn = config, evaluate
        self.error_key, self.damp = error_key, damp
        self.window_counts, self.window_steps = None, 0
        self.phase, self.track, self.damp_now = "warmup", None, None

    def begin_epoch(self, epoch, carry):
        config = self.config
        if epoch == config.warmup_epochs:
            switches = carry.switches
            self.window_counts = [np.asarray(c) for c in switches.counts]
            self.window_steps = int(switches.steps_counted)
            masks = select_extra(
                switches.counts, config.switch_threshold, config.top_fraction
            )
            wgrid = carry.wgrid.replace(extra=tuple(masks))
            carry = carry._replace(
                wgrid=wgrid,
                switches=init_switches(
                    site_kernels(carry.params, self.paths), wgrid, config.grid
                ),
            )
        warm = epoch < config.warmup_epochs
        self.phase = "warmup" if warm else "mixed"
        self.track = jnp.asarray(
            (not warm) or epoch >= config.warmup_epochs - config.window_epochs
        )
        self.damp_now = jnp.asarray((not warm) or config.damp_warmup)
        return carry

    def step(self, carry, active, batch, key):
        del active  # one model: the loop stops before it would be masked
        params, opt_state, switches, loss = self.step_fn(
            carry.params,
            carry.opt_state,
            carry.switches,
            batch,
            key,
            carry.wgrid,
            self.aux,
            self.track,
            self.damp_now,
        )
        return carry._replace(
            params=params, opt_state=opt_state, switches=switches
        ), loss

    def evaluate(self, carry):
        if self.evaluate_fn is None:
            return None
        qparams = quantize_sites(
            carry.params, self.paths, carry.wgrid, self.config.grid
        )
        return _as_rates(self.evaluate_fn(qparams))

    def model(self, carry):
        return carry.params, carry.wgrid

    def set_learning_rate(self, carry, lrs):
        opt_state = carry.opt_state
        if self.damp:
            opt_state = (set_learning_rate(opt_state[0], lrs), *opt_state[1:])
        else:
            opt_state = set_learning_rate(opt_state, lrs)
        return carry._replace(opt_state=opt_state)

    def record(self, epoch, carry, losses, rates, lrs, active):
        rec = {
            "epoch": epoch + 1,
            "phase": self.phase,
            "loss": float(np.mean(losses)) if losses else None,
        }
        if self.damp:
            rec["near_fraction"] = float(carry.opt_state[1].near_fraction)
        if rates is not None:
            rec["error"] = float(rates[self.error_key][0])
        return rec
