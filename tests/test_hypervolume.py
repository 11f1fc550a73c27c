"""Hypervolume: hand-computed cases and pymoo's HV (moocore) as the reference."""

import chex
import jax
import jax.numpy as jnp
import numpy as np
import pytest
from pymoo.indicators.hv import HV

from mohaq_jax.search import hypervolume as hv


@pytest.mark.parametrize(
    "testcase_name, points, ref, mask, expected",
    [
        # Staircase: strips [1,2)x1 + [2,3)x2 + [3,4)x3.
        ("staircase_2d", [[1, 3], [2, 2], [3, 1]], [4, 4], None, 6.0),
        # A dominated point, a duplicate and a point outside the box change nothing.
        (
            "dominated_duplicate_outside_2d",
            [[1, 3], [2, 2], [3, 1], [3, 3], [1, 3], [5, 0], [0, 4]],
            [4, 4],
            None,
            6.0,
        ),
        ("masked_2d", [[1, 3], [2, 2], [3, 1]], [4, 4], [True, False, True], 5.0),
        ("empty_mask_2d", [[1, 3], [2, 2]], [4, 4], [False, False], 0.0),
        ("single_box_3d", [[0, 0, 0]], [1, 2, 3], None, 6.0),
        # Two boxes 2x2x1 and 1x1x2 overlapping in a unit cube: 4 + 2 - 1.
        ("two_boxes_3d", [[0, 0, 1], [1, 1, 0]], [2, 2, 2], None, 5.0),
        (
            "ties_and_dominated_3d",
            [[0, 0, 1], [1, 1, 0], [0, 0, 1], [1, 1, 1], [2, 0, 0]],
            [2, 2, 2],
            None,
            5.0,
        ),
        ("one_objective", [[3], [1], [2]], [4], None, 3.0),
    ],
)
def test_hand_computed(testcase_name, points, ref, mask, expected):
    del testcase_name
    points = jnp.asarray(points, jnp.float32)
    mask = None if mask is None else jnp.asarray(mask)
    value = jax.jit(hv.hypervolume)(points, jnp.asarray(ref, jnp.float32), mask)
    assert float(value) == pytest.approx(expected, abs=1e-6)


@pytest.mark.parametrize("n_obj", [2, 3])
@pytest.mark.parametrize("grid", [False, True])
def test_matches_pymoo(n_obj, grid):
    rng = np.random.default_rng(n_obj + 10 * grid)
    hv_fn = jax.jit(hv.hypervolume)
    for _ in range(5):
        n = 40
        if grid:  # many ties per objective and duplicate points
            points = rng.integers(0, 6, size=(n, n_obj)).astype(np.float32)
        else:
            # Points near a front, so that many are non-dominated.
            raw = rng.random((n, n_obj))
            points = (raw / np.linalg.norm(raw, axis=1, keepdims=True)).astype(
                np.float32
            )
            points += 0.05 * rng.random((n, n_obj)).astype(np.float32)
        ref = points.max(axis=0) * 0.9 + 0.1
        mask = rng.random(n) < 0.8
        expected = HV(ref_point=ref.astype(np.float64))(points[mask].astype(np.float64))
        got = hv_fn(jnp.asarray(points), jnp.asarray(ref), jnp.asarray(mask))
        assert float(got) == pytest.approx(float(expected), rel=1e-5, abs=1e-6)


def test_compiles_once_for_any_mask():
    fn = jax.jit(chex.assert_max_traces(hv.hypervolume_3d, n=1))
    points = jax.random.uniform(jax.random.key(1), (16, 3))
    ref = jnp.ones(3, jnp.float32)
    for k in range(3):
        fn(points, ref, jnp.arange(16) < 4 * (k + 1))


def test_rejects_four_objectives():
    with pytest.raises(NotImplementedError):
        hv.hypervolume(jnp.zeros((3, 4)), jnp.ones(4))
