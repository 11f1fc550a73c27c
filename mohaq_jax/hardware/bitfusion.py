"""Bitfusion cost model (Sharma et al., ISCA 2018; MOHAQ, Rashed et al. 2021, Sec. V-C).

Bitfusion is a systolic array of Fusion Units, each made of 2-bit BitBricks that fuse
spatially into wider multipliers; operands wider than the spatial maximum are handled
by temporal fusion (several cycles). Weights and activations have separate precisions
in {2, 4, 8, 16}.

Two speedups (both maximize, both time ratios over the same layers at 16 x 16 bits):

* ``speedup_formula``: per layer 256 / (w x a), at most 64 (2 x 2 bits), the MOHAQ
  authors' ``get_speedup_bitfusion``, aggregated Amdahl-correctly
  (Σ MACs / Σ MACs_i / s_i). ``speedup_mac_weighted`` is the authors' aggregation
  (MAC-weighted mean of the per-layer speedups), for comparison with their figures.
* ``speedup_cycles`` (= ``speedup``): cycles at 16/16 over cycles at the genome's bits
  from the Bitfusion simulator's fully connected layer model (hsharma35/bitfusion,
  ``bitfusion/src/simulator/accelerator.py``, ``get_compute_cycles`` with ``im2col``):

      cycles = ceil(oc / M) x ceil(ic / (N x perf)),
      perf   = int(pmax / max(a, pmin)) x int(pmax / max(w, pmin))   (get_perf_factor)

  with N x M = 16 x 32 and pmax = 8, pmin = 2 (``bf_e_conf.ini``: a = 16, c = 32,
  high_prec = 8, low_prec = 2). The simulator's ``int(pmax / 16)`` is 0 there, so
  16-bit operands are taken as temporal fusion: an operand of b > pmax bits takes
  b / pmax passes of a pmax-bit operand. For w, a <= pmax this is exactly the
  simulator's formula; with ``high_prec=16`` in the spec it is the formula
  ``perf = (16 / max(w, 2)) (16 / max(a, 2))``. The ceilings make this speedup lower
  than the formula's when a layer does not fill the array (e.g. 23 inputs). A
  convolution is its im2col matmul (``ic`` = 3 x 3 x c_in) run once per output
  position (:func:`matmul_uses`; its inputs, partial sums and outputs too).

Energy (minimize, per frame) follows the simulator's ``Stats.get_energy``:
core cycles x core energy per cycle + buffer bits x per-bit buffer energies + DRAM bits
x 15 pJ. Assumptions (the simulator's loop tiling is not reproduced):

* compute bound (the authors' memory constraint is there to keep it so): no stall
  cycles, every cycle costs the core's dynamic energy;
* weights stream from DRAM once per ``frame_batch`` frames (the SRU matmul is hoisted
  out of the recurrence, so a batch of frames shares one pass over the weights) into
  the WBUF, and every weight bit is read from the WBUF once per frame;
* a layer's input is read from DRAM once per frame at its activation bits, written to
  the IBUF once and read from it once per output tile (ceil(oc / M) times);
* partial sums (``psum_bits`` = 32, the simulator's OBUF word) are read and written in
  the OBUF once per input tile; the layer's output is written to DRAM at
  ``output_bits`` (16: the SRU recurrence runs off the array at 16 bits).

Memory (constraint, MB) is the authors' formula as for SiLago: weight bits x weights
plus the biases the model's sites declare (the SRU's b_f, b_r) at 16 bits.
"""

from __future__ import annotations

import dataclasses

import jax
import jax.numpy as jnp
import numpy as np

from mohaq_jax.hardware import base
from mohaq_jax.hardware.platform import Metric, Platform

BITS = (2, 4, 8, 16)


