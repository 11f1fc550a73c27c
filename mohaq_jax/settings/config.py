"""One configuration for every experiment: frozen, documented dataclasses.

The command line (:mod:`mohaq_jax.orchestration.cli`) builds an :class:`ExperimentConfig` in one
place; library code (:mod:`mohaq_jax.orchestration.pipeline`) takes these dataclasses, never an
argparse Namespace. Every field below is one flag, named in its comment, with the same
name in every experiment. The default model lives in :class:`ModelSettings` only:
changing the default model is a one-line change there.

:func:`validate` (in :mod:`mohaq_jax.settings.config_checks`, re-exported here) checks
everything a user can get wrong (values, folders, features that are not available
yet) before any work starts, and raises :class:`ConfigError` naming the flag and the
value.
"""

from __future__ import annotations

import dataclasses
from typing import Any

from mohaq_jax.settings.config_checks import (
    AVAILABLE,
    SWITCHING_RUNS,
    ConfigError,
    NotAvailableError,
    check_folder,
    compared,
    data_name,
    validate,
    validate_beacons,
    validate_data,
    validate_data_images,
    validate_model,
    validate_search,
    validate_switching,
    validate_training,
    validate_vgg,
)


@dataclasses.dataclass(frozen=True)
class DataSettings:
    """Which corpus, and where it comes from."""

    name: str = (
        "espeak"  # --data: "espeak" (synthesized, default), "timit", "transcribed"
    )
    timit_dir: str | None = (
        None  # --timit-dir: root of an LDC TIMIT copy (implies timit)
    )
    timit_partial: bool = (
        False  # --timit-partial: split a partial TIMIT copy by speaker
    )
    allow_missing_labels: bool = (
        False  # --allow-missing-labels: leave out TIMIT recordings without .PHN
    )
    espeak_size: str = "default"  # --espeak-size: "default", "tiny" (tests), "timit"
    data_seed: int = (
        0  # --data-seed: synthesized corpus seed (speakers, sentences, noise)
    )
    corpus_dir: str | None = None  # --corpus-dir: folder of --data transcribed
    phone_tier: str | None = None  # --phone-tier: given TextGrid labels (None: align)
    cache_dir: str | None = (
        None  # --cache-dir: features and baselines (None: $MOHAQ_CACHE)
    )
    cifar_dir: str | None = None  # --cifar-dir: CIFAR-10 batches (None: the digits)
    max_train_images: int | None = None  # --max-train-images: first N (None: all)
    image_size: int = 16  # --image-size: digits upsampled from 8x8 to this (x8)
    image_noise: float = 0.0  # --image-noise: digits' fixed Gaussian pixel noise (sd)


@dataclasses.dataclass(frozen=True)
class ModelSettings:
    """Structure of the float acoustic model (the default model, in one place)."""

    name: str = "sru"  # --model: registry name of the acoustic model
    hidden: int = 128  # --hidden: recurrent units per direction (paper: 550)
    layers: int = (
        4  # --layers: stacked recurrent layers (paper: 4): 8 quantization sites
    )
    proj: int = 64  # --proj: low-rank projection before layers 2.. (0 = none)
    proj_first: bool = False  # --proj-first: a projection before layer 1 too
    dropout: float = 0.25  # --dropout: on layer outputs while training (paper: 0.1)
    bidirectional: bool = True  # --unidirectional sets False
    paper_model: bool = False  # --paper-model: the authors' 4 x 550, projection 256


@dataclasses.dataclass(frozen=True)
class VGGSettings:
    """Widths of the image experiments' float VGG-9 (6 conv + 3 FC layers)."""

    conv_widths: tuple[int, ...] | None = None  # --conv-widths: six (None: data set's)
    fc_widths: tuple[int, ...] | None = None  # --fc-widths: two hidden (None: data's)


