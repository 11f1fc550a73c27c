"""Phone-loop Viterbi decoding with a phone bigram LM (hybrid NN/HMM scoring).

The method's authors (Rashed et al. 2021, Sec. IV) report TIMIT phone error rates of
a Kaldi/PyTorch-Kaldi recipe: a hybrid acoustic model whose framewise posteriors are
turned into scaled likelihoods and decoded with an HMM phone loop and a phone bigram
language model (Bourlard & Morgan, *Connectionist Speech Recognition*, 1994; Lee &
Hon 1989 for the bigram on TIMIT). This module is that decoder, in JAX, with fixed
shapes so it runs inside the population evaluator's ``jit`` (``vmap`` over utterances,
``lax.scan`` over time, ``vmap``/``lax.map`` over genomes around it).

* **Scaled likelihoods** ``log p(x|c) - const = log_softmax(logits)_c - log prior_c``,
  priors from the training frame counts (add-one smoothed).
* **Topology.** Each training class is a left-to-right chain of ``n_states`` states that
  share the class's likelihood: states ``0 .. n-2`` always advance, the last one loops
  or leaves, so a phone lasts at least ``n_states`` frames. Leaving the last state of
  phone ``p`` and entering phone ``q`` scores ``lm_weight * log P(q|p) -
  insertion_penalty``. **Default: ``n_states = 1``** (one state per phone, with the
  insertion penalty), because a minimum duration forbids real phones: on the default
  eSpeak corpus 2.7 % of the training phones last 1 frame and 7.4 % fewer than 3
  (TIMIT at 10 ms has similar short stops and flaps), and every forbidden phone is a
  deletion; the penalty removes flicker without forbidding anything and the loop has
  ``C`` instead of ``C * n`` states. ``n_states > 1`` is supported and tested; on the
  default eSpeak baseline 1, 2 and 3 states gave dev PER 0.282, 0.278 and 0.285 (each
  tuned), within the noise of its ~2 300 dev phones.
* **Bigram LM** over training classes (the 61 TIMIT labels or eSpeak's 39), estimated on
  the training transcripts after merging repeated frame labels (as :mod:`metrics`
  does before folding), with sentence boundaries, smoothed towards the add-one unigram:
  ``P(q|p) = (n(p,q) + alpha P_uni(q)) / (n(p) + alpha)``. The decoded class sequence is
  then folded and collapsed by :mod:`metrics` exactly like the framewise predictions.
* **LM weight and insertion penalty** are chosen on dev, once per float baseline, on a
  small grid (:func:`tune`); :func:`get_or_fit` caches the result beside the baseline
  checkpoint (``decoder.npz``) keyed by a digest of the baseline's params.

The path must end in a last state; an utterance shorter than ``n_states`` frames (no
such path) ends in its best state instead.
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
from flax import struct

from mohaq_jax import checkpoint, metrics
from mohaq_jax.data.batching import iterate_batches

#: States per phone of the default topology (see the module docstring for why 1).
DEFAULT_N_STATES = 1
#: Weight of the smoothing prior (pseudo-counts) of the bigram towards the unigram.
DEFAULT_ALPHA = 1.0
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


@struct.dataclass
class Decoder:
    """Decoder params: a pytree (arrays traced, ``n_states`` static)."""

    log_prior: jax.Array  # shape=(C,), float32: log class prior (training frames)
    log_bigram: jax.Array  # shape=(C+1, C+1), float32: log P(next|prev);
    # row C = sentence start <s>, column C = sentence end </s>
    lm_weight: jax.Array  # shape=(), float32
    insertion_penalty: jax.Array  # shape=(), float32: subtracted per phone entered
    n_states: int = struct.field(pytree_node=False, default=DEFAULT_N_STATES)

    def decode(self, logits, lengths) -> tuple[jax.Array, jax.Array]:
        """Best class path and its score per utterance.

        Args:
          logits: ``(B, T, C)`` model outputs (log-posteriors up to a constant).
          lengths: int ``(B,)`` valid frames.

        Returns:
          ``(paths (B, T) int32, -1 at padding; scores (B,) float32)``.
        """
        scores = jax.nn.log_softmax(logits, axis=-1) - self.log_prior[None, None, :]
        return jax.vmap(viterbi, (0, 0, None, None, None, None))(
            scores,
            jnp.asarray(lengths, jnp.int32),
            self.log_bigram,
            self.lm_weight,
            self.insertion_penalty,
            self.n_states,
        )

    def predict(self, logits, lengths) -> jax.Array:
        """Decoded class per frame, int32 ``(B, T)``, -1 at padding (for metrics)."""
        return self.decode(logits, lengths)[0]


def viterbi(scores, length, log_bigram, lm_weight, penalty, n_states: int):
    """Viterbi best path of one utterance through the phone loop.

    Args:
      scores: ``(T, C)`` scaled log-likelihoods.
      length: valid frames (frames ``>= length`` are ignored).
      log_bigram: ``(C+1, C+1)`` see :class:`Decoder`.
      lm_weight, penalty: scalars.
      n_states: states per phone (static).

    Returns:
      ``(path (T,) int32 class per frame, -1 at padding; best score)``. Ties go to the
      lowest previous class and, in a last state, to staying in the phone.
    """
    n_time, n_cls = scores.shape
    s_last = n_states - 1
    trans = lm_weight * log_bigram[:n_cls, :n_cls] - penalty  # (prev, next)
    start = lm_weight * log_bigram[n_cls, :n_cls] - penalty
    end = lm_weight * log_bigram[:n_cls, n_cls]
    neg = jnp.full((n_cls, n_states), -jnp.inf, scores.dtype)
    delta0 = neg.at[:, 0].set(start + scores[0])

    def forward(delta, inputs):
        t, frame = inputs
        # Max only: the argmax is recomputed for the one state on the best path in
        # the backward pass (an argmax over (C, C) per frame costs ~30x the max).
        entry = jnp.max(delta[:, s_last][:, None] + trans, axis=0)
        if n_states == 1:
            new = jnp.maximum(delta[:, 0], entry)[:, None]
        else:
            last = jnp.maximum(delta[:, s_last], delta[:, s_last - 1])
            new = jnp.concatenate(
                [entry[:, None], delta[:, : s_last - 1], last[:, None]], axis=1
            )
        new = new + frame[:, None]
        return jnp.where(t < length, new, delta), delta

    steps = jnp.arange(1, n_time, dtype=jnp.int32)
    delta, history = jax.lax.scan(forward, delta0, (steps, scores[1:]))
    # history[t] = delta after frame t, for t < length.
    history = jnp.concatenate([history, delta[None]])
    final = delta + end[:, None]
    flat_last = jnp.argmax(final[:, s_last])
    flat_any = jnp.argmax(final.reshape(-1))
    reachable = jnp.isfinite(final[flat_last, s_last])
    cls = jnp.where(reachable, flat_last, flat_any // n_states).astype(jnp.int32)
    state = jnp.where(reachable, s_last, flat_any % n_states).astype(jnp.int32)
    best = final[cls, state]

    def backward(carry, t):
        c, s = carry
        label = jnp.where(t < length, c, -1)
        prev = history[jnp.maximum(t - 1, 0)]  # (C, S): delta after frame t - 1
        cand = prev[:, s_last] + trans[:, c]
        entry_from = jnp.argmax(cand).astype(jnp.int32)
        if n_states == 1:  # same comparison as the forward pass: same ties
            here_stay = prev[c, 0] >= cand[entry_from]
        else:
            here_stay = prev[c, s_last] >= prev[c, s_last - 1]
        enter = (s == 0) & ~((n_states == 1) & here_stay)
        loop = (s == s_last) & here_stay
        prev_c = jnp.where(enter, entry_from, c)
        prev_s = jnp.where(enter, s_last, jnp.where(loop, s, s - 1))
        move = (t < length) & (t > 0)
        return (jnp.where(move, prev_c, c), jnp.where(move, prev_s, s)), label

    _, path = jax.lax.scan(
        backward, (cls, state), jnp.arange(n_time, dtype=jnp.int32), reverse=True
    )
    return path.astype(jnp.int32), best


# ------------------------------------------------------------------ estimation


def phone_sequences(labels: Iterable[np.ndarray]) -> list[np.ndarray]:
    """Each utterance's class sequence with repeated frame labels merged (-1 dropped)."""
    out = []
    for lab in labels:
        lab = np.asarray(lab)
        lab = lab[lab >= 0]
        keep = np.ones(len(lab), bool)
        keep[1:] = lab[1:] != lab[:-1]
        out.append(lab[keep])
    return out


