"""Generation-step time of our NSGA-II against pymoo 0.6's, 3 objectives, one CPU.

One generation = ask + evaluation + tell, with offspring = population size, on
DTLZ2 over 10 integer genes of 32 levels (a trivial evaluation: a jitted function for
ours, pymoo's vectorized numpy problem for pymoo). Both use the integer SBX/PM recipe
with eliminated duplicates (ours against the archive of every evaluated genome, pymoo's
against the population and offspring). pymoo runs its own loop (``algorithm.next()``).

Ours is timed two ways, both after warm-up and with the same archive capacity:
  * ``scan``: generations inside one jitted ``lax.scan`` (how :func:`make_run` runs a
    whole search), per generation;
  * ``call``: one jitted step call per generation from Python, the state donated (as
    a driver that evaluates outside jit runs it), dispatch included.
Each figure is the best of ``--repeats`` means (other processes share the CPU); pymoo
is measured in the same run, interleaved with ours, and the ratio uses the same
repeats. Compile times are CPU seconds of this process: the driver's
sample+init+ask+tell (default XLA options and
:func:`~mohaq_jax.search.compilation.jit_small`'s) and a whole ``make_run`` scan (both
options), at MOHAQ's size (population 40, 10 offspring) and population 100.

Run: ``python -m benchmarks.nsga2 [--sizes 100 1000] [--steps 10]``.
"""

from __future__ import annotations

import argparse
import json
import time

import jax
import jax.numpy as jnp
import numpy as np

from benchmarks import readme_figures
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
    """(compiled, CPU seconds, wall seconds) of tracing + compiling ``jax.jit(fn)``.

    CPU seconds add up XLA's compile threads (more than the wall time on 2 cores);
    wall seconds are what a user waits.
    """
    start, wall = time.process_time(), time.perf_counter()
    jitted = compilation.jit_small(fn) if fast else jax.jit(fn)
    compiled = jitted.lower(*args).compile()
    return compiled, time.process_time() - start, time.perf_counter() - wall


def compile_times(pop_size: int, n_offspring: int) -> dict[str, tuple[float, float]]:
    """(CPU, wall) seconds to compile a search: the driver's sample/init/ask/tell and a
    whole ``make_run`` scan of 15 generations, each with default options and
    ``jit_small``."""
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
        cpu = wall = 0.0
        for fn, args in (
            (strategy.sample, (key,)),
            (strategy.init, (key, population, fitness, params)),
            (strategy.ask, (key, state, params)),
            (strategy.tell, (key, offspring, evaluate(offspring), state, params)),
        ):
            _, c, w = _compile(fn, *args, fast=fast)
            cpu, wall = cpu + c, wall + w
        out["driver_fast" if fast else "driver"] = (cpu, wall)
    run = nsga2.make_run(strategy, dtlz2, 15)
    out["make_run"] = _compile(run, key)[1:]
    out["make_run_fast"] = _compile(run, key, fast=True)[1:]
    return out


class Ours:
    """Our generation step at one population size, ready to time."""

    def __init__(self, pop_size: int, archive_generations: int):
        self.strategy = nsga2.NSGA2(
            pop_size,
            pop_size,
            np.full(N_GENES, LEVELS - 1),
            archive_size=pop_size * (archive_generations + 1),
        )
        params = self.strategy.default_params
        evaluate = jax.vmap(dtlz2)

        def step(state, key):
            key_ask, key_tell = jax.random.split(key)
            offspring, state = self.strategy.ask(key_ask, state, params)
            state, _ = self.strategy.tell(
                key_tell, offspring, evaluate(offspring), state, params
            )
            return state

        def steps(state, key, n: int):
            keys = jax.random.split(key, n)
            return jax.lax.scan(lambda s, k: (step(s, k), None), state, keys)[0]

        key = jax.random.key(0)
        population = self.strategy.sample(key)
        self.start = self.strategy.init(key, population, evaluate(population), params)
        self.step = jax.jit(step, donate_argnums=0)
        self.steps = jax.jit(steps, static_argnums=2)
        self.compile_seconds = _compile(step, self.start, key)[2]  # wall

    def time_calls(self, n_steps: int, n_warmup: int, seed: int) -> float:
        """Mean seconds per step called from Python (state donated)."""
        state = jax.tree.map(jnp.copy, self.start)
        keys = list(jax.random.split(jax.random.key(seed), n_warmup + n_steps))
        for key in keys[:n_warmup]:
            state = self.step(state, key)
        jax.block_until_ready(state)
        start = time.perf_counter()
        for key in keys[n_warmup:]:
            state = self.step(state, key)
        jax.block_until_ready(state)
        return (time.perf_counter() - start) / n_steps

    def time_scan(self, n_steps: int, n_warmup: int, seed: int) -> float:
        """Mean seconds per step inside one jitted scan of ``n_steps`` generations."""
        key = jax.random.key(seed)
        state = self.steps(self.start, key, n_warmup)
        jax.block_until_ready(self.steps(state, key, n_steps))  # compile
        start = time.perf_counter()
        jax.block_until_ready(self.steps(state, key, n_steps))
        return (time.perf_counter() - start) / n_steps


