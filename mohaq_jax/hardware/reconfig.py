"""2-4-bit reconfigurable accelerator for switching-aware mixed precision.

Second method of the project: Kim et al., "switching-aware" retraining (IEEE TNNLS
2021). Processing elements run weights and activations at 2, 3 or 4 bits; weights that
switch often during retraining get one extra bit (a layer's ``w`` bits become ``w + 1``
for a share ``extra_fraction`` of its weights). The paper reports 1.37x better
compression than uniform 4 bits (VGG-9, CIFAR-10) and 1.29x energy saving of its
accelerator; its per-MAC energy table is not public in the project's material, so the
table here is a documented model, expressed relative to a uniform 4-bit PE.

Per layer with ``n`` weights, ``MACs`` per frame, bits ``w``/``a``, extra share ``f``:

* MAC energy = MACs x [(1 - f) e(w, a) + f e(w + 1, a)] x ``mac4_energy_pj``, with
  ``e`` the table :attr:`ReconfigSpec.mac_energy_rel` (1.0 at 4 x 4 bits);
* weight bits = n w + f n (the extra bits) + index bits, where the index that marks
  the extra-bit weights is the cheaper, per layer, of a 1-bit flag per weight (n bits)
  and a sparse list of positions, ceil(log2 n) bits each (f n ceil(log2 n) bits);
* weight-memory energy = weight bits x ``weight_mem_pj_per_bit`` (every weight bit and
  index bit is read once per frame);
* ``energy_rel_uniform4`` = energy / energy of the same layers at 4/4 bits, f = 0;
* ``compression_vs_float32`` = 32 Σ n / weight bits, ``compression_vs_uniform4`` =
  4 Σ n / weight bits.

Everything takes per-layer arrays, so the switching-aware retraining can pass the
measured extra-bit fraction of every layer.
"""

from __future__ import annotations

import dataclasses

import jax
import jax.numpy as jnp
import numpy as np

from mohaq_jax.hardware import base
from mohaq_jax.hardware.platform import Metric, Platform

BITS = (2, 3, 4)


def _default_mac_energy_rel(
    fixed_fraction: float = 0.25,
) -> tuple[tuple[float, ...], ...]:
    """e(w, a) = fixed + (1 - fixed) w a / 16 for w in 2..5, a in 2..4.

    A bit-decomposed multiplier's switching energy scales with the partial products
    (w x a); ``fixed_fraction`` (our assumption: 25 %) is the share of a 4 x 4 MAC that
    does not (accumulator, registers, control).
    """
    return tuple(
        tuple(fixed_fraction + (1.0 - fixed_fraction) * w * a / 16.0 for a in (2, 3, 4))
        for w in (2, 3, 4, 5)
    )


@dataclasses.dataclass(frozen=True)
class ReconfigSpec:
    """Constants of the 2-4-bit reconfigurable PE model (see the module docstring)."""

    # Weight and activation bits the PE runs (Kim et al. 2021: 2 to 4 bits).
    bits: tuple[int, ...] = BITS
    # Bits added to a frequently switching weight (Kim et al.: one extra level/bit).
    extra_bits: int = 1
    # MAC energy relative to a 4 x 4-bit MAC; rows w = 2, 3, 4, 5 (5 = 4 + extra bit),
    # columns a = 2, 3, 4. Our model, see _default_mac_energy_rel.
    mac_energy_rel: tuple[tuple[float, ...], ...] = _default_mac_energy_rel()
    # Weight rows of mac_energy_rel, and activation columns.
    table_w_bits: tuple[int, ...] = (2, 3, 4, 5)
    table_a_bits: tuple[int, ...] = (2, 3, 4)
    # Absolute energy of one 4 x 4-bit MAC (pJ). Placeholder: the SiLago 4-bit MAC of
    # the MOHAQ authors (0.613 / 4 pJ); only the ratios are the model's claim.
    mac4_energy_pj: float = 0.613 / 4
    # Weight-memory read energy per bit (pJ). Placeholder: the SiLago memory access
    # energy of the MOHAQ authors (0.08 pJ per bit).
    weight_mem_pj_per_bit: float = 0.08
    # Reference width for compression_vs_float32.
    float_bits: int = 32

    def __post_init__(self):
        table = np.asarray(self.mac_energy_rel, np.float64)
        if table.shape != (len(self.table_w_bits), len(self.table_a_bits)):
            raise ValueError(
                "mac_energy_rel must be (len(table_w_bits), len(table_a_bits))"
            )
        if np.any(np.diff(table, axis=0) < 0) or np.any(np.diff(table, axis=1) < 0):
            raise ValueError("mac_energy_rel must not decrease with more bits")
        for b in self.bits:
            if (
                b not in self.table_a_bits
                or b + self.extra_bits not in self.table_w_bits
            ):
                raise ValueError(f"mac_energy_rel does not cover {b}-bit operands")


