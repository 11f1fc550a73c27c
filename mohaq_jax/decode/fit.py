"""Tuning the decoder on dev, and caching it beside the baseline's checkpoint.

The LM weight and insertion penalty are chosen on dev, once per float baseline, on a
grid extended until the chosen point is inside it (:func:`tune_interior`); :func:`get_or_fit` caches the result beside the baseline
checkpoint (``decoder.npz``) keyed by a digest of the baseline's params. See
:mod:`mohaq_jax.decode`.
"""

from __future__ import annotations

import hashlib
import io
import json
import os
from collections.abc import Callable, Iterable, Sequence

import jax
import jax.numpy as jnp
import numpy as np

from mohaq_jax.data.batching import iterate_batches
from mohaq_jax.data.corpus import DamagedCacheError, read_cache
from mohaq_jax.decode.bigram import DEFAULT_ALPHA, estimate
from mohaq_jax.decode.phone_loop import DEFAULT_N_STATES, Decoder
from mohaq_jax.numerics import metrics
from mohaq_jax.runtime import checkpoint

#: Starting dev grid of LM weights and insertion penalties (log domain, nats per
#: phone; a negative penalty is a bonus that offsets the LM's cost per phone at high
#: weights). :func:`tune_interior` extends it on a side where the best setting lies on
#: the edge (on the default eSpeak baseline the best penalty was the grid's lowest,
#: -2), so the chosen point is inside the grid it was chosen on.
LM_WEIGHTS = (0.5, 1.0, 1.5, 2.0, 3.0, 4.0)
PENALTIES = (-2.0, -1.0, 0.0, 1.0, 2.0, 4.0)
#: Rounds of grid extension at most (each adds one row or column per edge touched).
MAX_EXTENSIONS = 6
#: File of the cached decoder inside the baseline's checkpoint folder.
DECODER_FILE = "decoder.npz"
#: Bump when estimation or tuning changes, to invalidate cached decoders.
DECODER_VERSION = 2


def _grid_errors(decoder: Decoder, logits, labels, lengths, fold, grid):
    """Summed (phone edits, reference phones) of a batch at every ``(lm, pen)`` row."""

    def one(setting):
        dec = decoder.replace(lm_weight=setting[0], insertion_penalty=setting[1])
        edits, n_ref = metrics.phone_error_rate(
            dec.predict(logits, lengths), labels, lengths, fold
        )
        return jnp.sum(edits), jnp.sum(n_ref)

    return jax.lax.map(one, grid)


_grid_errors_jit = jax.jit(_grid_errors)


def _grid_sums(decoder: Decoder, batches, fold, points) -> tuple:
    """Summed (phone edits, reference phones) over ``batches`` per ``(lm, pen)``."""
    points = np.asarray(points, np.float32).reshape(-1, 2)
    n = len(points)
    # Padded to a multiple of 8 settings: grid extensions reuse few compilations.
    points = np.concatenate([points, np.repeat(points[-1:], -n % 8, axis=0)])
    grid = jnp.asarray(points)
    fold = jnp.asarray(fold, jnp.int32)
    edits = np.zeros(len(grid), np.int64)
    refs = np.zeros(len(grid), np.int64)
    for logits, labels, lengths in batches:
        e, r = _grid_errors_jit(
            decoder,
            jnp.asarray(logits),
            jnp.asarray(labels, jnp.int32),
            jnp.asarray(lengths, jnp.int32),
            fold,
            grid,
        )
        edits += np.asarray(e)
        refs += np.asarray(r)
    return edits[:n], refs[:n]


def _with(decoder: Decoder, lm_weight, penalty) -> Decoder:
    return decoder.replace(
        lm_weight=jnp.float32(lm_weight), insertion_penalty=jnp.float32(penalty)
    )


def tune(
    decoder: Decoder,
    batches: Iterable[tuple],
    fold,
    lm_weights: Sequence[float] = LM_WEIGHTS,
    penalties: Sequence[float] = PENALTIES,
) -> tuple[Decoder, np.ndarray]:
    """Picks the (LM weight, insertion penalty) of lowest dev PER on a fixed grid.

    Args:
      decoder: priors and bigram (:func:`estimate`); its weights are replaced.
      batches: ``(logits (B,T,C), labels (B,T), lengths (B,))`` of the dev set.
      fold: int ``(C,)`` class -> scoring phone (-1 = not scored).
      lm_weights, penalties: the grid. Ties go to the first in grid order.

    Returns:
      ``(tuned decoder, per (len(lm_weights), len(penalties)) float64)``.
    """
    grid = [(w, p) for w in lm_weights for p in penalties]
    if not grid:
        raise ValueError("lm_weights and penalties must not be empty")
    edits, refs = _grid_sums(decoder, batches, fold, grid)
    per = edits / np.maximum(refs, 1)
    best = int(np.argmin(per))
    tuned = _with(decoder, *grid[best])
    return tuned, per.reshape(len(lm_weights), len(penalties))