class Pymoo:
    """pymoo 0.6's NSGA-II on the same problem and settings, stepped by ``next()``."""

    def __init__(self, pop_size: int):
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

        self.algorithm = NSGA2(
            pop_size=pop_size,
            n_offsprings=pop_size,
            sampling=IntegerRandomSampling(),
            crossover=SBX(prob=1.0, eta=3, vtype=float, repair=RoundingRepair()),
            mutation=PM(eta=3, vtype=float, repair=RoundingRepair()),
            eliminate_duplicates=True,
        )
        self.algorithm.setup(
            Discretized(),
            termination=get_termination("n_gen", 10**6),
            seed=0,
            verbose=False,
        )
        self.algorithm.next()  # initial population

    def time_steps(self, n_steps: int) -> float:
        """Mean seconds per ``algorithm.next()``."""
        start = time.perf_counter()
        for _ in range(n_steps):
            self.algorithm.next()
        return (time.perf_counter() - start) / n_steps


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--sizes", type=int, nargs="+", default=[100, 1000])
    parser.add_argument("--steps", type=int, default=10)
    parser.add_argument("--warmup", type=int, default=3)
    parser.add_argument("--repeats", type=int, default=3)
    parser.add_argument("--no-compile", action="store_true", help="skip compile times")
    parser.add_argument("--json", default=None, help="also write the numbers here")
    args = parser.parse_args()
    results = {"compile": {}, "pop": {}}
    print(f"device: {jax.devices()[0].device_kind}, {jax.device_count()} device(s)")
    if not args.no_compile:
        for pop_size, n_offspring in ((40, 10), (100, 100)):
            seconds = compile_times(pop_size, n_offspring)
            results["compile"][f"pop{pop_size}"] = {
                k: {"cpu_s": c, "wall_s": w} for k, (c, w) in seconds.items()
            }
            t = {k: f"{c:.2f}/{w:.2f}" for k, (c, w) in seconds.items()}
            print(
                f"compile (CPU s/wall s), pop {pop_size}, {n_offspring} offspring: "
                f"driver sample+init+ask+tell {t['driver']} (jit_small "
                f"{t['driver_fast']}), make_run scan {t['make_run']} "
                f"(jit_small {t['make_run_fast']})",
                flush=True,
            )
    print(
        f"{'pop':>6} {'compile s':>9} {'scan ms':>8} {'call ms':>8} {'pymoo ms':>9} "
        f"{'ratio scan':>10} {'ratio call':>10}"
    )
    for pop_size in args.sizes:
        # The archive holds as many generations as the whole timed run of pymoo.
        ours = Ours(pop_size, args.warmup + args.repeats * args.steps)
        theirs = Pymoo(pop_size)
        theirs.time_steps(args.warmup)
        scan, call, pymoo = [], [], []
        for r in range(args.repeats):  # interleaved: load changes hit all three
            scan.append(ours.time_scan(args.steps, args.warmup, r))
            call.append(ours.time_calls(args.steps, args.warmup, r))
            pymoo.append(theirs.time_steps(args.steps))
        scan, call, pymoo = min(scan), min(call), min(pymoo)
        results["pop"][str(pop_size)] = {
            "compile_s": ours.compile_seconds,
            "scan_ms": 1e3 * scan,
            "call_ms": 1e3 * call,
            "pymoo_ms": 1e3 * pymoo,
            "ratio_scan": pymoo / scan,
            "ratio_call": pymoo / call,
        }
        print(
            f"{pop_size:>6} {ours.compile_seconds:>9.2f} {1e3 * scan:>8.3f} "
            f"{1e3 * call:>8.3f} {1e3 * pymoo:>9.2f} {pymoo / scan:>9.1f}x "
            f"{pymoo / call:>9.1f}x",
            flush=True,
        )
    if args.json:
        readme_figures.write_atomic(args.json, json.dumps(results, indent=1) + "\n")


if __name__ == "__main__":
    main()
