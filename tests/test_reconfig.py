"""2-4-bit reconfigurable PE model: energy table, extra-bit index, compression."""

import dataclasses
import functools

import jax
import jax.numpy as jnp
import numpy as np
import pytest
from hypothesis import given, settings
from hypothesis import strategies as st

from mohaq_jax.evaluation import genome
from mohaq_jax.hardware import reconfig
from mohaq_jax.models import sru
from mohaq_jax.models.sru import paper_config

LAYERS = sru.sites(paper_config())
# 1 pJ per relative MAC unit and per weight bit, so hand sums read directly.
UNIT = dataclasses.replace(reconfig.SPEC, mac4_energy_pj=1.0, weight_mem_pj_per_bit=1.0)


def test_default_table_relative_to_uniform_4():
    # e(w, a) = 0.25 + 0.75 w a / 16: 4 x 4 -> 1, 2 x 2 -> 0.4375, 5 x 4 -> 1.1875,
    # 3 x 2 -> 0.25 + 0.75 x 6 / 16 = 0.53125.
    e = reconfig.mac_energy_rel(
        jnp.asarray([4, 2, 5, 3]), jnp.asarray([4, 2, 4, 2]), reconfig.SPEC
    )
    np.testing.assert_allclose(e, [1.0, 0.4375, 1.1875, 0.53125], rtol=1e-6)


@pytest.mark.parametrize(
    "testcase_name,n,f,expected",
    [
        ("no_extra", 1024.0, 0.0, 0.0),
        # 10.24 positions x ceil(log2 1024) = 10 bits = 102.4 < 1 024 flag bits.
        ("sparse_cheaper", 1024.0, 0.01, 102.4),
        # 512 positions x 10 bits = 5 120 > 1 024: a 1-bit flag per weight.
        ("flag_cheaper", 1024.0, 0.5, 1024.0),
        # ceil(log2 1000) = 10: 50 x 10 = 500.
        ("not_a_power_of_two", 1000.0, 0.05, 500.0),
        # ceil(log2 1025) = 11: 10 x 11 = 110.
        ("one_past_a_power", 1025.0, 10 / 1025, 110.0),
    ],
)
def test_index_bits(testcase_name, n, f, expected):
    np.testing.assert_allclose(
        reconfig.index_bits(jnp.float32(n), jnp.float32(f)), expected, rtol=1e-6
    )


def test_two_layers_by_hand():
    # Layer 1: 1 000 weights, 1 000 MACs, w2/a4, 5 % extra-bit weights.
    # Layer 2:   100 weights,   100 MACs, w4/a3, none.
    # MAC energy: 1 000 x (0.95 x e(2,4) + 0.05 x e(3,4)) + 100 x e(4,3)
    #   = 1 000 x (0.95 x 0.625 + 0.05 x 0.8125) + 100 x 0.8125 = 634.375 + 81.25
    # Weight bits: 2 000 + 50 extra + 500 index (50 x 10 < 1 000) + 400 = 2 950
    # Energy = 715.625 + 2 950 = 3 665.625; uniform 4: 1 100 x 1 + 4 400 = 5 500
    out = reconfig.costs(
        n_weights=jnp.asarray([1000.0, 100.0]),
        macs=jnp.asarray([1000.0, 100.0]),
        w_bits=jnp.asarray([2, 4]),
        a_bits=jnp.asarray([4, 3]),
        extra_fraction=jnp.asarray([0.05, 0.0]),
        spec=UNIT,
    )
    np.testing.assert_allclose(out["energy_mac_pj"], 715.625, rtol=1e-6)
    np.testing.assert_allclose(out["weight_bits_total"], 2_950.0, rtol=1e-6)
    np.testing.assert_allclose(out["index_bits_total"], 500.0, rtol=1e-6)
    np.testing.assert_allclose(out["energy_pj"], 3_665.625, rtol=1e-6)
    np.testing.assert_allclose(out["energy_rel_uniform4"], 3_665.625 / 5_500, rtol=1e-6)
    np.testing.assert_allclose(out["compression_vs_uniform4"], 4_400 / 2_950, rtol=1e-6)
    np.testing.assert_allclose(out["compression_vs_float32"], 35_200 / 2_950, rtol=1e-6)