def _extend(values: list, at_start: bool, lowest: float | None = None) -> bool:
    """Adds one value beyond an edge, spaced as the two values there; False if not
    possible (one value only, or below ``lowest``)."""
    if len(values) < 2:
        return False
    if at_start:
        new = values[0] - (values[1] - values[0])
        if lowest is not None and new < lowest:
            if values[0] <= lowest:
                return False
            new = lowest
        values.insert(0, new)
    else:
        values.append(values[-1] + (values[-1] - values[-2]))
    return True


def tune_interior(
    decoder: Decoder,
    batches: Iterable[tuple],
    fold,
    lm_weights: Sequence[float] = LM_WEIGHTS,
    penalties: Sequence[float] = PENALTIES,
    max_extensions: int = MAX_EXTENSIONS,
) -> tuple[Decoder, np.ndarray, tuple, tuple]:
    """:func:`tune`, with the grid extended until its best point is interior.

    While the lowest dev PER lies on an edge of the grid, the grid grows by one
    value beyond that edge (spaced as the two values there; LM weights stay
    ``>= 0``), at most ``max_extensions`` times; only the new settings are decoded.
    Ties go to the first setting in grid order, as in :func:`tune`.

    Returns:
      ``(tuned decoder, per (n_lm, n_pen), lm_weights, penalties)``: the final grid.
    """
    batches = list(batches)  # decoded once per new setting
    lm, pen = [float(w) for w in lm_weights], [float(p) for p in penalties]
    if not lm or not pen:
        raise ValueError("lm_weights and penalties must not be empty")
    known: dict[tuple[float, float], float] = {}
    for round_ in range(max_extensions + 1):
        new = [(w, p) for w in lm for p in pen if (w, p) not in known]
        if new:
            edits, refs = _grid_sums(decoder, batches, fold, new)
            known.update(zip(new, edits / np.maximum(refs, 1), strict=True))
        per = np.asarray([[known[(w, p)] for p in pen] for w in lm])
        i, j = np.unravel_index(int(np.argmin(per)), per.shape)
        if round_ == max_extensions:
            break
        grew = False
        if i == 0:
            grew |= _extend(lm, True, lowest=0.0)
        if i == len(lm) - 1:
            grew |= _extend(lm, False)
        if j == 0:
            grew |= _extend(pen, True)
        if j == len(pen) - 1:
            grew |= _extend(pen, False)
        if not grew:
            break
    return _with(decoder, lm[i], pen[j]), per, tuple(lm), tuple(pen)


def params_digest(params) -> str:
    """Short sha256 of a params pytree (paths, dtypes, shapes and bytes)."""
    h = hashlib.sha256()
    leaves, _ = jax.tree_util.tree_flatten_with_path(params)
    for path, leaf in leaves:
        arr = np.ascontiguousarray(np.asarray(leaf))
        h.update(f"{jax.tree_util.keystr(path)}|{arr.dtype}|{arr.shape}".encode())
        h.update(arr.tobytes())
    return h.hexdigest()[:16]


def save(path, decoder: Decoder, meta: dict) -> None:
    """Writes the decoder and a JSON ``meta`` to one ``.npz``, atomically."""
    buf = io.BytesIO()
    np.savez(
        buf,
        log_prior=np.asarray(decoder.log_prior),
        log_bigram=np.asarray(decoder.log_bigram),
        lm_weight=np.asarray(decoder.lm_weight),
        insertion_penalty=np.asarray(decoder.insertion_penalty),
        n_states=np.asarray(decoder.n_states),
        meta=np.asarray(json.dumps(meta, sort_keys=True)),
    )
    checkpoint.write_bytes_atomic(path, buf.getvalue())


def load(path) -> tuple[Decoder, dict]:
    """Reads what :func:`save` wrote: ``(decoder, meta)``.

    Every array is read whole, so a changed byte fails its zip CRC-32.

    Raises:
      FileNotFoundError: no file.
      DamagedCacheError: truncated, corrupted or not a decoder file (names the path).
    """
    try:
        with open(path, "rb") as f, np.load(f, allow_pickle=False) as data:
            decoder = Decoder(
                log_prior=jnp.asarray(data["log_prior"]),
                log_bigram=jnp.asarray(data["log_bigram"]),
                lm_weight=jnp.float32(data["lm_weight"]),
                insertion_penalty=jnp.float32(data["insertion_penalty"]),
                n_states=int(data["n_states"]),
            )
            meta = json.loads(str(data["meta"]))
    except FileNotFoundError:
        raise
    except Exception as error:  # zipfile, numpy, zlib and json each raise their own
        raise DamagedCacheError(f"{path}: {type(error).__name__}: {error}") from None
    n_classes = decoder.log_prior.shape[0] if decoder.log_prior.ndim == 1 else -1
    if not isinstance(meta, dict) or decoder.log_bigram.shape != (
        n_classes + 1,
        n_classes + 1,
    ):
        raise DamagedCacheError(f"{path}: not a decoder file")
    return decoder, meta


