"""One configuration for every experiment: frozen, documented dataclasses.

The command line (:mod:`mohaq_jax.cli`) builds an :class:`ExperimentConfig` in one
place; library code (:mod:`mohaq_jax.pipeline`) takes these dataclasses, never an
argparse Namespace. Every field below is one flag, named in its comment, with the same
name in every experiment. The default model lives in :class:`ModelSettings` only:
changing the default model is a one-line change there.

:func:`validate` checks everything a user can get wrong (values, folders, features
that are not available yet) before any work starts, and raises :class:`ConfigError`
naming the flag and the value.
"""

from __future__ import annotations

import dataclasses
import os
from typing import Any


class ConfigError(ValueError):
    """A user error in the flags or files; the message names the flag and value."""


class NotAvailableError(ConfigError):
    """A flag whose library code is not part of this version yet."""


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
    espeak_size: str = "default"  # --espeak-size: "default", "tiny" (tests), "timit"
    data_seed: int = (
        0  # --data-seed: synthesized corpus seed (speakers, sentences, noise)
    )
    corpus_dir: str | None = None  # --corpus-dir: folder of --data transcribed
    cache_dir: str | None = (
        None  # --cache-dir: features and baselines (None: $MOHAQ_CACHE)
    )
    cifar_dir: str | None = None  # --cifar-dir: CIFAR-10 python batches (image runs)
    max_train_images: int | None = None  # --max-train: CIFAR-10 training images used


@dataclasses.dataclass(frozen=True)
class ModelSettings:
    """Structure of the float acoustic model (the default model, in one place)."""

    name: str = "sru"  # --model: registry name of the acoustic model
    hidden: int = 128  # --hidden: recurrent units per direction (paper: 550)
    layers: int = (
        4  # --layers: stacked recurrent layers (paper: 4): 8 quantization sites
    )
    proj: int = 64  # --proj: low-rank projection before layers 2.. (0 = none)
    dropout: float = 0.25  # --dropout: on layer outputs while training (paper: 0.1)
    bidirectional: bool = True  # --unidirectional sets False
    paper_model: bool = False  # --paper-model: the authors' 4 x 550, projection 256


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
    baseline_dir: str | None = None  # --baseline-dir: None = cache folder by digest
    retrain: bool = False  # --retrain-baseline: train again even if a checkpoint exists


@dataclasses.dataclass(frozen=True)
class SearchSettings:
    """Quantization search: calibration, NSGA-II, constraints, evaluation."""

    algorithm: str = "nsga2"  # --algorithm: search algorithm
    compare: str = ""  # --compare: comma list of algorithms also run, same budget
    pop: int = 40  # --pop: population size (paper: 40)
    offspring: int = 10  # --offspring: genomes evaluated per generation (paper: 10)
    generations: int = 15  # --generations: after the initial population (paper: 15)
    seed: int = 0  # --seed: search seed (same seed, same front)
    budget: int | None = None  # --budget: stop after this many evaluations (None: none)
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
    calib: str = "mse"  # --calib: clipping calibration, "mse" or "max"
    chunk_size: int = 2  # --chunk-size: genomes evaluated together (lax.map batch)
    batch_frames: int = 16384  # --batch-frames: frames per streamed evaluation batch
    devices: int = 1  # --devices: devices the population is split over
    data_shards: int = 1  # --data-shards: of --devices, how many split the utterances
    confidence: float = 0.95  # --confidence: level of the bootstrap intervals
    n_bootstrap: int = 1000  # --bootstrap: bootstrap resamples of utterances (0 = off)
    margin: float = 0.01  # --margin: compression within this of the 16-bit error


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


#: --runs of the switching experiments: name -> (base weight bits, switching-aware?).
SWITCHING_RUNS = {
    "u4": (4, False),
    "u3": (3, False),
    "s3": (3, True),
    "u2": (2, False),
    "s2": (2, True),
}


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
    seed: int = 0  # --seed: QAT batch order


@dataclasses.dataclass(frozen=True)
class OutputSettings:
    """Where results go and how much is printed."""

    out: str | None = None  # --out: output folder (each experiment sets its default)
    resume: bool = False  # --resume: continue the search checkpointed in --out
    progress: bool = True  # --no-progress sets False: no bars, no phase messages
    debug: bool = False  # --debug: full tracebacks for user errors


@dataclasses.dataclass(frozen=True)
class ExperimentConfig:
    """Everything one experiment run needs, as the command line gave it."""

    data: DataSettings = DataSettings()
    model: ModelSettings = ModelSettings()
    training: TrainingSettings = TrainingSettings()
    search: SearchSettings = SearchSettings()
    beacons: BeaconSettings = BeaconSettings()
    output: OutputSettings = OutputSettings()
    switching: SwitchingSettings = SwitchingSettings()

    def to_dict(self) -> dict[str, Any]:
        return dataclasses.asdict(self)


