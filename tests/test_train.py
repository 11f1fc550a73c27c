"""Tests of mohaq_jax.train: learning, determinism, resume, baseline reuse, QAT.

The data is a small learnable task built here (each class has a feature template,
frames are template + Gaussian noise, classes come in runs of 3-7 frames), so the tests
need no synthesized speech and run in seconds.
"""

import dataclasses

import chex
import jax
import jax.numpy as jnp
import numpy as np
import pytest

from mohaq_jax import train
from mohaq_jax.data.batching import iterate_batches
from mohaq_jax.data.corpus import Corpus, Split
from mohaq_jax.models import qmodel, sru
from mohaq_jax.models.sru import init_params
from mohaq_jax.numerics import quantize
from mohaq_jax.runtime import checkpoint

N_CLASSES, N_FEATURES = 6, 8


def synthetic_corpus(seed=0, n_train=48, n_dev=16, noise=0.5) -> Corpus:
    rng = np.random.default_rng(seed)
    templates = rng.normal(size=(N_CLASSES, N_FEATURES)).astype(np.float32)

    def split(n, tag):
        feats, labels = [], []
        for _ in range(n):
            runs = rng.integers(0, N_CLASSES, size=rng.integers(4, 9))
            lab = np.repeat(runs, rng.integers(3, 8, size=len(runs))).astype(np.int32)
            noisy = templates[lab] + noise * rng.normal(size=(len(lab), N_FEATURES))
            feats.append(noisy.astype(np.float32))
            labels.append(lab)
        return Split(feats, labels, ["spk"] * n, [f"{tag}{i}" for i in range(n)])

    return Corpus(
        name="synthetic",
        train=split(n_train, "tr"),
        dev=split(n_dev, "dv"),
        test=split(n_dev, "te"),
        classes=tuple(f"c{i}" for i in range(N_CLASSES)),
        fold39=np.arange(N_CLASSES, dtype=np.int32),
        n_features=N_FEATURES,
        synthetic=True,
        notice="",
        settings={"seed": seed, "noise": noise},
    )


MODEL = sru.Config(
    n_features=N_FEATURES, n_classes=N_CLASSES, hidden=16, n_layers=1, dropout=0.1
)
# pad_multiple=64 puts every batch at T=64 (the longest utterance has 56 frames):
# one compilation per test.
SHORT = train.TrainConfig(epochs=2, batch_size=8, lr=1e-2, pad_multiple=64)


@pytest.fixture(scope="module")
def corpus():
    return synthetic_corpus()


@pytest.fixture(scope="module")
def trained(corpus, tmp_path_factory):
    """A 6-epoch baseline, trained once through get_or_train_baseline."""
    folder = tmp_path_factory.mktemp("baseline")
    config = dataclasses.replace(SHORT, epochs=6)
    params, info = train.get_or_train_baseline(
        corpus, MODEL, config, folder, progress=False
    )
    return params, info, folder, config


def test_training_learns(corpus, trained):
    params, info, _, _ = trained
    history = info["history"]
    assert not info["loaded"] and info["finished"] and info["epoch"] == 6
    assert history[-1]["loss"] < 0.5 * history[0]["loss"]
    # Chance frame error with 6 balanced classes is 5/6; a 1-layer SRU of 16 units
    # reaches about 0.05 frame error / 0.3 PER here.
    assert info["best_dev_per"] < 0.5 and info["best_dev_fer"] < 0.12
    rates = train.evaluate(params, MODEL, corpus.dev, corpus.fold39, pad_multiple=64)
    assert rates["fer"] < 0.12
    assert rates["per"] == pytest.approx(info["best_dev_per"])
    assert rates["fer"] == pytest.approx(info["best_dev_fer"])


def test_baseline_is_reused(corpus, trained):
    params, _, folder, config = trained
    again, info = train.get_or_train_baseline(corpus, MODEL, config, folder)
    assert info["loaded"]
    chex.assert_trees_all_equal(again, params)


def test_checkpoint_of_another_model_is_refused(corpus, trained):
    _, _, folder, config = trained
    other = dataclasses.replace(MODEL, hidden=8)
    with pytest.raises(checkpoint.CheckpointMismatch, match=r"model_config\.hidden"):
        train.get_or_train_baseline(corpus, other, config, folder)
    other_data = synthetic_corpus(noise=0.3)
    with pytest.raises(checkpoint.CheckpointMismatch, match=r"data_settings\.settings"):
        train.get_or_train_baseline(other_data, MODEL, config, folder)


