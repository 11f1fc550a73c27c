"""Retraining-based mixed precision: switching-aware retraining (Kim et al. 2021).

:mod:`~mohaq_jax.retrain.switching` is the model-agnostic method (schedule and
:func:`~mohaq_jax.retrain.switching.retrain`; the extra-bit grids in
:mod:`~mohaq_jax.retrain.grid`, switch counting and selection in
:mod:`~mohaq_jax.retrain.switches`, the threshold learning-rate scale in
:mod:`~mohaq_jax.retrain.threshold_lr`, the step and its strategy in the project's one
QAT loop in :mod:`~mohaq_jax.retrain.strategy`; storage and energy are accounted in
:mod:`mohaq_jax.hardware.reconfig`);
:mod:`~mohaq_jax.retrain.speech` applies it to the SRU (usable for beacons) and
:mod:`~mohaq_jax.retrain.vision` to the VGG-9.
"""

from mohaq_jax.retrain.switching import (
    GRIDS,
    SwitchingConfig,
    SwitchingStrategy,
    SwitchState,
    WeightGrid,
    count_switches,
    init_switches,
    levels,
    make_grid,
    make_step,
    mixed_fake_quant,
    near_threshold,
    quantize_sites,
    retrain,
    select_extra,
    step_tree,
    threshold_lr_scale,
    uniform_config,
)

__all__ = [
    "GRIDS",
    "SwitchState",
    "SwitchingConfig",
    "SwitchingStrategy",
    "WeightGrid",
    "count_switches",
    "init_switches",
    "levels",
    "make_grid",
    "make_step",
    "mixed_fake_quant",
    "near_threshold",
    "quantize_sites",
    "retrain",
    "select_extra",
    "step_tree",
    "threshold_lr_scale",
    "uniform_config",
]
