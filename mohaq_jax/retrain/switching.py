"""Switching-aware mixed-precision retraining (Kim et al., IEEE TNNLS 2021).

Kim, Shin, Choi, Kim and Park, "Exploiting Retraining-Based Mixed-Precision
Quantization for Low-Cost DNN Accelerator Design" (IEEE TNNLS 2021): during
quantization-aware retraining at a uniform low precision some weights keep switching
between two contiguous quantization levels, because neither level lowers the loss.
Those weights get one more bit; the others stay at the low precision. Gradient noise
near the quantization thresholds is damped by a lower learning rate for weights close
to a threshold. This module is model-agnostic (the grids live in
:mod:`~mohaq_jax.retrain.grid`, switch counting and selection in
:mod:`~mohaq_jax.retrain.switches`, the learning-rate scale in
:mod:`~mohaq_jax.retrain.threshold_lr`, storage and energy in
:mod:`mohaq_jax.hardware.reconfig`); its epochs run in the project's one QAT loop,
:func:`mohaq_jax.train.loop.qat_loop`, with :class:`SwitchingStrategy`; :mod:`mohaq_jax.retrain.speech` and
:mod:`mohaq_jax.retrain.vision` plug in the SRU and the VGG.

Definitions used here (our reading of the method, stated so it can be checked):

* **Base grid** of a weight site with ``b`` bits and clipping value ``c`` (per tensor,
  or per output channel against the kernel's last axis): the quantizer of
  :func:`mohaq_jax.numerics.quantize.fake_quant`, ``qmax = 2**(b-1) - 1``, ``step = c / qmax``,
  integer level ``k = clip(round(w / step), -qmax, qmax)``, value ``k * step``.
* **Extra-bit weights** (a boolean mask per weight) are quantized with ``b + 1`` bits
  and the *same clip* ``c``. ``grid="nested"`` (default) halves the step:
  ``step' = step / 2``, ``k' in [-2 qmax, 2 qmax]`` (``2**(b+1) - 3`` levels, a
  ``b + 1``-bit code), so the extra-bit grid holds every base level plus the midpoint
  of each pair of contiguous levels: a weight switching between levels ``k`` and
  ``k + 1`` gains the level between them, which is the paper's "one additional
  quantization level". ``grid="uniform"`` instead uses the plain ``b + 1``-bit
  quantizer with the same clip (``qmax' = 2**b - 1``, ``step' = c / qmax'``), whose
  levels do not contain the base levels.
* **Switch**: between two consecutive optimizer steps, a weight's integer level on its
  current grid changes by exactly one (a jump of two or more levels is not counted).
  Counts accumulate, as JAX arrays, over a window of steps at the end of the uniform
  warm-up.
* **Selection**: after the warm-up, weights with ``count >= switch_threshold``, or
  the ``top_fraction`` of all quantized weights with the most switches (ties broken by
  position, never a weight with zero switches), become extra-bit weights.
* **Threshold learning-rate scale**: the thresholds of a grid are the midpoints
  ``(k + 1/2) step`` between contiguous levels. A weight whose distance to the nearest
  threshold is below ``band * step`` (its own grid's step) has its update multiplied
  by ``scale`` (:func:`threshold_lr_scale`, an optax transformation that reads the
  current params).
* **Storage**: base bits per weight, plus one bit per extra-bit weight, plus the bits
  that mark which weights carry it: per layer the cheaper of a one-bit flag per weight
  and a sparse list of ``ceil(log2 n)``-bit positions
  (:func:`mohaq_jax.hardware.reconfig.index_bits`). Only the quantized weight sites
  count (biases and other small vectors are left out, as in the reconfig model).
"""

from __future__ import annotations

import dataclasses
from collections.abc import Callable, Iterable, Sequence
from typing import Any

import jax
import jax.numpy as jnp
import numpy as np
import optax

