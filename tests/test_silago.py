"""SiLago cost model: hand-computed cases on the paper's model and the authors' code."""

import jax.numpy as jnp
import numpy as np
import pytest
from hypothesis import given, settings
from hypothesis import strategies as st

from mohaq_jax.evaluation import genome
from mohaq_jax.hardware import base, silago
from mohaq_jax.models import sru
from mohaq_jax.models.sru import paper_config

LAYERS = sru.sites(paper_config())
SPACE = genome.silago_space(LAYERS)  # genes [sru1..4, proj1..3, fc]
COST = silago.PLATFORM.make_cost_fn(SPACE)

# name, bits per gene [sru1, sru2, sru3, sru4, proj1, proj2, proj3, fc], expected.
CASES = [
    (
        # Σ MACs = Σ weights = 5 549 500; memory bits = 16 x 5 549 500 + 16 x 8 800
        # = 88 932 800 -> / 8 / 2**20 = 10.601616 MB; energy = 5 549 500 x 1.666
        # + 88 932 800 x 0.08 = 9 245 467 + 7 114 624 = 16 360 091 pJ.
        "all_16",
        [16] * 8,
        dict(
            speedup=1.0,
            speedup_mac_weighted=1.0,
            memory_mb=10.601616,
            energy_pj=16_360_091.0,
        ),
    ),
    (
        # bits = 4 x 5 549 500 + 140 800 = 22 338 800 -> 2.662992 MB; energy =
        # 5 549 500 x 0.613 / 4 + 22 338 800 x 0.08 = 850 460.875 + 1 787 104.
        "all_4",
        [4] * 8,
        dict(
            speedup=4.0,
            speedup_mac_weighted=4.0,
            memory_mb=2.662992,
            energy_pj=2_637_564.875,
        ),
    ),
    (
        # sru1 16, sru2-4 4, proj 8, fc 8.
        # time = 75 900 / 1 + 3 x 844 800 / 4 + 3 x 281 600 / 2 + 2 094 400 / 2
        #      = 75 900 + 633 600 + 422 400 + 1 047 200 = 2 179 100
        # speedup = 5 549 500 / 2 179 100 = 2.546694
        # MAC-weighted = (75 900 + 4 x 2 534 400 + 2 x 844 800 + 2 x 2 094 400)
        #      / 5 549 500 = 16 091 900 / 5 549 500 = 2.899703
        # bits = 16 x 75 900 + 4 x 2 534 400 + 8 x (844 800 + 2 094 400) + 140 800
        #      = 35 006 400 -> 4.173088 MB
        # energy = 75 900 x 1.666 + 2 534 400 x 0.15325 + 2 939 200 x 0.542
        #      + 35 006 400 x 0.08 = 2 107 892.6 + 2 800 512 = 4 908 404.6 pJ
        "mixed",
        [16, 4, 4, 4, 8, 8, 8, 8],
        dict(
            speedup=2.546694,
            speedup_mac_weighted=2.899703,
            memory_mb=4.173088,
            energy_pj=4_908_404.6,
        ),
    ),
]


@pytest.mark.parametrize("name,bits,expected", CASES, ids=[c[0] for c in CASES])
def test_paper_model_by_hand(name, bits, expected):
    genome_ = SPACE.encode(dict(zip(SPACE.gene_names, bits, strict=True)))
    out = COST(jnp.asarray(genome_))
    for key, value in expected.items():
        np.testing.assert_allclose(out[key], value, rtol=2e-6, err_msg=key)


def _authors(bits8):
    """The authors' objectives (optimize_silago.py, optimization_utils.py) verbatim,
    with their hard-coded MAC counts, except the speedup denominator: the sum of
    those counts (5 549 500), not their 5 637 500."""
    speed = {16: 1, 8: 2, 4: 4}
    energy = {16: 1.666, 8: 1.084 / 2, 4: 0.613 / 4}
    macs = [75900, 844800, 844800, 844800, 281600, 281600, 281600, 2094400]
    x = bits8
    mem = (
        (
            x[0] * 75900
            + x[1] * 844800
            + x[2] * 844800
            + x[3] * 844800
            + x[4] * 281600
            + x[5] * 281600
            + x[6] * 281600
            + x[7] * 2094400
            + 8800 * 16
        )
        / 8
        / 1024
        / 1024
    )
    f2 = sum(m * speed[b] for m, b in zip(macs, x, strict=True)) / 5549500
    f3 = mem * 8 * 1024 * 1024 * 0.08 + sum(
        m * energy[b] for m, b in zip(macs, x, strict=True)
    )
    return dict(memory_mb=mem, speedup_mac_weighted=f2, energy_pj=f3)


@settings(max_examples=30, deadline=None)
@given(st.lists(st.sampled_from([4, 8, 16]), min_size=8, max_size=8))
def test_matches_the_authors_hard_coded_formulas(bits):
    # The SiLago space orders genes as the authors' 8 chromosomes.
    assert SPACE.gene_names == (
        "sru1",
        "sru2",
        "sru3",
        "sru4",
        "proj1",
        "proj2",
        "proj3",
        "fc",
    )
    out = COST(
        jnp.asarray(SPACE.encode(dict(zip(SPACE.gene_names, bits, strict=True))))
    )
    for key, value in _authors(bits).items():
        np.testing.assert_allclose(out[key], value, rtol=2e-6, err_msg=key)


def test_authors_reported_speedup_uses_their_total():
    # Their code divides by 5 637 500: all-16 would print 5 549 500 / 5 637 500.
    out = COST(jnp.asarray(SPACE.uniform(16)))
    reported = float(out["speedup_mac_weighted"]) * 5_549_500 / 5_637_500
    np.testing.assert_allclose(reported, 0.984390, rtol=1e-6)


def test_untied_bits_run_at_the_wider_mode():
    layers = base.layer_arrays(LAYERS)
    bits_w = jnp.asarray([4] * 8, jnp.int32)
    bits_a = jnp.asarray([16] + [4] * 7, jnp.int32)
    out = silago.costs(bits_w, bits_a, layers, silago.SPEC)
    # sru1 runs at 16 bits: time = 75 900 + (5 549 500 - 75 900) / 4.
    np.testing.assert_allclose(
        out["speedup"], 5_549_500 / (75_900 + 5_473_600 / 4), rtol=1e-6
    )
    # ... but its weights are stored at 4 bits.
    np.testing.assert_allclose(out["memory_mb"], 2.662992, rtol=1e-6)


def test_counting_more_biases_is_a_spec_choice():
    spec = silago.SiLagoSpec(all_biases=True, count_vectors=True)
    out = silago.costs(
        jnp.full(8, 16), jnp.full(8, 16), base.layer_arrays(LAYERS), spec
    )
    # + 1 904 fc biases + 8 800 SRU vectors, at 16 bits.
    bits = 16 * 5_549_500 + 16 * (8_800 + 1_904 + 8_800)
    np.testing.assert_allclose(out["memory_mb"], bits / 8 / 2**20, rtol=1e-6)


def test_two_bits_is_rejected_outside_jit():
    space2 = genome.tied_space(LAYERS, (2, 4, 8, 16), "silago2")
    with pytest.raises(ValueError, match="2-bit weights, which platform 'silago'"):
        silago.PLATFORM.make_cost_fn(space2)
