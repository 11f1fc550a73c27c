"""Compile once: JAX's persistent compilation cache and cheap-to-compile jits.

On a CPU the search's small programs (NSGA-II's ``ask``/``tell``, population sizes
<= 100) take longer to compile than to run a whole search. Two remedies:

* :func:`enable_compilation_cache` turns on JAX's persistent compilation cache (every
  compiled program, however quick to compile, is kept on disk), so a second run of the
  same experiment loads its executables instead of compiling them.
* :func:`jit_small` jits with LLVM's backend optimization level 0
  (``xla_backend_optimization_level``): about 40 % less compile time, at the price of a
  slower program, which does not matter for NSGA-II steps next to a neural network's
  evaluation (measured in ``benchmarks/nsga2.py``).
"""

from __future__ import annotations

import os
from collections.abc import Callable

import jax

from mohaq_jax.data.corpus import default_cache_dir

__all__ = ["FAST_COMPILE", "enable_compilation_cache", "jit_small"]

# XLA options of programs that run for milliseconds: compile time dominates.
FAST_COMPILE = {"xla_backend_optimization_level": 0}


def enable_compilation_cache(path: str | os.PathLike | None = None) -> str:
    """Turns on JAX's persistent compilation cache in ``path``; returns the folder.

    Every program is cached (no minimum compile time or size), so a rerun of the same
    search compiles nothing. Call it before the first ``jax.jit`` call runs.

    Args:
      path: cache folder, default ``jax_cache`` in ``$MOHAQ_CACHE`` or
        ``~/.cache/mohaq_jax`` (created).

    Returns:
      The absolute cache folder.
    """
    if path is None:
        path = os.path.join(default_cache_dir(), "jax_cache")
    folder = os.path.abspath(os.path.expanduser(os.fspath(path)))
    try:
        os.makedirs(folder, exist_ok=True)
    except OSError as error:
        raise ValueError(f"compilation cache folder {folder!r}: {error}") from error
    jax.config.update("jax_compilation_cache_dir", folder)
    jax.config.update("jax_persistent_cache_min_compile_time_secs", 0.0)
    jax.config.update("jax_persistent_cache_min_entry_size_bytes", 0)
    return folder


def jit_small(fn: Callable, **kwargs) -> Callable:
    """``jax.jit(fn, **kwargs)`` compiled with :data:`FAST_COMPILE` options."""
    return jax.jit(fn, compiler_options=FAST_COMPILE, **kwargs)