def test_uniform_4_on_the_paper_model():
    space = genome.get_space("reconfig", LAYERS)
    out = reconfig.PLATFORM.evaluate(space, space.uniform(4))
    np.testing.assert_allclose(out["energy_rel_uniform4"], 1.0, rtol=1e-6)
    np.testing.assert_allclose(out["compression_vs_uniform4"], 1.0, rtol=1e-6)
    np.testing.assert_allclose(out["compression_vs_float32"], 8.0, rtol=1e-6)
    # 4 x 5 549 500 + 16 x 8 800 bits, as SiLago/Bitfusion at 4 bits.
    np.testing.assert_allclose(out["memory_mb"], 2.662992, rtol=1e-6)


def test_measured_fractions_per_layer_reach_the_cost():
    space = genome.get_space("reconfig", LAYERS)
    frac = np.linspace(0.0, 0.2, len(LAYERS)).astype(np.float32)
    cost = jax.jit(reconfig.PLATFORM.make_cost_fn(space, extra_fraction=frac))
    plain = jax.jit(reconfig.PLATFORM.make_cost_fn(space))
    g = jnp.asarray(space.uniform(3))
    assert float(cost(g)["energy_pj"]) > float(plain(g)["energy_pj"])
    assert float(cost(g)["compression_vs_uniform4"]) < float(
        plain(g)["compression_vs_uniform4"]
    )
    with pytest.raises(ValueError, match="one value per layer"):
        reconfig.PLATFORM.make_cost_fn(space, extra_fraction=frac[:3])
    with pytest.raises(ValueError, match=r"\[0, 1\]"):
        reconfig.PLATFORM.make_cost_fn(space, extra_fraction=frac + 1.0)


_jit_costs = jax.jit(functools.partial(reconfig.costs, spec=reconfig.SPEC))


@settings(max_examples=30, deadline=None)
@given(
    st.lists(st.sampled_from([2, 3, 4]), min_size=3, max_size=3),
    st.lists(st.sampled_from([2, 3, 4]), min_size=3, max_size=3),
    st.lists(st.floats(0.0, 1.0, width=32), min_size=3, max_size=3),
    st.integers(0, 2),
    st.floats(0.0, 1.0, width=32),
)
def test_fewer_bits_or_fewer_extra_weights_never_cost_more(w, a, f, layer, f_low):
    n = jnp.asarray([300.0, 5_000.0, 64.0])
    macs = jnp.asarray([300.0, 5_000.0, 64.0])

    def run(w_, a_, f_):
        return _jit_costs(
            n,
            macs,
            jnp.asarray(w_),
            jnp.asarray(a_),
            jnp.asarray(f_, jnp.float32),
        )

    base = run(w, a, f)
    w_low = list(w)
    w_low[layer] = 2
    f_less = list(f)
    f_less[layer] = min(f_low, f[layer])
    for lower in (run(w_low, a, f), run(w, [2] * 3, f), run(w, a, f_less)):
        assert float(lower["energy_pj"]) <= float(base["energy_pj"]) * (1 + 1e-6)
        assert float(lower["weight_bits_total"]) <= float(base["weight_bits_total"]) * (
            1 + 1e-6
        )


def test_rejects_spaces_outside_2_to_4_bits():
    with pytest.raises(ValueError, match="8-bit weights, which platform 'reconfig'"):
        reconfig.PLATFORM.make_cost_fn(genome.bitfusion_space(LAYERS))


def test_spec_checks_its_table():
    with pytest.raises(ValueError, match="must not decrease"):
        reconfig.ReconfigSpec(mac_energy_rel=((1.0, 0.5, 1.0),) * 4)
    with pytest.raises(ValueError, match="does not cover"):
        reconfig.ReconfigSpec(bits=(2, 3, 4, 5))
