"""Variation and duplicate elimination for integer genomes (pymoo 0.6's recipe).

The operators of :mod:`mohaq_jax.search.nsga2`: integer SBX and polynomial mutation on
floats in ``[0, upper]`` with rounding (pymoo ``SBX(vtype=float,
repair=RoundingRepair())``, ``PM(...)``), uniform crossover + random reset, and exact
duplicate elimination over packed genome codes.

Random numbers come from a counter-based hash generator (:func:`seed_words`,
:func:`_uniform`): two murmur3 ``fmix32`` rounds over ``counter * golden + seed``. It is
a pure elementwise function of a 64-bit seed and the element index, so it is exact under
``jax.vmap`` (same seed, same numbers wherever a search sits in a batch) and costs a few
integer ops per number. JAX's threefry (20 rounds per pair) dominated the generation
step on CPU; its ``rbg``/``unsafe_rbg`` implementations are cheap but give different
numbers for a key depending on its position in a vmapped batch (checked in
``tests/test_nsga2.py``), which would break "same seed, same front". Keys stay typed
``jax.random`` keys at every interface; the seed is drawn from the key once per call.
"""

from __future__ import annotations

import jax
import jax.numpy as jnp
import numpy as np

from mohaq_jax.search import ordering

__all__ = ["seed_words", "sub_seed"]

_GOLDEN = 0x9E3779B9


def _fmix32(x):
    """murmur3's 32-bit finalizer: a bijection with full avalanche."""
    x = x ^ (x >> jnp.uint32(16))
    x = x * jnp.uint32(0x85EBCA6B)
    x = x ^ (x >> jnp.uint32(13))
    x = x * jnp.uint32(0xC2B2AE35)
    return x ^ (x >> jnp.uint32(16))


def seed_words(key) -> jax.Array:
    """uint32 ``(2,)`` seed of the hash generator; a typed key is drawn from once."""
    if jnp.issubdtype(key.dtype, jax.dtypes.prng_key):
        return jax.random.bits(key, (2,), jnp.uint32)
    return jnp.asarray(key, jnp.uint32)


def sub_seed(seed: jax.Array, stream) -> jax.Array:
    """An independent seed for sub-stream ``stream`` (an int or int32 scalar)."""
    stream = jnp.asarray(stream, jnp.uint32)
    first = _fmix32(seed[0] ^ _fmix32(stream * jnp.uint32(_GOLDEN) + jnp.uint32(1)))
    second = _fmix32(seed[1] + _fmix32(stream ^ jnp.uint32(0x85EBCA6B)))
    return jnp.stack([first, second])


def _bits(seed, n: int, offset: int = 0) -> jax.Array:
    """uint32 ``(n,)``: the generator's numbers ``offset .. offset + n - 1``."""
    counter = jnp.arange(n, dtype=jnp.uint32) + jnp.uint32(offset)
    mixed = _fmix32(counter * jnp.uint32(_GOLDEN) + seed[0])
    return _fmix32(mixed ^ seed[1])


def _to_unit(bits):
    return (bits >> jnp.uint32(8)).astype(jnp.float32) * jnp.float32(2.0**-24)


def _uniform(key, shape):
    """Uniform ``[0, 1)`` float32 of ``shape`` from a key or a :func:`seed_words` seed."""
    seed = seed_words(key)
    n = int(np.prod(shape, dtype=np.int64))
    return _to_unit(_bits(seed, n)).reshape(shape)


def _uniforms(key, count: int, shape) -> tuple[jax.Array, ...]:
    """``tuple(_uniform(key, (count, *shape)))``, the same numbers, drawn per stream.

    Slicing one generated ``(count, ...)`` array inside a fused consumer keeps XLA's CPU
    code from vectorizing (SBX and mutation ran 4-5x slower); a stream apiece does not.
    """
    seed = seed_words(key)
    n = int(np.prod(shape, dtype=np.int64))
    return tuple(_to_unit(_bits(seed, n, k * n)).reshape(shape) for k in range(count))


def _pow(base, exponent):
    """``base ** exponent`` for ``base >= 0`` as exp(log): a general power op is slow to
    compile on CPU when the exponent is traced (``0 ** p`` gives 0 for ``p > 0``)."""
    return jnp.exp(exponent * jnp.log(base))


