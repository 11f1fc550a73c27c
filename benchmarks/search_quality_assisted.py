"""Sensitivity proxy and surrogate-assisted NSGA-II on the true-front referee.

Rows of :mod:`benchmarks.search_quality` (same cached table of all genomes, same
normalized objectives and constraints): plain NSGA-II, NSGA-II seeded with the
sensitivity proxy's Pareto set, NSGA-II with surrogate pre-screening
(:mod:`mohaq_jax.search.surrogate`), and both, at each budget of ``BUDGETS``; the
sensitivity genomes count in every assisted method's budget (they lead its initial
population). Also the proxy's fidelity on every genome of the space (Kendall's tau and
Spearman's rho, :func:`mohaq_jax.search.sensitivity.fidelity`), and the final
surrogate's.
"""

from __future__ import annotations

import jax
import jax.numpy as jnp
import numpy as np

from mohaq_jax.search import nsga2, sensitivity, surrogate

#: budget -> (population, generations) with population + generations x 10 = budget.
BUDGETS = {190: (40, 15), 95: (35, 6)}
N_OFFSPRING = 10

METHODS = {  # name -> options (None: plain NSGA-II)
    "NSGA-II": None,
    "NSGA-II + proxy seeding": surrogate.SurrogateOptions(screen=False),
    "NSGA-II + surrogate": surrogate.SurrogateOptions(seed_proxy=False),
    "NSGA-II + proxy seeding + surrogate": surrogate.SurrogateOptions(),
}


def lookup_problem(upper, metrics, objectives, max_error):
    """(evaluate_fn, fitness_fn) of table look-ups: the referee's problem.

    ``objectives``: normalized ``(n, 3)`` (error objective = error / max_error).
    """
    from benchmarks.search_quality import genome_index  # no import cycle at load

    limit = float(metrics["memory_limit_mb"])
    g_memory = jnp.asarray((metrics["memory_mb"] - limit) / limit, jnp.float32)
    table_o = jnp.asarray(objectives)
    g_error = jnp.asarray((metrics["error"] - max_error) / max_error, jnp.float32)

    def evaluate_fn(genomes):
        rows = genome_index(genomes, upper)
        return table_o[rows], jnp.stack([g_memory[rows], g_error[rows]], axis=1)

    def fitness_fn(genomes, error_objective):
        rows = genome_index(genomes, upper)
        objectives_ = table_o[rows].at[:, 0].set(error_objective)
        # error objective = error / max_error, so g = objective - 1.
        return objectives_, jnp.stack([g_memory[rows], error_objective - 1.0], axis=1)

    return evaluate_fn, fitness_fn


def run_assisted(space, metrics, objectives, max_error, n_seeds, budgets=BUDGETS):
    """{budget: {method: [archive genome indices per seed]}} and surrogate fidelity."""
    from benchmarks.search_quality import genome_index

    upper = space.upper
    evaluate_fn, fitness_fn = lookup_problem(upper, metrics, objectives, max_error)
    keys = jax.vmap(jax.random.key)(jnp.arange(n_seeds))
    rows, model_fidelity = {}, {}
    all_genomes = jnp.asarray(_all_genomes(upper))
    for budget, (pop, generations) in budgets.items():
        rows[budget] = {}
        for name, options in METHODS.items():
            strategy = nsga2.NSGA2(pop, N_OFFSPRING, upper)
            if options is None:
                run = nsga2.make_run(strategy, evaluate_fn, generations, batched=True)
                states, _ = jax.jit(jax.vmap(run))(keys)
                archive = states
            else:
                wrapped = surrogate.assisted(strategy, fitness_fn, options)
                run = surrogate.make_run(wrapped, evaluate_fn, generations)
                states, _ = jax.jit(jax.vmap(run))(keys)
                archive = states.inner
                if options.screen:
                    model_fidelity[(budget, name)] = _model_fidelity(
                        wrapped, states, all_genomes, objectives[:, 0], n_seeds
                    )
            rows[budget][name] = []
            for seed in range(n_seeds):
                count = int(archive.archive_count[seed])
                genomes = np.asarray(archive.archive_genomes[seed][:count])
                index = np.unique(np.asarray(genome_index(genomes, upper)))
                assert len(index) <= budget, (name, budget, len(index))
                rows[budget][name].append(index)
    return rows, model_fidelity


def _model_fidelity(wrapped, states, all_genomes, errors, n_seeds):
    """Kendall tau of each seed's final surrogate on the whole space."""
    taus = []
    for seed in range(n_seeds):
        state = jax.tree.map(lambda x, s=seed: x[s], states)
        mean, _ = wrapped.predict(state, all_genomes)
        taus.append(sensitivity.fidelity(np.asarray(mean), errors)["kendall_tau"])
    return taus


def _all_genomes(upper):
    grids = np.meshgrid(*[np.arange(u + 1) for u in upper], indexing="ij")
    return np.stack([g.reshape(-1) for g in grids], axis=1).astype(np.int32)


def proxy_fidelity(space, metrics) -> tuple[dict, sensitivity.Sensitivity]:
    """The sensitivity proxy (looked up in the table) and its fidelity on all genomes."""
    from benchmarks.search_quality import genome_index

    upper = space.upper
    errors = np.asarray(metrics["error"], np.float64)

    def errors_fn(genomes):
        return errors[np.asarray(genome_index(genomes, upper))]

    stage = sensitivity.measure(upper, errors_fn)
    predicted = sensitivity.predict(stage.proxy, _all_genomes(upper))
    return sensitivity.fidelity(np.asarray(predicted), errors), stage


def lines(shares_by_budget, model_fidelity, fidelity, stage, n_genomes) -> list[str]:
    """Markdown: the HV-share tables per budget and the fidelities."""
    from benchmarks.search_quality import comparison_lines

    out = [
        f"Sensitivity proxy ({len(stage.genomes)} genomes) on all {n_genomes} "
        f"genomes: Kendall tau "
        f"{fidelity['kendall_tau']:.3f}, Spearman {fidelity['spearman']:.3f}.",
        "",
    ]
    for budget, shares in shares_by_budget.items():
        out += comparison_lines(shares, budget, "HV share") + [""]
    for (budget, name), taus in model_fidelity.items():
        taus = np.asarray(taus)
        out.append(
            f"Final surrogate of {name} ({budget} evaluations) on all genomes: "
            f"Kendall tau median {np.median(taus):.3f} ({taus.min():.3f} - "
            f"{taus.max():.3f})."
        )
    return out
