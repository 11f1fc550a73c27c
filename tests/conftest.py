"""Shared test settings: CPU, strict promotion, a PRNG key fixture."""

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


@pytest.fixture
def key():
    return jax.random.key(0)


def tiny_speech(model, cfg, lengths, label_run, calib_methods=(), seed=3):
    """A tiny speech model and batch: ``(params, calib, (feats, labels, lengths))``.

    Params from ``model.init_params``, random features ``(n, max(lengths),
    n_features)``, labels constant over runs of ``label_run`` frames (-1 past each
    length), calibration on the batch (``qmodel.calibrate(..., *calib_methods)``);
    keys ``split(key(seed), 3)`` for params, features and labels.
    """
    import jax.numpy as jnp

    from mohaq_jax import qmodel

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
    batch)`` (``tests.test_search_mohaq.make_problem`` builds problems of it)."""
    from mohaq_jax import genome
    from mohaq_jax.models import sru

    cfg, params, calib, batch = tiny_sru
    return cfg, params, calib, genome.silago_space(sru.sites(cfg)), batch