def test_retrain_overwrites_a_mismatched_checkpoint(corpus, tmp_path):
    one_epoch = dataclasses.replace(SHORT, epochs=1)
    train.get_or_train_baseline(corpus, MODEL, one_epoch, tmp_path, progress=False)
    other = dataclasses.replace(one_epoch, lr=5e-3)  # same model: no new compilation
    with pytest.raises(checkpoint.CheckpointMismatch, match=r"train_config\.lr"):
        train.get_or_train_baseline(corpus, MODEL, other, tmp_path)
    _, info = train.get_or_train_baseline(
        corpus, MODEL, other, tmp_path, retrain=True, progress=False
    )
    assert not info["loaded"]
    meta = checkpoint.read_meta(tmp_path / train.BASELINE_FILE)
    assert meta["train_config"]["lr"] == 5e-3


def test_same_seed_same_bytes_and_resume_matches(corpus, tmp_path):
    paths = [tmp_path / f"run{i}.msgpack" for i in range(3)]
    train.fit(corpus, MODEL, SHORT, paths[0], progress=False)
    train.fit(corpus, MODEL, SHORT, paths[1], progress=False)
    assert paths[0].read_bytes() == paths[1].read_bytes()
    # Interrupted after epoch 1, then resumed: optimizer state, step counter (the
    # dropout keys) and the epoch's batch order continue where they stopped.
    _, info = train.fit(corpus, MODEL, SHORT, paths[2], until_epoch=1, progress=False)
    assert not info["finished"] and not checkpoint.read_meta(paths[2])["finished"]
    _, info = train.fit(corpus, MODEL, SHORT, paths[2], resume=True, progress=False)
    assert info["resumed_from"] == 1 and info["finished"]
    assert paths[2].read_bytes() == paths[0].read_bytes()


def test_resume_refuses_another_training_config(corpus, tmp_path):
    path = tmp_path / "run.msgpack"
    train.fit(corpus, MODEL, SHORT, path, until_epoch=1, progress=False)
    other = dataclasses.replace(SHORT, lr=1e-3)
    with pytest.raises(checkpoint.CheckpointMismatch, match=r"train_config\.lr"):
        train.fit(corpus, MODEL, other, path, resume=True, progress=False)


def test_model_and_corpus_sizes_must_agree(corpus):
    with pytest.raises(ValueError, match="features"):
        train.fit(
            corpus, dataclasses.replace(MODEL, n_classes=7), SHORT, progress=False
        )


def test_learning_rate_lives_in_the_optimizer_state():
    opt = train.make_optimizer(SHORT)
    state = opt.init({"w": jnp.zeros(3)})
    assert float(train.learning_rate(state)) == pytest.approx(1e-2)
    state = train.set_learning_rate(state, 5e-3)
    assert float(train.learning_rate(state)) == pytest.approx(5e-3)


def _batch(corpus):
    rng = np.random.default_rng(0)
    return next(iterate_batches(corpus.train, 4, rng, pad_multiple=64))


@pytest.fixture(scope="module")
def calib(corpus, trained):
    """Clipping tables of the baseline (computed once: calibration is slow to trace)."""
    batch = _batch(corpus)
    return qmodel.calibrate(
        trained[0], MODEL, jnp.asarray(batch.features), jnp.asarray(batch.lengths)
    )


def test_vmapped_step_equals_separate_steps(corpus, key, calib):
    """One compiled step for several genomes (stacked params/state/bits)."""
    params = init_params(key, MODEL)
    n_layers = len(sru.sites(MODEL))
    bits_w = jnp.asarray([[2] * n_layers, [32] * n_layers], jnp.int32)
    bits_a = jnp.asarray([[4] * n_layers, [32] * n_layers], jnp.int32)
    opt = train.make_optimizer(SHORT)
    step = train.make_step(MODEL, opt)
    batch = _batch(corpus)
    k_step = jax.random.key(1)
    stacked = train.stack_params(params, 2)
    vstep = jax.jit(jax.vmap(step, in_axes=(0, 0, None, None, 0, 0, None)))
    new_p, _, losses = vstep(
        stacked, jax.vmap(opt.init)(stacked), batch, k_step, bits_w, bits_a, calib
    )
    # the single-genome step traces once for every bit-width (bits are arrays)
    one = jax.jit(chex.assert_max_traces(step, n=1))
    for i in range(2):
        p_i, _, loss_i = one(
            params, opt.init(params), batch, k_step, bits_w[i], bits_a[i], calib
        )
        np.testing.assert_allclose(losses[i], loss_i, rtol=1e-5)
        chex.assert_trees_all_close(train.unstack_params(new_p, i), p_i, atol=1e-6)
    assert float(losses[0]) != pytest.approx(float(losses[1]))


