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
