"""Search: the algorithm registry (NSGA-II, MOEA/D, evosax strategies through a
scalarizing wrapper) and its one driver, beacons, hypervolume;
:func:`enable_compilation_cache` for CLIs.

Importing the package imports no JAX (the command line reads the algorithm
registry, :mod:`mohaq_jax.search.algorithms`, before any flag is accepted)."""

__all__ = ["enable_compilation_cache"]


def __getattr__(name):
    if name == "enable_compilation_cache":
        from mohaq_jax.search.compilation import enable_compilation_cache

        return enable_compilation_cache
    raise AttributeError(f"module 'mohaq_jax.search' has no attribute {name!r}")