def index_bits(n_weights: jax.Array, extra_fraction: jax.Array) -> jax.Array:
    """Bits marking the extra-bit weights of each layer: min(flag, sparse positions).

    Flag: 1 bit per weight (``n``). Sparse: ``f n`` positions of ``ceil(log2 n)`` bits.
    """
    n = jnp.asarray(n_weights, jnp.float32)
    f = jnp.asarray(extra_fraction, jnp.float32)
    # ceil(log2 n) = bit length of n - 1, exact via frexp for n < 2**24.
    _, position_bits = jnp.frexp(jnp.maximum(n - 1.0, 0.0))
    sparse = f * n * position_bits.astype(jnp.float32)
    return jnp.minimum(n, sparse)


def mac_energy_rel(
    bits_w: jax.Array, bits_a: jax.Array, spec: ReconfigSpec
) -> jax.Array:
    """Energy per MAC relative to 4 x 4 bits, looked up per layer (traceable)."""
    w = jnp.asarray(bits_w, jnp.int32)
    a = jnp.asarray(bits_a, jnp.int32)
    table = jnp.asarray(np.asarray(spec.mac_energy_rel, np.float32))
    w_idx = jnp.asarray(np.asarray(spec.table_w_bits, np.int32))
    a_idx = jnp.asarray(np.asarray(spec.table_a_bits, np.int32))
    row = jnp.argmax(w[:, None] == w_idx[None, :], axis=1)
    col = jnp.argmax(a[:, None] == a_idx[None, :], axis=1)
    return table[row, col]


def costs(
    n_weights: jax.Array,
    macs: jax.Array,
    w_bits: jax.Array,
    a_bits: jax.Array,
    extra_fraction: jax.Array,
    spec: ReconfigSpec,
) -> dict[str, jax.Array]:
    """Energy and compression of one configuration (pure, jittable; bits unchecked).

    Args:
      n_weights: weights per layer, ``(n_layers,)``.
      macs: MACs per frame per layer, ``(n_layers,)``.
      w_bits: weight bits per layer (before the extra bit), in ``spec.bits``.
      a_bits: activation bits per layer, in ``spec.bits``.
      extra_fraction: share of each layer's weights carrying the extra bit, in [0, 1].
      spec: the PE model.

    Returns:
      float32 scalars: ``energy_pj`` (minimize, per frame), ``energy_mac_pj``,
      ``energy_weight_mem_pj``, ``energy_rel_uniform4`` (minimize),
      ``weight_bits_total``, ``index_bits_total``, ``compression_vs_float32`` and
      ``compression_vs_uniform4`` (maximize).
    """
    n = jnp.asarray(n_weights, jnp.float32)
    macs = jnp.asarray(macs, jnp.float32)
    w = jnp.asarray(w_bits, jnp.int32)
    a = jnp.asarray(a_bits, jnp.int32)
    f = jnp.asarray(extra_fraction, jnp.float32)
    e_base = mac_energy_rel(w, a, spec)
    e_extra = mac_energy_rel(w + spec.extra_bits, a, spec)
    e_mac = jnp.sum(macs * ((1.0 - f) * e_base + f * e_extra)) * spec.mac4_energy_pj

    idx_bits = index_bits(n, f)
    weight_bits = jnp.sum(
        n * w.astype(jnp.float32) + f * n * spec.extra_bits + idx_bits
    )
    e_mem = weight_bits * jnp.float32(spec.weight_mem_pj_per_bit)

    uniform4_bits = 4.0 * jnp.sum(n)
    e_uniform4 = (
        jnp.sum(macs) * spec.mac4_energy_pj * float(_rel_at(spec, 4, 4))
        + uniform4_bits * spec.weight_mem_pj_per_bit
    )
    energy = e_mac + e_mem
    return {
        "energy_pj": energy,
        "energy_mac_pj": e_mac,
        "energy_weight_mem_pj": e_mem,
        "energy_rel_uniform4": energy / e_uniform4,
        "weight_bits_total": weight_bits,
        "index_bits_total": jnp.sum(idx_bits),
        "compression_vs_float32": spec.float_bits * jnp.sum(n) / weight_bits,
        "compression_vs_uniform4": uniform4_bits / weight_bits,
    }


