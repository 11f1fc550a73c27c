"""Per-site sensitivity: each gene's error increase at each of its levels alone.

The tools practitioners use (AIMET AMP, HAWQ, NVIDIA ModelOpt ``auto_quantize``, Sony
MCT) start with a per-layer sensitivity stage; here it is one batched pass through the
population evaluator: the all-highest genome (every gene at its top level, MOHAQ's
16-bit model) and, for every gene ``i`` and every level ``l`` below its top, the genome
with gene ``i`` at ``l`` and every other gene at its top level: ``1 + sum(upper)``
genomes (17 for the 8-gene SiLago space). Its **additive proxy** predicts any genome's
error as the all-highest genome's error plus the sum of its genes' increases. How well
that ranks real genomes is measured, not assumed: :func:`fidelity` gives Kendall's tau
and Spearman's rho between predicted and measured errors (scipy), on a search's archive
or on a whole space.

Errors are minimized; an increase is ``error(gene i at l) - error(all highest)``, and
a gene at its top level adds 0.
"""

from __future__ import annotations

import dataclasses
import time
from collections.abc import Callable

import jax
import jax.numpy as jnp
import numpy as np
from flax import struct

__all__ = [
    "Proxy",
    "fidelity",
    "fit_proxy",
    "genomes",
    "measure",
    "predict",
    "proxy_from_population",
]


@struct.dataclass
class Proxy:
    """The additive error model of a sensitivity stage."""

    base: jax.Array  # shape=(), float32 error of the all-highest genome
    increase: jax.Array  # shape=(n_genes, max_levels), float32; 0 at the top level


def genomes(upper) -> np.ndarray:
    """The sensitivity genomes: all-highest first, then gene by gene, level by level.

    Args:
      upper: int ``(n_genes,)`` top level of each gene.

    Returns:
      int32 ``(1 + sum(upper), n_genes)``: row 0 is ``upper``; then for gene ``i`` and
      level ``l = 0 .. upper[i] - 1``, ``upper`` with gene ``i`` set to ``l``.
    """
    upper = np.asarray(upper, np.int32)
    rows = [upper.copy()]
    for gene, top in enumerate(upper):
        for level in range(int(top)):
            row = upper.copy()
            row[gene] = level
            rows.append(row)
    return np.stack(rows).astype(np.int32)


def fit_proxy(upper, errors) -> Proxy:
    """The additive proxy from the errors of :func:`genomes` (same order).

    Args:
      upper: int ``(n_genes,)``.
      errors: float ``(1 + sum(upper),)`` measured errors of :func:`genomes`.

    Returns:
      :class:`Proxy`; traceable (``upper`` is static).
    """
    upper = np.asarray(upper, np.int32)
    errors = jnp.asarray(errors, jnp.float32)
    base = errors[0]
    increase = jnp.zeros((upper.size, int(upper.max()) + 1), jnp.float32)
    row = 1
    for gene, top in enumerate(upper):
        top = int(top)
        increase = increase.at[gene, :top].set(errors[row : row + top] - base)
        row += top
    return Proxy(base=base, increase=increase)


def predict(proxy: Proxy, genomes_) -> jax.Array:
    """Additive prediction ``base + sum_i increase[i, genome[i]]``, float32 ``(n,)``."""
    genomes_ = jnp.asarray(genomes_, jnp.int32)
    gene = jnp.arange(genomes_.shape[1])
    return proxy.base + proxy.increase[gene[None, :], genomes_].sum(axis=1)


def proxy_from_population(upper, population, errors) -> tuple[Proxy, jax.Array]:
    """The proxy from a population that holds the sensitivity genomes (any order).

    Traceable. Returns ``(proxy, found)``: ``found`` is False when some sensitivity
    genome is missing from ``population`` (its increase then reads 0).
    """
    wanted = jnp.asarray(genomes(upper))
    population = jnp.asarray(population, jnp.int32)
    same = jnp.all(wanted[:, None, :] == population[None, :, :], axis=-1)
    present = jnp.any(same, axis=1)
    row_errors = jnp.asarray(errors, jnp.float32)[jnp.argmax(same, axis=1)]
    base = jnp.where(present[0], row_errors[0], 0.0)
    row_errors = jnp.where(present, row_errors, base)
    return fit_proxy(upper, row_errors), jnp.all(present)


def fidelity(predicted, measured) -> dict[str, float]:
    """How well a prediction ranks measured errors.

    Args:
      predicted, measured: float ``(n,)``.

    Returns:
      ``kendall_tau`` (tau-b), ``spearman`` and their p-values (scipy.stats), ``n``;
      NaN with fewer than 3 points or a constant input.
    """
    from scipy import stats  # only the reports need it

    predicted = np.asarray(predicted, np.float64)
    measured = np.asarray(measured, np.float64)
    n = int(predicted.size)
    nan = float("nan")
    if n < 3 or np.ptp(predicted) == 0 or np.ptp(measured) == 0:
        return {"kendall_tau": nan, "kendall_p": nan, "spearman": nan,
                "spearman_p": nan, "n": n}  # fmt: skip
    tau = stats.kendalltau(predicted, measured)
    rho = stats.spearmanr(predicted, measured)
    return {
        "kendall_tau": float(tau.statistic),
        "kendall_p": float(tau.pvalue),
        "spearman": float(rho.statistic),
        "spearman_p": float(rho.pvalue),
        "n": n,
    }


@dataclasses.dataclass(frozen=True)
class Sensitivity:
    """A measured sensitivity stage (host side, raw error units)."""

    genomes: np.ndarray  # shape=(1 + sum(upper), n_genes) int32, :func:`genomes`
    errors: np.ndarray  # shape=(1 + sum(upper),) float, measured
    proxy: Proxy
    seconds: float  # wall time of the measurement (0 when looked up)


def measure(upper, errors_fn: Callable[[np.ndarray], np.ndarray]) -> Sensitivity:
    """Runs the sensitivity stage: one call of ``errors_fn`` on :func:`genomes`.

    Args:
      upper: int ``(n_genes,)``.
      errors_fn: genomes ``(n, n_genes)`` -> errors ``(n,)`` (e.g. a problem's
        error metric through its cached, batched evaluator).
    """
    rows = genomes(upper)
    start = time.perf_counter()
    errors = np.asarray(errors_fn(rows), np.float64)
    seconds = time.perf_counter() - start
    return Sensitivity(rows, errors, fit_proxy(upper, errors), seconds)
