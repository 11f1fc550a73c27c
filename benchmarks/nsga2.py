"""Generation-step time of our NSGA-II against pymoo 0.6's, 3 objectives.

One generation = ask + evaluation + tell, with offspring = population size, on
DTLZ2 over 10 integer genes of 32 levels (a trivial evaluation: a jitted function for
ours, pymoo's vectorized numpy problem for pymoo). Both use the integer SBX/PM recipe
with eliminated duplicates (ours against the archive of every evaluated genome, pymoo's
against the population). Reports the step time after warm-up (the best of ``--repeats`` means, since other
processes share the CPU) and the ratio, and the compile time of our step (CPU seconds of
this process, default XLA options and :func:`~mohaq_jax.search.compilation.jit_small`'s),
plus that of a whole MOHAQ-sized search (``make_run``, population 40, 10 offspring).

Run: ``python -m benchmarks.nsga2 [--sizes 100 1000] [--steps 10]``.
"""

from __future__ import annotations

import argparse
import time

import jax
import jax.numpy as jnp
import numpy as np

from mohaq_jax.search import compilation, nsga2

N_GENES, LEVELS = 10, 32


def dtlz2(genome: jax.Array) -> jax.Array:
    """DTLZ2, 3 minimized objectives, of one genome of levels in 0..31."""
    x = genome.astype(jnp.float32) / (LEVELS - 1.0)
    g = jnp.sum((x[2:] - 0.5) ** 2)
    # cos(t pi/2) as sin((1 - t) pi/2), exactly 0 at t = 1 in float32.
    sin_a, cos_a = jnp.sin(x[0] * jnp.pi / 2.0), jnp.sin((1.0 - x[0]) * jnp.pi / 2.0)
    sin_b, cos_b = jnp.sin(x[1] * jnp.pi / 2.0), jnp.sin((1.0 - x[1]) * jnp.pi / 2.0)
    return (1.0 + g) * jnp.stack([cos_a * cos_b, cos_a * sin_b, sin_a])


def _compile(fn, *args, fast: bool = False):
    """(compiled, CPU seconds of tracing + compiling) of ``jax.jit(fn)``."""
    start = time.process_time()
    jitted = compilation.jit_small(fn) if fast else jax.jit(fn)
    compiled = jitted.lower(*args).compile()
    return compiled, time.process_time() - start


def compile_times(pop_size: int, n_offspring: int) -> dict[str, float]:
    """CPU seconds to compile a search: the driver's sample/init/ask/tell (default
    options and ``jit_small``) and a whole ``make_run`` scan of 15 generations."""
    strategy = nsga2.NSGA2(pop_size, n_offspring, np.full(N_GENES, LEVELS - 1))
    params = strategy.default_params
    evaluate = jax.jit(jax.vmap(dtlz2))
    key = jax.random.key(0)
    population = strategy.sample(key)
    fitness = evaluate(population)
    state = strategy.init(key, population, fitness, params)
    offspring, _ = strategy.ask(key, state, params)
    out = {}
    for fast in (False, True):
        total = 0.0
        for fn, args in (
            (strategy.sample, (key,)),
            (strategy.init, (key, population, fitness, params)),
            (strategy.ask, (key, state, params)),
            (strategy.tell, (key, offspring, evaluate(offspring), state, params)),
        ):
            total += _compile(fn, *args, fast=fast)[1]
        out["driver_fast" if fast else "driver"] = total
    out["make_run"] = _compile(nsga2.make_run(strategy, dtlz2, 15), key)[1]
    return out


