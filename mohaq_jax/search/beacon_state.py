"""Beacon policy settings, the beacons' immutable state and their batched scoring.

The values and pure functions under :class:`~mohaq_jax.search.beacon.BeaconProblem`
(see :mod:`mohaq_jax.search.beacon` for the method).
"""

from __future__ import annotations

import dataclasses
from typing import Any

import jax
import jax.numpy as jnp
import numpy as np

from mohaq_jax.evaluation import evaluate as evaluate_lib
from mohaq_jax.evaluation.genome import GenomeSpace

__all__ = [
    "BeaconConfig",
    "BeaconState",
    "add_beacons",
    "distance_mask",
    "level_distance",
    "make_beacon_eval",
    "nearest_beacon",
]


@dataclasses.dataclass(frozen=True)
class BeaconConfig:
    """Beacon policy (defaults follow the authors' code where it states one)."""

    threshold: int = 5  # max level distance to use a beacon (authors: 5)
    genes: str = "weights"  # genes the distance counts: "weights" (authors) or "all"
    max_beacons: int = 4  # retrained beacons besides the float model (the budget)
    per_generation: int = 2  # new beacons retrained at most per generation
    max_ptq_error: float | None = None  # promising: PTQ error below this (None: any)
    min_speedup: float | None = None  # promising: speedup above this (None: any)
    require_memory: bool = True  # promising: memory constraint satisfied
    epochs: int = 3  # QAT epochs per beacon (authors: about 20 on TIMIT)
    lr: float = 5e-4  # QAT learning rate
    retrain: str = "qat"  # "qat" (STE fine-tuning) or "switching" (Kim et al. 2021)

    def __post_init__(self):
        if self.retrain not in ("qat", "switching"):
            raise ValueError("BeaconConfig.retrain must be 'qat' or 'switching'")
        if self.genes not in ("weights", "all"):
            raise ValueError("BeaconConfig.genes must be 'weights' or 'all'")
        if self.threshold < 0 or self.max_beacons < 0 or self.per_generation < 1:
            raise ValueError(
                "need threshold >= 0, max_beacons >= 0, per_generation >= 1"
            )

    def to_dict(self) -> dict:
        return dataclasses.asdict(self)


@dataclasses.dataclass(frozen=True)
class BeaconState:
    """The beacons made so far (replaced, never mutated, as the search goes on)."""

    genomes: np.ndarray  # shape=(capacity, n_genes) int32; slot 0 the float model
    stacked: Any  # params pytree, leaves (capacity, ...); unused slots hold float
    count: int = 0  # filled slots after slot 0
    # one dict per beacon: slot, genome, PTQ and QAT dev error (the search's metric
    # and reading), epochs
    info: tuple = ()

    @classmethod
    def empty(cls, float_params, capacity: int, n_genes: int) -> BeaconState:
        stacked = jax.tree.map(
            lambda leaf: jnp.broadcast_to(leaf, (capacity,) + leaf.shape), float_params
        )
        return cls(np.zeros((capacity, n_genes), np.int32), stacked)


def add_beacons(
    state: BeaconState, genomes, params, info, rate: str = "per"
) -> BeaconState:
    """``state`` with ``genomes`` (retrained ``params``, leaves ``(k, ...)``) added.

    ``info`` is the retraining's (:func:`mohaq_jax.train.qat_finetune`); ``rate``
    ("per" or "fer", :func:`mohaq_jax.train.rate_of`) picks the dev error recorded,
    the one the search selects on.
    """
    genomes = np.asarray(genomes, np.int32)
    slots = state.count + 1 + np.arange(len(genomes))
    beacon_genomes = state.genomes.copy()
    beacon_genomes[slots] = genomes
    stacked = jax.tree.map(
        lambda s, p: s.at[jnp.asarray(slots)].set(p), state.stacked, params
    )
    records = tuple(
        {
            "slot": int(slot),
            "genome": [int(v) for v in g],
            "ptq_dev_error": float(info[f"ptq_dev_{rate}"][j]),
            "qat_dev_error": float(info[f"dev_{rate}"][j]),
            "rate": rate,
            "per_mode": info.get("per_mode"),
            "epochs": int(info["epochs_run"][j]),
        }
        for j, (slot, g) in enumerate(zip(slots, genomes, strict=True))
    )
    return BeaconState(
        beacon_genomes, stacked, state.count + len(genomes), state.info + records
    )


def distance_mask(space: GenomeSpace, genes: str) -> np.ndarray:
    """Bool ``(n_genes,)``: the genes a beacon distance counts."""
    if genes == "all":
        return np.ones(space.n_genes, bool)
    mask = np.zeros(space.n_genes, bool)
    mask[list(space.w_gene)] = True
    return mask


def level_distance(genomes, beacons, mask) -> jax.Array:
    """``(n, b)`` sums of absolute level differences over the masked genes."""
    diff = jnp.abs(
        genomes[:, None, :].astype(jnp.int32) - beacons[None, :, :].astype(jnp.int32)
    )
    return jnp.sum(jnp.where(jnp.asarray(mask)[None, None, :], diff, 0), axis=-1)


def nearest_beacon(genomes, beacon_genomes, n_beacons, mask, threshold):
    """Index (1-based slot) of each genome's nearest beacon within ``threshold``.

    Args:
      genomes: int ``(n, n_genes)``.
      beacon_genomes: int ``(capacity, n_genes)``; slot 0 is the float model (never a
        neighbour), slots ``1..n_beacons`` are beacons.
      n_beacons: filled slots after slot 0.
      mask: genes counted.
      threshold: largest distance that still uses a beacon.

    Returns:
      ``(index (n,), distance (n,))``; index 0 means "no beacon near enough".
      Ties go to the earliest beacon.
    """
    dist = level_distance(jnp.asarray(genomes), jnp.asarray(beacon_genomes), mask)
    slots = jnp.arange(beacon_genomes.shape[0])
    usable = (slots >= 1) & (slots <= n_beacons)
    dist = jnp.where(usable[None, :], dist, jnp.iinfo(jnp.int32).max)
    best = jnp.argmin(dist, axis=1)
    best_dist = jnp.min(dist, axis=1)
    return jnp.where(best_dist <= threshold, best, 0), best_dist


def make_beacon_eval(
    config,
    space: GenomeSpace,
    fold,
    chunk_size: int | None = 2,
    mesh=None,
    decoder=None,
    per_mode: str | None = None,
    return_sums: bool = False,
):
    """Jitted ``evaluate(stacked_params, calib, genomes, beacon_index, batch)``.

    The population evaluator (:func:`mohaq_jax.evaluation.evaluate.make_population_eval`) in its
    stacked mode: ``stacked_params`` leaves are ``(capacity, ...)``; genome ``i`` is
    evaluated with the params of slot ``beacon_index[i]`` (weights quantized once per
    (beacon, site, bits) into tables, then gathered; first stages shared per beacon;
    the population split over ``mesh``). Returns
    :class:`~mohaq_jax.evaluation.evaluate.PopulationMetrics`, or with ``return_sums`` the per-genome
    metric sums (added up over batches).
    """
    fn = evaluate_lib.make_population_eval(
        config,
        space,
        fold,
        chunk_size,
        mesh,
        decoder=decoder,
        per_mode=per_mode,
        stacked=True,
        return_sums=return_sums,
    )

    def evaluate(stacked, calib, genomes, beacon_index, batch):
        return fn(stacked, calib, genomes, batch, beacon_index)

    return evaluate
