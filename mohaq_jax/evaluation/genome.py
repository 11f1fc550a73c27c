"""Genome spaces: integer genomes -> bits per quantization site.

The sites (:mod:`mohaq_jax.models.sites`: each layer's weight and input activation, with its
parameter count and MACs per frame) come from the model's ``sites(config)``; the gene
order comes from the sites' ``group`` (no layer kind is named here). A *genome* is an
integer vector of gene levels; a :class:`GenomeSpace` maps it to bits per site.
MOHAQ (Rashed et al. 2021, Sec. IV) searches two spaces:

* SiLago: one gene per layer (weights and activations share a precision), bits
  {4, 8, 16}; for the default SRU the genes are [sru1..4, proj1..3, fc].
* Bitfusion: separate weight and activation genes, bits {2, 4, 8, 16}; for the
  default SRU [w_sru1..4, a_sru1..4, w_proj1..3, a_proj1..3, w_fc, a_fc].

and the other platforms' (:data:`SPACES`): ``reconfig`` (the 2-4-bit reconfigurable
accelerator: separate genes over {2, 3, 4}), ``wide`` (separate genes over every
supported width) and ``weights`` (the compression experiment: weight genes only).

A gene's value is its *level*: the index of its bit-width in that gene's allowed
values (ascending), so levels are what NSGA-II mutates and what beacon distances count.
Adding a space is a few lines: give the allowed bit values per gene and which gene
drives each layer's weight and activation bits.
"""

from __future__ import annotations

import dataclasses
from collections.abc import Callable, Sequence

import jax
import jax.numpy as jnp
import numpy as np

from mohaq_jax.models.sites import Site, gene_order, groups
from mohaq_jax.numerics import quantize


