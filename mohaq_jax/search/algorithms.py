"""The search algorithms by name: ``--algorithm`` / ``--compare`` choices.

Each entry names a factory ``make(config, upper) -> Algorithm``
(:class:`~mohaq_jax.search.algorithm.Algorithm`) as ``"module:attribute"``, imported
on first use (so the command line checks a name without importing JAX), that the one
driver, :func:`mohaq_jax.search.mohaq.run_search`, runs with progress, checkpoints,
resume and a budget in distinct genomes. Multi-objective algorithms search the Pareto
front directly; an evosax strategy enters through the scalarizing wrapper
(:mod:`mohaq_jax.search.evosax_strategies`), which optimizes one objective under the
constraints. A new algorithm is one file and one line here.
"""

from __future__ import annotations

import importlib
from collections.abc import Callable

__all__ = ["ALGORITHMS", "get_algorithm"]

ALGORITHMS: dict[str, str] = {
    "nsga2": "mohaq_jax.search.nsga2:make",
    "moead": "mohaq_jax.search.moead:make",
    "simple_ga": "mohaq_jax.search.evosax_strategies:simple_ga",
    "de": "mohaq_jax.search.evosax_strategies:de",
    "cma_es": "mohaq_jax.search.evosax_strategies:cma_es",
}


def get_algorithm(name: str) -> Callable:
    """The factory ``make(config, upper) -> Algorithm`` registered as ``name``."""
    if name not in ALGORITHMS:
        raise ValueError(
            f"unknown algorithm {name!r}: choose from {', '.join(ALGORITHMS)}"
        )
    module, attribute = ALGORITHMS[name].split(":")
    return getattr(importlib.import_module(module), attribute)
