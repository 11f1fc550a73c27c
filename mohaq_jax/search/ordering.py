"""Orders and ranks from single-operand ``uint32`` sorts (XLA's fast CPU path).

XLA's CPU sort runs a plain ``std::sort`` for one unsigned or signed integer operand,
but calls a compiled comparator per comparison for floats, for several operands
(``argsort`` carries the index as a second one) and for ``lexsort``: 4-10x slower
(2 000 ``uint32``: 45 us; ``argsort`` 250 us, a three-key ``lexsort`` 500 us). NSGA-II
sorts a few times per generation, so every order here is built from ``uint32`` sorts:

* :func:`float_key` maps float32 to order-preserving ``uint32`` keys;
* :func:`positions` gives each key the number of keys below it (its tie group's first
  position in sorted order): a sort and a ``searchsorted``; these compress a key into
  ``index_bits(n)`` bits, so two keys pack into one ``uint32`` (lexicographic orders);
* :func:`stable_order` is a stable ``argsort``: positions in the high bits, the index
  in the low bits, one more sort.

Up to :data:`SMALL` elements, positions are counted instead, with one fused ``(n, n)``
comparison: faster than sorting there, and quick to compile.
"""

from __future__ import annotations

import jax
import jax.numpy as jnp

__all__ = [
    "SMALL",
    "first_occurrence",
    "float_key",
    "index_bits",
    "inverse_permutation",
    "positions",
    "random_permutation",
    "stable_order",
]

# Up to this many elements, (n, n) comparisons beat sorting on CPU.
SMALL = 64


def index_bits(n: int) -> int:
    """Bits that hold an index ``0..n-1`` (at least 1)."""
    return max(1, (int(n) - 1).bit_length())


def float_key(values: jax.Array) -> jax.Array:
    """``uint32`` keys in the order of float32 ``values`` (-0.0 and 0.0 equal; no NaN)."""
    values = jnp.asarray(values, jnp.float32)
    values = jnp.where(values == 0.0, jnp.float32(0.0), values)
    bits = jax.lax.bitcast_convert_type(values, jnp.uint32)
    negative = (bits >> jnp.uint32(31)) == jnp.uint32(1)
    return jnp.where(negative, ~bits, bits | jnp.uint32(0x80000000))


def _rowwise(fn, ndim: int):
    for _ in range(ndim - 1):
        fn = jax.vmap(fn)
    return fn


def _count_below(sorted_keys: jax.Array, keys: jax.Array) -> jax.Array:
    """uint32: how many of ``sorted_keys`` (1-D, ascending) are below each of ``keys``.

    A branchless binary search whose ``uint32`` carry is the result. (``jnp.searchsorted``
    ends with a dtype conversion that XLA fuses into each consumer, where it can keep
    the CPU code from vectorizing: the dominance words ran 4x slower.)
    """
    n = sorted_keys.shape[0]
    steps = n.bit_length()

    def body(i, below):
        step = jnp.uint32(1) << (jnp.uint32(steps - 1) - i.astype(jnp.uint32))
        probe = below + step
        last = jnp.minimum(probe, jnp.uint32(n)) - jnp.uint32(1)
        take = (probe <= jnp.uint32(n)) & (sorted_keys[last] < keys)
        return jnp.where(take, probe, below)

    return jax.lax.fori_loop(0, steps, body, jnp.zeros(keys.shape, jnp.uint32))


def positions(keys: jax.Array) -> jax.Array:
    """uint32 ``(..., n)``: how many keys of the same row are smaller, per key.

    Equal keys share their tie group's first position in sorted order, so the result
    is an order-preserving code of ``keys`` in ``index_bits(n)`` bits.

    Args:
      keys: ``uint32`` (or any integer) ``(..., n)``; rows are independent.
    """
    n = keys.shape[-1]
    if n <= SMALL:
        smaller = keys[..., None, :] < keys[..., :, None]
        return jnp.sum(smaller, axis=-1, dtype=jnp.uint32)
    sorted_keys = jnp.sort(keys, axis=-1)
    return _rowwise(_count_below, keys.ndim)(sorted_keys, keys)


def inverse_permutation(permutation: jax.Array) -> jax.Array:
    """int32 ``(..., n)``: ``inverse[..., permutation[..., i]] = i`` per row."""
    n = permutation.shape[-1]
    index = jnp.arange(n, dtype=jnp.int32)
    invert = _rowwise(
        lambda p: jnp.zeros(n, jnp.int32).at[p].set(index, unique_indices=True),
        permutation.ndim,
    )
    return invert(permutation)


def stable_order(keys: jax.Array) -> jax.Array:
    """Stable ``argsort`` of ``uint32`` keys along the last axis, int32 ``(..., n)``.

    Equal keys keep their index order. Rows of up to 2^16 elements use two ``uint32``
    sorts (one in :func:`positions`); longer ones fall back to ``jnp.argsort``.
    """
    n = keys.shape[-1]
    index = jnp.arange(n, dtype=jnp.int32)
    if n <= SMALL:
        smaller = keys[..., None, :] < keys[..., :, None]
        earlier = index[None, :] < index[:, None]
        earlier = earlier.reshape((1,) * (keys.ndim - 1) + earlier.shape)
        tied_before = (keys[..., None, :] == keys[..., :, None]) & earlier
        rank = jnp.sum(smaller | tied_before, axis=-1, dtype=jnp.int32)
        return inverse_permutation(rank)
    bits = index_bits(n)
    if 2 * bits > 32:
        return jnp.argsort(keys, axis=-1, stable=True).astype(jnp.int32)
    index = index.astype(jnp.uint32).reshape((1,) * (keys.ndim - 1) + (n,))
    packed = (positions(keys) << jnp.uint32(bits)) | index
    low = jnp.uint32((1 << bits) - 1)
    return (jnp.sort(packed, axis=-1) & low).astype(jnp.int32)


def first_occurrence(keys: jax.Array) -> jax.Array:
    """Bool ``(n,)``: the earliest of each group of equal keys (1-D ``keys``)."""
    n = keys.shape[0]
    index = jnp.arange(n, dtype=jnp.int32)
    if n <= SMALL:
        earlier = (keys[None, :] == keys[:, None]) & (index[None, :] < index[:, None])
        return ~jnp.any(earlier, axis=1)
    group = positions(keys)
    first = jnp.full(n, n, jnp.int32).at[group].min(index)
    return first[group] == index


def random_permutation(keys: jax.Array, key_bits: int = 32) -> jax.Array:
    """int32 ``(..., n)``: the stable order of random ``key_bits``-bit ``keys`` per row.

    Up to :data:`SMALL` elements exactly :func:`stable_order`; above, one sort of the
    keys' high ``32 - index_bits(n)`` bits with the index below them, so keys equal in
    those bits keep their index order (about one pair in 2 000 random keys).
    """
    n = keys.shape[-1]
    width = index_bits(n)
    if n <= SMALL or width > 16:
        return stable_order(keys)
    low = jnp.uint32((1 << width) - 1)
    index = jnp.arange(n, dtype=jnp.uint32).reshape((1,) * (keys.ndim - 1) + (n,))
    high = keys << jnp.uint32(32 - key_bits)
    return (jnp.sort((high & ~low) | index, axis=-1) & low).astype(jnp.int32)