# ------------------------------------------------------------------- validation

#: Values of flags that other parts of the project add; until then they are refused.
AVAILABLE = {
    "model": ("sru", "lstm"),  # speech models of mohaq_jax.models.MODELS
    "algorithm": ("nsga2", "simple_ga", "de"),
    "per": ("decoded", "smoothed", "raw"),
    "data": ("espeak", "timit", "transcribed"),
}


def data_name(data: DataSettings) -> str:
    """The corpus a DataSettings names (``--timit-dir`` implies TIMIT)."""
    if data.name == "espeak" and data.timit_dir:
        return "timit"
    return data.name


def _check(ok: bool, message: str) -> None:
    if not ok:
        raise ConfigError(message)


def _min(flag: str, value, low, allow_none: bool = False) -> None:
    if value is None and allow_none:
        return
    _check(value is not None and value >= low, f"{flag} must be >= {low}, got {value}")


def _positive(flag: str, value, allow_none: bool = False) -> None:
    if value is None and allow_none:
        return
    _check(value is not None and value > 0, f"{flag} must be > 0, got {value}")


def check_folder(flag: str, path: str | None, must_exist: bool = False) -> None:
    """A folder that exists or can be created and written (nothing is created here)."""
    if path is None:
        return
    path = os.path.abspath(os.path.expanduser(os.fspath(path)))
    if os.path.exists(path):
        _check(os.path.isdir(path), f"{flag} {path}: exists and is not a folder")
        _check(os.access(path, os.W_OK | os.X_OK), f"{flag} {path}: not writable")
        return
    _check(not must_exist, f"{flag} {path}: no such folder")
    parent = os.path.dirname(path)
    while not os.path.exists(parent):
        parent = os.path.dirname(parent)
    _check(
        os.path.isdir(parent),
        f"{flag} {path}: cannot create it, {parent} is a file, not a folder",
    )
    _check(
        os.access(parent, os.W_OK | os.X_OK), f"{flag} {path}: {parent} not writable"
    )


def _check_input_dir(flag: str, path: str | None) -> None:
    if path is None:
        return
    full = os.path.expanduser(path)
    _check(os.path.exists(full), f"{flag} {path}: no such folder")
    _check(os.path.isdir(full), f"{flag} {path}: not a folder")


def validate_data(data: DataSettings) -> None:
    name = data_name(data)
    _check(
        name in AVAILABLE["data"] or name == "transcribed",
        f"--data {name}: unknown data set",
    )
    if name not in AVAILABLE["data"]:
        raise NotAvailableError(
            f"--data {name}: not available yet in this version "
            f"(available: {', '.join(AVAILABLE['data'])})"
        )
    if name == "timit":
        _check(
            data.timit_dir is not None, "--data timit needs --timit-dir DIR (your copy)"
        )
        _check_input_dir("--timit-dir", data.timit_dir)
    if name == "transcribed":
        _check(
            data.corpus_dir is not None,
            "--data transcribed needs --corpus-dir DIR (LibriSpeech layout, or *.wav "
            "with same-name .txt transcripts)",
        )
    if name == "espeak":
        from mohaq_jax.data import espeak

        if data.espeak_size not in espeak.SIZES:
            raise NotAvailableError(
                f"--espeak-size {data.espeak_size}: not available yet in this version "
                f"(available: {', '.join(sorted(espeak.SIZES))})"
            )
    _check_input_dir("--corpus-dir", data.corpus_dir)
    check_folder("--cache-dir", data.cache_dir)


def validate_data_images(data: DataSettings) -> None:
    """The image experiments' data flags."""
    _check_input_dir("--cifar-dir", data.cifar_dir)
    _min("--max-train", data.max_train_images, 1, allow_none=True)


def validate_model(model: ModelSettings) -> None:
    if model.name not in AVAILABLE["model"]:
        raise NotAvailableError(
            f"--model {model.name}: not available yet in this version "
            f"(available: {', '.join(AVAILABLE['model'])})"
        )
    _check(
        not (model.paper_model and model.name != "sru"),
        f"--paper-model is the authors' SRU; it does not apply to --model {model.name}",
    )
    _min("--hidden", model.hidden, 1)
    _min("--layers", model.layers, 1)
    _min("--proj", model.proj, 0)
    _check(
        0.0 <= model.dropout < 1.0, f"--dropout must be in [0, 1), got {model.dropout}"
    )


def validate_training(training: TrainingSettings) -> None:
    _min("--epochs", training.epochs, 1)
    _min("--batch-size", training.batch_size, 1)
    _positive("--lr", training.lr)
    _min("--min-lr", training.min_lr, 0.0)
    _min("--grad-clip", training.grad_clip, 0.0)
    _min("--weight-decay", training.weight_decay, 0.0)
    _min("--pad-multiple", training.pad_multiple, 1)
    check_folder("--baseline-dir", training.baseline_dir)