def _sbx_child(uniforms, parent_1, parent_2, second, upper, params):
    """One child of pymoo ``cross_sbx`` per row, unrounded.

    Args:
      uniforms: ``(u_var, u_spread, u_exch)`` shaped like the parents and ``u_mating``
        ``(n, 1)``, pymoo's draws for the mating.
      parent_1, parent_2: float ``(n, n_genes)`` in ``[0, upper]``.
      second: bool, broadcastable to ``(n, 1)``: the mating's second child, else its
        first.
    """
    u_var, u_spread, u_exch, u_mating = uniforms
    cross = u_var < params.sbx_prob_var
    cross &= jnp.abs(parent_1 - parent_2) > 1.0e-14
    cross &= (upper > 0.0)[None, :]
    y1 = jnp.minimum(parent_1, parent_2)
    y2 = jnp.maximum(parent_1, parent_2)
    delta = jnp.where(cross, y2 - y1, 1.0)
    upper_row = upper[None, :]
    # pymoo computes the lower child c1 and upper child c2, orders them by the parents
    # and swaps them with probability prob_exchange: the first child is c1 exactly
    # when the swap and "parent_1 < parent_2" differ. Only this row's one is computed.
    swap = (u_exch < params.sbx_prob_exchange) ^ (parent_1 > parent_2)
    lower = swap ^ (parent_1 < parent_2) ^ second
    beta = 1.0 + 2.0 * jnp.where(lower, y1, upper_row - y2) / delta
    eta = params.sbx_eta
    alpha = 2.0 - _pow(beta, -(eta + 1.0))
    inside = u_spread <= 1.0 / alpha
    base = jnp.where(
        inside, u_spread * alpha, 1.0 / jnp.where(inside, 1.0, 2.0 - u_spread * alpha)
    )
    spread = _pow(base, 1.0 / (eta + 1.0))
    child = 0.5 * ((y1 + y2) + jnp.where(lower, -spread, spread) * delta)
    parent = jnp.where(second, parent_2, parent_1)
    child = jnp.clip(jnp.where(cross, child, parent), 0.0, upper_row)
    # A mating that does not recombine passes its parents through (pymoo Crossover.do).
    return jnp.where(u_mating < params.crossover_prob, child, parent)


def _sbx(key, parent_1, parent_2, upper, params):
    """pymoo ``cross_sbx`` on floats in ``[0, upper]``; both children, unrounded."""
    u_var, u_spread, u_exch, u_mating = _uniforms(key, 4, parent_1.shape)
    uniforms = (u_var, u_spread, u_exch, u_mating[:, :1])
    return tuple(
        _sbx_child(uniforms, parent_1, parent_2, second, upper, params)
        for second in (False, True)
    )


def _mutate_pm(uniforms, genomes, upper, params):
    """pymoo ``mut_pm`` + ``Mutation.do`` with draws ``(u_ind (n, 1), u_var, rand)``."""
    u_ind, u_var, rand = uniforms
    upper_row = upper[None, :]
    span = jnp.where(upper_row > 0.0, upper_row, 1.0)
    mutate = u_var < params.mutation_prob_var
    mutate &= upper_row > 0.0
    mutate &= u_ind <= params.mutation_prob
    delta_1 = genomes / span
    delta_2 = (upper_row - genomes) / span
    eta = params.mutation_eta
    power = 1.0 / (eta + 1.0)
    low_side = rand <= 0.5
    tail = _pow(jnp.where(low_side, 1.0 - delta_1, 1.0 - delta_2), eta + 1.0)
    val = jnp.where(
        low_side,
        2.0 * rand + (1.0 - 2.0 * rand) * tail,
        2.0 * (1.0 - rand) + 2.0 * (rand - 0.5) * tail,
    )
    root = _pow(val, power)
    delta_q = jnp.where(low_side, root - 1.0, 1.0 - root)
    mutated = jnp.clip(genomes + delta_q * upper_row, 0.0, upper_row)
    return jnp.where(mutate, mutated, genomes)


def _polynomial_mutation(key, genomes, upper, params):
    """pymoo ``mut_pm`` + ``Mutation.do`` on floats in ``[0, upper]`` (unrounded)."""
    u_ind, u_var, rand = _uniforms(key, 3, genomes.shape)
    return _mutate_pm((u_ind[:, :1], u_var, rand), genomes, upper, params)


def _uniform_at(seed, counter):
    """Uniform ``[0, 1)`` float32: the generator's numbers at ``uint32`` ``counter``."""
    mixed = _fmix32(counter * jnp.uint32(_GOLDEN) + seed[0])
    return _to_unit(_fmix32(mixed ^ seed[1]))


def _sbx_pm_rows(seeds, parent_1, parent_2, second, mating, n_matings, upper, params):
    """Integer SBX, rounding, polynomial mutation, rounding: one child per row.

    Row ``r`` is the first or (``second[r]``) second child of mating ``mating[r]`` of
    ``n_matings``, with the random numbers, so the result, of ``_sbx`` over all matings
    followed by ``_polynomial_mutation`` of ``concatenate([children_1, children_2])``.
    One elementwise computation: a concatenation inside XLA's fused CPU code stops
    vectorization (the mating ran 5-10x slower).

    Args:
      seeds: ``(crossover seed, mutation seed)``, :func:`seed_words` form.
      parent_1, parent_2: int ``(n, n_genes)``, the row's mating's parents.
      second: bool ``(n,)``.
      mating: int32 ``(n,)`` in ``0..n_matings-1``.
      n_matings: static int.
      upper: float32 ``(n_genes,)``.

    Returns:
      int32 ``(n, n_genes)`` levels.
    """
    seed_cross, seed_mut = seeds
    n_genes = parent_1.shape[1]
    u32 = jnp.uint32
    gene = jnp.arange(n_genes, dtype=u32)[None, :]
    # Counters of pymoo's draws, as _uniforms lays them out: stream k of an (n, g)
    # array holds k * n * g + row * g + gene.
    row_cross = (mating.astype(u32) * u32(n_genes))[:, None]
    size_cross = u32(n_matings * n_genes)
    cross = [
        _uniform_at(seed_cross, u32(k) * size_cross + row_cross + gene)
        for k in range(3)
    ]
    cross.append(_uniform_at(seed_cross, u32(3) * size_cross + row_cross))
    second = second[:, None]
    child = _sbx_child(
        cross,
        parent_1.astype(jnp.float32),
        parent_2.astype(jnp.float32),
        second,
        upper,
        params,
    )
    child = _round_levels(child, upper).astype(jnp.float32)
    row_mut = (
        (second.astype(u32) * u32(n_matings)) + mating.astype(u32)[:, None]
    ) * u32(n_genes)
    size_mut = u32(2 * n_matings * n_genes)
    mut = (
        _uniform_at(seed_mut, row_mut),
        _uniform_at(seed_mut, size_mut + row_mut + gene),
        _uniform_at(seed_mut, u32(2) * size_mut + row_mut + gene),
    )
    return _round_levels(_mutate_pm(mut, child, upper, params), upper)


