"""Hardware cost models: platform registry.

``PLATFORMS`` maps a name to a :class:`~mohaq_jax.hardware.base.Platform`; the CLI and
the parametrized tests read it. A platform's ``make_cost_fn(space)`` gives a pure cost
function of one genome (``speedup`` maximized, ``energy_pj`` per frame minimized,
``memory_mb`` a constraint against ``memory_limit_mb``); vmap it over a population.

To add an accelerator, write ``mohaq_jax/hardware/<name>.py`` with a frozen spec
dataclass, a pure ``costs(bits_w, bits_a, layers, spec) -> dict`` and a
``PLATFORM = base.Platform(...)``, then add it below.
"""

from __future__ import annotations

from mohaq_jax.hardware import bitfusion, memory, reconfig, silago
from mohaq_jax.hardware.base import (
    LayerArrays,
    Platform,
    amdahl_speedup,
    layer_arrays,
    mac_weighted_speedup,
    memory_mb,
    stored_bits,
)

#: name -> Platform. ``reconfig.PLATFORM`` joins once genome.SPACES has "reconfig".
PLATFORMS: dict[str, Platform] = {
    "silago": silago.PLATFORM,
    "bitfusion": bitfusion.PLATFORM,
}

#: Size-only models (no speed or energy model): usable by name in experiments, but not
#: platforms in the sense of the cost-model contract that ``PLATFORMS`` entries meet.
SIZE_MODELS: dict[str, Platform] = {"memory": memory.PLATFORM}


def get_platform(name: str) -> Platform:
    """A registered platform by name."""
    known = {**PLATFORMS, **SIZE_MODELS}
    if name not in known:
        raise ValueError(f"unknown platform {name!r}; registered: {sorted(known)}")
    return known[name]


__all__ = [
    "PLATFORMS",
    "LayerArrays",
    "Platform",
    "amdahl_speedup",
    "bitfusion",
    "get_platform",
    "layer_arrays",
    "mac_weighted_speedup",
    "memory_mb",
    "reconfig",
    "silago",
    "stored_bits",
]
