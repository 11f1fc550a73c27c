"""Size-only model of the compression experiment, on hand-computed numbers."""

import dataclasses

import numpy as np
import pytest

from mohaq_jax import hardware
from mohaq_jax.evaluation import genome
from mohaq_jax.hardware import memory
from mohaq_jax.models import lstm, sru

WEIGHTS = 5_549_500  # the paper model's quantized weights (sum of its MACs per frame)
BIASES = 8_800  # SRU biases b_f, b_r counted by the authors' formula


@pytest.fixture(scope="module")
def setup():
    space = genome.weights_space(sru.sites(sru.paper_config()))
    return space, hardware.get_platform("memory")


@pytest.mark.parametrize("bits", [16, 8, 4, 2])
def test_uniform_sizes_by_hand(setup, bits):
    space, platform = setup
    g = space.encode({**{n: bits for n in space.gene_names[:-1]}, "a_all": 16})
    out = platform.evaluate(space, g)
    stored = bits * WEIGHTS + 16 * BIASES
    np.testing.assert_allclose(out["memory_mb"], stored / 8 / 2**20, rtol=1e-6)
    np.testing.assert_allclose(
        out["compression"], 32 * (WEIGHTS + BIASES) / stored, rtol=1e-6
    )


def test_all16_is_the_authors_memory(setup):
    space, platform = setup
    out = platform.evaluate(space, space.encode({**{n: 16 for n in space.gene_names}}))
    np.testing.assert_allclose(
        out["memory_mb"], 10.6016, atol=1e-4
    )  # METHOD.md formula
    assert hardware.PLATFORMS["memory"] is platform
    # Size only: no speed or energy metric is declared or returned.
    assert set(out) == set(platform.metric_names()) == {"memory_mb", "compression"}
    with pytest.raises(ValueError, match="unknown platform"):
        hardware.get_platform("tpu")


# Tiny models whose stored size is counted by hand below: weights x their bits +
# biases x 16 bits, whatever the model (the cost models read the sites, not kinds).
TINY_LSTM = lstm.Config(n_features=3, n_classes=4, hidden=2, n_layers=1)
TINY_SRU = sru.Config(
    n_features=3, n_classes=4, hidden=2, n_layers=1, bidirectional=False
)


def _memory(layers, bits_by_site, spec=None):
    space = genome.weights_space(layers)
    g = space.encode({**{f"w_{n}": b for n, b in bits_by_site.items()}, "a_all": 16})
    platform = hardware.get_platform("memory")
    if spec is not None:
        platform = dataclasses.replace(platform, spec=spec)
    return platform.evaluate(space, g)


def test_lstm_biases_count_in_memory():
    # Bidirectional, hidden 2, 3 features, 4 classes:
    #   lstm1: W (3, 2 dirs x 4 gates x 2) = 48 weights, biases 2 x 4 x 2 = 16
    #   rec1:  U (2 dirs, 2, 4 x 2) = 32 weights, no bias
    #   fc:    (4, 4) = 16 weights, 4 biases
    out = _memory(lstm.sites(TINY_LSTM), {"lstm1": 4, "rec1": 8, "fc": 2})
    stored = 48 * 4 + 32 * 8 + 16 * 2 + (16 + 4) * 16
    np.testing.assert_allclose(out["memory_mb"], stored / 8 / 2**20, rtol=1e-6)
    float_size = 32 * (48 + 32 + 16) + 32 * (16 + 4)
    np.testing.assert_allclose(out["compression"], float_size / stored, rtol=1e-6)


def test_sru_biases_as_the_authors_count_them():
    # Unidirectional, hidden 2, 3 features != 2 outputs: 4 matrices (skip projection).
    #   sru1: (3, 4 x 2) = 24 weights, b_f + b_r = 2 x 2 = 4 biases, v_f + v_r = 4
    #   fc:   (2, 4) = 8 weights, 4 biases the authors' formula leaves out
    layers = sru.sites(TINY_SRU)
    out = _memory(layers, {"sru1": 3, "fc": 5})
    stored = 24 * 3 + 8 * 5 + 4 * 16
    np.testing.assert_allclose(out["memory_mb"], stored / 8 / 2**20, rtol=1e-6)
    # all_biases adds the fc bias, count_vectors the vectors v_f, v_r.
    spec = memory.MemorySpec(all_biases=True, count_vectors=True)
    out = _memory(layers, {"sru1": 3, "fc": 5}, spec)
    stored_all = stored + 4 * 16 + 4 * 16
    np.testing.assert_allclose(out["memory_mb"], stored_all / 8 / 2**20, rtol=1e-6)


@pytest.mark.parametrize("name", sorted(hardware.PLATFORMS))
def test_no_platform_chooses_biases_by_kind(name):
    # The same sites relabelled with another kind cost the same on every platform.
    layers = sru.sites(TINY_SRU)
    renamed = tuple(
        dataclasses.replace(s, kind=f"other{i}") for i, s in enumerate(layers)
    )
    platform = hardware.get_platform(name)
    space = genome.get_space(platform.space_name, layers)
    space_renamed = genome.get_space(platform.space_name, renamed)
    g = space.uniform(max(space.gene_values[0]))
    out = platform.evaluate(space, g)
    out_renamed = platform.evaluate(
        space_renamed, space_renamed.uniform(max(space.gene_values[0]))
    )
    for metric in out:
        np.testing.assert_allclose(out_renamed[metric], out[metric], rtol=1e-6)
