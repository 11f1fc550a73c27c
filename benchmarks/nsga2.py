"""Generation-step time of our NSGA-II against pymoo 0.6's, 3 objectives.

One generation = ask + evaluation + tell, with offspring = population size, on
DTLZ2 over 10 integer genes of 32 levels (a trivial evaluation: a jitted function for
ours, pymoo's vectorized numpy problem for pymoo). Both use the integer SBX/PM recipe
with eliminated duplicates (ours against the archive of every evaluated genome, pymoo's
against the population). Reports the mean step time after warm-up and the ratio.

Run: ``python -m benchmarks.nsga2 [--sizes 100 1000] [--steps 10]``.
"""

from __future__ import annotations

import argparse
import time

import jax
import jax.numpy as jnp
import numpy as np

from mohaq_jax.search import nsga2

N_GENES, LEVELS = 10, 32


def dtlz2(genome: jax.Array) -> jax.Array:
    """DTLZ2, 3 minimized objectives, of one genome of levels in 0..31."""
    x = genome.astype(jnp.float32) / (LEVELS - 1.0)
    g = jnp.sum((x[2:] - 0.5) ** 2)
    # cos(t pi/2) as sin((1 - t) pi/2), exactly 0 at t = 1 in float32.
    sin_a, cos_a = jnp.sin(x[0] * jnp.pi / 2.0), jnp.sin((1.0 - x[0]) * jnp.pi / 2.0)
    sin_b, cos_b = jnp.sin(x[1] * jnp.pi / 2.0), jnp.sin((1.0 - x[1]) * jnp.pi / 2.0)
    return (1.0 + g) * jnp.stack([cos_a * cos_b, cos_a * sin_b, sin_a])


def time_ours(pop_size: int, n_steps: int, n_warmup: int) -> float:
    """Mean seconds per generation (ask + evaluate + tell), jitted, after warm-up."""
    strategy = nsga2.NSGA2(
        pop_size,
        pop_size,
        np.full(N_GENES, LEVELS - 1),
        archive_size=pop_size * (n_steps + n_warmup + 1),
    )
    params = strategy.default_params
    evaluate = jax.vmap(dtlz2)

    @jax.jit
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
    for i in range(n_warmup):
        state = jax.block_until_ready(step(state, jax.random.fold_in(key, i + 1)))
    start = time.perf_counter()
    for i in range(n_steps):
        state = step(state, jax.random.fold_in(key, n_warmup + i + 1))
    jax.block_until_ready(state)
    return (time.perf_counter() - start) / n_steps


def time_pymoo(pop_size: int, n_steps: int, n_warmup: int) -> float:
    """Mean seconds per pymoo ``algorithm.next()`` after warm-up."""
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
    start = time.perf_counter()
    for _ in range(n_steps):
        algorithm.next()
    return (time.perf_counter() - start) / n_steps


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--sizes", type=int, nargs="+", default=[100, 1000])
    parser.add_argument("--steps", type=int, default=10)
    parser.add_argument("--warmup", type=int, default=3)
    args = parser.parse_args()
    print(f"device: {jax.devices()[0].device_kind}, {jax.device_count()} device(s)")
    print(f"{'pop':>6} {'offspring':>9} {'ours ms':>9} {'pymoo ms':>9} {'speedup':>8}")
    for pop_size in args.sizes:
        ours = time_ours(pop_size, args.steps, args.warmup)
        theirs = time_pymoo(pop_size, args.steps, args.warmup)
        print(
            f"{pop_size:>6} {pop_size:>9} {1e3 * ours:>9.2f} {1e3 * theirs:>9.2f} "
            f"{theirs / ours:>7.1f}x"
        )


if __name__ == "__main__":
    main()