@dataclasses.dataclass(frozen=True)
class GenomeSpace:
    """Maps integer genomes to (weight bits, activation bits) per layer.

    Attributes:
      name: registry name of the space.
      layers: the model's quantizable layers, forward order.
      gene_names: one name per gene, e.g. ``"w_sru1"``.
      gene_values: allowed bit-widths per gene, ascending (level i -> value i).
      w_gene: for each layer, the gene giving its weight bits.
      a_gene: for each layer, the gene giving its input-activation bits.
    """

    name: str
    layers: tuple[Site, ...]
    gene_names: tuple[str, ...]
    gene_values: tuple[tuple[int, ...], ...]
    w_gene: tuple[int, ...]
    a_gene: tuple[int, ...]

    def __post_init__(self):
        n = len(self.gene_names)
        if len(self.gene_values) != n:
            raise ValueError("gene_values needs one tuple of bit values per gene")
        for name, values in zip(self.gene_names, self.gene_values, strict=True):
            quantize.check_bits(values, f"allowed values of gene {name}")
            if list(values) != sorted(set(values)):
                raise ValueError(
                    f"allowed values of gene {name} must be ascending, unique"
                )
        if len(self.w_gene) != len(self.layers) or len(self.a_gene) != len(self.layers):
            raise ValueError("w_gene and a_gene need one gene index per layer")
        if not all(0 <= g < n for g in self.w_gene + self.a_gene):
            raise ValueError("w_gene/a_gene index a gene that does not exist")

    @property
    def n_genes(self) -> int:
        return len(self.gene_names)

    @property
    def n_levels(self) -> np.ndarray:
        """Number of allowed values per gene, shape ``(n_genes,)``."""
        return np.asarray([len(v) for v in self.gene_values], np.int32)

    @property
    def upper(self) -> np.ndarray:
        """Largest level per gene (the lowest is 0), shape ``(n_genes,)``."""
        return self.n_levels - 1

    @property
    def bits_table(self) -> np.ndarray:
        """Bit values per (gene, level), padded with the last value; ``(n_genes, k)``."""
        k = int(self.n_levels.max())
        return np.asarray(
            [tuple(v) + (v[-1],) * (k - len(v)) for v in self.gene_values], np.int32
        )

    def layer_values(self, which: str) -> tuple[tuple[int, ...], ...]:
        """Bit values each layer's weight (``"w"``) or activation (``"a"``) can take."""
        genes = self.w_gene if which == "w" else self.a_gene
        return tuple(self.gene_values[g] for g in genes)

    def validate(self, genomes) -> np.ndarray:
        """Checks a genome or a population at the Python boundary.

        Args:
          genomes: int array-like, ``(n_genes,)`` or ``(pop, n_genes)``.

        Returns:
          int32 numpy array, same shape.

        Raises:
          ValueError: wrong length, non-integer values, or a gene outside its levels,
            naming the gene and the offending value.
        """
        arr = np.asarray(genomes)
        if arr.ndim not in (1, 2) or arr.shape[-1] != self.n_genes:
            raise ValueError(
                f"genome space {self.name!r} expects genomes of length {self.n_genes} "
                f"(genes {', '.join(self.gene_names)}), got shape {arr.shape}"
            )
        if arr.dtype.kind not in "iu":
            if (
                arr.dtype.kind != "f"
                or np.any(~np.isfinite(arr))
                or np.any(arr != np.round(arr))
            ):
                raise ValueError(
                    f"genomes must hold integer levels, got dtype {arr.dtype}"
                )
        arr2 = arr.reshape(-1, self.n_genes).astype(np.int64)
        bad = (arr2 < 0) | (arr2 > self.upper)
        if np.any(bad):
            row, gene = (int(i) for i in np.argwhere(bad)[0])
            raise ValueError(
                f"gene {self.gene_names[gene]} of genome {row} is {arr2[row, gene]}, "
                f"outside levels 0..{self.upper[gene]} "
                f"(bits {self.gene_values[gene]})"
            )
        return arr.astype(np.int32)

    def gene_bits(self, genome: jax.Array) -> jax.Array:
        """Bits of every gene of one genome, shape ``(n_genes,)`` (traceable)."""
        table = jnp.asarray(self.bits_table)
        return table[jnp.arange(self.n_genes), jnp.asarray(genome, jnp.int32)]

    def decode(self, genome: jax.Array) -> tuple[jax.Array, jax.Array]:
        """Weight and activation bits per layer of one genome (traceable).

        Args:
          genome: int ``(n_genes,)``; vmap for a population.

        Returns:
          ``(bits_w, bits_a)``, each int32 ``(n_layers,)`` in forward layer order.
        """
        bits = self.gene_bits(genome)
        return bits[jnp.asarray(self.w_gene)], bits[jnp.asarray(self.a_gene)]

    def encode(self, bits: dict[str, int]) -> np.ndarray:
        """Genome from bits per gene name (``{"w_sru1": 8, ...}``)."""
        genome = np.zeros(self.n_genes, np.int32)
        for i, (name, values) in enumerate(
            zip(self.gene_names, self.gene_values, strict=True)
        ):
            if name not in bits:
                raise ValueError(f"no bits given for gene {name}")
            if bits[name] not in values:
                raise ValueError(
                    f"gene {name} cannot take {bits[name]} bits; allowed {values}"
                )
            genome[i] = values.index(bits[name])
        return genome

    def uniform(self, bits: int) -> np.ndarray:
        """Genome with every gene at ``bits`` (each gene must allow it)."""
        return self.encode({name: bits for name in self.gene_names})

    def describe(self, genome) -> dict[str, dict[str, int]]:
        """Bits per layer in words: ``{"sru1": {"w": 8, "a": 8}, ...}``."""
        genome = self.validate(genome)
        bits = self.bits_table[np.arange(self.n_genes), genome]
        return {
            layer.name: {"w": int(bits[wg]), "a": int(bits[ag])}
            for layer, wg, ag in zip(self.layers, self.w_gene, self.a_gene, strict=True)
        }


