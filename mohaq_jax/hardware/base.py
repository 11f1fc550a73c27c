"""What every hardware cost model shares: per-layer arrays, memory size, speedups.

A cost model is a pure function of per-layer bit-widths and the model's own layers
(:class:`mohaq_jax.models.sites.Site`): parameter counts, MACs per frame, biases.
No layer size is typed into this package, and no layer kind is read: the biases a
model stores are the ``n_bias`` its sites declare, whichever model it is. A
:class:`~mohaq_jax.hardware.platform.Platform` bundles a frozen spec of constants with
such a function, declares the metrics it returns, and turns it into a cost function of
ONE genome of a :class:`~mohaq_jax.evaluation.genome.GenomeSpace`; callers ``jax.vmap`` it over
the population.
"""

from __future__ import annotations

from collections.abc import Callable, Sequence

import jax
import jax.numpy as jnp
import numpy as np
from flax import struct

from mohaq_jax.models.sites import Site

#: Bytes per MB in the MOHAQ authors' memory formula (``/ 8 / 1024 / 1024``).
BITS_PER_MB = 8 * 2**20

CostFn = Callable[[jax.Array], dict[str, jax.Array]]


@struct.dataclass
class LayerArrays:
    """The quantizable layers of a model as arrays, forward order (one entry a layer).

    Built from :class:`~mohaq_jax.models.sites.Site` by :func:`layer_arrays`; a
    custom model or genome space can fill it from its own counts.
    """

    n_in: np.ndarray  # shape=(n_layers,), int32: matmul input features
    n_out: np.ndarray  # shape=(n_layers,), int32: kernel output columns
    n_weights: np.ndarray  # shape=(n_layers,), float32: kernel parameters
    macs: np.ndarray  # shape=(n_layers,), float32: multiply-accumulates per frame
    n_bias: np.ndarray  # shape=(n_layers,), float32: 16-bit biases (Site.n_bias)
    n_vector: np.ndarray  # shape=(n_layers,), float32: SRU recurrent vectors v_f, v_r
    bias_counted: np.ndarray  # shape=(n_layers,), bool: Site.bias_counted
    names: tuple[str, ...] = struct.field(pytree_node=False)
    kinds: tuple[str, ...] = struct.field(pytree_node=False)  # labels, for reports

    @property
    def n_layers(self) -> int:
        return len(self.names)


def layer_arrays(layers: Sequence[Site]) -> LayerArrays:
    """Per-layer counts of the model's quantizable layers, as arrays.

    Counts are float32 (exact below 2**24 per layer) so that sums of bits times
    parameters of large models do not overflow int32.
    """
    layers = tuple(layers)
    if not layers:
        raise ValueError("a cost model needs at least one layer")

    def col(attr, dtype):
        return np.asarray([getattr(layer, attr) for layer in layers], dtype)

    return LayerArrays(
        n_in=col("n_in", np.int32),
        n_out=col("n_out", np.int32),
        n_weights=col("n_weights", np.float32),
        macs=col("macs_per_frame", np.float32),
        n_bias=col("n_bias", np.float32),
        n_vector=col("n_vector", np.float32),
        bias_counted=col("bias_counted", bool),
        names=tuple(layer.name for layer in layers),
        kinds=tuple(layer.kind for layer in layers),
    )


def fixed_params(
    layers: LayerArrays, all_biases: bool = False, count_vectors: bool = False
) -> np.ndarray:
    """Parameters kept at a fixed (16-bit) precision per layer, shape ``(n_layers,)``.

    Every site's ``n_bias`` counts, whatever the model (LSTM gate biases, conv
    biases ...), except biases a site marks ``bias_counted=False``: the MOHAQ authors'
    memory formula counts 8 800 biases for the paper SRU, its b_f, b_r (4 layers x 2
    dirs x 2 x 550), and leaves out the output-layer bias and the SRU vectors v_f, v_r.
    ``all_biases`` and ``count_vectors`` let a spec count those too.

    Args:
      layers: from :func:`layer_arrays`.
      all_biases: also count the biases marked ``bias_counted=False``.
      count_vectors: also count the recurrent vectors (``n_vector``).
    """
    n_bias = np.asarray(layers.n_bias, np.float32)
    params = n_bias if all_biases else np.where(layers.bias_counted, n_bias, 0.0)
    if count_vectors:
        params = params + np.asarray(layers.n_vector)
    return params.astype(np.float32)


