"""Retraining-based mixed precision: switching-aware retraining (Kim et al. 2021).

:mod:`~mohaq_jax.retrain.switching` is the model-agnostic method (extra-bit quantizer,
switch counting, selection, threshold learning-rate scale, storage);
:mod:`~mohaq_jax.retrain.speech` applies it to the SRU (usable for beacons) and
:mod:`~mohaq_jax.retrain.vision` to the VGG-9.
"""

from mohaq_jax.retrain.switching import (
    GRIDS,
    SwitchingConfig,
    SwitchState,
    WeightGrid,
    compression,
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
    "WeightGrid",
    "compression",
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
