"""Search: NSGA-II (an evosax algorithm), single-objective evosax searches, MOHAQ's
driver and beacons, hypervolume; :func:`enable_compilation_cache` for CLIs."""

from mohaq_jax.search.compilation import enable_compilation_cache

__all__ = ["enable_compilation_cache"]