@dataclasses.dataclass(frozen=True)
class BitfusionSpec:
    """Bitfusion constants (45 nm, 500 MHz, 16 x 32 array) and modelling choices."""

    # Rows of the systolic array = inputs reduced per cycle (simulator N; bf_e_conf.ini
    # ``a = 16``).
    n_rows: int = 16
    # Columns = outputs per cycle (simulator M; bf_e_conf.ini ``c = 32``).
    n_cols: int = 32
    # Widest operand fused spatially in one cycle (bf_e_conf.ini ``high_prec = 8``;
    # 16 x 16 Fusion Units of 2-bit BitBricks, Sharma et al. 2018).
    high_prec: int = 8
    # Narrowest operand, the BitBrick width (bf_e_conf.ini ``low_prec = 2``).
    low_prec: int = 2
    # Core dynamic energy per cycle (pJ): the simulator scales the 4 x 4 array of
    # results/systolic_array_synth.csv (pmax 8, pmin 2: 3 673 500 nW at 500 MHz) by
    # N M / 16 = 32, i.e. 3 673 500e-9 W x 32 / 5e8 Hz = 235.104 pJ.
    core_pj_per_cycle: float = 235.104
    # Placeholder: per-bit SRAM energies (pJ) said to come from the simulator's CACTI
    # 45 nm sweep for the bf_e_conf.ini buffers (Simulator.get_energy_cost:
    # read/write energy / word bits), as quoted to the project without the table
    # itself; not re-derived here (no CACTI run, no table of the paper), so energy_pj
    # and energy_buffer_pj are labelled placeholders wherever they are shown.
    wbuf_read_pj_per_bit: float = 0.021
    wbuf_write_pj_per_bit: float = 0.029
    ibuf_read_pj_per_bit: float = 0.059
    ibuf_write_pj_per_bit: float = 0.114
    obuf_read_pj_per_bit: float = 0.033
    obuf_write_pj_per_bit: float = 0.073
    # DRAM energy per bit (pJ): Stats.get_energy ``dram_cost=15.e-3`` nJ.
    dram_pj_per_bit: float = 15.0
    # Partial-sum width in the OBUF (bits): the simulator's ``obuf_bits = 32``.
    psum_bits: int = 32
    # Bits of a layer output written back to DRAM (our assumption: 16, the SRU
    # recurrence and the next layer's requantization run off the array).
    output_bits: int = 16
    # Frames that share one DRAM pass over the weights (our assumption: 100 frames =
    # 1 s of 10 ms frames; the SRU matmul of a whole utterance is one batch).
    frame_batch: int = 100
    # Memory formula, as for SiLago (the authors' compute_mem): every site's n_bias at
    # bias_bits (SRU b_f, b_r: 8 800 in the paper model); all_biases also counts those
    # a site marks bias_counted=False (the SRU fc bias).
    bias_bits: int = 16
    all_biases: bool = False
    count_vectors: bool = False

    def __post_init__(self):
        for field in ("n_rows", "n_cols", "high_prec", "low_prec", "frame_batch"):
            if getattr(self, field) < 1:
                raise ValueError(f"BitfusionSpec.{field} must be >= 1")
        if self.high_prec % self.low_prec:
            raise ValueError("BitfusionSpec.high_prec must be a multiple of low_prec")


def formula_speedup(bits_w: jax.Array, bits_a: jax.Array) -> jax.Array:
    """Per-layer speedup over 16 x 16 bits, 256 / (w a), at most 64 (2 x 2 bits)."""
    w = jnp.maximum(jnp.asarray(bits_w, jnp.float32), 2.0)
    a = jnp.maximum(jnp.asarray(bits_a, jnp.float32), 2.0)
    return jnp.float32(256.0) / (w * a)


def _ceil_div(a: jax.Array, b: jax.Array) -> jax.Array:
    return (a + b - 1) // b


