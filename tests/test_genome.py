"""Genome spaces: derived sites, decoding, validation."""

import jax
import numpy as np
import pytest

from mohaq_jax.evaluation import genome
from mohaq_jax.models import sru


@pytest.fixture
def paper_layers():
    return sru.sites(sru.paper_config())


def test_bitfusion_gene_order_matches_paper(paper_layers):
    space = genome.bitfusion_space(paper_layers)
    assert space.gene_names == (
        "w_sru1",
        "w_sru2",
        "w_sru3",
        "w_sru4",
        "a_sru1",
        "a_sru2",
        "a_sru3",
        "a_sru4",
        "w_proj1",
        "w_proj2",
        "w_proj3",
        "a_proj1",
        "a_proj2",
        "a_proj3",
        "w_fc",
        "a_fc",
    )
    levels = np.arange(16) % 4  # gene g gets level g % 4 -> bits (2, 4, 8, 16)[g % 4]
    bits_w, bits_a = space.decode(levels)
    values = (2, 4, 8, 16)
    # forward layer order: sru1 proj1 sru2 proj2 sru3 proj3 sru4 fc
    names = [s.name for s in paper_layers]
    expect_w = [values[space.gene_names.index(f"w_{n}") % 4] for n in names]
    expect_a = [values[space.gene_names.index(f"a_{n}") % 4] for n in names]
    np.testing.assert_array_equal(bits_w, expect_w)
    np.testing.assert_array_equal(bits_a, expect_a)


def test_silago_ties_weights_and_activations(paper_layers):
    space = genome.silago_space(paper_layers)
    assert space.n_genes == 8
    g = np.asarray([0, 1, 2, 0, 1, 2, 0, 1])
    bits_w, bits_a = space.decode(g)
    np.testing.assert_array_equal(bits_w, bits_a)
    assert space.describe(g)["sru1"] == {"w": 4, "a": 4}
    assert space.describe(g)["proj1"] == {"w": 8, "a": 8}  # gene 4 = proj1
    assert 2 not in {b for v in space.gene_values for b in v}


def test_decode_vmaps_over_population(paper_layers):
    space = genome.bitfusion_space(paper_layers)
    pop = np.random.default_rng(0).integers(0, 4, (5, 16))
    bw, ba = jax.vmap(space.decode)(pop)
    for i in range(5):
        w_i, a_i = space.decode(pop[i])
        np.testing.assert_array_equal(bw[i], w_i)
        np.testing.assert_array_equal(ba[i], a_i)


def test_encode_uniform_roundtrip(paper_layers):
    space = genome.bitfusion_space(paper_layers)
    g = space.uniform(8)
    assert set(space.describe(g)["fc"].values()) == {8}
    with pytest.raises(ValueError, match="cannot take 3 bits"):
        space.uniform(3)


@pytest.mark.parametrize(
    "bad,match",
    [
        (np.zeros(7, int), "length 8"),
        (np.zeros((2, 9), int), "length 8"),
        (np.asarray([0, 0, 0, 3, 0, 0, 0, 0]), "gene sru4 of genome 0 is 3"),
        (np.asarray([0, 0, 0, 0, 0, 0, 0, -1]), "gene fc"),
        (np.full(8, 0.5), "integer"),
    ],
)
def test_validate_rejects_bad_genomes(paper_layers, bad, match):
    space = genome.silago_space(paper_layers)
    with pytest.raises(ValueError, match=match):
        space.validate(bad)


def test_registry_and_custom_space(paper_layers):
    assert set(genome.SPACES) >= {"silago", "bitfusion"}
    with pytest.raises(ValueError, match="unknown genome space"):
        genome.get_space("tpu", paper_layers)
    custom = genome.tied_space(paper_layers, (2, 3, 4), "my24")
    assert custom.bits_table.max() == 4
    with pytest.raises(ValueError, match="unsupported bit-width 7"):
        genome.tied_space(paper_layers, (4, 7), "bad")