# Ternary weights, 4-bit activations: post-training quantization raises the dev PER of
# the 6-epoch baseline from about 0.25 to 0.43; three epochs of QAT bring it to 0.27.
LOW_BITS_W, LOW_BITS_A = 2, 4


@pytest.fixture(scope="module")
def qat_case(corpus, trained, calib):
    params = trained[0]
    n_layers = len(sru.sites(MODEL))
    genomes_w = np.array([[LOW_BITS_W] * n_layers, [3] * n_layers], np.int32)
    genomes_a = np.array([[LOW_BITS_A] * n_layers, [3] * n_layers], np.int32)
    config = dataclasses.replace(SHORT, lr_halving_patience=1)
    stacked, info = train.qat_finetune(
        params,
        MODEL,
        calib,
        genomes_w,
        genomes_a,
        corpus,
        epochs=3,
        lr=3e-3,
        train_config=config,
    )
    return params, calib, genomes_w, genomes_a, config, stacked, info


def test_qat_lowers_the_low_bit_error(corpus, qat_case):
    params, calib, genomes_w, genomes_a, _, stacked, info = qat_case
    chex.assert_shape(info["dev_per"], (2,))
    ptq = train.evaluate(
        params,
        MODEL,
        corpus.dev,
        corpus.fold39,
        jnp.asarray(genomes_w[0]),
        jnp.asarray(genomes_a[0]),
        calib,
        pad_multiple=64,
    )
    qat = train.evaluate(
        train.unstack_params(stacked, 0),
        MODEL,
        corpus.dev,
        corpus.fold39,
        jnp.asarray(genomes_w[0]),
        jnp.asarray(genomes_a[0]),
        calib,
        pad_multiple=64,
    )
    assert ptq["per"] == pytest.approx(info["ptq_dev_per"][0])
    assert ptq["fer"] == pytest.approx(info["ptq_dev_fer"][0])
    assert qat["per"] == pytest.approx(info["dev_per"][0])
    assert qat["fer"] == pytest.approx(info["dev_fer"][0])
    assert qat["fer"] < ptq["fer"] - 0.01
    assert qat["per"] < ptq["per"]
    assert np.all(info["dev_fer"] <= info["ptq_dev_fer"])  # selection never hurts


def test_qat_batched_equals_separate(corpus, qat_case):
    params, calib, genomes_w, genomes_a, config, stacked, info = qat_case
    for i in range(2):
        single, single_info = train.qat_finetune(
            params,
            MODEL,
            calib,
            genomes_w[i : i + 1],
            genomes_a[i : i + 1],
            corpus,
            epochs=3,
            lr=3e-3,
            train_config=config,
        )
        chex.assert_trees_all_close(
            train.unstack_params(single, 0),
            train.unstack_params(stacked, i),
            atol=1e-5,
            rtol=1e-5,
        )
        np.testing.assert_allclose(single_info["dev_fer"], info["dev_fer"][i : i + 1])
        np.testing.assert_array_equal(
            single_info["epochs_run"], info["epochs_run"][i : i + 1]
        )


def test_qat_rejects_bad_bits(corpus, trained, calib):
    params = trained[0]
    with pytest.raises(ValueError, match="unsupported bit-width 7"):
        train.qat_finetune(params, MODEL, calib, [[7, 8]], [[8, 8]], corpus, 1, 1e-3)
    assert quantize.FLOAT_BITS == 32


def test_learns_on_tiny_espeak_corpus(tmp_path):
    """A real learning check on synthesized speech: dev frame error well below the
    majority-class rate after a few seconds of training."""
    data = pytest.importorskip("mohaq_jax.data")
    try:
        corpus = data.load_corpus(
            "espeak", seed=0, size="tiny", cache_dir=tmp_path / "cache"
        )
    except data.EspeakUnavailableError as err:
        pytest.skip(str(err))
    dev_labels = np.concatenate(corpus.dev.labels)
    majority_error = 1.0 - np.bincount(dev_labels).max() / dev_labels.size
    config = train.baseline_model_config(corpus, hidden=32, n_layers=1, dropout=0.0)
    # One time length (512) for every batch: a single compilation.
    tc = train.TrainConfig(epochs=8, batch_size=3, lr=1e-2, pad_multiple=512)
    params, info = train.fit(corpus, config, tc, progress=False)
    rates = train.evaluate(params, config, corpus.dev, corpus.fold39, pad_multiple=512)
    # about 0.59 after 8 epochs; the majority class leaves 0.85 of the frames wrong
    assert rates["fer"] < 0.7 < majority_error
    assert info["history"][-1]["loss"] < 0.6 * info["history"][0]["loss"]


