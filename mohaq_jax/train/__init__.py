"""Float training and quantization-aware training (QAT) of the acoustic models.

* :mod:`~mohaq_jax.train.core`: settings (:class:`TrainConfig`), optimizer with the
  learning rate in its state, loss, the pure training step, predictions, streaming
  error counts (:func:`evaluate`).
* :mod:`~mohaq_jax.train.baseline`: float training of the baseline with checkpoints
  and resume (:func:`fit`, :func:`get_or_train_baseline`).
* :mod:`~mohaq_jax.train.loop`: the one QAT loop (:func:`qat_loop`) that every
  quantization-aware run goes through, with its dev monitor and strategies.
* :mod:`~mohaq_jax.train.qat`: QAT of ``k`` genomes at once (:func:`qat_finetune`,
  beacon retraining, MOHAQ Sec. IV-C).

Everything is re-exported here, so ``from mohaq_jax import train; train.fit(...)``
keeps working.
"""

from mohaq_jax.train.baseline import (
    BASELINE_FILE,
    BASELINE_MODEL,
    TrainState,
    baseline_model_config,
    data_settings,
    fit,
    get_or_train_baseline,
    init_state,
    load_params,
)
from mohaq_jax.train.core import (
    TrainConfig,
    _as_key,
    _check_sizes,
    _epoch_rng,
    _jitted_counts,
    _jitted_step,
    _rates,
    baseline_decoder,
    dev_rates,
    eval_batches,
    evaluate,
    learning_rate,
    make_error_counts,
    make_loss,
    make_optimizer,
    make_predict,
    make_step,
    rate_of,
    set_learning_rate,
)
from mohaq_jax.train.loop import (
    FIXED_SCHEDULE,
    DevMonitor,
    LoopResult,
    QATStrategy,
    qat_loop,
)
from mohaq_jax.train.qat import (
    GenomesStrategy,
    qat_finetune,
    qat_key,
    stack_params,
    train_batches,
    unstack_params,
)

__all__ = [
    "BASELINE_FILE",
    "BASELINE_MODEL",
    "FIXED_SCHEDULE",
    "DevMonitor",
    "GenomesStrategy",
    "LoopResult",
    "QATStrategy",
    "TrainConfig",
    "TrainState",
    "_as_key",
    "_check_sizes",
    "_epoch_rng",
    "_jitted_counts",
    "_jitted_step",
    "_rates",
    "baseline_decoder",
    "baseline_model_config",
    "data_settings",
    "dev_rates",
    "eval_batches",
    "evaluate",
    "fit",
    "get_or_train_baseline",
    "init_state",
    "learning_rate",
    "load_params",
    "make_error_counts",
    "make_loss",
    "make_optimizer",
    "make_predict",
    "make_step",
    "qat_finetune",
    "qat_key",
    "qat_loop",
    "rate_of",
    "set_learning_rate",
    "stack_params",
    "train_batches",
    "unstack_params",
]
