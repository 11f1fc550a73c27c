"""SiLago CGRA cost model (MOHAQ, Rashed et al. 2021, Sec. IV-A and V-B).

SiLago's DPUs compute at 16, 8 or 4 bits; the weights and activations of a layer share
one precision. With the tied SiLago genome space a layer's precision is its weight
bits; if a custom space gives a layer different weight and activation bits, the layer
runs at ``max(w, a)`` (the narrower operand is widened to the wider mode) while its
weights are stored at ``w`` bits. 2 bits is not
a SiLago mode: the SiLago space never produces it and :meth:`Platform.make_cost_fn`
rejects a space that could.

Per layer ``i`` with precision ``p_i`` and ``MACs_i`` per frame:

* ``speedup`` (maximize) = Σ MACs / Σ (MACs_i / s(p_i)), the time ratio over running
  every layer at 16 bits (Amdahl-correct), s = 1, 2, 4 for 16, 8, 4 bits;
* ``speedup_mac_weighted`` = Σ MACs_i s(p_i) / Σ MACs, what the authors' code and
  published figures report (see :func:`base.mac_weighted_speedup`);
* ``energy_pj`` (minimize, per frame) = Σ MACs_i e(p_i) + 0.08 pJ x stored bits, as in
  the authors' code (``mem_size*8*1024*1024*0.08 + Σ MACs e``; stored bits include the
  16-bit biases, every stored bit is read once per frame);
* ``memory_mb`` = (Σ bits_w x weights + 8 800 x 16) / 8 / 2**20 for the paper model,
  the authors' formula, with the biases the model's sites declare (``Site.n_bias``:
  the SRU's b_f, b_r; an LSTM's gate and output biases), never chosen by layer kind.
"""

from __future__ import annotations

import dataclasses

import jax
import jax.numpy as jnp

from mohaq_jax.hardware import base
from mohaq_jax.hardware.platform import Metric, Platform


@dataclasses.dataclass(frozen=True)
class SiLagoSpec:
    """SiLago constants, from the MOHAQ authors' optimization code.

    Source: NesmaMRezk/MOHAQ-Shrink-and-Eliminate, ``optimization_utils.py``
    (``get_speedup_silago``, ``get_MAC_energy``, ``compute_mem``) and
    ``optimize_silago.py`` (energy objective, memory constraint).
    """

    # Precision modes of the DPU (bits), ascending; weights and activations share one.
    modes: tuple[int, ...] = (4, 8, 16)
    # Speedup per MAC over 16 bits for each mode: get_speedup_silago (4 -> 4, 8 -> 2,
    # 16 -> 1); a 16-bit DPU splits into 2 x 8-bit or 4 x 4-bit lanes.
    speedup_per_mac: tuple[float, ...] = (4.0, 2.0, 1.0)
    # Energy per MAC (pJ) for each mode: get_MAC_energy, 4 bits 0.613/4, 8 bits
    # 1.084/2, 16 bits 1.666 (the authors' numbers for the SiLago DPU).
    mac_energy_pj: tuple[float, ...] = (0.613 / 4, 1.084 / 2, 1.666)
    # Memory access energy per stored bit (pJ), read once per frame: optimize_silago.py
    # ``mem_size*8*1024*1024*0.08``.
    memory_pj_per_bit: float = 0.08
    # Precision of the biases kept unquantized (every site's n_bias): compute_mem's
    # ``8800 * 16``, the SRU biases b_f, b_r of 4 layers (4 x 2 dirs x 2 x 550).
    bias_bits: int = 16
    # Also count the biases a site marks bias_counted=False: the authors leave out the
    # SRU's fc bias; True counts it.
    all_biases: bool = False
    # Also store the SRU vectors v_f, v_r at bias_bits (the authors do not count them).
    count_vectors: bool = False

    def __post_init__(self):
        n = len(self.modes)
        if len(self.speedup_per_mac) != n or len(self.mac_energy_pj) != n:
            raise ValueError("SiLagoSpec needs one speedup and one energy per mode")
        if list(self.modes) != sorted(set(self.modes)):
            raise ValueError("SiLagoSpec.modes must be ascending and unique")


def layer_precision(bits_w: jax.Array, bits_a: jax.Array) -> jax.Array:
    """Mode a layer runs at: ``max(w, a)`` (equal to both in the tied SiLago space)."""
    return jnp.maximum(jnp.asarray(bits_w, jnp.int32), jnp.asarray(bits_a, jnp.int32))


def costs(
    bits_w: jax.Array, bits_a: jax.Array, layers: base.LayerArrays, spec: SiLagoSpec
) -> dict[str, jax.Array]:
    """SiLago costs of one genome's per-layer bits (pure, jittable; bits unchecked).

    Args:
      bits_w: weight bits per layer, int ``(n_layers,)``, each in ``spec.modes``.
      bits_a: activation bits per layer, int ``(n_layers,)``, each in ``spec.modes``.
      layers: the model's layers, :func:`base.layer_arrays`.
      spec: SiLago constants.

    Returns:
      float32 scalars: ``speedup`` (maximize, time ratio over all-16),
      ``speedup_mac_weighted`` (the authors' reporting), ``energy_pj`` (minimize, per
      frame), ``energy_mac_pj``, ``energy_memory_pj``, ``memory_mb`` (constraint).
    """
    precision = layer_precision(bits_w, bits_a)
    macs = jnp.asarray(layers.macs)
    speedup_i = base.table_lookup(precision, spec.modes, spec.speedup_per_mac)
    energy_i = base.table_lookup(precision, spec.modes, spec.mac_energy_pj)
    # Weights are stored (and read) at their own bits and widened in the DPU.
    bits = base.stored_bits(
        bits_w, layers, spec.bias_bits, spec.all_biases, spec.count_vectors
    )
    energy_mac = jnp.sum(macs * energy_i)
    energy_memory = bits * jnp.float32(spec.memory_pj_per_bit)
    return {
        "speedup": base.amdahl_speedup(macs, speedup_i),
        "speedup_mac_weighted": base.mac_weighted_speedup(macs, speedup_i),
        "energy_pj": energy_mac + energy_memory,
        "energy_mac_pj": energy_mac,
        "energy_memory_pj": energy_memory,
        "memory_mb": base.memory_mb(bits),
    }


SPEC = SiLagoSpec()

#: What :func:`costs` returns.
METRICS = (
    Metric("speedup", "x", True, "time ratio over every layer at 16 bits (Amdahl)"),
    Metric(
        "speedup_mac_weighted",
        "x",
        True,
        "MAC-weighted mean of per-layer speedups (the authors' reporting)",
        objective=False,
    ),
    Metric("energy_pj", "pJ/frame", False, "MAC energy + 0.08 pJ per stored bit"),
    Metric("energy_mac_pj", "pJ/frame", False, "MAC part of energy_pj", False),
    Metric("energy_memory_pj", "pJ/frame", False, "memory part of energy_pj", False),
    Metric("memory_mb", "MB", False, "weights at their bits + biases at 16 bits"),
)

#: The SiLago platform; memory <= 6 MB is the authors' constraint for the paper model
#: (optimize_silago.py ``g1 = (mem_size - 6) / 6``).
PLATFORM = Platform(
    name="silago",
    spaces=("silago",),
    spec=SPEC,
    costs=costs,
    weight_bits=SPEC.modes,
    act_bits=SPEC.modes,
    metrics=METRICS,
    memory_metric="memory_mb",
    memory_limit_mb=6.0,
    description="SiLago CGRA: 16/8/4-bit DPU modes, weights and activations tied",
)
