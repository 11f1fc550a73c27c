"""Problem assembly: a MOHAQ search problem from an experiment's settings and data.

:func:`build_problem` turns the prepared data, baseline and calibration
(:class:`~mohaq_jax.orchestration.prepare.Setup`) and an experiment's choices
(:class:`SearchExperiment`: platform, objectives) into the search problem: the genome
space of the model's sites on the platform, the batched evaluators, the constraints
(error bound from the float model's dev error, memory limit scaled from the paper's)
and the objectives' normalization points. :mod:`mohaq_jax.orchestration.pipeline` runs it.
"""

from __future__ import annotations

import dataclasses
from collections.abc import Callable

import numpy as np

from mohaq_jax import hardware
from mohaq_jax.evaluation import genome as genome_lib
from mohaq_jax.evaluation.evaluate import PopulationEvaluator
from mohaq_jax.models import model_of
from mohaq_jax.orchestration.prepare import Setup, prepare, whole_split
from mohaq_jax.runtime import sharding
from mohaq_jax.runtime.console import say
from mohaq_jax.search import mohaq
from mohaq_jax.search.beacon import BeaconConfig, BeaconProblem
from mohaq_jax.search.problem import objective_bounds
from mohaq_jax.settings.config import ExperimentConfig, assistance

__all__ = [
    "Assembled",
    "SearchExperiment",
    "beacon_config",
    "build_problem",
    "default_memory_limit",
    "evaluators",
    "objective_bounds",
]


@dataclasses.dataclass(frozen=True)
class SearchExperiment:
    """What an experiment script chooses: platform, objectives, extras."""

    platform: str  # hardware registry name ("silago", "bitfusion", "memory")
    objectives: tuple[str, ...]  # searched objectives, "error" first
    maximize: tuple[str, ...] = ()  # objectives that are maximized (speedup)
    title: str = "MOHAQ search"  # report title
    sweep_bits: tuple[int, ...] = ()  # uniform weight-bit sweep to report (compression)
    margin: float | None = None  # compression: largest compression within this margin
    # the task-specific step: data, error metric, float model, calibration
    prepare: Callable[[ExperimentConfig], Setup] = prepare


def default_memory_limit(platform, space, paper_sites) -> float:
    """The platform's paper limit scaled by this model's 16-bit size / the paper
    model's (its sites ``paper_sites``; None: no limit)."""
    if platform.memory_metric is None or paper_sites is None:
        return float("inf")
    paper_space = genome_lib.get_space(space.name, paper_sites)
    paper16 = platform.evaluate(paper_space, paper_space.upper)[platform.memory_metric]
    ours16 = platform.evaluate(space, space.upper)[platform.memory_metric]
    return float(platform.memory_limit_mb * ours16 / paper16)


def beacon_config(cfg: ExperimentConfig) -> BeaconConfig:
    """The library's beacon policy from the beacon flags."""
    b = cfg.beacons
    return BeaconConfig(
        threshold=b.threshold,
        genes=b.genes,
        max_beacons=b.max_beacons,
        per_generation=b.per_generation,
        max_ptq_error=b.max_ptq_error,
        min_speedup=b.min_speedup,
        epochs=b.epochs,
        retrain=b.retrain,
    )


def evaluators(cfg, setup, space):
    corpus, model_cfg = setup.corpus, setup.model_config
    mesh = None
    if cfg.search.devices > 1 or cfg.search.data_shards > 1:
        mesh = sharding.population_mesh(cfg.search.devices, cfg.search.data_shards)
        say(cfg.output.progress, f"population split over {sharding.describe(mesh)}")
    evaluator = PopulationEvaluator(
        model_cfg,
        space,
        corpus.fold39,
        setup.params,
        setup.calib,
        chunk_size=cfg.search.chunk_size,
        genome_batch=cfg.search.offspring,
        mesh=mesh,
        decoder=setup.decoder,
        per_mode=setup.per_mode,
    )
    float_space = genome_lib.tied_space(space.layers, (32,), "float")
    float_eval = PopulationEvaluator(
        model_cfg,
        float_space,
        corpus.fold39,
        setup.params,
        setup.calib,
        chunk_size=None,
        decoder=setup.decoder,
        per_mode=setup.per_mode,
    )
    return evaluator, float_eval