def stored_bits(
    bits_w: jax.Array,
    layers: LayerArrays,
    bias_bits: int = 16,
    all_biases: bool = False,
    count_vectors: bool = False,
) -> jax.Array:
    """Bits of the stored model: Σ weight bits x weights + fixed params x bias bits.

    Args:
      bits_w: weight bits per layer, ``(n_layers,)``.
      layers: from :func:`layer_arrays`.
      bias_bits: precision of the biases (the authors: 16).
      all_biases: also count biases a site marks ``bias_counted=False`` (the SRU
        output bias, which the authors leave out).
      count_vectors: also count the SRU vectors v_f, v_r at ``bias_bits``.

    Returns:
      float32 scalar.
    """
    bits_w = jnp.asarray(bits_w, jnp.float32)
    weight_bits = jnp.sum(bits_w * jnp.asarray(layers.n_weights))
    fixed = float(np.sum(fixed_params(layers, all_biases, count_vectors))) * bias_bits
    return weight_bits + jnp.float32(fixed)


def memory_mb(bits: jax.Array) -> jax.Array:
    """Stored bits in MB as the authors count them: ``bits / 8 / 2**20``."""
    return bits / jnp.float32(BITS_PER_MB)


def amdahl_speedup(macs: jax.Array, speedup_per_layer: jax.Array) -> jax.Array:
    """Time ratio of the whole model: Σ MACs / Σ (MACs / speedup_i)."""
    return jnp.sum(macs) / jnp.sum(macs / speedup_per_layer)


def mac_weighted_speedup(macs: jax.Array, speedup_per_layer: jax.Array) -> jax.Array:
    """MAC-weighted mean of per-layer speedups, Σ MACs_i speedup_i / Σ MACs_i.

    What the MOHAQ authors' code reports (it overstates the time ratio whenever layers
    differ). Their per-layer MAC counts (METHOD.md, "MACs per frame") sum to
    5 549 500; an earlier reading of their Bitfusion script found a divisor of
    5 637 500 there, which would make their printed value ours times
    5 549 500 / 5 637 500 (that divisor is not in METHOD.md and is not re-checked
    here).
    """
    return jnp.sum(macs * speedup_per_layer) / jnp.sum(macs)


def table_lookup(
    bits: jax.Array, keys: Sequence[int], values: Sequence[float]
) -> jax.Array:
    """``values[keys.index(b)]`` for each ``b`` in ``bits`` (traceable; 0 if absent)."""
    bits = jnp.asarray(bits, jnp.int32)
    keys_arr = jnp.asarray(np.asarray(keys, np.int32))
    values_arr = jnp.asarray(np.asarray(values, np.float32))
    hit = bits[..., None] == keys_arr.reshape((1,) * bits.ndim + (-1,))
    return jnp.sum(jnp.where(hit, values_arr, jnp.float32(0.0)), axis=-1)


def check_bits_supported(
    bits, supported: Sequence[int], platform: str, what: str, names: Sequence[str] = ()
) -> np.ndarray:
    """Raises a ValueError naming the layer if a bit-width is not one the platform runs.

    Call at the Python boundary (outside jit) on concrete bits.
    """
    arr = np.asarray(bits)
    bad = ~np.isin(arr, np.asarray(supported))
    if np.any(bad):
        i = int(np.argwhere(bad.reshape(-1))[0][0])
        where = f" (layer {names[i]})" if i < len(names) else f" at index {i}"
        raise ValueError(
            f"platform {platform!r} cannot run {int(arr.reshape(-1)[i])}-bit {what}"
            f"{where}; it supports {tuple(supported)}"
        )
    return arr.astype(np.int32)