def bigram_counts(sequences: Iterable[np.ndarray], n_classes: int) -> np.ndarray:
    """``(C+1, C+1)`` int64 counts n(prev, next); index C = <s> as prev, </s> as next."""
    counts = np.zeros((n_classes + 1, n_classes + 1), np.int64)
    for seq in sequences:
        seq = np.asarray(seq, np.int64)
        if seq.size and (seq.min() < 0 or seq.max() >= n_classes):
            raise ValueError(f"labels must be in 0..{n_classes - 1}, got {seq}")
        padded = np.concatenate([[n_classes], seq, [n_classes]])
        np.add.at(counts, (padded[:-1], padded[1:]), 1)
    return counts


def bigram_log_probs(counts: np.ndarray, alpha: float = DEFAULT_ALPHA) -> np.ndarray:
    """Smoothed ``log P(next|prev)``, ``(C+1, C+1)`` float32 (see module docstring)."""
    counts = np.asarray(counts, np.float64)
    n_next = counts.sum(axis=0)  # occurrences of each next token (incl. </s>)
    unigram = (n_next + 1.0) / (n_next.sum() + counts.shape[1])
    probs = (counts + alpha * unigram[None, :]) / (
        counts.sum(axis=1, keepdims=True) + alpha
    )
    return np.log(probs).astype(np.float32)


