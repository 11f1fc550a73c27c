"""The persistent compilation cache: a second process compiles nothing."""

import os
import subprocess
import sys

import pytest

from mohaq_jax.search import compilation

_SCRIPT = """
import sys
import jax, jax.numpy as jnp
from jax import monitoring
from mohaq_jax.search import compilation
compilation.enable_compilation_cache(sys.argv[1])
events = []
monitoring.register_event_listener(lambda name, **kw: events.append(name))
step = compilation.jit_small(lambda x: jnp.sort(x * 3.0 + 1.0)[::-1])
step(jnp.arange(7.0)).block_until_ready()
print(events.count("/jax/compilation_cache/cache_hits"),
      events.count("/jax/compilation_cache/cache_misses"))
"""


def test_second_run_hits_the_cache(tmp_path):
    folder = tmp_path / "jax_cache"
    env = {**os.environ, "JAX_PLATFORMS": "cpu"}
    root = os.path.dirname(os.path.dirname(os.path.abspath(__file__)))
    runs = []
    for _ in range(2):
        done = subprocess.run(
            [sys.executable, "-c", _SCRIPT, str(folder)],
            capture_output=True,
            text=True,
            cwd=root,
            env=env,
            timeout=120,
            check=True,
        )
        runs.append(tuple(int(v) for v in done.stdout.split()[-2:]))
    (hits_1, misses_1), (hits_2, misses_2) = runs
    assert misses_1 >= 1 and hits_1 == 0
    assert misses_2 == 0 and hits_2 == misses_1
    assert len(os.listdir(folder)) >= misses_1


def test_cache_folder_errors_name_the_folder(tmp_path):
    blocker = tmp_path / "file"
    blocker.write_text("")
    with pytest.raises(ValueError, match="compilation cache folder"):
        compilation.enable_compilation_cache(blocker / "sub")
