"""Platform registry and the properties every cost model must have."""

import functools

import chex
import jax
import jax.numpy as jnp
import numpy as np
import pytest
from hypothesis import given, settings
from hypothesis import strategies as st

from mohaq_jax import hardware
from mohaq_jax.evaluation import genome
from mohaq_jax.hardware import base
from mohaq_jax.models import sru
from mohaq_jax.models.sru import paper_config

PAPER_LAYERS = sru.sites(paper_config())

# The MOHAQ authors' hard-coded MACs per frame (optimize_silago.py), in their order
# [sru1, sru2, sru3, sru4, proj1, proj2, proj3, fc]. METHOD.md gives their total as
# 5 637 500 (the denominator of their speedup), but these numbers sum to 5 549 500.
AUTHORS_MACS = {
    "sru1": 75_900,
    "sru2": 844_800,
    "sru3": 844_800,
    "sru4": 844_800,
    "proj1": 281_600,
    "proj2": 281_600,
    "proj3": 281_600,
    "fc": 2_094_400,
}

# (platform, its default genome space factory), for every registered platform.
CASES = {
    name: (platform, functools.partial(genome.get_space, platform.space_name))
    for name, platform in hardware.PLATFORMS.items()
}
PLATFORM_NAMES = sorted(CASES)
# Platforms that model time: all-widest is their speedup baseline.
SPEEDUP_NAMES = [n for n in PLATFORM_NAMES if "speedup" in CASES[n][0].metric_names()]


@functools.cache
def _paper(name):
    platform, make_space = CASES[name]
    space = make_space(PAPER_LAYERS)
    cost = platform.make_cost_fn(space)
    return platform, space, jax.jit(cost), jax.jit(jax.vmap(cost))


def _genomes(space):
    return st.tuples(*[st.integers(0, int(u)) for u in space.upper]).map(
        lambda g: np.asarray(g, np.int32)
    )


def test_registry_names_and_lookup():
    assert {"silago", "bitfusion", "reconfig", "memory"} <= set(hardware.PLATFORMS)
    assert SPEEDUP_NAMES == ["bitfusion", "silago"]
    for name, platform in hardware.PLATFORMS.items():
        assert hardware.get_platform(name) is platform
        assert platform.name == name
        assert set(platform.spaces) <= set(genome.SPACES)
        assert platform.space_name == platform.spaces[0]
        assert platform.memory_limit_mb > 0
    with pytest.raises(ValueError, match="unknown platform 'tpu'"):
        hardware.get_platform("tpu")


def test_paper_macs_come_from_the_model():
    layers = {spec.name: spec for spec in PAPER_LAYERS}
    assert {name: layers[name].macs_per_frame for name in AUTHORS_MACS} == AUTHORS_MACS
    assert {name: layers[name].n_weights for name in AUTHORS_MACS} == AUTHORS_MACS
    arrays = base.layer_arrays(PAPER_LAYERS)
    assert float(np.sum(arrays.macs)) == 5_549_500 == sum(AUTHORS_MACS.values())
    # The authors' memory formula counts 8 800 biases: the SRU b_f, b_r.
    assert float(np.sum(base.fixed_params(arrays))) == 8_800


@pytest.mark.parametrize("name", PLATFORM_NAMES)
def test_cost_keys_and_shapes(name):
    platform, space, cost, _ = _paper(name)
    out = cost(jnp.asarray(space.uniform(space.gene_values[0][-1])))
    assert tuple(sorted(out)) == tuple(sorted(platform.metric_names()))
    for value in out.values():
        chex.assert_shape(value, ())
        assert value.dtype == jnp.float32


@pytest.mark.parametrize("name", SPEEDUP_NAMES)
def test_all_widest_is_the_baseline(name):
    platform, space, cost, _ = _paper(name)
    widest = max(space.gene_values[0])
    out = cost(jnp.asarray(space.uniform(widest)))
    np.testing.assert_allclose(out["speedup"], 1.0, rtol=1e-6)