def class_log_priors(labels: Iterable[np.ndarray], n_classes: int) -> np.ndarray:
    """Add-one smoothed log frame frequency of each class, ``(C,)`` float32."""
    freq = np.ones(n_classes, np.float64)
    for lab in labels:
        lab = np.asarray(lab)
        freq += np.bincount(lab[lab >= 0], minlength=n_classes)[:n_classes]
    return np.log(freq / freq.sum()).astype(np.float32)


def estimate(
    train_labels: Sequence[np.ndarray],
    n_classes: int,
    n_states: int = DEFAULT_N_STATES,
    alpha: float = DEFAULT_ALPHA,
    lm_weight: float = 1.0,
    insertion_penalty: float = 0.0,
) -> Decoder:
    """Priors and bigram from training frame labels (one ``(T_i,)`` array each)."""
    if n_states < 1:
        raise ValueError(f"n_states must be >= 1, got {n_states}")
    counts = bigram_counts(phone_sequences(train_labels), n_classes)
    return Decoder(
        log_prior=jnp.asarray(class_log_priors(train_labels, n_classes)),
        log_bigram=jnp.asarray(bigram_log_probs(counts, alpha)),
        lm_weight=jnp.float32(lm_weight),
        insertion_penalty=jnp.float32(insertion_penalty),
        n_states=n_states,
    )


# ---------------------------------------------------------------------- tuning


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


# ----------------------------------------------------------------------- cache


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
    """Reads what :func:`save` wrote: ``(decoder, meta)``."""
    with np.load(os.fspath(path), allow_pickle=False) as data:
        decoder = Decoder(
            log_prior=jnp.asarray(data["log_prior"]),
            log_bigram=jnp.asarray(data["log_bigram"]),
            lm_weight=jnp.float32(data["lm_weight"]),
            insertion_penalty=jnp.float32(data["insertion_penalty"]),
            n_states=int(data["n_states"]),
        )
        return decoder, json.loads(str(data["meta"]))


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
    if path is not None and os.path.exists(path):
        decoder, meta = load(path)
        if meta.get("key") == key:
            return decoder, {**meta, "loaded": True, "path": path}
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
