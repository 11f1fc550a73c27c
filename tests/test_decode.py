"""Phone-loop Viterbi decoder vs a plain numpy Viterbi, hand-built cases, tuning, cache."""

import functools
import itertools

import jax
import jax.numpy as jnp
import numpy as np
import pytest

from mohaq_jax import decode, train
from mohaq_jax.evaluation import evaluate, genome
from mohaq_jax.models import qmodel, sru
from mohaq_jax.numerics import metrics
from tests.conftest import python_levenshtein


def numpy_viterbi(scores, length, log_bigram, lm, pen, n_states):
    """Textbook Viterbi over the explicit (C * n_states)-state graph, float64."""
    scores = np.asarray(scores, np.float64)[:length]
    lb = np.asarray(log_bigram, np.float64)
    n_cls = scores.shape[1]
    n_st = n_cls * n_states
    last = [c * n_states + n_states - 1 for c in range(n_cls)]
    arcs = np.full((n_st, n_st), -np.inf)
    for p, q in itertools.product(range(n_cls), range(n_cls)):
        arcs[last[p], q * n_states] = lm * lb[p, q] - pen
    for c in range(n_cls):
        for s in range(n_states - 1):
            arcs[c * n_states + s, c * n_states + s + 1] = 0.0
        arcs[last[c], last[c]] = max(arcs[last[c], last[c]], 0.0)
    init = np.full(n_st, -np.inf)
    init[[c * n_states for c in range(n_cls)]] = lm * lb[n_cls, :n_cls] - pen
    emit = np.repeat(scores, n_states, axis=1)  # state c*n+s emits class c
    delta = init + emit[0]
    back = []
    for t in range(1, length):
        cand = delta[:, None] + arcs
        back.append(np.argmax(cand, axis=0))
        delta = cand.max(axis=0) + emit[t]
    end = np.repeat(lm * lb[:n_cls, n_cls], n_states)
    final = delta + end
    if np.isfinite(final[last]).any():
        state = last[int(np.argmax(final[last]))]
    else:  # shorter than the minimum duration: end anywhere
        state = int(np.argmax(final))
    score = final[state]
    states = [state]
    for bp in reversed(back):
        states.append(int(bp[states[-1]]))
    return [s // n_states for s in reversed(states)], score


# One compilation per decoder structure (n_states), not per decoder instance.
decode_jit = jax.jit(lambda dec, logits, lengths: dec.decode(logits, lengths))


def random_decoder(rng, n_cls, n_states):
    counts = rng.integers(0, 20, (n_cls + 1, n_cls + 1))
    return decode.Decoder(
        log_prior=jnp.asarray(np.log(rng.dirichlet(np.ones(n_cls))), jnp.float32),
        log_bigram=jnp.asarray(decode.bigram_log_probs(counts, 1.0)),
        lm_weight=jnp.float32(rng.uniform(0, 2)),
        insertion_penalty=jnp.float32(rng.uniform(0, 1.5)),
        n_states=n_states,
    )


@pytest.mark.parametrize("n_states", [1, 2, 3])
@pytest.mark.parametrize("seed", [0, 1, 2])
def test_viterbi_matches_numpy(n_states, seed):
    rng = np.random.default_rng(seed)
    n_cls, n_b, n_t = 4, 6, 14
    dec = random_decoder(rng, n_cls, n_states)
    logits = rng.normal(0, 4, (n_b, n_t, n_cls)).astype(np.float32)
    lengths = np.array([14, 9, 1, 2, 5, 0], np.int32)  # padding, < n_states, empty
    paths, scores = decode_jit(dec, jnp.asarray(logits), jnp.asarray(lengths))
    paths, scores = np.asarray(paths), np.asarray(scores)
    sc = np.asarray(jax.nn.log_softmax(logits, -1)) - np.asarray(dec.log_prior)
    for i in range(n_b):
        assert (paths[i, lengths[i] :] == -1).all()
        if lengths[i] == 0:
            continue
        ref_path, ref_score = numpy_viterbi(
            sc[i],
            lengths[i],
            dec.log_bigram,
            float(dec.lm_weight),
            float(dec.insertion_penalty),
            n_states,
        )
        assert paths[i, : lengths[i]].tolist() == ref_path, i
        np.testing.assert_allclose(scores[i], ref_score, rtol=1e-5, atol=1e-4)
    long_paths = paths[0]
    assert len(set(long_paths.tolist())) > 1  # not a trivial single-phone path


def test_minimum_duration_is_respected():
    rng = np.random.default_rng(5)
    dec = random_decoder(rng, 5, 3)
    logits = rng.normal(0, 4, (3, 30, 5)).astype(np.float32)
    paths, _ = decode_jit(dec, jnp.asarray(logits), jnp.asarray([30, 30, 17]))
    paths = np.asarray(paths)
    for row in paths:
        runs = [len(list(g)) for k, g in itertools.groupby(row) if k >= 0]
        assert min(runs) >= 3


# Three classes; rows prev 0, 1, 2, <s>; columns next 0, 1, 2, </s>.
HAND_BIGRAM = np.array(
    [
        [0.09, 0.01, 0.60, 0.30],
        [0.50, 0.10, 0.10, 0.30],
        [0.50, 0.10, 0.10, 0.30],
        [0.70, 0.10, 0.10, 0.10],
    ]
)
# Frame 1 is acoustically class 1 by 0.5 nats over class 2; frames 0 and 2 are class 0.
HAND_LOGITS = np.array([[0.0, -5.0, -5.0], [-5.0, 0.0, -0.5], [0.0, -5.0, -5.0]])


@pytest.mark.parametrize(
    "lm, pen, expected",
    [
        ("no_lm", 0.0, [0, 1, 0]),  # acoustics alone
        ("lm", 0.0, [0, 2, 0]),  # P(1|0) = 0.01 vs P(2|0) = 0.6 outweighs 0.5 nats
        ("lm", 10.0, [0, 0, 0]),  # two insertions cost 20 > 5 nats of acoustics
    ],
)
def test_lm_changes_best_path(lm, pen, expected):
    weight = {"no_lm": 0.0, "lm": 1.0}[lm]
    dec = decode.Decoder(
        log_prior=jnp.zeros(3),
        log_bigram=jnp.asarray(np.log(HAND_BIGRAM), jnp.float32),
        lm_weight=jnp.float32(weight),
        insertion_penalty=jnp.float32(pen),
    )
    paths, scores = decode_jit(
        dec, jnp.asarray(HAND_LOGITS[None], jnp.float32), jnp.asarray([3])
    )
    assert np.asarray(paths)[0].tolist() == expected
    ls = HAND_LOGITS - np.log(np.exp(HAND_LOGITS).sum(1, keepdims=True))
    acoustic = sum(ls[t, c] for t, c in enumerate(expected))
    phones = [k for k, _ in itertools.groupby(expected)]
    lm_path = [3] + phones + [3]
    lm_score = sum(np.log(HAND_BIGRAM[a, b]) for a, b in itertools.pairwise(lm_path))
    expected_score = acoustic + weight * lm_score - pen * len(phones)
    np.testing.assert_allclose(float(scores[0]), expected_score, rtol=1e-5)


def test_bigram_and_priors_match_hand_counts():
    labels = [np.array([0, 0, 1, 1, 1, 0]), np.array([2, 2, -1])]
    seqs = decode.phone_sequences(labels)
    assert [s.tolist() for s in seqs] == [[0, 1, 0], [2]]
    counts = decode.bigram_counts(seqs, 3)
    expected = np.zeros((4, 4), int)
    for a, b in [(3, 0), (0, 1), (1, 0), (0, 3), (3, 2), (2, 3)]:
        expected[a, b] += 1
    np.testing.assert_array_equal(counts, expected)
    # next-token counts 0:2 1:1 2:1 </s>:2 (6 in all) -> unigram (n+1)/10;
    # P(q|p) = (n(p,q) + unigram(q)) / (n(p) + 1), n(0) = n(<s>) = 2, n(2) = 1
    probs = np.exp(decode.bigram_log_probs(counts, alpha=1.0))
    np.testing.assert_allclose(probs[0, 1], (1 + 0.2) / 3, rtol=1e-6)
    np.testing.assert_allclose(probs[0, 2], 0.2 / 3, rtol=1e-6)
    np.testing.assert_allclose(probs[3, 0], (1 + 0.3) / 3, rtol=1e-6)
    np.testing.assert_allclose(probs[2, 3], (1 + 0.3) / 2, rtol=1e-6)
    np.testing.assert_allclose(probs[1, 1], 0.2 / 2, rtol=1e-6)
    np.testing.assert_allclose(probs.sum(1), 1.0, rtol=1e-6)
    priors = np.exp(decode.class_log_priors(labels, 3))
    np.testing.assert_allclose(priors, np.array([4, 4, 3]) / 11, rtol=1e-6)


def run_labels(rng, n_b, n_t, n_cls, lengths):
    labels = np.full((n_b, n_t), -1, np.int32)
    for i in range(n_b):
        seq = []
        while len(seq) < lengths[i]:
            seq += [int(rng.integers(n_cls))] * int(rng.integers(1, 7))
        labels[i, : lengths[i]] = seq[: lengths[i]]
    return labels


def test_decoded_per_of_perfect_posteriors_is_zero():
    rng = np.random.default_rng(0)
    n_cls, n_b, n_t = 6, 5, 40
    lengths = np.array([40, 33, 12, 1, 27], np.int32)
    labels = run_labels(rng, n_b, n_t, n_cls, lengths)
    fold = np.array([0, 1, 1, 2, -1, 3], np.int32)
    dec = decode.estimate(list(labels), n_cls, lm_weight=1.0, insertion_penalty=2.0)
    logits = 30.0 * jax.nn.one_hot(jnp.maximum(jnp.asarray(labels), 0), n_cls)
    out = jax.jit(functools.partial(metrics.error_counts, decoder=dec))(
        logits, jnp.asarray(labels), jnp.asarray(lengths), jnp.asarray(fold)
    )
    assert int(out[4]) > 10 and int(out[3]) == 0


def _noisy_logits():
    """6 utterances of 10-30 frames over 5 classes folded to 4, logits favouring the
    label with Gaussian noise, and the bigram decoder of those labels."""
    rng = np.random.default_rng(3)
    n_cls, n_b, n_t = 5, 6, 30
    lengths = rng.integers(10, n_t + 1, n_b).astype(np.int32)
    labels = run_labels(rng, n_b, n_t, n_cls, lengths)
    fold = np.array([0, 1, 2, 2, 3], np.int32)
    logits = (
        2.0 * np.eye(n_cls)[np.maximum(labels, 0)]
        + rng.normal(0, 1.2, labels.shape + (n_cls,))
    ).astype(np.float32)
    return n_b, lengths, labels, fold, logits, decode.estimate(list(labels), n_cls)


def test_tune_picks_best_grid_setting():
    n_b, lengths, labels, fold, logits, dec = _noisy_logits()
    lm_weights, penalties = (0.0, 1.0, 3.0), (0.0, 2.0, 6.0)
    half = n_b // 2
    batches = [
        (logits[:half], labels[:half], lengths[:half]),
        (logits[half:], labels[half:], lengths[half:]),
    ]
    tuned, per = decode.tune(dec, batches, fold, lm_weights, penalties)
    sc = np.asarray(jax.nn.log_softmax(logits, -1)) - np.asarray(dec.log_prior)
    ref = np.zeros((3, 3))
    for (i, w), (j, p) in itertools.product(
        enumerate(lm_weights), enumerate(penalties)
    ):
        edits = n_ref = 0
        for u in range(n_b):
            path, _ = numpy_viterbi(sc[u], lengths[u], dec.log_bigram, w, p, 1)
            hyp = [k for k, _ in itertools.groupby(f for f in fold[path] if f >= 0)]
            lab = labels[u, : lengths[u]]
            r = [k for k, _ in itertools.groupby(f for f in fold[lab] if f >= 0)]
            edits += python_levenshtein(hyp, r)
            n_ref += len(r)
        ref[i, j] = edits / n_ref
    np.testing.assert_allclose(per, ref, atol=1e-12)
    assert per.min() < per.max()
    i, j = np.unravel_index(np.argmin(ref), ref.shape)
    assert (float(tuned.lm_weight), float(tuned.insertion_penalty)) == (
        lm_weights[i],
        penalties[j],
    )


def test_tune_interior_extends_an_edge_until_the_best_is_inside():
    _, lengths, labels, fold, logits, dec = _noisy_logits()
    batches = [(logits, labels, lengths)]
    # a start grid whose best penalty is its highest edge (the penalty fights the
    # noise's flicker): the grid must grow on that side
    start_lm, start_pen = (0.5, 1.0, 1.5), (-2.0, -1.0)
    _, start_per = decode.tune(dec, batches, fold, start_lm, start_pen)
    assert np.unravel_index(np.argmin(start_per), start_per.shape)[1] == 1
    tuned, per, lm, pen = decode.tune_interior(
        dec, batches, fold, start_lm, start_pen, max_extensions=8
    )
    assert len(pen) > len(start_pen) and pen[: len(start_pen)] == start_pen
    # the same numbers as the fixed-grid tuner (tested against numpy above) on the
    # final grid, and the same choice
    ref_tuned, ref = decode.tune(dec, batches, fold, lm, pen)
    np.testing.assert_allclose(per, ref, atol=1e-12)
    assert float(tuned.insertion_penalty) == float(ref_tuned.insertion_penalty)
    assert float(tuned.lm_weight) == float(ref_tuned.lm_weight)
    i, j = np.unravel_index(np.argmin(per), per.shape)
    assert 0 < j < len(pen) - 1  # the penalty is interior now
    assert 0 < i < len(lm) - 1 or (i == 0 and lm[0] == 0.0)  # LM weights stay >= 0
    assert np.allclose(np.diff(pen), 1.0)


def test_tune_interior_is_bounded():
    rng = np.random.default_rng(4)
    labels = run_labels(rng, 2, 12, 3, np.asarray([12, 9]))
    logits = rng.normal(size=labels.shape + (3,)).astype(np.float32)
    dec = decode.estimate(list(labels), 3)
    batches = [(logits, labels, np.asarray([12, 9], np.int32))]
    _, per, lm, pen = decode.tune_interior(
        dec, batches, np.arange(3), (1.0, 2.0), (0.0, 1.0), max_extensions=2
    )
    assert per.shape == (len(lm), len(pen))
    assert len(lm) + len(pen) <= 4 + 2 * 2 * 1  # two rounds, <= 2 values each


def test_per_modes_and_bad_mode():
    rng = np.random.default_rng(1)
    logits = jnp.asarray(rng.normal(size=(2, 12, 4)), jnp.float32)
    lengths = jnp.asarray([12, 7])
    dec = random_decoder(rng, 4, 1)
    predict = jax.jit(metrics.phone_predictions, static_argnums=2)
    raw = predict(logits, lengths, "raw")
    np.testing.assert_array_equal(raw, np.argmax(np.asarray(logits), -1))
    smooth = predict(logits, lengths, None)  # no decoder -> smoothed
    np.testing.assert_array_equal(smooth, metrics.smoothed_predictions(logits, lengths))
    decoded = predict(logits, lengths, None, dec)  # decoder -> decoded
    np.testing.assert_array_equal(decoded, decode_jit(dec, logits, lengths)[0])
    assert not np.array_equal(decoded, raw)
    with pytest.raises(ValueError, match="per_mode must be one of"):
        metrics.resolve_per_mode("viterbi", dec)
    with pytest.raises(ValueError, match="needs decoder params"):
        metrics.resolve_per_mode("decoded", None)


@pytest.fixture(scope="module")
def tiny_model():
    cfg = sru.Config(n_features=6, n_classes=5, hidden=8, n_layers=2, n_proj=4)
    k_p, k_x = jax.random.split(jax.random.key(7))
    params = sru.init_params(k_p, cfg)
    rng = np.random.default_rng(2)
    lengths = np.array([16, 11, 5], np.int32)
    labels = run_labels(rng, 3, 16, 5, lengths)
    feats = jax.random.normal(k_x, (3, 16, 6))
    calib = qmodel.calibrate(params, cfg, feats, jnp.asarray(lengths), "max", "max")
    return cfg, params, calib, (feats, jnp.asarray(labels), jnp.asarray(lengths))


def test_population_evaluator_decodes_like_a_loop(tiny_model):
    cfg, params, calib, batch = tiny_model
    feats, labels, lengths = batch
    fold = np.array([0, 1, 2, 2, 3], np.int32)
    dec = decode.estimate(
        list(np.asarray(labels)), 5, lm_weight=1.0, insertion_penalty=1.0
    )
    space = genome.get_space("bitfusion", sru.sites(cfg))
    genomes = np.random.default_rng(0).integers(0, space.upper + 1, (2, space.n_genes))
    ev = evaluate.PopulationEvaluator(
        cfg, space, fold, params, calib, chunk_size=2, decoder=dec
    )
    res = ev(genomes, batch)

    @jax.jit
    def reference(bits_w, bits_a):
        logits = jax.vmap(
            lambda f, n: qmodel.apply_quantized(
                params, cfg, calib, bits_w, bits_a, f, n
            )
        )(feats, lengths)
        return metrics.phone_error_rate(
            dec.predict(logits, lengths), labels, lengths, fold
        )

    for g, per in zip(genomes, res["phone_error"], strict=True):
        edits, n_ref = reference(*space.decode(g))
        np.testing.assert_allclose(per, int(edits.sum()) / int(n_ref.sum()), atol=1e-6)


def test_get_or_fit_caches_by_baseline(tiny_model, tmp_path):
    cfg, params, _, batch = tiny_model
    feats, labels, lengths = (np.asarray(x) for x in batch)
    from mohaq_jax.data.corpus import Corpus, Split

    def split(n):
        return Split(
            features=[feats[i, : lengths[i]] for i in range(n)],
            labels=[labels[i, : lengths[i]] for i in range(n)],
            speakers=["s"] * n,
            utt_ids=[f"u{i}" for i in range(n)],
        )

    corpus = Corpus(
        "toy",
        split(3),
        split(2),
        split(1),
        tuple("abcde"),
        np.array([0, 1, 2, 2, 3], np.int32),
        6,
        True,
        "",
        {"seed": 0},
    )
    dec, info = train.baseline_decoder(
        params, cfg, corpus, tmp_path, lm_weights=(0.0, 1.0), penalties=(0.0, 2.0)
    )
    assert not info["loaded"] and (tmp_path / decode.DECODER_FILE).exists()
    again, info2 = train.baseline_decoder(
        params, cfg, corpus, tmp_path, lm_weights=(0.0, 1.0), penalties=(0.0, 2.0)
    )
    assert info2["loaded"] and info2["key"] == info["key"]
    np.testing.assert_array_equal(again.log_bigram, dec.log_bigram)
    assert float(again.lm_weight) == float(dec.lm_weight)
    other = jax.tree_util.tree_map(lambda x: x + 1e-3, params)
    _, info3 = train.baseline_decoder(
        other, cfg, corpus, tmp_path, lm_weights=(0.0, 1.0), penalties=(0.0, 2.0)
    )
    assert not info3["loaded"] and info3["key"] != info["key"]
    rates = train.evaluate(params, cfg, corpus.dev, corpus.fold39, decoder=dec)
    assert 0.0 <= rates["per"]