@dataclasses.dataclass(frozen=True)
class TrainingSettings:
    """Float-baseline training; part of the baseline's cache key."""

    epochs: int = 12  # --epochs: maximum epochs of the float baseline
    batch_size: int = 16  # --batch-size: utterances per training step
    lr: float = 2e-3  # --lr: initial Adam learning rate, halved when dev error stalls
    min_lr: float = 1e-5  # --min-lr: stop once the halved learning rate is below this
    grad_clip: float = 5.0  # --grad-clip: global gradient-norm clip (0 = off)
    weight_decay: float = 0.0  # --weight-decay: decoupled weight decay (0 = Adam)
    pad_multiple: int = 64  # --pad-multiple: batch lengths rounded up to this
    seed: int = 0  # --train-seed: init, dropout and batch-order seed
    minutes: float | None = None  # --train-minutes: wall-clock bound (None: none)
    baseline_dir: str | None = None  # --baseline-dir: None = cache folder by digest
    retrain: bool = False  # --retrain-baseline: train again even if a checkpoint exists


@dataclasses.dataclass(frozen=True)
class SearchSettings:
    """Quantization search: calibration, NSGA-II, constraints, evaluation."""

    platform: str | None = None  # --platform: image search's cost model (speech: own)
    algorithm: str = "nsga2"  # --algorithm: search algorithm
    compare: str = ""  # --compare: comma list of algorithms also run, same budget
    # --surrogate / --no-surrogate: a surrogate pre-screens offspring; None (auto): on
    # for inference-only NSGA-II searches (see assistance)
    surrogate: bool | None = None
    # --seed-proxy / --no-seed-proxy: initial population from the sensitivity proxy;
    # None (auto) as surrogate
    seed_proxy: bool | None = None
    pop: int = 40  # --pop: population size (paper: 40)
    offspring: int = 10  # --offspring: genomes evaluated per generation (paper: 10)
    generations: int = 15  # --generations: after the initial population (paper: 15)
    seed: int = 0  # --seed: search seed (same seed, same front)
    budget: int | None = None  # --budget: stop after this many evaluations (None: none)
    seed_uniform: bool = True  # --no-seed-uniform: no uniform genomes in the start
    max_error: float | None = (
        None  # --max-error: error constraint (None: float + margin)
    )
    error_margin: float = (
        0.07  # --error-margin: default constraint above float dev error
    )
    memory_limit_mb: float | None = None  # --memory-limit-mb: None = paper limit scaled
    error_metric: str = "phone_error"  # --error-metric: "phone_error" | "frame_error"
    per: str = "decoded"  # --per: phone error read as "decoded", "smoothed" or "raw"
    calib_utts: int = 32  # --calib-utts: training utterances that calibrate clipping
    calib_images: int = 256  # --calib-images: training images that calibrate clips
    calib: str = "mse"  # --calib: clipping calibration, "mse" or "max"
    chunk_size: int = 2  # --chunk-size: genomes evaluated together (lax.map batch)
    batch_frames: int = 16384  # --batch-frames: frames per streamed evaluation batch
    eval_batch: int = 256  # --eval-batch: images per streamed evaluation batch
    max_eval: int | None = None  # --max-eval: first N dev/test images (None: all)
    race: bool = False  # --race: stop scoring genomes certain to be infeasible
    race_confidence: float = 0.95  # --race-confidence: of each racing stop
    race_batches: int = 16  # --race-batches: dev batches when racing (granularity)
    devices: int = 1  # --devices: devices the population is split over
    data_shards: int = 1  # --data-shards: of --devices, how many split the utterances
    confidence: float = 0.95  # --confidence: level of the bootstrap intervals
    n_bootstrap: int = 1000  # --bootstrap: bootstrap resamples of utterances (0 = off)
    margin: float = 0.01  # --margin: compression within this of the 16-bit error


def assistance(search: SearchSettings, beacons_enabled: bool) -> tuple[bool, bool]:
    """``(surrogate, seed_proxy)`` a search uses: what the flags say, and where they
    say nothing (None) on for inference-only NSGA-II searches, the combination that won
    on the true-front referee (``benchmarks/search_quality.py --model default``), off
    for other algorithms and beacon-based searches."""
    auto = search.algorithm == "nsga2" and not beacons_enabled

    def pick(value):
        return auto if value is None else bool(value)

    return pick(search.surrogate), pick(search.seed_proxy)


