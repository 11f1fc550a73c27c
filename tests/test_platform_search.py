"""Platforms with a tiny SRU: a toy accelerator searched end to end, reconfig's space.

A new accelerator is one file: a toy platform, defined here, searched end to end.

The toy NPU models neither ``speedup`` nor ``memory_mb``: it declares frames per
second (maximized), latency (reported only) and on-chip SRAM in KiB (the memory
constraint), over its own 4/8-bit genome space. Registered in ``PLATFORMS`` and
``genome.SPACES`` for the test only, it runs through the MOHAQ search driver, the
constraint and the report like the built-in platforms.
"""

import csv
import dataclasses

import jax.numpy as jnp
import numpy as np
import pytest

from mohaq_jax import hardware
from mohaq_jax.evaluation import evaluate, genome
from mohaq_jax.hardware import Metric, Platform
from mohaq_jax.models import sru
from mohaq_jax.search import mohaq, report

BITS = (4, 8)


@dataclasses.dataclass(frozen=True)
class ToySpec:
    """Constants of the toy NPU (made up for the test)."""

    clock_mhz: float = 100.0  # cycles per microsecond
    macs_per_cycle_8bit: float = 4.0  # 8-bit lanes; 4-bit operands run twice as many


def toy_costs(bits_w, bits_a, layers, spec: ToySpec):
    width = jnp.maximum(bits_w, bits_a).astype(jnp.float32)
    lanes = spec.macs_per_cycle_8bit * 8.0 / width  # (n_layers,)
    latency = jnp.sum(jnp.asarray(layers.macs) / lanes) / spec.clock_mhz
    sram = jnp.sum(bits_w.astype(jnp.float32) * jnp.asarray(layers.n_weights))
    return {"fps": 1e6 / latency, "latency_us": latency, "sram_kb": sram / 8192.0}


def toy_space(layers):
    return genome.separate_space(layers, BITS, "toy")


TOY = Platform(
    name="toy",
    spaces=("toy",),
    spec=ToySpec(),
    costs=toy_costs,
    weight_bits=BITS,
    act_bits=BITS,
    metrics=(
        Metric("fps", "frames/s", True, "1 / latency"),
        Metric("latency_us", "us/frame", False, "MACs / lanes / clock", False),
        Metric("sram_kb", "KiB", False, "weights at their bits"),
    ),
    memory_metric="sram_kb",
    memory_limit_mb=float("inf"),
    description="toy NPU: 4/8-bit lanes, weights in SRAM",
)


def hand_costs(space, genomes, layers):
    """The toy model in plain numpy, from the genomes' decoded bits."""
    bits = space.bits_table[np.arange(space.n_genes)[None], genomes]
    w = bits[:, list(space.w_gene)].astype(np.float64)
    a = bits[:, list(space.a_gene)].astype(np.float64)
    macs = np.asarray([s.macs_per_frame for s in layers], np.float64)
    n_w = np.asarray([s.n_weights for s in layers], np.float64)
    latency = np.sum(macs / (4.0 * 8.0 / np.maximum(w, a)), 1) / 100.0
    return {"fps": 1e6 / latency, "latency_us": latency, "sram_kb": w @ n_w / 8192}


@pytest.fixture
def registered(monkeypatch):
    monkeypatch.setitem(hardware.PLATFORMS, "toy", TOY)
    monkeypatch.setitem(genome.SPACES, "toy", toy_space)


def test_toy_platform_search_end_to_end(registered, tiny_sru, tmp_path):
    cfg, params, calib, batch = tiny_sru
    layers = sru.sites(cfg)

    # What a pipeline does with any registered platform.
    platform = hardware.get_platform("toy")
    space = genome.get_space(platform.space_name, layers)
    objectives = ("error", "fps")
    maximize = platform.check_objectives(objectives)
    assert maximize == ("fps",)
    with pytest.raises(ValueError, match="'speedup' is not offered by platform 'toy'"):
        platform.check_objectives(("error", "speedup"))
    cost_fn = platform.make_cost_fn(space)
    extremes = hand_costs(space, np.stack([0 * space.upper, space.upper]), layers)
    limit = float(np.mean(extremes["sram_kb"]))  # binds: half way from 4 to 8 bits
    config = mohaq.SearchConfig(
        objectives=objectives,
        maximize=maximize,
        pop_size=6,
        n_offspring=3,
        n_generations=3,
        seed=0,
        max_error=10.0,
        memory_limit_mb=limit,  # in the memory metric's unit (KiB here)
        memory_metric=platform.memory_metric,
    )
    evaluator = evaluate.PopulationEvaluator(
        cfg, space, np.arange(6), params, calib, genome_batch=3
    )
    problem = mohaq.QuantizationProblem(
        evaluator,
        cost_fn,
        batch,
        config,
        ideal=[0.0, -float(extremes["fps"].max())],
        nadir=[1.0, -float(extremes["fps"].min())],
    )
    result = mohaq.run_search(problem, tmp_path, progress=False)

    m = result.metrics
    assert {"fps", "latency_us", "sram_kb", "error"} <= set(m)
    assert not {"speedup", "memory_mb"} & set(m)
    assert len(result.genomes) == 6 + 3 * 3
    want = hand_costs(space, result.genomes, layers)
    for key, values in want.items():
        np.testing.assert_allclose(m[key], values, rtol=1e-5, err_msg=key)
    feasible = want["sram_kb"] <= limit
    np.testing.assert_array_equal(result.feasible, feasible)
    # The front: feasible, and no feasible genome has lower error and higher fps.
    points = np.stack([m["error"], -want["fps"]], 1)
    assert result.front.any()
    for i in np.flatnonzero(result.front):
        assert feasible[i]
        others = points[feasible]
        dominated = np.all(others <= points[i], 1) & np.any(others < points[i], 1)
        assert not dominated.any()

    front = np.flatnonzero(result.front)
    paths = report.write_outputs(
        str(tmp_path),
        space,
        result,
        objectives,
        {"error": problem.errors(result.genomes[front], batch)["phone_error"]},
        [{"name": "float32", "dev_error": 0.5, "test_error": 0.5}],
        {"platform": "toy"},
        title="toy",
    )
    with open(paths["pareto.csv"]) as f:
        rows = list(csv.DictReader(f))
    assert len(rows) == len(front) and "fps" in rows[0]
    assert "fps" in open(paths["report.md"]).read()


def test_reconfig_space_runs_the_sru(tiny_sru):
    """The reconfig genome space scores the SRU as the wide space does, same bits."""
    cfg, params, calib, batch = tiny_sru
    layers = sru.sites(cfg)
    space = genome.get_space(hardware.get_platform("reconfig").space_name, layers)
    wide = genome.wide_space(layers)
    assert space.gene_names == wide.gene_names
    rng = np.random.default_rng(1)
    genomes = rng.integers(0, 3, (4, space.n_genes)).astype(np.int32)
    genes, names = np.arange(space.n_genes), space.gene_names
    same = np.stack(
        [
            wide.encode(
                {
                    n: int(b)
                    for n, b in zip(names, space.bits_table[genes, g], strict=True)
                }
            )
            for g in genomes
        ]
    )
    fold = np.arange(6)

    def errors(space, genomes):
        return evaluate.PopulationEvaluator(
            cfg, space, fold, params, calib, chunk_size=None, genome_batch=4
        )(genomes, batch)

    ours, ref = errors(space, genomes), errors(wide, same)
    for key in ("loss", "phone_error", "frame_error"):
        np.testing.assert_allclose(ours[key], ref[key], rtol=1e-6, err_msg=key)
    assert np.all(np.isfinite(ours["loss"]))
