"""A fixed-capacity hash set of ``uint32`` genome keys under jit (NSGA-II's archive).

NSGA-II (:mod:`mohaq_jax.search.nsga2`) never evaluates a genome twice: every offspring
is checked against the archive of all evaluated genomes. Sorting the archive's keys for
that costs ``O(capacity log capacity)`` per generation (1 ms for 34 000 genomes on a
CPU core, more than the rest of a generation); this set costs ``O(batch)``.

Open addressing with double hashing (Knuth, TAOCP vol. 3, 6.4, algorithm D) in a
power-of-two table kept at most a quarter full (:func:`table_size`): an unsuccessful
lookup probes 1.3 slots on average and the longest of a batch rarely more than 8. Batch
lookups and insertions are ``lax.while_loop`` s over probe rounds, each round one
gather (and for insertions one scatter) over the batch. Entries are never removed.
Keys are arbitrary ``uint32`` (no value is reserved), so occupancy is a second array.
"""

from __future__ import annotations

import jax
import jax.numpy as jnp

__all__ = ["contains", "empty", "insert", "table_size"]


def table_size(capacity: int) -> int:
    """Slots for ``capacity`` keys: the power of two >= 4 * capacity (at least 8)."""
    return max(8, 1 << (4 * max(int(capacity), 1) - 1).bit_length())


def empty(capacity: int) -> tuple[jax.Array, jax.Array]:
    """``(table uint32 (slots,), used bool (slots,))`` of an empty set."""
    slots = table_size(capacity)
    return jnp.zeros(slots, jnp.uint32), jnp.zeros(slots, bool)


def _mix(x):
    """murmur3's finalizer (a bijection of ``uint32``)."""
    x = x ^ (x >> jnp.uint32(16))
    x = x * jnp.uint32(0x85EBCA6B)
    x = x ^ (x >> jnp.uint32(13))
    x = x * jnp.uint32(0xC2B2AE35)
    return x ^ (x >> jnp.uint32(16))


def _probe(table, keys):
    """Slot of each key's ``round``-th probe: ``start + round * step`` (step odd)."""
    mask = jnp.uint32(table.shape[0] - 1)
    start = _mix(keys ^ jnp.uint32(0x9E3779B9))
    step = _mix(keys ^ jnp.uint32(0x7F4A7C15)) | jnp.uint32(1)
    return lambda round_: ((start + round_ * step) & mask).astype(jnp.int32)


def contains(table: jax.Array, used: jax.Array, keys: jax.Array) -> jax.Array:
    """Bool ``(n,)``: whether each of ``keys`` (``uint32 (n,)``) is in the set."""
    probe = _probe(table, keys)
    none = jnp.zeros(keys.shape, bool)

    def body(carry):
        round_, found, done = carry
        slot = probe(round_)
        occupied = used[slot]
        hit = occupied & (table[slot] == keys)
        return round_ + jnp.uint32(1), found | (hit & ~done), done | hit | ~occupied

    _, found, _ = jax.lax.while_loop(
        lambda carry: ~jnp.all(carry[2]), body, (jnp.uint32(0), none, none)
    )
    return found


def insert(
    table: jax.Array, used: jax.Array, keys: jax.Array, active: jax.Array
) -> tuple[jax.Array, jax.Array]:
    """Adds the ``active`` entries of ``keys`` (``uint32 (n,)``, bool ``(n,)``).

    Keys already present, or repeated within ``keys``, are stored once. The caller
    keeps the set at most a quarter full (:func:`table_size` of its capacity).

    Returns:
      The new ``(table, used)``.
    """
    probe = _probe(table, keys)
    n_slots = table.shape[0]

    def body(carry):
        round_, table, used, active = carry
        slot = probe(round_)
        write = active & ~used[slot]
        target = jnp.where(write, slot, n_slots)
        table = table.at[target].set(keys, mode="drop")
        used = used.at[target].set(True, mode="drop")
        # Occupied slots were not written, so the new table tells both whether a key
        # was present and whether it won a race with another key for an empty slot.
        # (Reading only the new table lets XLA scatter in place: no table copy.)
        done = table[slot] == keys
        return round_ + jnp.uint32(1), table, used, active & ~done

    _, table, used, _ = jax.lax.while_loop(
        lambda carry: jnp.any(carry[3]),
        body,
        (jnp.uint32(0), table, used, jnp.asarray(active, bool)),
    )
    return table, used