def test_switching_and_qat_report_the_same_info(corpus, qat_case):
    """Beacons take either retraining: same info keys, same post-training error.

    The switching path quantizes kernels on its own weight grid (float weight bits in
    the model); its starting error must equal qat_finetune's, which quantizes through
    the model's fake quantizer.
    """
    from mohaq_jax.retrain import speech, switching

    params, calib, genomes_w, genomes_a, config, _, info = qat_case
    _, sw_info = speech.switching_finetune(
        params,
        MODEL,
        calib,
        genomes_w[:1],
        genomes_a[:1],
        corpus,
        switching.uniform_config(1),
        lr=3e-3,
        train_config=config,
    )
    assert set(info) <= set(sw_info)
    np.testing.assert_allclose(sw_info["ptq_dev_per"], info["ptq_dev_per"][:1])
    np.testing.assert_allclose(sw_info["ptq_dev_fer"], info["ptq_dev_fer"][:1])
    chex.assert_shape(sw_info["dev_per"], (1,))


def test_switching_without_switching_is_qat_finetune(corpus, trained, calib):
    """One QAT loop: switching-aware retraining with nothing switching (uniform
    schedule) under qat_finetune's dev monitoring reproduces qat_finetune.

    The two runs differ only in their strategy inside train.loop.qat_loop (vmapped
    genome step through the model's quantizer vs the switching step quantizing the
    kernels on its own grid, one model); batches, dropout keys, optimizer,
    learning-rate halving, early stopping and the kept-best selection come from the
    shared loop. The settings make all three act: the lr halves after epoch 4, the
    best params are those of epoch 3, and the run stops after 4 of 5 epochs.
    """
    from mohaq_jax.retrain import speech, switching

    params = trained[0]
    n_layers = len(sru.sites(MODEL))
    bits_w, bits_a = [LOW_BITS_W] * n_layers, [LOW_BITS_A] * n_layers
    config = dataclasses.replace(
        SHORT, lr_halving_patience=1, improvement_threshold=0.05
    )
    common = dict(lr=3e-3, train_config=config, patience=1)
    stacked, info = train.qat_finetune(
        params, MODEL, calib, [bits_w], [bits_a], corpus, epochs=5, **common
    )
    got, sw_info = speech.switching_finetune(
        params,
        MODEL,
        calib,
        bits_w,
        bits_a,
        corpus,
        switching.uniform_config(5),
        **common,
    )
    # the monitor acted: halving, early stop, best params not the last ones
    lrs = [h["lr"][0] for h in info["history"]]
    assert lrs == pytest.approx([3e-3, 3e-3, 3e-3, 1.5e-3])
    np.testing.assert_array_equal(info["epochs_run"], [4])
    fers = [h["dev_fer"][0] for h in info["history"]]
    assert info["dev_fer"][0] == pytest.approx(min(fers))
    assert min(fers) < fers[-1]

    chex.assert_trees_all_close(
        got, train.unstack_params(stacked, 0), atol=1e-5, rtol=1e-5
    )
    assert sw_info["epochs_run"] == 4
    assert sw_info["per"] == pytest.approx(info["dev_per"][0])
    assert sw_info["fer"] == pytest.approx(info["dev_fer"][0])
    assert sw_info["ptq_fer"] == pytest.approx(info["ptq_dev_fer"][0])
    assert [h["error"] for h in sw_info["history"]] == pytest.approx(
        [h["dev_per"][0] for h in info["history"]]
    )
    assert sw_info["extra_counts"] == [0] * n_layers


def test_a_minutes_bound_stops_mid_epoch_and_keeps_the_identity(corpus, tmp_path):
    """``max_minutes`` bounds training by wall time: a bound already passed after the
    first step gives a finished, one-step run; without it the identity is as before."""
    assert "max_minutes" not in SHORT.to_dict()
    bounded = dataclasses.replace(SHORT, max_minutes=1e-9)
    assert bounded.to_dict()["max_minutes"] == 1e-9
    path = tmp_path / "run.msgpack"
    _, info = train.fit(corpus, MODEL, bounded, path, progress=False)
    assert info["finished"] and checkpoint.read_meta(path)["finished"]
    assert [(r["epoch"], r["steps"], r["partial"]) for r in info["history"]] == [
        (1, 1, True)
    ]
    _, again = train.fit(corpus, MODEL, bounded, path, resume=True, progress=False)
    assert again["resumed_from"] == 1 and len(again["history"]) == 1
    with pytest.raises(ValueError, match="max_minutes"):
        dataclasses.replace(SHORT, max_minutes=0.0)
