"""The search algorithms by name: ``--algorithm`` / ``--compare`` choices.

Each entry is a factory ``make(config, upper) -> Algorithm``
(:class:`~mohaq_jax.search.algorithm.Algorithm`) that the one driver,
:func:`mohaq_jax.search.mohaq.run_search`, runs with progress, checkpoints, resume and
a budget in distinct genomes. Multi-objective algorithms search the Pareto front
directly; an evosax strategy enters through the scalarizing wrapper
(:func:`~mohaq_jax.search.scalarized.scalarized`), which optimizes one objective under
the constraints. A new algorithm is one file and one line here.
"""

from __future__ import annotations

import optax
from evosax.algorithms.distribution_based import CMA_ES
from evosax.algorithms.population_based import DifferentialEvolution, SimpleGA

from mohaq_jax.search import moead, nsga2
from mohaq_jax.search.scalarized import (
    distribution_based,
    population_based,
    scalarized,
)

__all__ = ["ALGORITHMS"]

ALGORITHMS = {
    "nsga2": nsga2.make,
    "moead": moead.make,
    "simple_ga": scalarized(
        population_based(SimpleGA, std_schedule=optax.constant_schedule(1.0))
    ),
    "de": scalarized(population_based(DifferentialEvolution)),
    "cma_es": scalarized(distribution_based(CMA_ES)),
}
