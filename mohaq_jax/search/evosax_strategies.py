"""evosax's strategies as search algorithms, through the scalarizing wrapper.

Each is a factory ``make(config, upper) -> Algorithm`` registered by name in
:data:`mohaq_jax.search.algorithms.ALGORITHMS`: the wrapper
(:func:`~mohaq_jax.search.scalarized.scalarized`) folds the constrained search into one
objective, and ``population_based`` / ``distribution_based`` adapt evosax's two
``init`` signatures.
"""

from __future__ import annotations

import optax
from evosax.algorithms.distribution_based import CMA_ES
from evosax.algorithms.population_based import DifferentialEvolution, SimpleGA

from mohaq_jax.search.scalarized import (
    distribution_based,
    population_based,
    scalarized,
)

__all__ = ["cma_es", "de", "simple_ga"]

simple_ga = scalarized(
    population_based(SimpleGA, std_schedule=optax.constant_schedule(1.0))
)
de = scalarized(population_based(DifferentialEvolution))
cma_es = scalarized(distribution_based(CMA_ES))
