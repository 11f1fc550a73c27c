"""Model size only: the "platform" of the compression experiment.

MOHAQ (Rashed et al. 2021, Sec. V-A) first asks how far post-training quantization
compresses the SRU without a significant error increase (their answer: 8x). This
platform has no arithmetic model: it reports the stored size of a genome's weights
(the authors' memory formula, biases at 16 bits) and its compression over float32.
"""

from __future__ import annotations

import dataclasses

import jax.numpy as jnp

from mohaq_jax.hardware import base
from mohaq_jax.hardware.platform import Metric, Platform
from mohaq_jax.numerics.quantize import BIT_OPTIONS


@dataclasses.dataclass(frozen=True)
class MemorySpec:
    """How the stored model is counted."""

    # Precision of stored biases, every site's n_bias (the authors' formula: 16 bits).
    bias_bits: int = 16
    # Also count the biases a site marks bias_counted=False (the SRU output bias, which
    # the authors' formula leaves out).
    all_biases: bool = False
    # Whether the SRU vectors v_f, v_r are counted with the biases (the authors: no).
    count_vectors: bool = False
    # Reference precision of "no compression" (float32 weights and biases).
    float_bits: int = 32


def costs(bits_w, bits_a, layers: base.LayerArrays, spec: MemorySpec):
    """Stored size of one genome: ``memory_mb`` (minimize), ``compression`` (x, maximize).

    No speed or energy: this platform has no arithmetic model, and declares none.
    """
    del bits_a
    bits = base.stored_bits(
        bits_w, layers, spec.bias_bits, spec.all_biases, spec.count_vectors
    )
    float_bits = base.stored_bits(
        jnp.full_like(jnp.asarray(bits_w, jnp.float32), spec.float_bits),
        layers,
        spec.float_bits,
        spec.all_biases,
        spec.count_vectors,
    )
    return {
        "memory_mb": base.memory_mb(bits),
        "compression": float_bits / bits,
    }


SPEC = MemorySpec()

#: Size-only platform for the compression experiment; no memory limit by default
#: (the limit is the paper model's float32 size, i.e. no constraint).
PLATFORM = Platform(
    name="memory",
    spaces=("weights",),
    spec=SPEC,
    costs=costs,
    weight_bits=BIT_OPTIONS[:-1],
    act_bits=BIT_OPTIONS,
    metrics=(
        Metric("memory_mb", "MB", False, "weights at their bits + biases at 16 bits"),
        Metric("compression", "x", True, "float32 size over the stored size"),
    ),
    memory_metric="memory_mb",
    memory_limit_mb=float("inf"),
    description="stored model size (weights at their bits, biases at 16 bits)",
)
