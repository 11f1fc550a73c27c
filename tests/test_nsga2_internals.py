"""NSGA-II's fast pieces against plain numpy: uint32 orders (both the counting path up
to ``ordering.SMALL`` and the sorting path), the archive's hash set, survival order, and
ranks/crowding on sizes that take the packed and two-sort paths."""

import jax
import jax.numpy as jnp
import numpy as np
import pytest
from pymoo.operators.survival.rank_and_crowding.metrics import get_crowding_function
from pymoo.util.nds.non_dominated_sorting import NonDominatedSorting

from mohaq_jax.search import keyset, nsga2_steps, ordering, pareto

SIZES = [ordering.SMALL, ordering.SMALL + 1, 700]


@pytest.mark.parametrize("n", SIZES)
def test_orders_match_numpy(n):
    rng = np.random.default_rng(n)
    keys = rng.integers(0, 40, (3, n)).astype(np.uint32)  # many ties
    order = np.asarray(jax.jit(ordering.stable_order)(jnp.asarray(keys)))
    np.testing.assert_array_equal(order, np.argsort(keys, axis=1, kind="stable"))
    positions = np.asarray(jax.jit(ordering.positions)(jnp.asarray(keys)))
    np.testing.assert_array_equal(
        positions, np.sum(keys[:, None, :] < keys[:, :, None], axis=-1)
    )
    first = np.zeros(n, bool)
    first[np.unique(keys[0], return_index=True)[1]] = True
    np.testing.assert_array_equal(
        np.asarray(jax.jit(ordering.first_occurrence)(jnp.asarray(keys[0]))), first
    )
    values = rng.normal(size=n).astype(np.float32)
    values[:5] = [0.0, -0.0, np.inf, -np.inf, 0.0]
    by_key = np.asarray(ordering.stable_order(ordering.float_key(jnp.asarray(values))))
    np.testing.assert_array_equal(by_key, np.argsort(values, kind="stable"))
    random = rng.integers(0, 2**24, (2, n)).astype(np.uint32)
    permutation = np.asarray(ordering.random_permutation(jnp.asarray(random), 24))
    assert all(sorted(row) == list(range(n)) for row in permutation)
    assert np.all(np.diff(np.take_along_axis(random, permutation, 1) >> 13) >= 0)


@pytest.mark.parametrize("capacity", [5, 3000])
def test_keyset_matches_python_set(capacity):
    rng = np.random.default_rng(capacity)
    table, used = keyset.empty(capacity)
    insert, contains = jax.jit(keyset.insert), jax.jit(keyset.contains)
    stored = set()
    for _ in range(3):  # batches with repeats inside and across batches
        keys = rng.integers(0, 3 * capacity, capacity // 3 + 1).astype(np.uint32)
        keys[-1] = 0xFFFFFFFF  # no key value is reserved
        active = rng.random(keys.size) < 0.8
        table, used = insert(table, used, jnp.asarray(keys), jnp.asarray(active))
        stored |= set(keys[active].tolist())
        queries = np.concatenate([keys, rng.integers(0, 3 * capacity, 50)])
        found = np.asarray(contains(table, used, jnp.asarray(queries, jnp.uint32)))
        np.testing.assert_array_equal(found, [q in stored for q in queries.tolist()])
    assert int(np.sum(np.asarray(used))) == len(stored)


@pytest.mark.parametrize("n", [60, 300, 2000])
def test_survival_and_crowding_match_pymoo(n):
    """Packed dominance (n > 256) and the one- and two-sort orders, against pymoo; a
    chain of single-point fronts takes the two-sort paths."""
    rng = np.random.default_rng(n)
    cloud = rng.integers(0, 8, (n, 3)).astype(np.float32)
    chain = np.repeat(rng.permutation(n).astype(np.float32)[:, None], 3, axis=1)
    pymoo_crowding = get_crowding_function("cd")
    for objectives in (cloud, chain):
        n_keep = min(n - 1, n // 2 + 100) if objectives is chain else n // 2
        fronts, expected = NonDominatedSorting().do(
            objectives.astype(np.float64), return_rank=True
        )
        ranks = np.asarray(jax.jit(pareto.non_dominated_rank)(jnp.asarray(objectives)))
        np.testing.assert_array_equal(ranks, expected)
        crowding = np.asarray(
            jax.jit(pareto.crowding_distance)(jnp.asarray(objectives), ranks)
        )
        for front in fronts:
            np.testing.assert_allclose(
                crowding[front], pymoo_crowding.do(objectives[front]), rtol=1e-5
            )
        keep, _, _ = jax.jit(nsga2_steps.survival_order, static_argnums=3)(
            jax.random.key(0), jnp.asarray(objectives), jnp.zeros(n), n_keep
        )
        keep = np.asarray(keep)
        order = np.lexsort((-crowding[keep], ranks[keep]))
        np.testing.assert_array_equal(order, np.arange(n_keep))  # sorted survivors
        last = ranks[keep].max()  # whole better fronts, then the most spread of last
        assert set(np.flatnonzero(ranks < last)) <= set(keep.tolist())
        dropped = np.setdiff1d(np.flatnonzero(ranks == last), keep)
        if dropped.size:
            assert crowding[dropped].max() <= crowding[keep][ranks[keep] == last].min()
