"""Population sharding: sharded == single device, the population is split, padding.

The multi-device cases need ``--xla_force_host_platform_device_count=8`` before JAX
starts, so :func:`test_on_eight_host_devices` runs this file again in a subprocess with
that flag; there the ``eight`` tests run and the rest of the suite keeps one device.
"""

import os
import subprocess
import sys

import chex
import jax
import jax.numpy as jnp
import numpy as np
import pytest
from jax.sharding import PartitionSpec

from mohaq_jax.evaluation import evaluate, genome
from mohaq_jax.models import sru
from mohaq_jax.runtime import sharding
from tests.conftest import tiny_speech

EIGHT = os.environ.get("MOHAQ_EIGHT_DEVICES") == "1"
eight = pytest.mark.skipif(not EIGHT, reason="runs in the 8-device subprocess")
N_CLASSES = 7


@pytest.fixture(scope="module")
def setup():
    cfg = sru.Config(n_features=6, n_classes=N_CLASSES, hidden=8, n_layers=2)
    params, calib, (feats, labels, lengths) = tiny_speech(
        sru, cfg, [12, 9, 4], 3, ("max", "max")
    )
    fold = np.asarray([0, 1, 2, 2, 3, -1, 4], np.int32)
    space = genome.bitfusion_space(sru.sites(cfg))
    return cfg, space, params, calib, (feats, labels, lengths), fold


def test_pad_rows():
    x = np.arange(10).reshape(5, 2)
    padded = sharding.pad_rows(x, 4)
    np.testing.assert_array_equal(padded[5:], np.repeat(x[-1:], 3, 0))
    assert sharding.pad_rows(x, 5) is x
    chex.assert_shape(sharding.pad_rows(jnp.asarray(x), 8), (8, 2))


def test_one_device_changes_nothing():
    def fn(x):
        return x * 2

    assert sharding.shard_population(fn, None, (0,)) is fn
    assert sharding.shard_population(fn, sharding.population_mesh(1), (0,)) is fn
    assert sharding.is_main_process()
    sharding.initialize_distributed()  # one process: a no-op


def test_mesh_rejects_bad_sizes():
    with pytest.raises(ValueError, match="available"):
        sharding.population_mesh(len(jax.devices()) + 1)


def test_on_eight_host_devices():
    if EIGHT:  # already inside the 8-device subprocess: never recurse
        return
    env = dict(
        os.environ,
        MOHAQ_EIGHT_DEVICES="1",
        JAX_PLATFORMS="cpu",
        XLA_FLAGS="--xla_force_host_platform_device_count=8",
    )
    proc = subprocess.run(
        [
            sys.executable,
            "-m",
            "pytest",
            "-x",
            "-p",
            "no:cacheprovider",
            __file__,
            "-k",
            "test_eight_",
        ],
        env=env,
        capture_output=True,
        text=True,
        timeout=600,
    )
    assert proc.returncode == 0, proc.stdout[-4000:] + proc.stderr[-2000:]
    assert " passed" in proc.stdout and "skipped" not in proc.stdout, proc.stdout[
        -2000:
    ]


# ------------------------------------------------------------- 8-device subprocess


@eight
def test_eight_devices_present():
    assert jax.device_count() == 8


@eight
@pytest.mark.parametrize("pop", [16, 13])  # 13: padded to 16, padding dropped
def test_eight_evaluator_equals_single_device(setup, pop):
    cfg, space, params, calib, batch, fold = setup
    rng = np.random.default_rng(pop)
    genomes = jnp.asarray(
        rng.integers(0, space.upper + 1, (pop, space.n_genes)), jnp.int32
    )
    single = evaluate.make_population_eval(cfg, space, fold, chunk_size=1)
    mesh = sharding.population_mesh(8)
    sharded = evaluate.make_population_eval(cfg, space, fold, chunk_size=1, mesh=mesh)
    ref = single(params, calib, genomes, batch)
    out = sharded(params, calib, genomes, batch)
    chex.assert_shape(out.phone_error, (pop,))
    chex.assert_trees_all_close(out, ref, rtol=1e-5, atol=1e-6)
    if pop == 16:
        # The population really is split: 2 genomes per device.
        assert out.loss.sharding.spec == PartitionSpec(sharding.POP)
        assert {s.data.shape for s in out.loss.addressable_shards} == {(2,)}
        assert len({s.device for s in out.loss.addressable_shards}) == 8


@eight
def test_eight_batch_axis_equals_single_device(setup):
    cfg, space, params, calib, batch, fold = setup
    genomes = jnp.asarray(
        np.random.default_rng(5).integers(0, space.upper + 1, (6, space.n_genes)),
        jnp.int32,
    )
    ref = evaluate.make_population_eval(cfg, space, fold)(params, calib, genomes, batch)
    mesh = sharding.population_mesh(8, n_batch=2)  # 4 x 2; 3 utterances padded to 4
    out = evaluate.make_population_eval(cfg, space, fold, mesh=mesh)(
        params, calib, genomes, batch
    )
    chex.assert_trees_all_close(out, ref, rtol=1e-5, atol=1e-6)


