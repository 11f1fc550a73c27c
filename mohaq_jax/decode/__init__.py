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
  grid extended on any side where the best point lies on its edge
  (:func:`tune_interior`); :func:`get_or_fit` caches the result beside the baseline
  checkpoint (``decoder.npz``) keyed by a digest of the baseline's params.

The path must end in a last state; an utterance shorter than ``n_states`` frames (no
such path) ends in its best state instead.
"""

from mohaq_jax.decode.bigram import (
    DEFAULT_ALPHA,
    bigram_counts,
    bigram_log_probs,
    class_log_priors,
    estimate,
    phone_sequences,
)
from mohaq_jax.decode.fit import (
    DECODER_FILE,
    DECODER_VERSION,
    LM_WEIGHTS,
    MAX_EXTENSIONS,
    PENALTIES,
    get_or_fit,
    load,
    params_digest,
    save,
    tune,
    tune_interior,
)
from mohaq_jax.decode.phone_loop import DEFAULT_N_STATES, Decoder, viterbi

__all__ = [
    "DECODER_FILE",
    "DECODER_VERSION",
    "DEFAULT_ALPHA",
    "DEFAULT_N_STATES",
    "LM_WEIGHTS",
    "MAX_EXTENSIONS",
    "PENALTIES",
    "Decoder",
    "bigram_counts",
    "bigram_log_probs",
    "class_log_priors",
    "estimate",
    "get_or_fit",
    "load",
    "params_digest",
    "phone_sequences",
    "save",
    "tune",
    "tune_interior",
    "viterbi",
]
