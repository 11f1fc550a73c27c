"""The platform contract, for every registered platform, and its declarations."""

import jax
import jax.numpy as jnp
import numpy as np
import pytest

from mohaq_jax import hardware
from mohaq_jax.evaluation import genome
from mohaq_jax.hardware import Metric, Platform
from mohaq_jax.models import sru
from mohaq_jax.search import pareto

PLATFORM_NAMES = sorted(hardware.PLATFORMS)
TINY = sru.Config(
    n_features=5, n_classes=6, hidden=6, n_layers=2, n_proj=3, proj_first=True
)
MODELS = {"tiny": sru.sites(TINY), "paper": sru.sites(sru.paper_config())}


@pytest.mark.parametrize("model", sorted(MODELS))
@pytest.mark.parametrize("name", PLATFORM_NAMES)
def test_costs_are_exactly_the_declared_metrics_and_finite(name, model):
    platform = hardware.PLATFORMS[name]
    for space_name in platform.spaces:
        space = genome.get_space(space_name, MODELS[model])
        rng = np.random.default_rng(0)
        population = rng.integers(0, space.upper + 1, (8, space.n_genes))
        population[0], population[1] = 0, space.upper  # both extremes
        out = jax.jit(jax.vmap(platform.make_cost_fn(space)))(jnp.asarray(population))
        assert sorted(out) == sorted(platform.metric_names())
        for key, values in out.items():
            assert values.shape == (8,) and values.dtype == jnp.float32, key
            assert np.all(np.isfinite(values)), key


@pytest.mark.parametrize("name", PLATFORM_NAMES)
def test_declarations_are_complete(name):
    platform = hardware.PLATFORMS[name]
    names = platform.metric_names()
    assert len(set(names)) == len(names) and "error" not in names
    for metric in platform.metrics:
        assert metric.unit and metric.description, metric.name
    assert platform.objectives() and set(platform.objectives()) <= set(names)
    if platform.memory_metric is not None:
        memory = platform.metric(platform.memory_metric)
        assert not memory.maximize and memory.objective
    assert set(platform.spaces) <= set(genome.SPACES)
    assert platform.description


@pytest.mark.parametrize("name", PLATFORM_NAMES)
def test_search_negates_exactly_the_maximized_metrics(name):
    platform = hardware.PLATFORMS[name]
    names = ("error",) + platform.objectives()
    maximize = platform.check_objectives(names)
    assert maximize == tuple(n for n in names[1:] if platform.metric(n).maximize)
    space = genome.get_space(platform.space_name, MODELS["tiny"])
    values = platform.evaluate(space, np.stack([space.upper, space.upper * 0]))
    values["error"] = np.asarray([0.5, 0.25], np.float32)
    got = np.asarray(pareto.objectives_from(values, names, maximize))
    # Hand convention: minimized as is, maximized negated.
    signs = [1.0] + [-1.0 if platform.metric(n).maximize else 1.0 for n in names[1:]]
    want = np.stack([values[n] * s for n, s in zip(names, signs, strict=True)], 1)
    np.testing.assert_array_equal(got, want)


def test_check_objectives_names_what_the_platform_declares():
    memory = hardware.get_platform("memory")
    with pytest.raises(
        ValueError,
        match=r"'speedup' is not offered by platform 'memory'; its objectives: "
        r"error, memory_mb \(MB, minimized\), compression \(x, maximized\)",
    ):
        memory.check_objectives(("error", "speedup"))
    silago = hardware.get_platform("silago")
    # A reported-only part of another metric is not an objective.
    with pytest.raises(ValueError, match="'energy_mac_pj' is not offered"):
        silago.check_objectives(("error", "energy_mac_pj"))
    with pytest.raises(ValueError, match=r"disagrees.*maximizes \('speedup',\)"):
        silago.check_objectives(("error", "speedup", "energy_pj"), maximize=())
    assert silago.check_objectives(("error", "speedup"), ("speedup",)) == ("speedup",)
    with pytest.raises(ValueError, match="no metric 'fps'; it declares: speedup"):
        silago.metric("fps")
    assert str(silago.metric("energy_pj")) == "energy_pj (pJ/frame, minimized)"


