"""Search any Flax model without writing a model file, and deploy the result with qwix.

* :func:`adapt`: a ``flax.linen`` Module, its params and a batch -> a model of the
  contract (:mod:`mohaq_jax.adapt.flax_model`), its sites found by tracing
  (:mod:`mohaq_jax.adapt.trace`) and named by module path.
* :func:`calibrate`, :func:`genome_space`, :func:`evaluator`, :func:`search`: the
  MOHAQ search of it on any registered platform and genome space
  (:mod:`mohaq_jax.adapt.api`).
* :mod:`mohaq_jax.adapt.qwix_export`: a searched solution as qwix rules, qwix's PTQ
  of the float model and its error beside the search's.

The API is imported on first use: the model registry imports
:mod:`mohaq_jax.adapt.flax_model` (a model, below the search layers) without
pulling in the search.
"""

__all__ = [
    "Searched",
    "adapt",
    "calibrate",
    "default_error_metric",
    "evaluator",
    "for_population",
    "genome_space",
    "module_path",
    "search",
    "site_name",
    "tie_space",
]


def __getattr__(name):
    if name in __all__:
        from mohaq_jax.adapt import api

        return getattr(api, name)
    raise AttributeError(f"module 'mohaq_jax.adapt' has no attribute {name!r}")
