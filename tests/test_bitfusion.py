"""Bitfusion cost model: the simulator's cycle formula and hand-computed cases."""

import dataclasses
import math

import jax.numpy as jnp
import numpy as np
import pytest
from hypothesis import given, settings
from hypothesis import strategies as st

from mohaq_jax.evaluation import genome
from mohaq_jax.hardware import base, bitfusion
from mohaq_jax.models import sru
from mohaq_jax.models.sru import paper_config

LAYERS = sru.sites(paper_config())
ARRAYS = base.layer_arrays(LAYERS)
SPACE = genome.bitfusion_space(LAYERS)
COST = bitfusion.PLATFORM.make_cost_fn(SPACE)


def _genome(w, a):
    """Genome from per-layer dicts of weight / activation bits."""
    bits = {f"w_{k}": v for k, v in w.items()} | {f"a_{k}": v for k, v in a.items()}
    return jnp.asarray(SPACE.encode(bits))


def _uniform(w_bits, a_bits):
    names = [spec.name for spec in LAYERS]
    return _genome(dict.fromkeys(names, w_bits), dict.fromkeys(names, a_bits))


def _simulator_cycles(ic, oc, iprec, wprec, n=16, m=32, pmax=16, pmin=2):
    """hsharma35/bitfusion accelerator.py get_compute_cycles (im2col, b = 1)."""
    perf = int(pmax / max(iprec, pmin)) * int(pmax / max(wprec, pmin))
    return math.ceil(oc / m) * math.ceil(ic / (n * perf))


@settings(max_examples=30, deadline=None)
@given(st.lists(st.sampled_from([2, 4, 8, 16]), min_size=16, max_size=16))
def test_cycles_match_the_simulator_formula_at_pmax_16(bits):
    # With high_prec = 16 there is no temporal fusion: the formula exactly.
    spec = dataclasses.replace(bitfusion.SPEC, high_prec=16)
    w, a = np.asarray(bits[:8]), np.asarray(bits[8:])
    cycles, _ = bitfusion.layer_cycles(jnp.asarray(w), jnp.asarray(a), ARRAYS, spec)
    expected = [
        _simulator_cycles(s.n_in, s.n_out, int(ai), int(wi))
        for s, wi, ai in zip(LAYERS, w, a, strict=True)
    ]
    np.testing.assert_array_equal(cycles, expected)


@settings(max_examples=30, deadline=None)
@given(st.lists(st.sampled_from([2, 4, 8]), min_size=16, max_size=16))
def test_cycles_match_the_simulator_at_its_released_pmax_8(bits):
    w, a = np.asarray(bits[:8]), np.asarray(bits[8:])
    cycles, _ = bitfusion.layer_cycles(
        jnp.asarray(w), jnp.asarray(a), ARRAYS, bitfusion.SPEC
    )
    expected = [
        _simulator_cycles(s.n_in, s.n_out, int(ai), int(wi), pmax=8)
        for s, wi, ai in zip(LAYERS, w, a, strict=True)
    ]
    np.testing.assert_array_equal(cycles, expected)


def test_all_16_by_hand():
    # Cycles, N x M = 16 x 32, 16-bit operands = 2 x 2 passes of the 8-bit array:
    #   sru1  ceil(3300/32) = 104 x ceil(23/16) = 2    x 4 =    832
    #   proj  ceil(256/32)  =   8 x ceil(1100/16) = 69 x 4 =  2 208 (x 3)
    #   sru   104 x ceil(256/16) = 16                  x 4 =  6 656 (x 3)
    #   fc    ceil(1904/32) = 60 x 69                  x 4 = 16 560
    #   total 832 + 6 624 + 19 968 + 16 560 = 43 984
    # Energy per frame (pJ):
    #   core   43 984 x 235.104                                   = 10 340 814.3
    #   WBUF   88 792 000 weight bits x (0.029 / 100 + 0.021)      =  1 890 381.68
    #   IBUF   83 056 input bits x 0.114 (write)                   =      9 468.38
    #          2 794 624 input bits x output tiles x 0.059 (read)  =    164 882.82
    #   OBUF   11 179 648 psum bits x (0.033 + 0.073)              =  1 185 042.69
    #   DRAM   (887 920 + 83 056 + 15 872 x 16) bits x 15          = 18 373 920
    #   total                                                      = 31 964 509.9
    out = COST(_uniform(16, 16))
    np.testing.assert_allclose(out["cycles"], 43_984)
    for key in ("speedup", "speedup_cycles", "speedup_formula", "speedup_mac_weighted"):
        np.testing.assert_allclose(out[key], 1.0, rtol=1e-6)
    np.testing.assert_allclose(out["energy_core_pj"], 10_340_814.3, rtol=1e-6)
    np.testing.assert_allclose(out["energy_buffer_pj"], 3_249_775.57, rtol=1e-5)
    np.testing.assert_allclose(out["energy_dram_pj"], 18_373_920, rtol=1e-6)
    np.testing.assert_allclose(out["energy_pj"], 31_964_509.9, rtol=1e-5)
    np.testing.assert_allclose(out["memory_mb"], 10.601616, rtol=1e-6)


