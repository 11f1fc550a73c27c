"""Model registry: name -> model module implementing the model contract.

A model is one file under ``mohaq_jax/models/`` providing (``config`` is its frozen
``Config`` dataclass):

* ``Config``: frozen, hashable dataclass of the static structure.
* ``TASK`` (optional, default ``"frames"``): what the population evaluator measures
  and what a batch is (:mod:`mohaq_jax.evaluation.evaluate_tasks`).
* ``sites(config) -> tuple[mohaq_jax.models.sites.Site, ...]``: quantizable layers, forward
  order (weight at ``site.weight_path`` in the params).
* ``init_params(key, config) -> params``.
* ``apply(params, config, example..., act_bits=None, act_clip=None, train=False,
  rngs=None) -> logits``: float forward of ONE example, or activation-quantized with
  ``(n_sites,)`` bits/clips (weights are quantized by the caller,
  :func:`mohaq_jax.models.qmodel.quantize_params`).
* ``capture(params, config, example...) -> [site input]``: calibration.
* The population evaluator's fast path, for one genome and one batch:
  ``first_stage_sites(config) -> tuple[int, ...]`` (sites whose bits decide the first
  stage), ``first_stage(config, qparams, bits_a, clips, batch) -> hidden`` and
  ``rest_stages(config, qparams, bits_a, clips, hidden, batch) -> logits``.

The example and the batch depend on the task:

* ``"frames"`` (speech: ``sru``, ``lstm``): an example is one utterance ``features
  (T, n_features), length``; ``apply`` gives ``(T, n_classes)``, ``capture`` one
  ``(T, ...)`` per site; a batch is ``(features (B, T, F), labels (B, T), lengths
  (B,))`` and ``rest_stages`` gives ``(B, T, n_classes)``. The speech pipeline
  (:mod:`mohaq_jax.models.qmodel`, :mod:`mohaq_jax.train`) uses these.
* ``"classification"`` (images: ``vgg``): an example is one image ``(H, W, C)``;
  ``apply`` gives ``(n_classes,)``, ``capture`` each site's input for that image; a
  batch is ``(images (B, H, W, C), labels (B,))`` with label ``-1`` for padding,
  and ``rest_stages`` gives ``(B, n_classes)``. Calibration and training are
  :mod:`mohaq_jax.retrain.vision`.

``Config`` must take ``n_features`` and ``n_classes`` (the speech pipeline,
:func:`mohaq_jax.orchestration.prepare.model_config`, passes the corpus's, plus whichever of
``hidden``, ``n_layers``, ``bidirectional``, ``n_proj``, ``proj_first`` and ``dropout``
it declares, from ``--hidden``, ``--layers``, ``--unidirectional``, ``--proj``,
``--proj-first``, ``--dropout``) and
provide ``to_dict() -> dict`` (JSON-able: the baseline cache key, the report's
settings and the checkpoints' compatibility checks read it; the cache key also holds
the model's registry name, so two models with the same fields never share a
baseline). Code above the models is typed against :class:`ContractConfig`.

Adding a model is its file plus one line in :data:`MODELS` (and one in
:data:`TASKS` if its task is not ``"frames"``).
"""

from __future__ import annotations

import importlib
from types import ModuleType
from typing import Protocol

#: name -> module path of a model implementing the contract above.


class ContractConfig(Protocol):
    """What model-neutral code may read of any model's ``Config`` (the contract)."""

    n_features: int  # per-frame (speech) or per-pixel (images) input size
    n_classes: int

    def to_dict(self) -> dict: ...


MODELS: dict[str, str] = {
    "sru": "mohaq_jax.models.sru",
    "lstm": "mohaq_jax.models.lstm",
    "vgg": "mohaq_jax.models.vgg",
    "flax": "mohaq_jax.adapt.flax_model",  # any Flax module, via mohaq_jax.adapt
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


#: name -> the model's ``TASK``, so that the command line checks ``--model`` without
#: importing JAX (a test keeps it equal to each module's ``TASK``).
TASKS: dict[str, str] = {
    "sru": "frames",
    "lstm": "frames",
    "vgg": "classification",
    "flax": "flax",  # its own task: the error function the user gives
}


def names(task: str = "frames") -> tuple[str, ...]:
    """Registered models of ``task`` (``"frames"``: speech; ``"classification"``)."""
    return tuple(n for n in MODELS if TASKS.get(n, "frames") == task)


__all__ = ["MODELS", "TASKS", "ContractConfig", "get_model", "model_of", "names"]