def race_batches(split, batch_frames: int, n_batches: int):
    """The dev split in about ``n_batches`` streamed batches (racing's granularity).

    Metric sums are exact over any batching, so racing's completed genomes get the
    same errors as with ``--batch-frames`` batches.
    """
    frames = max(16, min(batch_frames, -(-split.n_frames // n_batches)))
    return whole_split(split, frames)


@dataclasses.dataclass(frozen=True)
class Assembled:
    """A search problem and what the report needs about how it was set up."""

    problem: mohaq.QuantizationProblem  # or a BeaconProblem
    platform: hardware.Platform
    space: genome_lib.GenomeSpace
    float_eval: PopulationEvaluator  # the float model (one all-32-bit genome)
    float_dev: float  # float model's dev error (the configured metric)
    float_test: float
    max_error: float  # the error constraint
    memory_limit: float | None  # the memory constraint (None: none)
    search_config: mohaq.SearchConfig
    ideal: np.ndarray  # shape=(n_obj,) normalization points
    nadir: np.ndarray


def build_problem(
    cfg: ExperimentConfig,
    setup: Setup,
    experiment: SearchExperiment,
    beacon_config: BeaconConfig | None = None,
) -> Assembled:
    """The search problem of ``experiment`` (beacon-based with ``beacon_config``)."""
    progress = cfg.output.progress
    corpus, model_cfg, s = setup.corpus, setup.model_config, cfg.search
    objectives, maximize = experiment.objectives, experiment.maximize
    platform = hardware.get_platform(experiment.platform)
    platform.check_objectives(objectives, maximize)  # only metrics it declares
    if beacon_config is not None and beacon_config.min_speedup is not None:
        platform.metric("speedup")  # a clear error if the platform models no speed
    space = genome_lib.get_space(
        platform.space_name, model_of(model_cfg).sites(model_cfg)
    )
    cost_fn = platform.make_cost_fn(space)
    evaluator, float_eval = evaluators(cfg, setup, space)
    say(progress, "float model: evaluating on dev and test (compiles once)")
    zero = np.zeros((1, float_eval.space.n_genes), np.int32)
    float_dev = float_eval(zero, setup.dev_batch)[s.error_metric][0]
    float_test = float_eval(zero, setup.test_batch)[s.error_metric][0]
    max_error = s.max_error if s.max_error is not None else float_dev + s.error_margin
    memory_limit = (
        s.memory_limit_mb
        if s.memory_limit_mb is not None
        else default_memory_limit(platform, space, setup.paper_sites)
    )
    memory_limit = float(memory_limit) if np.isfinite(memory_limit) else None
    surrogate, seed_proxy = assistance(s, cfg.beacons.enabled)
    search_config = mohaq.SearchConfig(
        objectives=tuple(objectives),
        maximize=tuple(maximize),
        pop_size=s.pop,
        n_offspring=s.offspring,
        n_generations=s.generations,
        seed=s.seed,
        max_error=float(max_error),
        memory_limit_mb=memory_limit,
        memory_metric=platform.memory_metric,
        error_metric=s.error_metric,
        budget=s.budget,
        race=s.race,
        race_confidence=s.race_confidence,
        seed_uniform=s.seed_uniform,
        surrogate=surrogate,
        seed_proxy=seed_proxy,
    )
    ideal, nadir = objective_bounds(cost_fn, space, objectives, maximize, max_error)
    if beacon_config is None:
        dev = setup.dev_batch
        if s.race:
            dev = race_batches(corpus.dev, s.batch_frames, s.race_batches)
            say(progress, f"racing on dev: {dev.describe()}")
        problem = mohaq.QuantizationProblem(
            evaluator, cost_fn, dev, search_config, ideal, nadir
        )
    else:
        problem = BeaconProblem(
            evaluator,
            cost_fn,
            setup.dev_batch,
            search_config,
            ideal,
            nadir,
            beacon_config=beacon_config,
            corpus=corpus,
            progress=progress,
            retrain=setup.retrain,
        )
    return Assembled(
        problem,
        platform,
        space,
        float_eval,
        float(float_dev),
        float(float_test),
        float(max_error),
        memory_limit,
        search_config,
        ideal,
        nadir,
    )