from mohaq_jax.retrain.grid import (
    GRIDS,
    Path,
    WeightGrid,
    get_path,
    grid_params,
    levels,
    make_grid,
    mixed_fake_quant,
    quantize_sites,
    set_path,
    site_kernels,
    step_tree,
)
from mohaq_jax.retrain.strategy import SwitchingCarry, SwitchingStrategy, make_step
from mohaq_jax.retrain.switches import (
    SwitchState,
    count_switches,
    init_switches,
    select_extra,
)
from mohaq_jax.retrain.threshold_lr import (
    ThresholdLRState,
    near_threshold,
    threshold_lr_scale,
)
from mohaq_jax.train.loop import FIXED_SCHEDULE, DevMonitor, qat_loop


@dataclasses.dataclass(frozen=True)
class SwitchingConfig:
    """Schedule and settings of switching-aware retraining."""

    warmup_epochs: int = 2  # uniform QAT epochs before the extra-bit weights are chosen
    window_epochs: int = 1  # last warm-up epochs during which switches are counted
    retrain_epochs: int = 2  # epochs of retraining with the mixed representation
    switch_threshold: int | None = None  # extra bit where count >= this ...
    top_fraction: float | None = 0.1  # ... or for this share of weights (exactly one)
    grid: str = "nested"  # extra-bit grid: "nested" (halved step) or "uniform"
    lr_band: float = 0.1  # LR damping band around thresholds (fraction of step; 0=off)
    lr_scale: float = 0.1  # LR multiplier inside the band
    damp_warmup: bool = True  # damp near thresholds in warm-up too (else only after)

    def __post_init__(self):
        if self.warmup_epochs < 0 or self.retrain_epochs < 0:
            raise ValueError("epochs must be >= 0")
        if not 0 <= self.window_epochs <= self.warmup_epochs:
            raise ValueError("window_epochs must lie in [0, warmup_epochs]")
        if (self.switch_threshold is None) == (self.top_fraction is None):
            raise ValueError("set exactly one of switch_threshold and top_fraction")
        if self.grid not in GRIDS:
            raise ValueError(f"grid must be one of {GRIDS}")

    @property
    def epochs(self) -> int:
        return self.warmup_epochs + self.retrain_epochs

    def to_dict(self) -> dict:
        return dataclasses.asdict(self)


def uniform_config(epochs: int) -> SwitchingConfig:
    """Plain uniform QAT in the same loop: no extra bits, no LR damping."""
    return SwitchingConfig(
        warmup_epochs=epochs,
        window_epochs=0,
        retrain_epochs=0,
        switch_threshold=None,
        top_fraction=0.0,
        lr_band=0.0,
    )