@eight
def test_eight_population_evaluator_wrapper(setup):
    cfg, space, params, calib, batch, fold = setup
    genomes = np.random.default_rng(6).integers(0, space.upper + 1, (11, space.n_genes))
    ref = evaluate.PopulationEvaluator(cfg, space, fold, params, calib)(genomes, batch)
    ev = evaluate.PopulationEvaluator(
        cfg, space, fold, params, calib, mesh=sharding.population_mesh(8)
    )
    out = ev(genomes, batch)
    for name in ref:
        np.testing.assert_allclose(out[name], ref[name], rtol=1e-5, atol=1e-6)


@eight
def test_eight_beacon_eval_equals_single_device(setup):
    """Beacon scoring (stacked params, per-genome slot) splits over the mesh too."""
    from mohaq_jax.search import beacon

    cfg, space, params, calib, batch, fold = setup
    other = jax.tree.map(lambda a: a * 0.9, params)
    stacked = jax.tree.map(lambda *xs: jnp.stack(xs), params, other)
    rng = np.random.default_rng(8)
    genomes = jnp.asarray(rng.integers(0, space.upper + 1, (10, space.n_genes)))
    index = jnp.asarray(rng.integers(0, 2, 10), jnp.int32)
    ref = beacon.make_beacon_eval(cfg, space, fold)(
        stacked, calib, genomes, index, batch
    )
    mesh = sharding.population_mesh(8)
    out = beacon.make_beacon_eval(cfg, space, fold, mesh=mesh)(
        stacked, calib, genomes, index, batch
    )
    chex.assert_trees_all_close(out, ref, rtol=1e-5, atol=1e-6)


@eight
def test_eight_stacked_params_training_step():
    """A vmapped step over stacked params (as batched QAT uses) shards and pads."""
    k, n_in = 10, 4
    keys = jax.random.split(jax.random.key(0), 3)
    stacked = {"w": jax.random.normal(keys[0], (k, n_in)), "b": jnp.zeros((k,))}
    lrs = jnp.linspace(0.01, 0.1, k)
    x = jax.random.normal(keys[1], (32, n_in))
    y = jax.random.normal(keys[2], (32,))

    def step(params, lr, x, y):
        def loss(p):
            return jnp.mean(jnp.square(x @ p["w"] + p["b"] - y))

        value, grads = jax.value_and_grad(loss)(params)
        return jax.tree_util.tree_map(lambda p, g: p - lr * g, params, grads), value

    vstep = jax.vmap(step, in_axes=(0, 0, None, None))
    mesh = sharding.population_mesh(8)
    sharded = jax.jit(
        sharding.shard_population(vstep, mesh, in_axes=(0, 0, None, None))
    )
    ref = jax.jit(vstep)(stacked, lrs, x, y)
    out = sharded(stacked, lrs, x, y)
    chex.assert_shape(out[1], (k,))
    chex.assert_trees_all_close(out, ref, rtol=1e-5, atol=1e-6)


@eight
def test_eight_search_same_front(setup):
    """A small whole NSGA-II search gives the same Pareto front sharded and not."""
    nsga2 = pytest.importorskip("mohaq_jax.search.nsga2")
    cfg, space, params, calib, batch, fold = setup
    sizes = jnp.asarray([spec.n_weights for spec in space.layers], jnp.float32)

    def make_fitness(mesh):
        ev = evaluate.make_population_eval(cfg, space, fold, chunk_size=2, mesh=mesh)

        def fitness(genomes):
            bits_w = jax.vmap(lambda g: space.decode(g)[0])(genomes)
            size = bits_w.astype(jnp.float32) @ sizes
            return jnp.stack(
                [ev(params, calib, genomes, batch).phone_error, size], axis=1
            )

        return fitness

    strategy = nsga2.NSGA2(pop_size=8, n_offspring=6, upper=space.upper)
    fronts = []
    for mesh in (None, sharding.population_mesh(8)):
        run = jax.jit(nsga2.make_run(strategy, make_fitness(mesh), 2, batched=True))
        state, _ = run(jax.random.key(7))
        genomes, objectives, _, _ = nsga2.archive(state)
        front = np.asarray(nsga2.archive_front(state))
        fronts.append((np.asarray(genomes)[front], np.asarray(objectives)[front]))
    np.testing.assert_array_equal(fronts[0][0], fronts[1][0])
    np.testing.assert_allclose(fronts[0][1], fronts[1][1], rtol=1e-6)