def validate_search(search: SearchSettings) -> None:
    if search.algorithm not in AVAILABLE["algorithm"]:
        raise NotAvailableError(
            f"--algorithm {search.algorithm}: not available yet in this version "
            f"(available: {', '.join(AVAILABLE['algorithm'])})"
        )
    for name in compared(search):
        _check(
            name in AVAILABLE["algorithm"] and name != search.algorithm,
            f"--compare {search.compare}: {name!r} is not another algorithm "
            f"(choose from {', '.join(AVAILABLE['algorithm'])}, "
            f"besides --algorithm {search.algorithm})",
        )
    if search.per not in AVAILABLE["per"]:
        raise NotAvailableError(
            f"--per {search.per}: not available yet in this version "
            f"(available: {', '.join(AVAILABLE['per'])})"
        )
    _min("--batch-frames", search.batch_frames, 16)
    _min("--pop", search.pop, 2)
    _min("--offspring", search.offspring, 1)
    _min("--generations", search.generations, 0)
    _min("--budget", search.budget, 1, allow_none=True)
    _positive("--max-error", search.max_error, allow_none=True)
    _min("--error-margin", search.error_margin, 0.0)
    _positive("--memory-limit-mb", search.memory_limit_mb, allow_none=True)
    _min("--calib-utts", search.calib_utts, 1)
    _min("--chunk-size", search.chunk_size, 1)
    _min("--devices", search.devices, 1)
    _min("--data-shards", search.data_shards, 1)
    _check(
        search.devices % search.data_shards == 0,
        f"--data-shards {search.data_shards} must divide --devices {search.devices}",
    )
    _check(
        0.0 < search.confidence < 1.0,
        f"--confidence must be in (0, 1), got {search.confidence}",
    )
    _min("--bootstrap", search.n_bootstrap, 0)
    _min("--margin", search.margin, 0.0)


def validate_beacons(beacons: BeaconSettings) -> None:
    _min("--beacon-threshold", beacons.threshold, 0)
    _min("--max-beacons", beacons.max_beacons, 0)
    _min("--beacons-per-generation", beacons.per_generation, 1)
    _min("--beacon-epochs", beacons.epochs, 1)
    _min("--verify-retrain", beacons.verify, 0)


def validate_switching(sw: SwitchingSettings, known_runs=tuple(SWITCHING_RUNS)) -> None:
    runs = [r for r in sw.runs.split(",") if r]
    unknown = [r for r in runs if r not in known_runs]
    _check(
        runs and not unknown,
        f"--runs {sw.runs}: unknown run(s) {', '.join(unknown) or '(none given)'}; "
        f"choose among {', '.join(known_runs)}",
    )
    _min("--warmup-epochs", sw.warmup_epochs, 1)
    _min("--window-epochs", sw.window_epochs, 1)
    _check(
        sw.window_epochs <= sw.warmup_epochs,
        f"--window-epochs {sw.window_epochs} exceeds --warmup-epochs "
        f"{sw.warmup_epochs}",
    )
    _min("--retrain-epochs", sw.retrain_epochs, 0)
    _check(
        0.0 < sw.top_fraction <= 1.0,
        f"--top-fraction must be in (0, 1], got {sw.top_fraction}",
    )
    _min("--switch-threshold", sw.switch_threshold, 1, allow_none=True)
    _positive("--qat-lr", sw.qat_lr)
    _check(2 <= sw.bits_a <= 4, f"--bits-a must be in 2..4, got {sw.bits_a}")
    _min("--max-train-utts", sw.max_train_utts, 0)


def compared(search: SearchSettings) -> tuple[str, ...]:
    """The algorithms ``--compare`` names, in order, each once."""
    names = [n.strip() for n in (search.compare or "").split(",")]
    return tuple(dict.fromkeys(n for n in names if n))


def validate(config: ExperimentConfig, parts=("data", "model", "training")) -> None:
    """Checks the named parts of a config (and the output folder); raises ConfigError.

    Args:
      config: the experiment configuration.
      parts: which of "data", "model", "training", "search", "beacons",
        "switching" to check (an experiment checks only the settings it uses).
    """
    checks = {
        "data": lambda: validate_data(config.data),
        "model": lambda: validate_model(config.model),
        "training": lambda: validate_training(config.training),
        "search": lambda: validate_search(config.search),
        "beacons": lambda: validate_beacons(config.beacons),
        "switching": lambda: validate_switching(config.switching),
    }
    for part in parts:
        checks[part]()
    if "search" in parts and "beacons" in parts:
        _check(
            not (compared(config.search) and config.beacons.enabled),
            "--compare runs plain searches: use it without --beacons",
        )
    check_folder("--out", config.output.out)