def test_no_placeholder_speedup():
    """Platforms without a time model declare no speedup (was a fake 1.0)."""
    assert "speedup" not in hardware.get_platform("memory").metric_names()
    assert "speedup" not in hardware.get_platform("reconfig").metric_names()
    assert hardware.get_platform("reconfig").memory_metric == "memory_mb"


def _toy(**overrides):
    def costs(bits_w, bits_a, layers, spec):
        del bits_a, spec
        bits = bits_w.astype(jnp.float32) * jnp.asarray(layers.n_weights)
        return {"sram_kb": jnp.sum(bits) / 8192.0}

    settings = dict(
        name="toy",
        spaces=("silago",),
        spec=None,
        costs=costs,
        weight_bits=(4, 8, 16),
        act_bits=(4, 8, 16),
        metrics=(Metric("sram_kb", "KiB", False, "weights"),),
        memory_metric="sram_kb",
        memory_limit_mb=1.0,
        description="toy",
    )
    settings.update(overrides)
    return Platform(**settings)


def test_cost_fn_must_return_exactly_the_declared_metrics():
    space = genome.silago_space(MODELS["tiny"])
    g = jnp.asarray(space.upper)
    np.testing.assert_allclose(
        _toy().make_cost_fn(space)(g)["sram_kb"],
        16 * sum(s.n_weights for s in MODELS["tiny"]) / 8192,
    )
    extra = _toy(
        metrics=(
            Metric("sram_kb", "KiB", False, "weights"),
            Metric("speedup", "x", True, "declared but never returned"),
        )
    )
    with pytest.raises(ValueError, match=r"returned \['sram_kb'\], but the platform"):
        extra.make_cost_fn(space)(g)
    undeclared = _toy(costs=lambda bw, ba, layers, spec: {"sram_kb": 1.0, "x": 2.0})
    with pytest.raises(ValueError, match=r"declares \['sram_kb'\]"):
        undeclared.make_cost_fn(space)(g)


@pytest.mark.parametrize(
    "overrides, message",
    [
        (dict(memory_metric="dram_mb"), "memory_metric 'dram_mb' must be one of"),
        (
            dict(metrics=(Metric("sram_kb", "KiB", True, "maximized memory?"),)),
            "must be one of its minimized metrics",
        ),
        (dict(metrics=(Metric("error", "%", False, "x"),)), "'error' is the model's"),
        (dict(spaces="silago"), "spaces must be a non-empty tuple"),
        (dict(memory_metric=None), "memory limit but no memory_metric"),
        (dict(metrics=()), "metrics must be non-empty"),
    ],
)
def test_bad_declarations_are_clear_errors(overrides, message):
    with pytest.raises(ValueError, match=message):
        _toy(**overrides)


def test_placeholder_metrics_are_declared_and_labelled():
    from mohaq_jax.search.plots import axis_label

    reconfig = hardware.get_platform("reconfig").placeholders()
    assert {"energy_pj", "energy_mac_pj", "energy_weight_mem_pj"} <= set(reconfig)
    assert "SiLago" in reconfig["energy_pj"]
    assert set(hardware.get_platform("bitfusion").placeholders()) == {
        "energy_pj",
        "energy_buffer_pj",
    }
    assert hardware.get_platform("silago").placeholders() == {}  # all cited
    metric = hardware.get_platform("reconfig").metric("energy_pj")
    assert metric.label == "energy_pj (pJ/frame, PLACEHOLDER constants)"
    assert axis_label("energy_pj", reconfig).endswith("[PLACEHOLDER constants]")
    assert "PLACEHOLDER" not in axis_label("speedup", reconfig)