def _rel_at(spec: ReconfigSpec, w: int, a: int) -> float:
    return spec.mac_energy_rel[spec.table_w_bits.index(w)][spec.table_a_bits.index(a)]


def layer_costs(
    bits_w: jax.Array,
    bits_a: jax.Array,
    layers: base.LayerArrays,
    spec: ReconfigSpec,
    extra_fraction: jax.Array | None = None,
) -> dict[str, jax.Array]:
    """:func:`costs` in the platform signature, plus ``memory_mb``.

    No speedup: the model claims energy and compression, not throughput (the PE takes
    one cycle per MAC at every width), so it declares none. ``memory_mb`` is the
    weight bits (extra and index bits included) plus the sites' fixed-precision
    biases at 16 bits (:func:`base.fixed_params`).
    """
    if extra_fraction is None:
        extra_fraction = jnp.zeros(layers.n_layers, jnp.float32)
    out = costs(layers.n_weights, layers.macs, bits_w, bits_a, extra_fraction, spec)
    bias = float(np.sum(base.fixed_params(layers))) * 16.0
    out["memory_mb"] = base.memory_mb(out["weight_bits_total"] + jnp.float32(bias))
    return out


def retrained_costs(
    n_weights,
    bits_w,
    extra_counts,
    bits_a=None,
    macs=None,
    spec: ReconfigSpec | None = None,
) -> dict:
    """Storage and energy of a switching-aware retrained configuration (host side).

    The accounting of :mod:`mohaq_jax.retrain.switching` (which re-exports it as
    ``compression``), from measured extra-bit weight counts per site.

    Encoding: per site ``n b`` base bits + one bit per extra-bit weight + the index
    marking them (:func:`index_bits`: min of a 1-bit flag per weight and a
    list of ``ceil(log2 n)``-bit positions).

    Args:
      n_weights: weights per site ``(n_sites,)``.
      bits_w: base bits per site.
      extra_counts: extra-bit weights per site.
      bits_a: activation bits per site (for the energy model; default 4).
      macs: MACs per inference per site (default: ``n_weights``).
      spec: reconfigurable PE model.

    Returns:
      Floats: ``weight_bits_total``, ``index_bits_total``, ``extra_bits_total``,
      ``bits_per_weight``, ``compression_vs_float32``, ``compression_vs_uniform4``,
      ``energy_rel_uniform4`` (energy on the 2-4-bit reconfigurable accelerator
      relative to every site at 4/4 bits; None when a width is outside the PE's
      2-4 bits), ``energy_pj`` and ``extra_fraction`` per site.
    """
    spec = SPEC if spec is None else spec
    n = np.asarray(n_weights, np.float64)
    extra = np.asarray(extra_counts, np.float64)
    frac = extra / np.maximum(n, 1.0)
    bits_w = np.asarray(bits_w, np.int32)
    bits_a = (
        np.full(n.shape, 4, np.int32)
        if bits_a is None
        else np.asarray(bits_a, np.int32)
    )
    macs = n if macs is None else np.asarray(macs, np.float64)
    # The PE model covers only its own widths; outside them only storage is reported.
    on_pe = bool(
        np.all(np.isin(bits_w, spec.bits)) and np.all(np.isin(bits_a, spec.bits))
    )
    out = costs(
        n,
        macs,
        bits_w if on_pe else np.full(n.shape, 4, np.int32),
        bits_a if on_pe else np.full(n.shape, 4, np.int32),
        frac,
        spec,
    )
    res = {k: float(v) for k, v in out.items()}
    if not on_pe:
        index = float(np.sum(np.asarray(index_bits(n, frac))))
        weight_bits = float(np.sum(n * bits_w + extra * spec.extra_bits)) + index
        res = {
            "weight_bits_total": weight_bits,
            "index_bits_total": index,
            "compression_vs_float32": spec.float_bits * float(np.sum(n)) / weight_bits,
            "compression_vs_uniform4": 4.0 * float(np.sum(n)) / weight_bits,
            "energy_rel_uniform4": None,
            "energy_pj": None,
        }
    res["extra_bits_total"] = float(np.sum(extra) * spec.extra_bits)
    res["bits_per_weight"] = res["weight_bits_total"] / float(np.sum(n))
    res["extra_fraction"] = frac.tolist()
    return res