def test_all_2_by_hand():
    # perf = 4 x 4 = 16: sru1 104 x 1, proj 8 x ceil(1100/256) = 5, sru 104 x 1,
    # fc 60 x 5: 104 + 3 x 40 + 3 x 104 + 300 = 836 cycles; 43 984 / 836 = 52.612.
    out = COST(_uniform(2, 2))
    np.testing.assert_allclose(out["cycles"], 836)
    np.testing.assert_allclose(out["speedup_cycles"], 43_984 / 836, rtol=1e-6)
    np.testing.assert_allclose(out["speedup_formula"], 64.0, rtol=1e-6)
    # (2 x 5 549 500 + 16 x 8 800) / 8 / 2**20
    np.testing.assert_allclose(out["memory_mb"], 1.339889, rtol=1e-6)


def test_mixed_by_hand():
    # SRU layers w4/a8, projections w2/a2, fc w8/a4.
    # 256/(w a): sru 8, proj 64, fc 8.
    #   time = 75 900/8 + 2 534 400/8 + 844 800/64 + 2 094 400/8 = 601 287.5
    #   speedup_formula = 5 549 500 / 601 287.5 = 9.229362
    #   MAC-weighted = (8 x 4 704 700 + 64 x 844 800) / 5 549 500 = 16.524876
    # Cycles (perf sru 2 x 1 = 2, proj 16, fc 1 x 2 = 2):
    #   sru1 104 x ceil(23/32) = 104; sru2-4 104 x ceil(256/32) = 832 each;
    #   proj 8 x ceil(1100/256) = 40 each; fc 60 x ceil(1100/32) = 35 -> 2 100
    #   total 104 + 2 496 + 120 + 2 100 = 4 820; speedup 43 984 / 4 820 = 9.125311
    # Memory: 4 x 2 610 300 + 2 x 844 800 + 8 x 2 094 400 + 140 800 = 29 026 800 bits
    #   = 3.460264 MB
    sru = [f"sru{i}" for i in range(1, 5)]
    proj = [f"proj{i}" for i in range(1, 4)]
    w = dict.fromkeys(sru, 4) | dict.fromkeys(proj, 2) | {"fc": 8}
    a = dict.fromkeys(sru, 8) | dict.fromkeys(proj, 2) | {"fc": 4}
    out = COST(_genome(w, a))
    np.testing.assert_allclose(out["speedup_formula"], 9.229362, rtol=1e-6)
    np.testing.assert_allclose(out["speedup_mac_weighted"], 16.524876, rtol=1e-6)
    np.testing.assert_allclose(out["cycles"], 4_820)
    np.testing.assert_allclose(out["speedup"], 9.125311, rtol=1e-6)
    np.testing.assert_allclose(out["memory_mb"], 3.460264, rtol=1e-6)


def test_formula_speedup_caps_at_64():
    np.testing.assert_allclose(
        bitfusion.formula_speedup(
            jnp.asarray([16, 8, 2, 2, 16]), jnp.asarray([16, 8, 2, 4, 2])
        ),
        [1.0, 4.0, 64.0, 32.0, 8.0],
    )


def test_larger_frame_batch_only_cuts_weight_traffic():
    spec = dataclasses.replace(bitfusion.SPEC, frame_batch=1_000)
    bits = jnp.full(8, 16, jnp.int32)
    small = bitfusion.costs(bits, bits, ARRAYS, bitfusion.SPEC)
    large = bitfusion.costs(bits, bits, ARRAYS, spec)
    # DRAM weight bits 88 792 000 / 100 -> / 1 000, at 15 pJ per bit.
    saved = 88_792_000 * (1 / 100 - 1 / 1_000) * (15 + 0.029)
    np.testing.assert_allclose(
        small["energy_pj"] - large["energy_pj"], saved, rtol=1e-4
    )
    np.testing.assert_allclose(small["cycles"], large["cycles"])


def test_bits_it_cannot_run_are_rejected():
    with pytest.raises(ValueError, match="3-bit weights, which platform 'bitfusion'"):
        bitfusion.PLATFORM.make_cost_fn(genome.separate_space(LAYERS, (3, 4), "odd"))
