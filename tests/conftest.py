"""Shared test settings (CPU, strict promotion) and fixtures: a PRNG key, tiny speech
models and batches, a search problem of them, a tiny TIMIT copy."""

import os
import tempfile

os.environ.setdefault("JAX_PLATFORMS", "cpu")
# Tests run tiny programs: compiling them dominates, so compile them cheaply (LLVM
# backend optimization level 0, as compilation.jit_small does for NSGA-II's steps).
# MOHAQ_TEST_XLA_O0=0 keeps XLA's defaults.
if os.environ.get("MOHAQ_TEST_XLA_O0", "1") != "0":
    os.environ["XLA_FLAGS"] = (
        os.environ.get("XLA_FLAGS", "") + " --xla_backend_optimization_level=0"
    ).strip()

import jax  # noqa: E402
import numpy as np  # noqa: E402
import pytest  # noqa: E402

# One persistent compilation cache for the whole run (and every pytest-xdist worker):
# tests that build the same tiny programs in different files or workers load them
# instead of compiling again. Only programs that took a while to compile are stored.
_CACHE = os.environ.get("MOHAQ_TEST_JAX_CACHE") or os.path.join(
    tempfile.gettempdir(), f"mohaq_jax_test_jax_cache_{jax.__version__}"
)
jax.config.update("jax_compilation_cache_dir", _CACHE)
jax.config.update("jax_persistent_cache_min_compile_time_secs", 0.3)
jax.config.update("jax_numpy_dtype_promotion", "strict")
jax.config.update("jax_numpy_rank_promotion", "raise")

from mohaq_jax.models import vgg  # noqa: E402  (after the settings above)

#: The VGG-9 of the image tests: 8x8 images, 2 channels, 3 classes, narrow layers.
TINY_VGG = vgg.Config(
    image_size=8,
    channels=2,
    n_classes=3,
    conv_widths=(2, 2, 3, 3, 4, 4),
    fc_widths=(5, 5),
)


@pytest.fixture
def key():
    return jax.random.key(0)


def python_levenshtein(a, b):
    """Edit distance of two sequences, the textbook dynamic programme."""
    d = list(range(len(b) + 1))
    for i, x in enumerate(a, 1):
        prev, d[0] = d[0], i
        for j, y in enumerate(b, 1):
            prev, d[j] = d[j], min(d[j] + 1, d[j - 1] + 1, prev + (x != y))
    return d[len(b)]


