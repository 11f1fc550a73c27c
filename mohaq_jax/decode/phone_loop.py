"""The phone-loop HMM and its Viterbi search (see :mod:`mohaq_jax.decode`).

Scaled likelihoods ``log_softmax(logits) - log prior`` go through a loop of
left-to-right phone chains of ``n_states`` states; entering phone ``q`` from ``p``
scores ``lm_weight * log P(q|p) - insertion_penalty``. Fixed shapes: ``lax.scan`` over
time inside, ``vmap`` over utterances (:meth:`Decoder.decode`) and over genomes by the
population evaluator around it.
"""

from __future__ import annotations

import jax
import jax.numpy as jnp
from flax import struct

#: States per phone of the default topology (see the module docstring for why 1).
DEFAULT_N_STATES = 1


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
