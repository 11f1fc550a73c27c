"""Size-only model of the compression experiment, on hand-computed paper numbers."""

import numpy as np
import pytest

from mohaq_jax import genome, hardware
from mohaq_jax.models import sru

WEIGHTS = 5_549_500  # the paper model's quantized weights (sum of its MACs per frame)
BIASES = 8_800  # SRU biases b_f, b_r counted by the authors' formula


@pytest.fixture(scope="module")
def setup():
    space = genome.weights_space(sru.layer_specs(sru.paper_config()))
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