def tiny_speech(model, cfg, lengths, label_run, calib_methods=(), seed=3):
    """A tiny speech model and batch: ``(params, calib, (feats, labels, lengths))``.

    Params from ``model.init_params``, random features ``(n, max(lengths),
    n_features)``, labels constant over runs of ``label_run`` frames (-1 past each
    length), calibration on the batch (``qmodel.calibrate(..., *calib_methods)``);
    keys ``split(key(seed), 3)`` for params, features and labels.
    """
    import jax.numpy as jnp

    from mohaq_jax.models import qmodel

    k_p, k_x, k_y = jax.random.split(jax.random.key(seed), 3)
    params = model.init_params(k_p, cfg)
    n_b, n_t = len(lengths), max(lengths)
    feats = jax.random.normal(k_x, (n_b, n_t, cfg.n_features))
    lengths = jnp.asarray(lengths, jnp.int32)
    labels = jax.random.randint(k_y, (n_b, n_t // label_run), 0, cfg.n_classes)
    labels = jnp.repeat(labels, label_run, axis=1)
    labels = jnp.where(jnp.arange(n_t)[None] < lengths[:, None], labels, -1)
    calib = qmodel.calibrate(params, cfg, feats, lengths, *calib_methods)
    return params, calib, (feats, labels, lengths)


def loop_reference(cfg, params, calib, batch, fold, space, genomes):
    """Plain per-genome loop through the training-time path (quantize_params + STE),
    any speech model: ``(n_genomes, 3)`` loss, frame error, phone error."""
    import jax.numpy as jnp

    from mohaq_jax.models import qmodel
    from mohaq_jax.numerics import metrics

    feats, labels, lengths = batch
    out = []
    for g in genomes:
        bits_w, bits_a = space.decode(g)
        logits = jax.vmap(
            lambda f, n, bw=bits_w, ba=bits_a: qmodel.apply_quantized(
                params, cfg, calib, bw, ba, f, n
            )
        )(feats, lengths)
        pred = jnp.argmax(logits, -1)
        loss, n_frames = metrics.masked_cross_entropy(logits, labels, lengths)
        smoothed = metrics.smoothed_predictions(logits, lengths)
        edits, n_ref = metrics.phone_error_rate(smoothed, labels, lengths, fold)
        wrong, _ = metrics.frame_errors(pred, labels, lengths)
        n_frames, n_ref = int(n_frames.sum()), int(n_ref.sum())
        out.append(
            (
                float(loss.sum()) / n_frames,
                int(wrong.sum()) / n_frames,
                int(edits.sum()) / n_ref,
            )
        )
    return np.asarray(out)


@pytest.fixture(scope="session")
def tiny_sru():
    """The 2-layer SRU (hidden 6, projection 3) most search tests score:
    ``(cfg, params, calib, batch)``."""
    from mohaq_jax.models import sru

    cfg = sru.Config(
        n_features=5, n_classes=6, hidden=6, n_layers=2, n_proj=3, proj_first=True
    )
    return (cfg, *tiny_speech(sru, cfg, [12, 9, 6], 3))


@pytest.fixture(scope="session")
def problem_parts(tiny_sru):
    """:func:`tiny_sru` with its SiLago genome space: ``(cfg, params, calib, space,
    batch)`` (:func:`make_problem` builds problems of it)."""
    from mohaq_jax.evaluation import genome
    from mohaq_jax.models import sru

    cfg, params, calib, batch = tiny_sru
    return cfg, params, calib, genome.silago_space(sru.sites(cfg)), batch


def make_problem(parts, **overrides):
    """A search problem of :func:`problem_parts` (SiLago costs, a 6-genome settings
    base that ``overrides`` change)."""
    from mohaq_jax import hardware
    from mohaq_jax.evaluation import evaluate
    from mohaq_jax.search import mohaq

    cfg, params, calib, space, batch = parts
    settings = dict(
        pop_size=6,
        n_offspring=3,
        n_generations=4,
        seed=1,
        max_error=10.0,
        memory_limit_mb=1.0,
    )
    settings.update(overrides)
    config = mohaq.SearchConfig(**settings)
    evaluator = evaluate.PopulationEvaluator(
        cfg, space, np.arange(6), params, calib, chunk_size=3, genome_batch=3
    )
    cost_fn = hardware.get_platform("silago").make_cost_fn(space)
    return mohaq.QuantizationProblem(
        evaluator,
        cost_fn,
        batch,
        config,
        ideal=[0.0, -4.0, 0.0],
        nadir=[10.0, -1.0, 1e5],
    )


#: Label fold of :func:`split_sru`'s 7 classes to 5 (class 5 ignored), as fold39.
SPLIT_FOLD = np.asarray([0, 1, 2, 2, 3, -1, 4], np.int32)


def split_sru(lengths):
    """A 7-class SRU (hidden 8, projection 4) and a split of random utterances of
    ``lengths`` frames, labels constant over runs of 3: ``(cfg, params, calib, split,
    whole)`` with ``whole`` the split as one padded batch (calibrated on it)."""
    import jax.numpy as jnp

    from mohaq_jax.data.batching import pad_batch
    from mohaq_jax.data.corpus import Split
    from mohaq_jax.models import qmodel, sru

    cfg = sru.Config(n_features=6, n_classes=7, hidden=8, n_layers=2, n_proj=4)
    rng = np.random.default_rng(3)
    feats, labels = [], []
    for n in lengths:
        feats.append(rng.standard_normal((n, cfg.n_features)).astype(np.float32))
        runs = rng.integers(0, cfg.n_classes, -(-n // 3))
        labels.append(np.repeat(runs, 3)[:n].astype(np.int32))
    split = Split(feats, labels, ["s"] * len(lengths), [f"u{i}" for i in lengths])
    params = sru.init_params(jax.random.key(5), cfg)
    whole = pad_batch(split, range(len(split)))
    calib = qmodel.calibrate(
        params, cfg, jnp.asarray(whole.features), jnp.asarray(whole.lengths)
    )
    return cfg, params, calib, split, whole


@pytest.fixture
def ldc_dir(tmp_path):
    """A tiny TIMIT copy in the LDC layout (:data:`tests.timit_files.LAYOUT`, three
    utterances a speaker): ``(root, audio by "speaker_utterance")``."""
    from tests.timit_files import LAYOUT, write_utterance

    root = tmp_path / "TIMIT"
    audio = {}
    for index, (speaker, (part, region)) in enumerate(sorted(LAYOUT.items())):
        speaker_dir = root / part / region / speaker.upper()
        for k, name in enumerate(("si1", "sx2", "sa1")):
            audio[f"{speaker}_{name}"] = write_utterance(
                speaker_dir, name, 10 * index + k
            )
    return root, audio