def _round_levels(genomes, upper):
    return jnp.clip(jnp.round(genomes), 0.0, upper[None, :]).astype(jnp.int32)


def _uniform_levels(key, shape, upper):
    """Uniform integer levels, gene ``i`` in ``0..upper[i]``."""
    draws = jnp.floor(_uniform(key, shape) * (upper + 1.0)[None, :])
    return jnp.minimum(draws, upper[None, :]).astype(jnp.int32)


def _uniform_crossover(key, parent_1, parent_2, params):
    u_swap, u_mating = _uniforms(key, 2, parent_1.shape)
    swap = (u_swap < params.uniform_prob) & (u_mating[:, :1] < params.crossover_prob)
    return jnp.where(swap, parent_2, parent_1), jnp.where(swap, parent_1, parent_2)


def _random_reset(key, genomes, upper, params):
    u_ind, u_var, u_level = _uniforms(key, 3, genomes.shape)
    mutate = (u_var < params.mutation_prob_var) & (u_ind[:, :1] <= params.mutation_prob)
    levels = jnp.minimum(jnp.floor(u_level * (upper + 1.0)[None, :]), upper[None, :])
    return jnp.where(mutate, levels.astype(jnp.int32), genomes)


# --------------------------------------------------------------------------------------
# Duplicate elimination over packed genome codes
# --------------------------------------------------------------------------------------


def _code_words(upper: np.ndarray) -> list[tuple[np.ndarray, np.ndarray]]:
    """Splits genes into chunks whose mixed-radix code fits a uint32 exactly."""
    words, genes, radices, product = [], [], [], 1
    for gene, n_levels in enumerate(np.asarray(upper, np.int64) + 1):
        if product * n_levels > 2**32:
            words.append((np.asarray(genes), np.asarray(radices, np.uint32)))
            genes, radices, product = [], [], 1
        genes.append(gene)
        radices.append(product)
        product *= int(n_levels)
    words.append((np.asarray(genes), np.asarray(radices, np.uint32)))
    return words


# Odd multipliers (from murmur3/xxhash) that mix several code words into one.
_MIX = (0x9E3779B1, 0x85EBCA77, 0xC2B2AE3D, 0x27D4EB2F, 0x165667B1)


def _genome_keys(genomes, words):
    """One uint32 key per genome, ``(n,)``.

    Exact (distinct genomes, distinct keys) when the space has at most 2^32 genomes,
    as both MOHAQ spaces do (SiLago 3^8, Bitfusion 4^16); larger spaces are hashed,
    where a rare collision can only make a new genome look like a duplicate.
    """
    genomes = genomes.astype(jnp.uint32)
    codes = [
        jnp.sum(
            genomes[:, genes] * jnp.asarray(radices)[None, :], axis=1, dtype=jnp.uint32
        )
        for genes, radices in words
    ]
    if len(codes) == 1:
        return codes[0]
    key = jnp.zeros_like(codes[0])
    for w, code in enumerate(codes):
        key = (key ^ (code * jnp.uint32(_MIX[w % len(_MIX)]))) * jnp.uint32(_MIX[-1])
        key = key ^ (key >> jnp.uint32(15))
    return key


def _first_unique(candidates, n_take: int, words):
    """The first ``n_take`` candidates that equal no earlier one.

    Args:
      candidates: int32 ``(n_pool, n_genes)`` in preference order.
      n_take: how many to return.

    Returns:
      int32 ``(n_take, n_genes)``: the unique candidates in pool order, then (if fewer
      than ``n_take`` are unique) the duplicates in pool order.
    """
    is_new = ordering.first_occurrence(_genome_keys(candidates, words))
    n_new = jnp.sum(is_new, dtype=jnp.int32)
    slot = jnp.where(
        is_new,
        jnp.cumsum(is_new, dtype=jnp.int32) - 1,
        n_new + jnp.cumsum(~is_new, dtype=jnp.int32) - 1,
    )
    chosen = jnp.zeros((n_take, candidates.shape[1]), candidates.dtype)
    return chosen.at[slot].set(candidates, mode="drop")
