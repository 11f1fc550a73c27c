"""Model registry: name -> model module implementing the model contract.

A model is one file under ``mohaq_jax/models/`` providing (``config`` is its frozen
``Config`` dataclass; shapes for one utterance ``(T, n_features)``):

* ``Config``: frozen, hashable dataclass of the static structure.
* ``sites(config) -> tuple[mohaq_jax.sites.Site, ...]``: quantizable layers, forward
  order (weight at ``site.weight_path`` in the params).
* ``init_params(key, config) -> params``.
* ``apply(params, config, features, length, act_bits=None, act_clip=None, train=False,
  rngs=None) -> logits (T, n_classes)``: float forward, or activation-quantized with
  ``(n_sites,)`` bits/clips (weights are quantized by the caller,
  :func:`mohaq_jax.qmodel.apply_quantized`).
* ``capture(params, config, features, length) -> [site input (T, ...)]``: calibration.
* The population evaluator's fast path, for one genome and a batch
  ``(features (B, T, F), labels (B, T), lengths (B,))``:
  ``first_stage_sites(config) -> tuple[int, ...]`` (sites whose bits decide the first
  stage), ``first_stage(config, qparams, bits_a, clips, batch) -> hidden`` and
  ``rest_stages(config, qparams, bits_a, clips, hidden, batch) -> logits (B, T, C)``.

Adding a model is its file plus one line in :data:`MODELS`.
"""

from __future__ import annotations

import importlib
from types import ModuleType

#: name -> module path of a model implementing the contract above.
MODELS: dict[str, str] = {
    "sru": "mohaq_jax.models.sru",
    "lstm": "mohaq_jax.models.lstm",
}


def get_model(name: str) -> ModuleType:
    """The model module registered as ``name``."""
    if name not in MODELS:
        raise ValueError(f"unknown model {name!r}; registered: {sorted(MODELS)}")
    return importlib.import_module(MODELS[name])


def model_of(config) -> ModuleType:
    """The registered model whose ``Config`` class ``config`` is an instance of."""
    for name in MODELS:
        model = get_model(name)
        if isinstance(config, model.Config):
            return model
    raise ValueError(
        f"no registered model takes a {type(config).__name__}; "
        f"registered: {sorted(MODELS)}"
    )


__all__ = ["MODELS", "get_model", "model_of"]
