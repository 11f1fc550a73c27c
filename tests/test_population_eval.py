"""The population benchmark counts the matmul work each side actually does."""

import jax.numpy as jnp
import pytest

from benchmarks import population_eval
from mohaq_jax.evaluation import genome
from mohaq_jax.models import sru

# 2 bidirectional layers of 4 (outputs 8), projection 6 before both (7 and 8 inputs):
# MACs per frame, by hand: proj1 7x6 = 42, sru1 6x(4 matrices x 8) = 192,
# proj2 8x6 = 48, sru2 6x(3 x 8) = 144, fc 8x5 = 40; all 466, first stage 234.
CONFIG = sru.Config(
    n_features=7, n_classes=5, hidden=4, n_layers=2, n_proj=6, proj_first=True
)
FRAMES = 3 * 10  # utterances x padded frames
BATCH = (jnp.zeros((3, 10, 7)), None, None)


@pytest.mark.parametrize(
    "space_name, pop, settings, batched_macs",
    [
        # SiLago: proj1 and sru1 each one tied gene of 3 levels -> 9 settings, shared
        ("silago", 20, 9, 9 * 234 + 20 * (466 - 234)),
        # more settings than genomes: nothing shared, every genome every layer
        ("silago", 9, 9, 9 * 466),
        # Bitfusion: 4 genes of 4 levels -> 256 settings
        ("bitfusion", 64, 256, 64 * 466),
    ],
)
def test_batched_work_counts_the_first_stage_once_per_setting(
    space_name, pop, settings, batched_macs
):
    space = genome.get_space(space_name, sru.sites(CONFIG))
    work = population_eval.matmul_flops(CONFIG, space, BATCH, pop)
    assert work["first_settings"] == settings
    assert work["shared"] is (settings < pop)
    assert work["per_genome"] == 2 * 466 * FRAMES
    assert work["first"] == 2 * 234 * FRAMES
    assert work["batched_population"] == 2 * batched_macs * FRAMES
