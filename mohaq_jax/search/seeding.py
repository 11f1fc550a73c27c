"""Seeding the initial population with the uniform genomes.

A random initial population (MOHAQ, Rashed et al. 2021, Sec. IV: pymoo's integer
random sampling) almost never holds a *uniform* genome, one bit-width on every site,
though those are the natural reference points of a quantization search (all-8-bit is
what most deployments start from, and the compression experiment's uniform sweep
finds points a short search can miss). :func:`seed_uniform` puts every uniform genome
of the space into the population in place of random rows, so the search starts from
them and its front is at least as good as the best of them.

Both functions are pure and deterministic: the same random population gives the same
seeded one.
"""

from __future__ import annotations

import numpy as np

from mohaq_jax.evaluation.genome import GenomeSpace

__all__ = ["seed_problem", "seed_uniform", "uniform_genomes"]


def uniform_genomes(space: GenomeSpace) -> np.ndarray:
    """Every genome with one bit-width on every gene, distinct, ascending bits.

    For each bit value ``b`` that some gene allows, each gene takes the largest of its
    values ``<= b`` (its smallest when none is): in SiLago's space all-4, all-8,
    all-16; in the weights-only space every uniform weight width with the fixed
    activation gene at its one value.

    Returns:
      int32 ``(k, n_genes)`` levels, duplicates removed (first kept).
    """
    all_bits = sorted({b for values in space.gene_values for b in values})
    rows, seen = [], set()
    for bits in all_bits:
        levels = []
        for values in space.gene_values:
            below = [i for i, v in enumerate(values) if v <= bits]
            levels.append(below[-1] if below else 0)
        row = tuple(levels)
        if row not in seen:
            seen.add(row)
            rows.append(row)
    return np.asarray(rows, np.int32).reshape(len(rows), space.n_genes)


def seed_uniform(population, uniform) -> np.ndarray:
    """``population`` with every genome of ``uniform`` in it, replacing random rows.

    Genomes of ``uniform`` already present stay where they are; each missing one
    replaces a row from the end that is not itself a uniform genome, so the rows
    stay distinct when they were. When ``uniform`` has more genomes than the
    population has rows, the first ``len(population)`` of them are used.

    Args:
      population: int ``(n, n_genes)`` initial genomes (e.g. random, distinct).
      uniform: int ``(k, n_genes)`` genomes to put in (:func:`uniform_genomes`).

    Returns:
      int32 ``(n, n_genes)``, a new array.
    """
    out = np.array(population, np.int32, copy=True)
    uniform = np.asarray(uniform, np.int32)[: len(out)]
    keys = [row.tobytes() for row in out]
    wanted = {row.tobytes() for row in uniform}
    missing = [row for row in uniform if row.tobytes() not in set(keys)]
    free = [i for i in range(len(out) - 1, -1, -1) if keys[i] not in wanted]
    for row, slot in zip(missing, free, strict=False):
        out[slot] = row
    return out


def seed_problem(problem, population) -> np.ndarray:
    """:func:`seed_uniform` with the uniform genomes of ``problem.space``."""
    return seed_uniform(population, uniform_genomes(problem.space))