@dataclasses.dataclass(frozen=True)
class ReconfigPlatform(Platform):
    """Platform whose cost function also takes the measured extra-bit fractions."""

    def make_cost_fn(self, space, extra_fraction=None) -> base.CostFn:
        """As :meth:`Platform.make_cost_fn`; ``extra_fraction`` ``(n_layers,)``
        (default 0) is closed over, one value per layer of ``space``."""
        if extra_fraction is not None:
            frac = np.asarray(extra_fraction, np.float32)
            if frac.shape != (len(space.layers),):
                raise ValueError(
                    f"extra_fraction needs one value per layer ({len(space.layers)}), "
                    f"got shape {frac.shape}"
                )
            if np.any((frac < 0) | (frac > 1)) or not np.all(np.isfinite(frac)):
                raise ValueError("extra_fraction must lie in [0, 1]")
            spec = self.spec
            platform = dataclasses.replace(
                self,
                costs=lambda bw, ba, layers, _spec: layer_costs(
                    bw, ba, layers, spec, frac
                ),
            )
            return Platform.make_cost_fn(platform, space)
        return Platform.make_cost_fn(self, space)


SPEC = ReconfigSpec()

#: Why this PE's absolute energies are placeholders (ReconfigSpec fields).
_PLACEHOLDER_PJ = (
    "mac4_energy_pj and weight_mem_pj_per_bit are SiLago's energies (the MOHAQ "
    "authors' 4-bit MAC and memory access), not measured for this PE; only the "
    "relative MAC energies are this model's claim"
)

#: What :func:`layer_costs` returns.
METRICS = (
    Metric(
        "energy_pj",
        "pJ/frame",
        False,
        "MAC energy + weight-memory reads",
        placeholder=_PLACEHOLDER_PJ,
    ),
    Metric(
        "energy_mac_pj",
        "pJ/frame",
        False,
        "MAC part of energy_pj",
        False,
        placeholder=_PLACEHOLDER_PJ,
    ),
    Metric(
        "energy_weight_mem_pj",
        "pJ/frame",
        False,
        "memory part of energy_pj",
        False,
        placeholder=_PLACEHOLDER_PJ,
    ),
    Metric(
        "energy_rel_uniform4",
        "ratio",
        False,
        "energy over the same layers at 4/4 bits without extra bits",
        placeholder="its MAC/memory mix weighs the two placeholder energies "
        "(mac4_energy_pj, weight_mem_pj_per_bit)",
    ),
    Metric("weight_bits_total", "bits", False, "weight + extra + index bits", False),
    Metric("index_bits_total", "bits", False, "bits marking extra-bit weights", False),
    Metric("compression_vs_float32", "x", True, "32 x weights / stored weight bits"),
    Metric(
        "compression_vs_uniform4", "x", True, "4 x weights / stored weight bits", False
    ),
    Metric("memory_mb", "MB", False, "weight bits + the sites' biases at 16 bits"),
)

#: The 2-4-bit reconfigurable accelerator, searched with the "reconfig" genome space
#: (``genome.SPACES``: separate weight and activation genes over 2, 3, 4 bits). The memory limit is the Bitfusion one (no published
#: value).
PLATFORM = ReconfigPlatform(
    name="reconfig",
    spaces=("reconfig",),
    spec=SPEC,
    costs=layer_costs,
    weight_bits=BITS,
    act_bits=BITS,
    metrics=METRICS,
    memory_metric="memory_mb",
    memory_limit_mb=2.0,
    description="2-4-bit reconfigurable PE with extra-bit weights (Kim et al. 2021)",
)