def load_cached(path, key: str) -> tuple[Decoder, dict] | None:
    """The decoder cached at ``path`` for ``key``, or None (missing, damaged, stale).

    A damaged file is reported in one line naming it; another key means another
    baseline or grid and is refitted without a word.
    """
    if path is None:
        return None
    cached = read_cache(path, load)
    if cached is None or cached[1].get("key") != key:
        return None
    return cached


def _dev_batches(split, logits_fn, batch_size: int):
    """Dev logits in length-sorted batches (padded to a multiple of 16 frames)."""
    for batch in iterate_batches(split, batch_size):
        lengths = jnp.asarray(batch.lengths, jnp.int32)
        yield logits_fn(jnp.asarray(batch.features), lengths), batch.labels, lengths


def get_or_fit(
    ckpt_dir,
    params,
    corpus,
    logits_fn: Callable,
    n_states: int = DEFAULT_N_STATES,
    alpha: float = DEFAULT_ALPHA,
    lm_weights: Sequence[float] = LM_WEIGHTS,
    penalties: Sequence[float] = PENALTIES,
    batch_size: int = 64,
    max_extensions: int = MAX_EXTENSIONS,
) -> tuple[Decoder, dict]:
    """The baseline's decoder: loaded from ``ckpt_dir/decoder.npz`` or fitted and saved.

    Fitting estimates priors and bigram on ``corpus.train`` and tunes the LM weight and
    insertion penalty on ``corpus.dev`` with the baseline's logits. The cache is keyed
    by :func:`params_digest` of ``params``, the corpus and every setting here, so a
    retrained baseline or another grid refits.

    Args:
      ckpt_dir: the baseline's checkpoint folder (None = fit, do not cache).
      params: the float baseline's params (only hashed here).
      corpus: :class:`mohaq_jax.data.Corpus`.
      logits_fn: ``(features (B,T,F), lengths (B,)) -> logits (B,T,C)`` of the
        baseline (float, no dropout).
      n_states, alpha, lm_weights, penalties, max_extensions: see :func:`estimate`
        and :func:`tune_interior` (the grid starts at ``lm_weights x penalties``).
      batch_size: dev utterances per logits call.

    Returns:
      ``(decoder, info)``; info has ``key``, ``lm_weight``, ``insertion_penalty``,
      the final grid (``lm_weights``, ``penalties``, ``dev_per_grid`` nested list,
      ``interior``: the chosen point is not on its edge), ``loaded`` and ``path``.
    """
    key_doc = {
        "version": DECODER_VERSION,
        "params": params_digest(params),
        "corpus": [corpus.name, corpus.settings, list(corpus.classes)],
        "n_states": int(n_states),
        "alpha": float(alpha),
        "lm_weights": [float(w) for w in lm_weights],
        "penalties": [float(p) for p in penalties],
        "max_extensions": int(max_extensions),
    }
    key = hashlib.sha256(
        json.dumps(key_doc, sort_keys=True, default=str).encode()
    ).hexdigest()[:16]
    path = None if ckpt_dir is None else os.path.join(os.fspath(ckpt_dir), DECODER_FILE)
    cached = load_cached(path, key)
    if cached is not None:
        return cached[0], {**cached[1], "loaded": True, "path": path}
    decoder = estimate(corpus.train.labels, corpus.n_classes, n_states, alpha)
    decoder, per, grid_lm, grid_pen = tune_interior(
        decoder,
        _dev_batches(corpus.dev, logits_fn, batch_size),
        corpus.fold39,
        lm_weights,
        penalties,
        max_extensions,
    )
    i, j = np.unravel_index(int(np.argmin(per)), per.shape)
    meta = {
        "key": key,
        "lm_weight": float(decoder.lm_weight),
        "insertion_penalty": float(decoder.insertion_penalty),
        "n_states": int(n_states),
        "lm_weights": list(grid_lm),  # the final grid (extended from the flags')
        "penalties": list(grid_pen),
        "dev_per_grid": per.tolist(),
        "interior": bool(0 < i < per.shape[0] - 1 and 0 < j < per.shape[1] - 1),
    }
    if path is not None:
        save(path, decoder, meta)
    return decoder, {**meta, "loaded": False, "path": path}