def _by_kind(layers: Sequence[Site]) -> list[int]:
    """Layer indices grouped by the sites' ``group``, forward order within a group."""
    return gene_order(layers)


def tied_space(layers: Sequence[Site], values: Sequence[int], name: str) -> GenomeSpace:
    """One gene per layer driving both its weight and activation bits."""
    layers = tuple(layers)
    order = _by_kind(layers)
    gene_of_layer = {layer: g for g, layer in enumerate(order)}
    genes = tuple(gene_of_layer[i] for i in range(len(layers)))
    return GenomeSpace(
        name=name,
        layers=layers,
        gene_names=tuple(layers[i].name for i in order),
        gene_values=tuple(tuple(values) for _ in order),
        w_gene=genes,
        a_gene=genes,
    )


def separate_space(
    layers: Sequence[Site], values: Sequence[int], name: str
) -> GenomeSpace:
    """Separate weight and activation genes per group: w_sru*, a_sru*, w_proj* ..."""
    layers = tuple(layers)
    names, w_gene, a_gene = [], [0] * len(layers), [0] * len(layers)
    for idx in groups(layers):
        for which, target in (("w", w_gene), ("a", a_gene)):
            for i in idx:
                target[i] = len(names)
                names.append(f"{which}_{layers[i].name}")
    return GenomeSpace(
        name=name,
        layers=layers,
        gene_names=tuple(names),
        gene_values=tuple(tuple(values) for _ in names),
        w_gene=tuple(w_gene),
        a_gene=tuple(a_gene),
    )


def silago_space(layers: Sequence[Site]) -> GenomeSpace:
    """SiLago: weights and activations of a layer share one of 4, 8, 16 bits."""
    return tied_space(layers, (4, 8, 16), "silago")


def bitfusion_space(layers: Sequence[Site]) -> GenomeSpace:
    """Bitfusion: separate weight and activation genes over 2, 4, 8, 16 bits."""
    return separate_space(layers, (2, 4, 8, 16), "bitfusion")


def wide_space(layers: Sequence[Site]) -> GenomeSpace:
    """Every supported bit-width (2-16, float) for weights and activations separately."""
    return separate_space(layers, quantize.BIT_OPTIONS, "wide")


def weights_space(layers: Sequence[Site], act_bits: int = 16) -> GenomeSpace:
    """One weight gene per layer over 2-16 bits; activations fixed at ``act_bits``.

    The space of the compression experiment (post-training weight compression).
    """
    layers = tuple(layers)
    order = _by_kind(layers)
    gene_of_layer = {layer: g for g, layer in enumerate(order)}
    n = len(order)
    return GenomeSpace(
        name="weights",
        layers=layers,
        gene_names=tuple(f"w_{layers[i].name}" for i in order) + ("a_all",),
        gene_values=tuple(quantize.BIT_OPTIONS[:-1] for _ in order) + ((act_bits,),),
        w_gene=tuple(gene_of_layer[i] for i in range(len(layers))),
        a_gene=(n,) * len(layers),
    )


def reconfig_space(layers: Sequence[Site]) -> GenomeSpace:
    """2-4-bit reconfigurable PE: separate weight and activation genes over 2, 3, 4."""
    return separate_space(layers, (2, 3, 4), "reconfig")


#: name -> factory(layers) -> GenomeSpace
SPACES: dict[str, Callable[[Sequence[Site]], GenomeSpace]] = {
    "silago": silago_space,
    "bitfusion": bitfusion_space,
    "reconfig": reconfig_space,  # the 2-4-bit reconfigurable accelerator
    "wide": wide_space,
    "weights": weights_space,
}


def get_space(name: str, layers: Sequence[Site]) -> GenomeSpace:
    """Builds a registered genome space for the given layers."""
    if name not in SPACES:
        raise ValueError(f"unknown genome space {name!r}; registered: {sorted(SPACES)}")
    return SPACES[name](layers)