def matmul_uses(layers: base.LayerArrays) -> np.ndarray:
    """Times each layer's matmul runs per frame: MACs / (n_in x n_out), at least 1.

    1 for a fully connected or recurrent layer; a convolution (im2col, ``n_in`` = the
    patch) runs once per output position, as the simulator's conv model.
    """
    macs = np.asarray(layers.macs, np.float64)
    per_run = np.asarray(layers.n_in, np.float64) * np.asarray(layers.n_out)
    return np.maximum(np.rint(macs / per_run), 1).astype(np.int32)


def layer_cycles(
    bits_w: jax.Array, bits_a: jax.Array, layers: base.LayerArrays, spec: BitfusionSpec
) -> tuple[jax.Array, jax.Array]:
    """Cycles per frame of each layer and its input tiles (int32, ``(n_layers,)``).

    ``ceil(oc / M) x ceil(ic / (N perf)) x passes`` with the simulator's perf factor on
    operands clipped to ``[low_prec, high_prec]`` and ``passes`` the temporal fusion
    of wider operands.
    """
    w = jnp.asarray(bits_w, jnp.int32)
    a = jnp.asarray(bits_a, jnp.int32)
    pmax, pmin = spec.high_prec, spec.low_prec
    w_spatial = jnp.clip(w, pmin, pmax)
    a_spatial = jnp.clip(a, pmin, pmax)
    perf = (pmax // w_spatial) * (pmax // a_spatial)
    passes = _ceil_div(w, pmax) * _ceil_div(a, pmax)
    oc_tiles = jnp.asarray(_ceil_div(np.asarray(layers.n_out), spec.n_cols))
    ic_tiles = _ceil_div(jnp.asarray(layers.n_in), spec.n_rows * perf)
    return oc_tiles * ic_tiles * passes * jnp.asarray(matmul_uses(layers)), ic_tiles


def costs(
    bits_w: jax.Array, bits_a: jax.Array, layers: base.LayerArrays, spec: BitfusionSpec
) -> dict[str, jax.Array]:
    """Bitfusion costs of one genome's per-layer bits (pure, jittable; bits unchecked).

    Args:
      bits_w: weight bits per layer, int ``(n_layers,)``, in {2, 4, 8, 16}.
      bits_a: activation bits per layer, int ``(n_layers,)``, in {2, 4, 8, 16}.
      layers: the model's layers, :func:`base.layer_arrays`.
      spec: Bitfusion constants.

    Returns:
      float32 scalars: ``speedup`` (maximize; = ``speedup_cycles``),
      ``speedup_cycles``, ``speedup_formula`` (256/(w a), Amdahl),
      ``speedup_mac_weighted`` (authors' aggregation of 256/(w a)), ``cycles`` per
      frame, ``energy_pj`` (minimize, per frame) with its parts ``energy_core_pj``,
      ``energy_buffer_pj``, ``energy_dram_pj``, and ``memory_mb`` (constraint).
    """
    w = jnp.asarray(bits_w, jnp.int32)
    a = jnp.asarray(bits_a, jnp.int32)
    macs = jnp.asarray(layers.macs)
    cycles_i, ic_tiles = layer_cycles(w, a, layers, spec)
    full = jnp.full_like(w, 16)
    cycles16_i, _ = layer_cycles(full, full, layers, spec)
    cycles = jnp.sum(cycles_i.astype(jnp.float32))
    cycles16 = jnp.sum(cycles16_i.astype(jnp.float32))
    s_formula = formula_speedup(w, a)

    wf, af = w.astype(jnp.float32), a.astype(jnp.float32)
    n_in = jnp.asarray(layers.n_in).astype(jnp.float32)
    n_out = jnp.asarray(layers.n_out).astype(jnp.float32)
    oc_tiles = jnp.asarray(
        _ceil_div(np.asarray(layers.n_out), spec.n_cols), jnp.float32
    )
    weight_bits = wf * jnp.asarray(layers.n_weights)  # (n_layers,)
    uses = jnp.asarray(matmul_uses(layers), jnp.float32)  # conv: output positions
    input_bits = af * n_in * uses
    psum_bits = (
        n_out * ic_tiles.astype(jnp.float32) * jnp.float32(spec.psum_bits) * uses
    )
    batch = jnp.float32(spec.frame_batch)

    energy_core = cycles * jnp.float32(spec.core_pj_per_cycle)
    energy_buffer = jnp.sum(
        weight_bits / batch * spec.wbuf_write_pj_per_bit
        + weight_bits * spec.wbuf_read_pj_per_bit
        + input_bits * spec.ibuf_write_pj_per_bit
        + input_bits * oc_tiles * spec.ibuf_read_pj_per_bit
        + psum_bits * (spec.obuf_read_pj_per_bit + spec.obuf_write_pj_per_bit)
    )
    dram_bits = jnp.sum(
        weight_bits / batch + input_bits + n_out * uses * spec.output_bits
    )
    energy_dram = dram_bits * jnp.float32(spec.dram_pj_per_bit)
    stored = base.stored_bits(
        w, layers, spec.bias_bits, spec.all_biases, spec.count_vectors
    )
    speedup_cycles = cycles16 / cycles
    return {
        "speedup": speedup_cycles,
        "speedup_cycles": speedup_cycles,
        "speedup_formula": base.amdahl_speedup(macs, s_formula),
        "speedup_mac_weighted": base.mac_weighted_speedup(macs, s_formula),
        "cycles": cycles,
        "energy_pj": energy_core + energy_buffer + energy_dram,
        "energy_core_pj": energy_core,
        "energy_buffer_pj": energy_buffer,
        "energy_dram_pj": energy_dram,
        "memory_mb": base.memory_mb(stored),
    }


SPEC = BitfusionSpec()

#: Why Bitfusion's buffer energies are placeholders (BitfusionSpec SRAM fields).
_PLACEHOLDER_SRAM = (
    "the SRAM per-bit energies (wbuf/ibuf/obuf_*_pj_per_bit) are quoted from a "
    "CACTI 45 nm sweep, not re-derived here"
)

#: What :func:`costs` returns.
METRICS = (
    Metric("speedup", "x", True, "= speedup_cycles"),
    Metric(
        "speedup_cycles",
        "x",
        True,
        "cycles at 16/16 bits over cycles (simulator's FC model)",
        objective=False,
    ),
    Metric(
        "speedup_formula",
        "x",
        True,
        "256 / (w a) per layer, Amdahl over MACs (the authors' formula)",
    ),
    Metric(
        "speedup_mac_weighted",
        "x",
        True,
        "MAC-weighted mean of 256 / (w a) (the authors' reporting)",
        objective=False,
    ),
    Metric("cycles", "cycles/frame", False, "array cycles per frame"),
    Metric(
        "energy_pj",
        "pJ/frame",
        False,
        "core + buffers + DRAM",
        placeholder=_PLACEHOLDER_SRAM,
    ),
    Metric("energy_core_pj", "pJ/frame", False, "core part of energy_pj", False),
    Metric(
        "energy_buffer_pj",
        "pJ/frame",
        False,
        "SRAM part of energy_pj",
        False,
        placeholder=_PLACEHOLDER_SRAM,
    ),
    Metric("energy_dram_pj", "pJ/frame", False, "DRAM part of energy_pj", False),
    Metric("memory_mb", "MB", False, "weights at their bits + biases at 16 bits"),
)

#: The Bitfusion platform; memory <= 2 MB is the authors' constraint for the paper
#: model (optimize-bitfusion.py ``g2 = (mem_size - 2) / 2``).
PLATFORM = Platform(
    name="bitfusion",
    spaces=("bitfusion",),
    spec=SPEC,
    costs=costs,
    weight_bits=BITS,
    act_bits=BITS,
    metrics=METRICS,
    memory_metric="memory_mb",
    memory_limit_mb=2.0,
    description="Bitfusion 16x32 fusible systolic array, 2/4/8/16-bit w and a",
)
