"""Beacon-based search (MOHAQ, Rashed et al. 2021, Sec. IV-D).

Post-training quantization misjudges aggressive genomes that a short
quantization-aware retraining would rescue, and retraining every candidate is far too
slow. A few selected genomes, *beacons*, are retrained (QAT with the straight-through
estimator, :func:`mohaq_jax.train.qat_finetune`, all new beacons of a generation at
once with ``vmap``); every other promising candidate is also evaluated on the retrained
weights of its nearest beacon, and its error is the minimum of the two. The float
model is beacon 0.

* Distance: ``sum |level(candidate) - level(beacon)|`` over the chosen genes (the
  authors: the weight genes of the 16-gene Bitfusion genome), threshold 5.
* Promising (who consults, and who may become, a beacon): configurable bounds on PTQ
  error, speedup and memory (the authors' Bitfusion run: error < 30 %, speedup > 10,
  memory < 2 MB).
* A promising candidate with no beacon within the threshold becomes a new beacon, up to
  a budget; candidates a new beacon covers are re-evaluated.

Evaluation with beacons stays one batched pass: the beacons' params are stacked
``(capacity, ...)`` (unused slots hold the float params, so shapes never change), each
genome carries the index of its beacon, and the evaluated function gathers that
beacon's params and its quantized kernels.
"""

from __future__ import annotations

import dataclasses
import functools
from typing import Any

import jax
import jax.numpy as jnp
import numpy as np

from mohaq_jax import evaluate as evaluate_lib
from mohaq_jax import train
from mohaq_jax.data import batching
from mohaq_jax.genome import GenomeSpace
from mohaq_jax.search import score_cache
from mohaq_jax.search.mohaq import QuantizationProblem


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
    info: tuple = ()  # one dict per beacon: slot, genome, PTQ/QAT dev PER, epochs

    @classmethod
    def empty(cls, float_params, capacity: int, n_genes: int) -> BeaconState:
        stacked = jax.tree.map(
            lambda leaf: jnp.broadcast_to(leaf, (capacity,) + leaf.shape), float_params
        )
        return cls(np.zeros((capacity, n_genes), np.int32), stacked)


def add_beacons(state: BeaconState, genomes, params, info) -> BeaconState:
    """``state`` with ``genomes`` (retrained ``params``, leaves ``(k, ...)``) added."""
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
            "ptq_dev_per": float(info["ptq_dev_per"][j]),
            "qat_dev_per": float(info["dev_per"][j]),
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

    The population evaluator (:func:`mohaq_jax.evaluate.make_population_eval`) in its
    stacked mode: ``stacked_params`` leaves are ``(capacity, ...)``; genome ``i`` is
    evaluated with the params of slot ``beacon_index[i]`` (weights quantized once per
    (beacon, site, bits) into tables, then gathered; first stages shared per beacon;
    the population split over ``mesh``). Returns
    :class:`~mohaq_jax.evaluate.PopulationMetrics`, or with ``return_sums`` the per-genome
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