def time_ours(pop_size: int, n_steps: int, n_warmup: int, repeats: int = 3):
    """(best mean seconds per generation (ask + evaluate + tell), compile CPU s)."""
    strategy = nsga2.NSGA2(
        pop_size,
        pop_size,
        np.full(N_GENES, LEVELS - 1),
        archive_size=pop_size * (repeats * n_steps + n_warmup + 1),
    )
    params = strategy.default_params
    evaluate = jax.vmap(dtlz2)

    def step(state, key):
        key_ask, key_tell = jax.random.split(key)
        offspring, state = strategy.ask(key_ask, state, params)
        state, _ = strategy.tell(
            key_tell, offspring, evaluate(offspring), state, params
        )
        return state

    key = jax.random.key(0)
    population = strategy.sample(key)
    state = strategy.init(key, population, evaluate(population), params)
    step, seconds = _compile(step, state, key)
    for i in range(n_warmup):
        state = jax.block_until_ready(step(state, jax.random.fold_in(key, i + 1)))
    best = float("inf")
    for r in range(repeats):
        start = time.perf_counter()
        for i in range(n_steps):
            state = step(state, jax.random.fold_in(key, (r + 1) * 1000 + i))
        jax.block_until_ready(state)
        best = min(best, (time.perf_counter() - start) / n_steps)
    return best, seconds


def time_pymoo(pop_size: int, n_steps: int, n_warmup: int, repeats: int = 3) -> float:
    """Best mean seconds per pymoo ``algorithm.next()`` after warm-up."""
    from pymoo.algorithms.moo.nsga2 import NSGA2
    from pymoo.core.problem import Problem
    from pymoo.operators.crossover.sbx import SBX
    from pymoo.operators.mutation.pm import PM
    from pymoo.operators.repair.rounding import RoundingRepair
    from pymoo.operators.sampling.rnd import IntegerRandomSampling
    from pymoo.problems import get_problem
    from pymoo.termination import get_termination

    class Discretized(Problem):
        def __init__(self):
            self.inner = get_problem("dtlz2", n_var=N_GENES, n_obj=3)
            super().__init__(n_var=N_GENES, n_obj=3, xl=0, xu=LEVELS - 1, vtype=int)

        def _evaluate(self, x, out, *args, **kwargs):
            out["F"] = self.inner.evaluate(x / (LEVELS - 1.0))

    algorithm = NSGA2(
        pop_size=pop_size,
        n_offsprings=pop_size,
        sampling=IntegerRandomSampling(),
        crossover=SBX(prob=1.0, eta=3, vtype=float, repair=RoundingRepair()),
        mutation=PM(eta=3, vtype=float, repair=RoundingRepair()),
        eliminate_duplicates=True,
    )
    algorithm.setup(
        Discretized(),
        termination=get_termination("n_gen", 10**6),
        seed=0,
        verbose=False,
    )
    algorithm.next()  # initial population
    for _ in range(n_warmup):
        algorithm.next()
    best = float("inf")
    for _ in range(repeats):
        start = time.perf_counter()
        for _ in range(n_steps):
            algorithm.next()
        best = min(best, (time.perf_counter() - start) / n_steps)
    return best


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--sizes", type=int, nargs="+", default=[100, 1000])
    parser.add_argument("--steps", type=int, default=10)
    parser.add_argument("--warmup", type=int, default=3)
    parser.add_argument("--repeats", type=int, default=3)
    args = parser.parse_args()
    print(f"device: {jax.devices()[0].device_kind}, {jax.device_count()} device(s)")
    for pop_size, n_offspring in ((40, 10), (100, 100)):
        times = compile_times(pop_size, n_offspring)
        print(
            f"compile (CPU s), pop {pop_size}, {n_offspring} offspring: driver "
            f"sample+init+ask+tell {times['driver']:.2f} (jit_small "
            f"{times['driver_fast']:.2f}), make_run scan {times['make_run']:.2f}"
        )
    print(
        f"{'pop':>6} {'offspring':>9} {'compile s':>9} {'ours ms':>9} {'pymoo ms':>9} "
        f"{'speedup':>8}"
    )
    for pop_size in args.sizes:
        ours, seconds = time_ours(pop_size, args.steps, args.warmup, args.repeats)
        theirs = time_pymoo(pop_size, args.steps, args.warmup, args.repeats)
        print(
            f"{pop_size:>6} {pop_size:>9} {seconds:>9.2f} {1e3 * ours:>9.2f} "
            f"{1e3 * theirs:>9.2f} {theirs / ours:>7.1f}x",
            flush=True,
        )


if __name__ == "__main__":
    main()
