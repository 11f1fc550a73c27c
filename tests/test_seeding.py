"""Seeding the initial population with the uniform genomes."""

import jax
import numpy as np
import pytest

from mohaq_jax.evaluation import genome
from mohaq_jax.models import sru
from mohaq_jax.numerics import quantize
from mohaq_jax.search import nsga2, seeding

#: The paper's topology: 4 SRU layers, projections before layers 2-4, output layer.
PAPER_LIKE = sru.Config(n_features=69, n_classes=39, hidden=8, n_layers=4, n_proj=4)


def _bits(space, genomes):
    """Bits per gene of each genome (independent of the level encoding)."""
    return [
        [space.gene_values[g][level] for g, level in enumerate(row)] for row in genomes
    ]


def test_uniform_genomes_of_silago_are_all_4_8_16():
    space = genome.silago_space(sru.sites(PAPER_LIKE))
    assert space.n_genes == 8  # sru1..4, proj1..3, fc
    uniform = seeding.uniform_genomes(space)
    assert _bits(space, uniform) == [[4] * 8, [8] * 8, [16] * 8]


def test_uniform_genomes_of_the_weights_space_keep_activations_fixed():
    space = genome.weights_space(sru.sites(PAPER_LIKE))
    uniform = seeding.uniform_genomes(space)
    weight_bits = quantize.BIT_OPTIONS[:-1]
    expected = [[b] * 8 + [16] for b in weight_bits]
    assert _bits(space, uniform) == expected


def test_uniform_genomes_of_bitfusion():
    space = genome.bitfusion_space(sru.sites(PAPER_LIKE))
    assert _bits(space, seeding.uniform_genomes(space)) == [
        [b] * space.n_genes for b in (2, 4, 8, 16)
    ]


@pytest.mark.parametrize("space_name", ["silago", "bitfusion", "weights"])
@pytest.mark.parametrize("seed", [0, 7])
def test_seeded_population_holds_every_uniform_genome(space_name, seed):
    space = genome.get_space(space_name, sru.sites(PAPER_LIKE))
    strategy = nsga2.NSGA2(12, 4, space.upper)
    population = np.asarray(strategy.sample(jax.random.key(seed)))
    uniform = seeding.uniform_genomes(space)
    seeded = seeding.seed_uniform(population, uniform)
    assert seeded.shape == population.shape and seeded.dtype == np.int32
    rows = {r.tobytes() for r in seeded}
    assert all(u.tobytes() in rows for u in uniform)
    assert len(rows) == len(seeded)  # still distinct
    # only as many rows changed as uniform genomes were missing
    missing = sum(u.tobytes() not in {r.tobytes() for r in population} for u in uniform)
    assert int(np.any(seeded != population, axis=1).sum()) == missing
    # deterministic: the same random population gives the same seeded one
    np.testing.assert_array_equal(seeded, seeding.seed_uniform(population, uniform))


def test_a_uniform_genome_already_present_is_not_duplicated():
    uniform = np.asarray([[0, 0, 0], [1, 1, 1], [2, 2, 2]], np.int32)
    population = np.asarray([[1, 1, 1], [0, 1, 2], [2, 1, 0], [1, 0, 1]], np.int32)
    seeded = seeding.seed_uniform(population, uniform)
    expected = np.asarray([[1, 1, 1], [0, 1, 2], [2, 2, 2], [0, 0, 0]], np.int32)
    np.testing.assert_array_equal(seeded, expected)
    np.testing.assert_array_equal(population[0], [1, 1, 1])  # input untouched


def test_more_uniform_genomes_than_rows():
    uniform = np.asarray([[0, 0], [1, 1], [2, 2]], np.int32)
    seeded = seeding.seed_uniform(np.asarray([[0, 1], [1, 0]], np.int32), uniform)
    np.testing.assert_array_equal(seeded, [[1, 1], [0, 0]])