class BeaconProblem(QuantizationProblem):
    """A :class:`QuantizationProblem` whose errors see retrained beacons.

    Metrics per genome: ``ptq_error`` (float weights, post-training quantized),
    ``beacon`` (slot of the beacon used, 0 = none), ``beacon_error`` (error on that
    beacon's weights; equals ``ptq_error`` when none), ``error`` = the minimum, the
    searched objective.

    Args:
      problem_args: as :class:`QuantizationProblem`.
      beacon_config: the policy.
      corpus: data for QAT (train split) and its early stopping (dev split).
      train_config: training settings for QAT.
      progress: progress bars while retraining.
    """

    def __init__(
        self,
        evaluator,
        cost_fn,
        batch,
        config,
        ideal=None,
        nadir=None,
        *,
        beacon_config: BeaconConfig,
        corpus,
        train_config=None,
        progress=False,
    ):
        super().__init__(evaluator, cost_fn, batch, config, ideal, nadir)
        self.beacon_config = beacon_config
        self.corpus = corpus
        self.train_config = train_config or train.TrainConfig()
        self.progress = progress
        capacity = beacon_config.max_beacons + 1
        self.mask = distance_mask(self.space, beacon_config.genes)
        # The explicit beacon state: replaced by pure functions, never mutated.
        self.beacons = BeaconState.empty(evaluator.params, capacity, self.space.n_genes)
        self._beacon_eval = make_beacon_eval(
            evaluator.config,
            self.space,
            evaluator.fold,
            evaluator.chunk_size,
            evaluator.mesh,  # beacons use the evaluator's mesh
            evaluator.decoder,  # and read PER the same way
            evaluator.per_mode,
            return_sums=True,
        )

    @property
    def beacon_genomes(self) -> np.ndarray:
        return self.beacons.genomes

    @property
    def stacked(self):
        return self.beacons.stacked

    @property
    def n_beacons(self) -> int:
        return self.beacons.count

    @property
    def beacon_info(self) -> list[dict]:
        return list(self.beacons.info)

    # ---- evaluation --------------------------------------------------------------
    def assign(self, genomes) -> tuple[np.ndarray, np.ndarray]:
        index, dist = nearest_beacon(
            genomes,
            self.beacon_genomes,
            self.n_beacons,
            self.mask,
            self.beacon_config.threshold,
        )
        return np.asarray(index), np.asarray(dist)

    def promising(self, results) -> np.ndarray:
        cfg, bc = self.config, self.beacon_config
        ok = np.ones(len(results["ptq_error"]), bool)
        if bc.max_ptq_error is not None:
            ok &= results["ptq_error"] < bc.max_ptq_error
        if bc.min_speedup is not None:
            ok &= results["speedup"] > bc.min_speedup
        if bc.require_memory and cfg.memory_limit_mb is not None and cfg.memory_metric:
            ok &= results[cfg.memory_metric] <= cfg.memory_limit_mb  # plat12
        return ok

    def beacon_errors(self, genomes, index, batch=None) -> np.ndarray:
        """Error of each genome on the params of beacon slot ``index[i]``.

        ``batch``: one batch or a streamed split (default: the dev data); metric sums
        are added up over its batches.
        """
        size = self.evaluator.pop_size or len(genomes)
        batches = batching.as_batches(self.batch if batch is None else batch)
        out = []
        for i in range(0, len(genomes), size):
            g, idx = genomes[i : i + size], index[i : i + size]
            pad = -len(g) % size
            g = jnp.asarray(np.concatenate([g, np.repeat(g[:1], pad, 0)]))
            idx = jnp.asarray(np.concatenate([idx, np.repeat(idx[:1], pad, 0)]))

            def sums(one, g=g, idx=idx):
                one = tuple(jnp.asarray(x) for x in one)
                return self._beacon_eval(
                    self.stacked, self.evaluator.calib, g, idx.astype(jnp.int32), one
                )

            res = evaluate_lib.host_metrics(batching.accumulate_sums(sums, batches))
            out.append(getattr(res, self.config.error_metric)[: len(g) - pad])
        return np.concatenate(out)

    def _score(self, genomes) -> dict[str, np.ndarray]:
        res = super()._score(genomes)
        res["ptq_error"] = res["error"]
        res["beacon"] = np.zeros(len(genomes), np.float32)
        res["beacon_error"] = res["ptq_error"]
        return res

    def _refresh(self, genomes, cache):
        """The cache with the beacon errors of genomes whose nearest promising beacon
        changed recomputed (pure: returns a new cache)."""
        if self.n_beacons == 0:
            return cache
        cached = cache.lookup(genomes)
        index, _ = self.assign(genomes)
        index = np.where(self.promising(cached), index, 0)
        stale = np.flatnonzero(index != cached["beacon"])
        if not len(stale):
            return cache
        fresh = self.beacon_errors(genomes[stale], index[stale])
        updates = {}
        for j, i in enumerate(stale):
            entry = dict(cache.entries[genomes[i].tobytes()])
            entry["beacon"] = float(index[i])
            entry["beacon_error"] = float(fresh[j]) if index[i] else entry["ptq_error"]
            entry["error"] = min(entry["ptq_error"], entry["beacon_error"])
            updates[genomes[i].tobytes()] = entry
        return score_cache.replace_entries(cache, updates)

    # ---- the policy --------------------------------------------------------------
    def update(self, genomes, results) -> bool:
        """Creates beacons from promising, uncovered genomes; True if any was made."""
        bc = self.beacon_config
        room = min(bc.per_generation, bc.max_beacons - self.n_beacons)
        if room <= 0:
            return False
        genomes = self.space.validate(genomes)
        index, _ = self.assign(genomes)
        candidates = np.flatnonzero(self.promising(results) & (index == 0))
        candidates = candidates[
            np.argsort(results["ptq_error"][candidates], kind="stable")
        ]
        chosen: list[int] = []
        for c in candidates:
            near = [
                int(np.sum(np.abs(genomes[c] - genomes[o])[self.mask])) <= bc.threshold
                for o in chosen
            ]
            if not any(near):
                chosen.append(int(c))
            if len(chosen) == room:
                break
        if not chosen:
            return False
        self.add_beacons(genomes[chosen])
        return True

    def add_beacons(self, genomes) -> None:
        """Retrains ``genomes`` (batched QAT) and stores them as beacons."""
        genomes = self.space.validate(genomes)
        bits_w, bits_a = jax.vmap(self.space.decode)(jnp.asarray(genomes))
        args = (
            self.evaluator.params,
            self.evaluator.config,
            self.evaluator.calib,
            np.asarray(bits_w),
            np.asarray(bits_a),
            self.corpus,
        )
        bc = self.beacon_config
        if bc.retrain == "switching":
            # Switching-aware retraining (Kim et al. 2021): the latent weights it
            # returns are requantized at each neighbour's own bits, as QAT beacons are.
            from mohaq_jax.retrain import speech, switching

            schedule = dataclasses.replace(
                switching.SwitchingConfig(), retrain_epochs=bc.epochs
            )
            retrain = functools.partial(
                speech.switching_finetune, switching_config=schedule
            )
        else:
            retrain = functools.partial(train.qat_finetune, epochs=bc.epochs)
        # Both return (stacked params, info with qat_finetune's keys).
        params, info = retrain(
            *args, lr=bc.lr, train_config=self.train_config, progress=self.progress
        )
        self.beacons = add_beacons(self.beacons, genomes, params, info)

    # ---- checkpointing -----------------------------------------------------------
    def extra_state(self):
        return {
            "genomes": self.beacon_genomes,
            "params": self.stacked,
            "count": np.int32(self.n_beacons),
        }

    def extra_meta(self) -> dict:
        return {
            "beacons": self.beacon_info,
            "beacon_config": self.beacon_config.to_dict(),
        }

    def restore_extra(self, tree, meta) -> None:
        self.beacons = BeaconState(
            np.asarray(tree["genomes"], np.int32),
            jax.tree.map(jnp.asarray, tree["params"]),
            int(tree["count"]),
            tuple(meta.get("beacons", [])),
        )


__all__ = [
    "BeaconConfig",
    "BeaconProblem",
    "BeaconState",
    "add_beacons",
    "distance_mask",
    "level_distance",
    "make_beacon_eval",
    "nearest_beacon",
]
