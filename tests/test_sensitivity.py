"""The sensitivity stage: its genomes, its errors against a plain loop, the proxy."""

import numpy as np
import pytest

from mohaq_jax.search import sensitivity
from tests.conftest import make_problem


def test_genomes_by_hand():
    np.testing.assert_array_equal(
        sensitivity.genomes([2, 1]), [[2, 1], [0, 1], [1, 1], [2, 0]]
    )


def test_stage_against_a_plain_loop(problem_parts):
    """One batched pass gives each genome's error as evaluating it alone does, and
    the proxy's increases are those errors minus the all-highest one's."""
    problem = make_problem(problem_parts)
    upper = problem.space.upper

    def batched(genomes):
        return problem.errors(genomes)["phone_error"]

    stage = sensitivity.measure(upper, batched)
    rows = sensitivity.genomes(upper)
    loop = np.asarray([problem.errors(row[None])["phone_error"][0] for row in rows])
    np.testing.assert_allclose(stage.errors, loop, rtol=1e-6)
    increase = np.asarray(stage.proxy.increase)
    row = 1
    for gene, top in enumerate(upper):
        for level in range(top):
            assert increase[gene, level] == pytest.approx(loop[row] - loop[0], abs=1e-6)
            row += 1
        assert increase[gene, top:].tolist() == [0.0] * (increase.shape[1] - top)
    # The additive prediction, by a plain loop.
    genomes = np.random.default_rng(0).integers(0, upper + 1, (7, len(upper)))
    expected = [
        loop[0] + sum(increase[i, g[i]] for i in range(len(g))) for g in genomes
    ]
    np.testing.assert_allclose(
        sensitivity.predict(stage.proxy, genomes), expected, rtol=1e-5
    )


def test_proxy_from_a_shuffled_population():
    upper = np.asarray([2, 2, 1])
    rows = sensitivity.genomes(upper)
    errors = np.asarray([0.1, 0.5, 0.3, 0.4, 0.2, 0.25], np.float32)
    extra = np.asarray([[0, 0, 0], [1, 0, 1]])
    order = np.random.default_rng(1).permutation(len(rows) + 2)
    population = np.concatenate([rows, extra])[order]
    values = np.concatenate([errors, [9.0, 9.0]])[order]
    proxy, found = sensitivity.proxy_from_population(upper, population, values)
    assert bool(found)
    np.testing.assert_allclose(
        proxy.increase, [[0.4, 0.2, 0.0], [0.3, 0.1, 0.0], [0.15, 0.0, 0.0]], atol=1e-6
    )
    assert float(proxy.base) == pytest.approx(0.1)


@pytest.mark.parametrize(
    "testcase_name, measured, tau, rho",
    [
        ("same_order", [1.0, 2.0, 3.0, 4.0], 1.0, 1.0),
        ("reversed", [4.0, 3.0, 2.0, 1.0], -1.0, -1.0),
        # 5 concordant, 1 discordant pair: (5 - 1) / 6; d^2 = 2: 1 - 6 * 2 / (4 * 15)
        ("one_swap", [1.0, 3.0, 2.0, 4.0], 4.0 / 6.0, 0.8),
    ],
)
def test_fidelity_by_hand(testcase_name, measured, tau, rho):
    out = sensitivity.fidelity([1.0, 2.0, 3.0, 4.0], measured)
    assert out["kendall_tau"] == pytest.approx(tau)
    assert out["spearman"] == pytest.approx(rho)
    assert out["n"] == 4


def test_fidelity_undefined_is_nan():
    assert np.isnan(sensitivity.fidelity([1.0, 1.0, 1.0], [1.0, 2.0, 3.0])["spearman"])
