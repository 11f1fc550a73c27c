"""Quantization sites: the model-neutral description of what a genome quantizes.

A *site* is one quantizable matmul of a model: its weight tensor (quantized at the
genome's weight bits) and its input activation (quantized at the activation bits).
MOHAQ (Rashed et al. 2021, Sec. III-IV) derives the genome, the memory size and the
speedup of a candidate from per-site counts only: parameters, MACs per frame (or per
sample, for an image model) and the 16-bit biases that stay unquantized. Models
(``mohaq_jax.models.*``) describe themselves with a tuple of :class:`Site`, forward
order; genome spaces (:mod:`mohaq_jax.evaluation.genome`) and cost models
(:mod:`mohaq_jax.hardware`) read only these, so neither depends on a model file.

``kind`` is a free label (``"sru"``, ``"proj"``, ``"fc"``, ``"lstm"`` ...) for
names and reports; no cost model reads it: what a site stores (weights, 16-bit biases,
recurrent vectors) is in its counts, whatever the model. ``group``
orders the genes: a space groups the sites by ascending ``group`` and keeps forward
order within a group (the SRU gives sru=0, proj=1, fc=2, which is the MOHAQ paper's
gene order ``[w_sru1..4, a_sru1..4, w_proj1..3, a_proj1..3, w_fc, a_fc]``).
"""

from __future__ import annotations

import dataclasses
import math
from collections.abc import Sequence
from typing import Any


@dataclasses.dataclass(frozen=True)
class Site:
    """One quantizable layer: a weight site and the site of its input activation.

    ``n_in``/``n_out`` are the matmul's input features and output columns (all slices,
    all directions); ``shape`` is the stored weight's shape when it is not
    ``(n_in, n_out)`` (e.g. a per-direction recurrent kernel ``(dirs, hidden, 4h)``
    or a conv kernel ``(3, 3, c_in, c_out)``). ``n_bias`` counts the site's biases,
    kept at 16 bits and added to the stored size by every cost model (SRU b_f/b_r,
    LSTM gate biases, conv and output biases); ``bias_counted=False`` marks biases the
    model's reference memory formula leaves out (the MOHAQ authors' ``compute_mem``
    omits the SRU's output bias), which a spec counts only with ``all_biases``.
    ``n_vector`` counts elementwise recurrent vectors (SRU v_f/v_r: not MACs; counted
    only with a spec's ``count_vectors``). ``macs`` overrides the MACs per
    frame/sample (default: one MAC per weight).
    """

    name: str  # "sru1", "proj1", "fc" ...: also the params key of its weight
    kind: str  # free label: "sru" | "proj" | "fc" | "lstm" | "rec" | "conv" ...
    n_in: int  # input features of the matmul
    n_out: int  # output columns of the kernel
    n_bias: int = 0
    n_vector: int = 0
    group: int = 0  # genes are grouped by ascending group, forward order within
    path: tuple[str, ...] = ()  # params path of the weight; () = (name, "kernel")
    shape: tuple[int, ...] = ()  # stored weight shape; () = (n_in, n_out)
    macs: int = 0  # MACs per frame (or sample); 0 = n_weights
    bias_counted: bool = True  # False: the reference memory formula omits n_bias

    @property
    def weight_path(self) -> tuple[str, ...]:
        return self.path or (self.name, "kernel")

    @property
    def weight_shape(self) -> tuple[int, ...]:
        return self.shape or (self.n_in, self.n_out)

    @property
    def n_weights(self) -> int:
        return math.prod(self.weight_shape)

    @property
    def macs_per_frame(self) -> int:
        return self.macs or self.n_weights


def gene_order(sites: Sequence[Site]) -> list[int]:
    """Site indices sorted by ``group``, forward order within a group."""
    return sorted(range(len(sites)), key=lambda i: (sites[i].group, i))


def groups(sites: Sequence[Site]) -> list[list[int]]:
    """Site indices per group, groups ascending, forward order within each."""
    keys = sorted({s.group for s in sites})
    return [[i for i in range(len(sites)) if sites[i].group == g] for g in keys]


def get_weight(params: Any, site: Site) -> Any:
    """The site's weight leaf of a nested params dict."""
    node = params
    for key in site.weight_path:
        node = node[key]
    return node


def set_weight(params: Any, site: Site, value: Any) -> dict:
    """A copy of ``params`` (copied along the path only) with the site's weight set."""

    def put(node, path):
        new = dict(node)
        new[path[0]] = value if len(path) == 1 else put(node[path[0]], path[1:])
        return new

    return put(params, site.weight_path)


def weight_paths(sites: Sequence[Site]) -> tuple[tuple[str, ...], ...]:
    """Params paths of the weight sites, in site order."""
    return tuple(s.weight_path for s in sites)


__all__ = [
    "Site",
    "gene_order",
    "get_weight",
    "groups",
    "set_weight",
    "weight_paths",
]