def retrain(
    params,
    paths: Sequence[Path],
    wgrid: WeightGrid,
    loss_fn: Callable,
    aux: Any,
    optimizer: optax.GradientTransformation,
    batches: Callable[[int], Iterable],
    key: jax.Array,
    config: SwitchingConfig,
    evaluate: Callable | None = None,
    progress: bool = False,
    desc: str = "switching QAT",
    monitor: DevMonitor | None = None,
    lr: float | None = None,
    evaluate_start: bool = False,
    error_key: str = "error",
) -> tuple[Any, WeightGrid, dict]:
    """Uniform warm-up, selection of switching weights, mixed-precision retraining.

    Epochs ``0 .. warmup_epochs - 1`` train at the base bits (switches counted in the
    last ``window_epochs``); then the extra-bit weights are selected
    (:func:`select_extra`), the counters restart on the new grid (the final counts
    show how much switching remains) and ``retrain_epochs`` more epochs train with the
    mixed representation. Optimizer state and step numbering run on across phases.
    With ``lr_band > 0`` the optimizer gets :func:`threshold_lr_scale` chained after
    it (in warm-up too when ``damp_warmup``). The epochs run in
    :func:`mohaq_jax.train.loop.qat_loop` (:class:`SwitchingStrategy`).

    Args:
      params: starting (float) params.
      paths: params paths of the weight sites.
      wgrid: base grid (:func:`make_grid`, no extra-bit weight).
      loss_fn, aux: as in :func:`make_step`.
      optimizer: base optimizer (e.g. ``train.make_optimizer``).
      batches: ``batches(epoch) -> iterable of batches`` (deterministic per epoch).
      key: dropout keys; step ``s`` uses ``fold_in(key, s)``.
      config: schedule.
      evaluate: optional ``evaluate(qparams) -> float`` error (or ``{name: float}``
        rates) after every epoch (``qparams`` already quantized on the current grid).
      progress: tqdm bar over steps.
      desc: bar label.
      monitor: what the dev error decides (:class:`~mohaq_jax.train.loop.DevMonitor`;
        needs ``evaluate``). None: the fixed schedule (last params, constant
        learning rate, every epoch runs).
      lr: the optimizer's learning rate, needed when ``monitor`` halves it (the
        optimizer must then be ``train.make_optimizer``'s, whose state holds it).
      evaluate_start: evaluate before training too (``start_rates``).
      error_key: which rate of ``evaluate`` the history records as ``error``.

    Returns:
      ``(params, wgrid, info)``: the final (or, with a keep-best monitor, the best)
      latent params, their grid with the extra-bit masks, and info with ``history``
      (per epoch: epoch, phase, loss, error, near_fraction), ``window_counts`` (per
      site int numpy arrays: switches counted in the window), ``final_counts``
      (switches during the mixed phase), ``extra_counts``/``n_weights`` per site,
      ``steps``, ``window_steps``, ``epochs_run``, ``rates`` (dev rates of the
      returned params, ``{name: float}``) and ``start_rates``.
    """
    paths = tuple(tuple(p) for p in paths)
    if monitor is None:
        monitor = dataclasses.replace(FIXED_SCHEDULE, metric=error_key)
    if monitor.halving_patience is not None and lr is None:
        raise ValueError("retrain: a monitor that halves the learning rate needs lr")
    damp = config.lr_band > 0
    opt = (
        optax.chain(optimizer, threshold_lr_scale(config.lr_band, config.lr_scale))
        if damp
        else optimizer
    )
    step_fn = jax.jit(
        make_step(loss_fn, opt, paths, config.grid), donate_argnums=(0, 1)
    )
    opt_state = opt.init(params)
    params = jax.tree_util.tree_map(jnp.copy, params)
    switches = init_switches(site_kernels(params, paths), wgrid, config.grid)
    n_weights = [int(np.prod(k.shape)) for k in site_kernels(params, paths)]
    strategy = SwitchingStrategy(step_fn, paths, aux, config, evaluate, error_key, damp)
    out = qat_loop(
        strategy,
        SwitchingCarry(params, opt_state, switches, wgrid),
        batches,
        key,
        config.epochs,
        np.nan if lr is None else lr,
        monitor,
        evaluate_start=evaluate_start,
        progress=progress,
        desc=desc,
    )
    params, wgrid = out.model
    switches = out.carry.switches
    if strategy.window_counts is None:  # no mixed phase
        window_counts = [np.asarray(c) for c in switches.counts]
        window_steps = int(switches.steps_counted)
        final_counts = None
    else:
        window_counts, window_steps = strategy.window_counts, strategy.window_steps
        final_counts = [np.asarray(c) for c in switches.counts]

    def scalars(rates):
        return None if rates is None else {n: float(v[0]) for n, v in rates.items()}

    info = {
        "history": out.history,
        "window_counts": window_counts,
        "window_steps": window_steps,
        "final_counts": final_counts,
        "extra_counts": [int(np.sum(m)) for m in wgrid.extra],
        "n_weights": n_weights,
        "steps": out.steps,
        "epochs_run": int(out.epochs_run[0]),
        "rates": scalars(out.rates),
        "start_rates": scalars(out.start_rates),
    }
    return params, wgrid, info


__all__ = [
    "GRIDS",
    "Path",
    "SwitchState",
    "SwitchingCarry",
    "SwitchingConfig",
    "SwitchingStrategy",
    "ThresholdLRState",
    "WeightGrid",
    "count_switches",
    "get_path",
    "grid_params",
    "init_switches",
    "levels",
    "make_grid",
    "make_step",
    "mixed_fake_quant",
    "near_threshold",
    "quantize_sites",
    "retrain",
    "select_extra",
    "set_path",
    "site_kernels",
    "step_tree",
    "threshold_lr_scale",
    "uniform_config",
]