@pytest.mark.parametrize("name", PLATFORM_NAMES)
@settings(max_examples=15, deadline=None)
@given(data=st.data())
def test_vmap_equals_loop(name, data):
    platform, space, cost, pop_cost = _paper(name)
    # A fixed population size keeps it to one compile.
    population = np.stack(data.draw(st.lists(_genomes(space), min_size=4, max_size=4)))
    batched = pop_cost(jnp.asarray(population))
    looped = [cost(jnp.asarray(g)) for g in population]
    for k, v in batched.items():
        chex.assert_shape(v, (len(population),))
        np.testing.assert_allclose(v, np.stack([o[k] for o in looped]), rtol=1e-6)


@pytest.mark.parametrize("name", PLATFORM_NAMES)
@settings(max_examples=25, deadline=None)
@given(data=st.data())
def test_fewer_bits_never_slower_or_costlier(name, data):
    platform, space, cost, _ = _paper(name)
    wider = data.draw(_genomes(space))
    gene = data.draw(st.integers(0, space.n_genes - 1))
    narrower = wider.copy()
    narrower[gene] = data.draw(st.integers(0, int(wider[gene])))
    hi, lo = cost(jnp.asarray(wider)), cost(jnp.asarray(narrower))
    # Fewer bits never make a declared metric worse in its declared direction.
    for metric in platform.metrics:
        k = metric.name
        if metric.maximize:
            assert float(lo[k]) >= float(hi[k]) * (1 - 1e-6), k
        else:
            assert float(lo[k]) <= float(hi[k]) * (1 + 1e-6), k


@pytest.mark.parametrize("name", PLATFORM_NAMES)
def test_population_cost_compiles_once(name):
    platform, make_space = CASES[name]
    space = make_space(PAPER_LAYERS)
    chex.clear_trace_counter()  # every platform's cost closure shares one code object
    cost = chex.assert_max_traces(platform.make_cost_fn(space), n=1)
    pop_cost = jax.jit(jax.vmap(cost))
    rng = np.random.default_rng(0)
    for _ in range(3):
        population = rng.integers(0, space.upper + 1, size=(6, space.n_genes))
        pop_cost(jnp.asarray(population, jnp.int32))


@pytest.mark.parametrize("name", PLATFORM_NAMES)
def test_wrong_genome_length_is_a_clear_error(name):
    platform, space, cost, _ = _paper(name)
    short = np.zeros(space.n_genes - 1, np.int32)
    with pytest.raises(ValueError, match=f"expects genomes of length {space.n_genes}"):
        platform.evaluate(space, short)
    with pytest.raises(ValueError, match=rf"shape \({space.n_genes},\)"):
        platform.make_cost_fn(space)(jnp.asarray(short))


def test_platform_rejects_a_space_with_bits_it_cannot_run():
    silago = hardware.get_platform("silago")
    with pytest.raises(ValueError, match="2-bit weights, which platform 'silago'"):
        silago.make_cost_fn(genome.bitfusion_space(PAPER_LAYERS))
    with pytest.raises(ValueError, match="platform 'bitfusion'"):
        hardware.get_platform("bitfusion").make_cost_fn(genome.wide_space(PAPER_LAYERS))
    with pytest.raises(ValueError, match="platform 'silago' cannot run 2-bit weights"):
        silago.check_bits([2] + [8] * 7, [8] * 8, [s.name for s in PAPER_LAYERS])


def test_costs_come_from_any_model_config():
    # A tiny unidirectional model with 2 layers: the counts follow its own sites.
    config = sru.Config(
        n_features=5, n_classes=7, hidden=4, n_layers=2, bidirectional=False
    )
    layers = sru.sites(config)
    space = genome.silago_space(layers)
    out = hardware.get_platform("silago").evaluate(space, space.uniform(8))
    n_weights = sum(spec.n_weights for spec in layers)
    n_bias = sum(spec.n_bias for spec in layers if spec.kind == "sru")
    np.testing.assert_allclose(
        out["memory_mb"], (8 * n_weights + 16 * n_bias) / 8 / 2**20
    )


def test_memory_constraint_is_the_authors_normalized_form():
    silago = hardware.get_platform("silago")
    np.testing.assert_allclose(silago.memory_constraint(jnp.float32(9.0)), 0.5)
    np.testing.assert_allclose(silago.memory_constraint(jnp.float32(3.0), 2.0), 0.5)
