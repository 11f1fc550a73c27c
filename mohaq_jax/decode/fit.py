"""Tuning the decoder on dev, and caching it beside the baseline's checkpoint.

The LM weight and insertion penalty are chosen on dev, once per float baseline, on a
small grid (:func:`tune`); :func:`get_or_fit` caches the result beside the baseline
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

from mohaq_jax import checkpoint, metrics
from mohaq_jax.data.batching import iterate_batches
from mohaq_jax.data.corpus import DamagedCacheError, read_cache
from mohaq_jax.decode.bigram import DEFAULT_ALPHA, estimate
from mohaq_jax.decode.phone_loop import DEFAULT_N_STATES, Decoder

#: Dev grid of LM weights and insertion penalties (log domain, nats per phone; a
#: negative penalty is a bonus that offsets the LM's cost per phone at high weights).
#: On the default eSpeak baseline the optimum was lm_weight 2, penalty -1, and the
#: PER surface is flat near it (within 1 point from lm 1 to 3).
LM_WEIGHTS = (0.5, 1.0, 1.5, 2.0, 3.0, 4.0)
PENALTIES = (-2.0, -1.0, 0.0, 1.0, 2.0, 4.0)
#: File of the cached decoder inside the baseline's checkpoint folder.
DECODER_FILE = "decoder.npz"
#: Bump when estimation or tuning changes, to invalidate cached decoders.
DECODER_VERSION = 1


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


def tune(
    decoder: Decoder,
    batches: Iterable[tuple],
    fold,
    lm_weights: Sequence[float] = LM_WEIGHTS,
    penalties: Sequence[float] = PENALTIES,
) -> tuple[Decoder, np.ndarray]:
    """Picks the (LM weight, insertion penalty) of lowest dev PER on the grid.

    Args:
      decoder: priors and bigram (:func:`estimate`); its weights are replaced.
      batches: ``(logits (B,T,C), labels (B,T), lengths (B,))`` of the dev set.
      fold: int ``(C,)`` class -> scoring phone (-1 = not scored).
      lm_weights, penalties: the grid. Ties go to the first in grid order.

    Returns:
      ``(tuned decoder, per (len(lm_weights), len(penalties)) float64)``.
    """
    grid = np.array([(w, p) for w in lm_weights for p in penalties], np.float32)
    if grid.size == 0:
        raise ValueError("lm_weights and penalties must not be empty")
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
            jnp.asarray(grid),
        )
        edits += np.asarray(e)
        refs += np.asarray(r)
    per = edits / np.maximum(refs, 1)
    best = int(np.argmin(per))
    tuned = decoder.replace(
        lm_weight=jnp.float32(grid[best, 0]),
        insertion_penalty=jnp.float32(grid[best, 1]),
    )
    return tuned, per.reshape(len(lm_weights), len(penalties))


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
      n_states, alpha, lm_weights, penalties: see :func:`estimate` and :func:`tune`.
      batch_size: dev utterances per logits call.

    Returns:
      ``(decoder, info)``; info has ``key``, ``lm_weight``, ``insertion_penalty``,
      ``dev_per_grid`` (nested list), ``loaded`` and ``path``.
    """
    key_doc = {
        "version": DECODER_VERSION,
        "params": params_digest(params),
        "corpus": [corpus.name, corpus.settings, list(corpus.classes)],
        "n_states": int(n_states),
        "alpha": float(alpha),
        "lm_weights": [float(w) for w in lm_weights],
        "penalties": [float(p) for p in penalties],
    }
    key = hashlib.sha256(
        json.dumps(key_doc, sort_keys=True, default=str).encode()
    ).hexdigest()[:16]
    path = None if ckpt_dir is None else os.path.join(os.fspath(ckpt_dir), DECODER_FILE)
    cached = load_cached(path, key)
    if cached is not None:
        return cached[0], {**cached[1], "loaded": True, "path": path}
    decoder = estimate(corpus.train.labels, corpus.n_classes, n_states, alpha)
    decoder, per = tune(
        decoder,
        _dev_batches(corpus.dev, logits_fn, batch_size),
        corpus.fold39,
        lm_weights,
        penalties,
    )
    meta = {
        "key": key,
        "lm_weight": float(decoder.lm_weight),
        "insertion_penalty": float(decoder.insertion_penalty),
        "n_states": int(n_states),
        "lm_weights": key_doc["lm_weights"],
        "penalties": key_doc["penalties"],
        "dev_per_grid": per.tolist(),
    }
    if path is not None:
        save(path, decoder, meta)
    return decoder, {**meta, "loaded": False, "path": path}
