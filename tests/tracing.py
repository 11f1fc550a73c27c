"""A compile counter of the tests' own (JAX's cache counters are private)."""

import jax


def counting_jit(jitted):
    """A fresh ``jax.jit`` of the function under ``jitted``, and the list of its traces.

    A trace is one compilation (one per new argument shape); the list is this test's
    own, so the count does not depend on what other tests compiled before (JAX's
    private cache counters do). Each trace appends the shapes of its arguments.
    """
    inner = jitted.__wrapped__
    traces = []

    def counted(*args):
        traces.append(jax.tree.map(lambda x: getattr(x, "shape", None), args))
        return inner(*args)

    return jax.jit(counted), traces