@dataclasses.dataclass(frozen=True)
class BeaconSettings:
    """Beacon-based search (MOHAQ Sec. IV-D); used with --beacons."""

    enabled: bool = False  # --beacons: inference-only vs beacon-based, then compare
    threshold: int = 5  # --beacon-threshold: max level distance to a beacon
    genes: str = "weights"  # --beacon-genes: genes the distance counts
    max_beacons: int = 4  # --max-beacons: beacons retrained at most
    per_generation: int = 2  # --beacons-per-generation: new beacons per generation
    epochs: int = 3  # --beacon-epochs: QAT epochs per beacon
    max_ptq_error: float | None = None  # --beacon-max-ptq-error: promising bound
    min_speedup: float | None = None  # --beacon-min-speedup: promising bound
    retrain: str = "qat"  # --beacon-retrain: "qat" or "switching"
    verify: int = 3  # --verify-retrain: Pareto solutions retrained to check estimates


@dataclasses.dataclass(frozen=True)
class SwitchingSettings:
    """Switching-aware retraining runs (experiments/switching_*.py)."""

    runs: str = "u4,u3,s3"  # --runs: comma-separated runs (uN uniform, sN switching)
    warmup_epochs: int = 2  # --warmup-epochs: uniform QAT before choosing extra bits
    window_epochs: int = 1  # --window-epochs: last warm-up epochs counting switches
    retrain_epochs: int = 1  # --retrain-epochs: epochs with the mixed representation
    top_fraction: float = 0.1  # --top-fraction: share of most-switching weights
    switch_threshold: int | None = None  # --switch-threshold: instead of top fraction
    grid: str = "nested"  # --grid: extra-bit grid, "nested" or "uniform"
    qat_lr: float = 5e-4  # --qat-lr: QAT Adam learning rate
    lr_band: float = 0.1  # --lr-band: damp updates this close to a threshold
    lr_scale: float = 0.1  # --lr-scale: learning-rate multiplier inside the band
    bits_a: int = 4  # --bits-a: activation bits (2..4)
    max_train_utts: int = 120  # --max-train-utts: QAT on the first N (0 = all)
    seed: int = 0  # --seed: QAT batch order (VGG: also float init and batch order)
    seeds: int = 1  # --seeds: VGG runs repeated with seeds seed .. seed + seeds - 1


@dataclasses.dataclass(frozen=True)
class OutputSettings:
    """Where results go and how much is printed."""

    out: str | None = None  # --out: output folder (each experiment sets its default)
    resume: bool = False  # --resume: continue the search checkpointed in --out
    progress: bool = True  # --no-progress sets False: no bars, no phase messages
    debug: bool = False  # --debug: full tracebacks for user errors
    export_qwix: bool = False  # --export-qwix: deploy the Pareto set with qwix's PTQ


@dataclasses.dataclass(frozen=True)
class ExperimentConfig:
    """Everything one experiment run needs, as the command line gave it."""

    data: DataSettings = DataSettings()
    model: ModelSettings = ModelSettings()
    vgg: VGGSettings = VGGSettings()
    training: TrainingSettings = TrainingSettings()
    search: SearchSettings = SearchSettings()
    beacons: BeaconSettings = BeaconSettings()
    output: OutputSettings = OutputSettings()
    switching: SwitchingSettings = SwitchingSettings()

    def to_dict(self) -> dict[str, Any]:
        return dataclasses.asdict(self)


__all__ = [
    "AVAILABLE",
    "SWITCHING_RUNS",
    "BeaconSettings",
    "ConfigError",
    "DataSettings",
    "ExperimentConfig",
    "ModelSettings",
    "NotAvailableError",
    "OutputSettings",
    "SearchSettings",
    "SwitchingSettings",
    "TrainingSettings",
    "VGGSettings",
    "assistance",
    "check_folder",
    "compared",
    "data_name",
    "validate",
    "validate_beacons",
    "validate_data",
    "validate_data_images",
    "validate_model",
    "validate_search",
    "validate_switching",
    "validate_training",
    "validate_vgg",
]
