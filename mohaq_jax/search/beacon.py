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

import jax
import jax.numpy as jnp
import numpy as np

from mohaq_jax import train
from mohaq_jax.data import batching
from mohaq_jax.evaluation import evaluate as evaluate_lib
from mohaq_jax.search import score_cache
from mohaq_jax.search.beacon_state import (
    BeaconConfig,
    BeaconState,
    add_beacons,
    distance_mask,
    level_distance,
    make_beacon_eval,
    nearest_beacon,
)
from mohaq_jax.search.problem import ProblemState, QuantizationProblem


class BeaconProblem(QuantizationProblem):
    """A :class:`QuantizationProblem` whose errors see retrained beacons.

    Its :class:`~mohaq_jax.search.problem.ProblemState` carries a
    :class:`BeaconState` in ``extra``. Metrics per genome: ``ptq_error`` (float
    weights, post-training quantized), ``beacon`` (slot of the beacon used, 0 = none),
    ``beacon_error`` (error on that beacon's weights; equals ``ptq_error`` when none),
    ``error`` = the minimum, the searched objective.

    Args:
      problem_args: as :class:`QuantizationProblem`.
      beacon_config: the policy.
      corpus: data for QAT (train split) and its early stopping (dev split).
      train_config: training settings for QAT.
      progress: progress bars while retraining.
      retrain: the model's own QAT of ``k`` genomes, ``retrain(params, config,
        calib, bits_w (k, n), bits_a (k, n), *, epochs, lr, progress) -> (stacked
        params, info)`` with ``dev_error``, ``ptq_dev_error`` and ``epochs_run``
        ``(k,)`` in the search's error metric (e.g. the VGG's,
        :func:`mohaq_jax.retrain.vision.qat_finetune`); None: the speech models'
        (:func:`mohaq_jax.train.qat_finetune` on ``corpus``, or switching-aware
        retraining with ``beacon_config.retrain == "switching"``).
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
        retrain=None,
    ):
        super().__init__(evaluator, cost_fn, batch, config, ideal, nadir)
        if retrain is not None and beacon_config.retrain != "qat":
            raise ValueError(
                "a model's own beacon retraining is QAT: BeaconConfig.retrain 'qat'"
            )
        if retrain is None:  # QAT monitors, keeps and reports the search's error
            train_config = dataclasses.replace(
                train_config or train.TrainConfig(),
                monitor=train.rate_of(config.error_metric),
            )
        fields = {
            "beacon_config": beacon_config,
            "corpus": corpus,
            "train_config": train_config,
            "retrain": retrain,
            # the key of the retraining's info that holds the search's dev error
            "rate": "error" if retrain is not None else train_config.monitor,
            "progress": progress,
            "mask": distance_mask(self.space, beacon_config.genes),
            "_beacon_eval": make_beacon_eval(
                evaluator.config,
                self.space,
                evaluator.fold,
                evaluator.chunk_size,
                evaluator.mesh,  # beacons use the evaluator's mesh
                evaluator.decoder,  # and read PER the same way
                evaluator.per_mode,
                return_sums=True,
            ),
        }
        for name, value in fields.items():
            object.__setattr__(self, name, value)

    # ---- state -------------------------------------------------------------------
    def initial_state(self) -> ProblemState:
        capacity = self.beacon_config.max_beacons + 1
        beacons = BeaconState.empty(self.evaluator.params, capacity, self.space.n_genes)
        return ProblemState(extra=beacons)

    def state_to_tree(self, state: ProblemState):
        beacons = state.extra
        return {
            "genomes": beacons.genomes,
            "params": beacons.stacked,
            "count": np.int32(beacons.count),
        }

    def state_meta(self, state: ProblemState) -> dict:
        return {
            "beacons": list(state.extra.info),
            "beacon_config": self.beacon_config.to_dict(),
        }

    def restore_state(self, scores, tree, meta) -> ProblemState:
        beacons = BeaconState(
            np.asarray(tree["genomes"], np.int32),
            jax.tree.map(jnp.asarray, tree["params"]),
            int(tree["count"]),
            tuple(meta.get("beacons", [])),
        )
        return ProblemState(scores, beacons)

    def changed(self, before: ProblemState, after: ProblemState) -> bool:
        return after.extra.count != before.extra.count

    # ---- evaluation --------------------------------------------------------------
    def assign(self, beacons: BeaconState, genomes) -> tuple[np.ndarray, np.ndarray]:
        """(slot of the nearest beacon within the threshold (0: none), distance)."""
        index, dist = nearest_beacon(
            genomes,
            beacons.genomes,
            beacons.count,
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
            ok &= results[cfg.memory_metric] <= cfg.memory_limit_mb
        return ok

    def beacon_errors(
        self, beacons: BeaconState, genomes, index, batch=None
    ) -> np.ndarray:
        """Error of each genome on the params of beacon slot ``index[i]``.

        ``batch``: one batch or a streamed split (default: the dev data); metric sums
        are added up over its batches.
        """
        size = self.evaluator.genome_batch or len(genomes)
        task = evaluate_lib.task_of(self.evaluator.config)
        batches = task.as_batches(self.batch if batch is None else batch)
        out = []
        for i in range(0, len(genomes), size):
            g, idx = genomes[i : i + size], index[i : i + size]
            pad = -len(g) % size
            g = jnp.asarray(np.concatenate([g, np.repeat(g[:1], pad, 0)]))
            idx = jnp.asarray(np.concatenate([idx, np.repeat(idx[:1], pad, 0)]))

            def sums(one, g=g, idx=idx):
                one = tuple(jnp.asarray(x) for x in one)
                return self._beacon_eval(
                    beacons.stacked,
                    self.evaluator.calib,
                    g,
                    idx.astype(jnp.int32),
                    one,
                )

            res = evaluate_lib.host_metrics(
                batching.accumulate_sums(sums, batches), task
            )
            out.append(getattr(res, self.config.error_metric)[: len(g) - pad])
        return np.concatenate(out)

    def _score(self, genomes) -> dict[str, np.ndarray]:
        res = super()._score(genomes)
        res["ptq_error"] = res["error"]
        res["beacon"] = np.zeros(len(genomes), np.float32)
        res["beacon_error"] = res["ptq_error"]
        return res

    def _refresh(self, state: ProblemState, genomes) -> ProblemState:
        """``state`` with the beacon errors of genomes whose nearest promising beacon
        changed recomputed."""
        beacons, cache = state.extra, state.scores
        if beacons.count == 0:
            return state
        cached = cache.lookup(genomes)
        index, _ = self.assign(beacons, genomes)
        index = np.where(self.promising(cached), index, 0)
        stale = np.flatnonzero(index != cached["beacon"])
        if not len(stale):
            return state
        fresh = self.beacon_errors(beacons, genomes[stale], index[stale])
        updates = {}
        for j, i in enumerate(stale):
            entry = dict(cache.entries[genomes[i].tobytes()])
            entry["beacon"] = float(index[i])
            entry["beacon_error"] = float(fresh[j]) if index[i] else entry["ptq_error"]
            entry["error"] = min(entry["ptq_error"], entry["beacon_error"])
            updates[genomes[i].tobytes()] = entry
        scores = score_cache.replace_entries(cache, updates)
        return dataclasses.replace(state, scores=scores)

    # ---- the policy --------------------------------------------------------------
    def update(self, state: ProblemState, genomes, results) -> ProblemState:
        """``state`` with beacons retrained from promising, uncovered genomes."""
        bc, beacons = self.beacon_config, state.extra
        room = min(bc.per_generation, bc.max_beacons - beacons.count)
        if room <= 0:
            return state
        genomes = self.space.validate(genomes)
        index, _ = self.assign(beacons, genomes)
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
            return state
        return self.add_beacons(state, genomes[chosen])

    def qat(self, genomes, epochs: int, progress: bool | None = None):
        """QAT (straight-through estimator) of ``genomes`` from the float params, as
        beacons are retrained; returns ``(stacked params, info)``, the dev error of
        each genome in ``info[f"dev_{self.rate}"]`` (the search's metric)."""
        genomes = self.space.validate(genomes)
        bits_w, bits_a = jax.vmap(self.space.decode)(jnp.asarray(genomes))
        args = (
            self.evaluator.params,
            self.evaluator.config,
            self.evaluator.calib,
            np.asarray(bits_w),
            np.asarray(bits_a),
        )
        progress = self.progress if progress is None else progress
        lr = self.beacon_config.lr
        if self.retrain is not None:
            return self.retrain(*args, epochs=epochs, lr=lr, progress=progress)
        return train.qat_finetune(
            *args,
            self.corpus,
            epochs=epochs,
            lr=lr,
            train_config=self.train_config,
            progress=progress,
            decoder=self.evaluator.decoder,  # dev errors read as the search reads them
            per_mode=self.evaluator.per_mode,
        )

    def add_beacons(self, state: ProblemState, genomes) -> ProblemState:
        """``state`` with ``genomes`` retrained (batched QAT) and stored as beacons."""
        genomes = self.space.validate(genomes)
        bc = self.beacon_config
        if bc.retrain == "switching":
            # Switching-aware retraining (Kim et al. 2021): the latent weights it
            # returns are requantized at each neighbour's own bits, as QAT beacons are.
            from mohaq_jax.retrain import speech, switching

            bits_w, bits_a = jax.vmap(self.space.decode)(jnp.asarray(genomes))
            schedule = dataclasses.replace(
                switching.SwitchingConfig(), retrain_epochs=bc.epochs
            )
            # Returns (stacked params, info with qat_finetune's keys).
            params, info = speech.switching_finetune(
                self.evaluator.params,
                self.evaluator.config,
                self.evaluator.calib,
                np.asarray(bits_w),
                np.asarray(bits_a),
                self.corpus,
                switching_config=schedule,
                lr=bc.lr,
                train_config=self.train_config,
                progress=self.progress,
                decoder=self.evaluator.decoder,
                per_mode=self.evaluator.per_mode,
            )
        else:
            params, info = self.qat(genomes, bc.epochs)
        beacons = add_beacons(state.extra, genomes, params, info, self.rate)
        return dataclasses.replace(state, extra=beacons)


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
