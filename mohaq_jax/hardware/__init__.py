"""Hardware cost models: platform registry.

``PLATFORMS`` maps a name to a :class:`~mohaq_jax.hardware.platform.Platform`; the
CLI and the parametrized tests read it. A platform declares its metrics
(:class:`~mohaq_jax.hardware.platform.Metric`: name, unit, maximized or minimized),
which of them the memory constraint bounds, and the genome spaces it runs; its
``make_cost_fn(space)`` gives a pure cost function of one genome that returns exactly
those metrics; vmap it over a population.

To add an accelerator, write ``mohaq_jax/hardware/<name>.py`` with a frozen spec
dataclass, a pure ``costs(bits_w, bits_a, layers, spec) -> dict`` and a
``PLATFORM = Platform(...)`` declaring its metrics, then add it below.
"""

from __future__ import annotations

from mohaq_jax.hardware import bitfusion, memory, reconfig, silago
from mohaq_jax.hardware.base import (
    LayerArrays,
    amdahl_speedup,
    layer_arrays,
    mac_weighted_speedup,
    memory_mb,
    stored_bits,
)
from mohaq_jax.hardware.platform import Metric, Platform

#: name -> Platform.
PLATFORMS: dict[str, Platform] = {
    "silago": silago.PLATFORM,
    "bitfusion": bitfusion.PLATFORM,
    "reconfig": reconfig.PLATFORM,
    # Stored size only (no speed or energy model): the compression experiment's.
    "memory": memory.PLATFORM,
}


def get_platform(name: str) -> Platform:
    """A registered platform by name."""
    if name not in PLATFORMS:
        raise ValueError(f"unknown platform {name!r}; registered: {sorted(PLATFORMS)}")
    return PLATFORMS[name]


__all__ = [
    "PLATFORMS",
    "LayerArrays",
    "Metric",
    "Platform",
    "amdahl_speedup",
    "bitfusion",
    "get_platform",
    "layer_arrays",
    "mac_weighted_speedup",
    "memory",
    "memory_mb",
    "reconfig",
    "silago",
    "stored_bits",
]
