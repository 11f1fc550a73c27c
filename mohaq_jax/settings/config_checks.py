"""Checks of an :class:`~mohaq_jax.settings.config.ExperimentConfig`, one per settings section.

:func:`validate` checks everything a user can get wrong (values, folders, features
that are not available yet) before any work starts, and raises :class:`ConfigError`
naming the flag and the value. The values some flags accept (:data:`AVAILABLE`,
:data:`SWITCHING_RUNS`) live here too. The settings dataclasses are in
:mod:`mohaq_jax.settings.config`, which re-exports every name of this module.
"""

from __future__ import annotations

import os
import tempfile
from typing import TYPE_CHECKING

from mohaq_jax.search.algorithms import ALGORITHMS

if TYPE_CHECKING:
    from mohaq_jax.settings.config import (
        BeaconSettings,
        DataSettings,
        ExperimentConfig,
        ModelSettings,
        SearchSettings,
        SwitchingSettings,
        TrainingSettings,
        VGGSettings,
    )


class ConfigError(ValueError):
    """A user error in the flags or files; the message names the flag and value."""


class NotAvailableError(ConfigError):
    """A flag whose library code is not part of this version yet."""


#: --runs of the switching experiments: name -> (base weight bits, switching-aware?).
SWITCHING_RUNS = {
    "u4": (4, False),
    "u3": (3, False),
    "s3": (3, True),
    "u2": (2, False),
    "s2": (2, True),
}

#: Values of flags that other parts of the project add; until then they are refused.
AVAILABLE = {
    "algorithm": tuple(ALGORITHMS),
    "per": ("decoded", "smoothed", "raw"),
    "data": ("espeak", "timit", "transcribed"),
    "platform": ("bitfusion", "reconfig"),  # cost models of the image search
    # the sizes of mohaq_jax.data.espeak_voices.SIZES (a test keeps them equal): the
    # corpus code is not imported to check a flag
    "espeak_size": ("default", "tiny", "timit"),
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


def _fraction(flag: str, value, allow_none: bool = False) -> None:
    """An error rate: in (0, 1]."""
    if value is None and allow_none:
        return
    _check(
        value is not None and 0.0 < value <= 1.0,
        f"{flag} must be an error rate in (0, 1], got {value}",
    )


def check_folder(flag: str, path: str | None, must_exist: bool = False) -> None:
    """A folder that exists or can be created, and can be written.

    Permission bits do not tell (root passes every ``os.access`` test, and ``/proc``
    looks writable), so a temporary file or folder is made and removed again: the
    check leaves nothing behind.
    """
    if path is None:
        return
    path = os.path.abspath(os.path.expanduser(os.fspath(path)))
    if os.path.exists(path):
        _check(os.path.isdir(path), f"{flag} {path}: exists and is not a folder")
        _probe(flag, path, path, tempfile.TemporaryFile)
        return
    _check(not must_exist, f"{flag} {path}: no such folder")
    parent = os.path.dirname(path)
    while not os.path.exists(parent):
        parent = os.path.dirname(parent)
    _check(
        os.path.isdir(parent),
        f"{flag} {path}: cannot create it, {parent} is a file, not a folder",
    )
    _probe(flag, path, parent, tempfile.TemporaryDirectory)


def _probe(flag: str, path: str, folder: str, make) -> None:
    """Makes (and removes) a temporary file or folder in ``folder``, or ConfigError."""
    try:
        with make(dir=folder, prefix=".mohaq-probe-"):
            pass
    except OSError as error:
        what = "not writable" if folder == path else f"cannot create it in {folder}"
        raise ConfigError(f"{flag} {path}: {what} ({error.strerror})") from None


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
    if name == "espeak" and data.espeak_size not in AVAILABLE["espeak_size"]:
        raise NotAvailableError(
            f"--espeak-size {data.espeak_size}: not available yet in this version "
            f"(available: {', '.join(AVAILABLE['espeak_size'])})"
        )
    _check_input_dir("--corpus-dir", data.corpus_dir)
    check_folder("--cache-dir", data.cache_dir)


def validate_data_images(data: DataSettings) -> None:
    """The image experiments' data flags."""
    _check_input_dir("--cifar-dir", data.cifar_dir)
    _min("--max-train-images", data.max_train_images, 1, allow_none=True)
    _check(
        data.image_size >= 8 and data.image_size % 8 == 0,
        f"--image-size must be a positive multiple of 8, got {data.image_size}",
    )
    _check(
        data.image_noise >= 0.0,
        f"--image-noise must be >= 0, got {data.image_noise}",
    )


def validate_vgg(vgg: VGGSettings) -> None:
    """The VGG-9's widths: six conv and two hidden FC widths, each >= 1."""
    for flag, widths, n in (
        ("--conv-widths", vgg.conv_widths, 6),
        ("--fc-widths", vgg.fc_widths, 2),
    ):
        if widths is None:
            continue
        text = ",".join(str(w) for w in widths)
        _check(len(widths) == n, f"{flag} {text}: the VGG-9 needs {n} widths")
        _check(min(widths) >= 1, f"{flag} {text}: widths must be >= 1")


def validate_model(model: ModelSettings) -> None:
    from mohaq_jax import models  # the registry decides; it imports no model here

    speech = models.names("frames")
    if model.name not in speech:
        raise NotAvailableError(
            f"--model {model.name}: not a registered speech model "
            f"(registered: {', '.join(speech)})"
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
    _positive("--train-minutes", training.minutes, allow_none=True)
    check_folder("--baseline-dir", training.baseline_dir)


def validate_search(search: SearchSettings) -> None:
    if search.algorithm not in AVAILABLE["algorithm"]:
        raise NotAvailableError(
            f"--algorithm {search.algorithm}: not available yet in this version "
            f"(available: {', '.join(AVAILABLE['algorithm'])})"
        )
    _check(
        search.platform is None or search.platform in AVAILABLE["platform"],
        f"--platform {search.platform}: unknown "
        f"(choose from {', '.join(AVAILABLE['platform'])})",
    )
    for name in compared(search):
        _check(
            name in AVAILABLE["algorithm"] and name != search.algorithm,
            f"--compare {search.compare}: {name!r} is not another algorithm "
            f"(choose from {', '.join(AVAILABLE['algorithm'])}, "
            f"besides --algorithm {search.algorithm})",
        )
    _check(
        search.algorithm == "nsga2" or not (search.surrogate or search.seed_proxy),
        f"--surrogate and --seed-proxy wrap NSGA-II: use them with --algorithm nsga2 "
        f"(got --algorithm {search.algorithm})",
    )
    if search.per not in AVAILABLE["per"]:
        raise NotAvailableError(
            f"--per {search.per}: not available yet in this version "
            f"(available: {', '.join(AVAILABLE['per'])})"
        )
    _min("--batch-frames", search.batch_frames, 16)
    _min("--race-batches", search.race_batches, 1)
    _check(
        0.5 <= search.race_confidence <= 1.0,
        f"--race-confidence {search.race_confidence}: must be in [0.5, 1]",
    )
    _min("--pop", search.pop, 2)
    _min("--offspring", search.offspring, 1)
    _min("--generations", search.generations, 0)
    _min("--budget", search.budget, 1, allow_none=True)
    _fraction("--max-error", search.max_error, allow_none=True)
    _check(
        0.0 <= search.error_margin <= 1.0,
        f"--error-margin must be in [0, 1] (an error-rate difference), got "
        f"{search.error_margin}",
    )
    _positive("--memory-limit-mb", search.memory_limit_mb, allow_none=True)
    validate_calibration(search)
    _min("--calib-images", search.calib_images, 1)
    _min("--eval-batch", search.eval_batch, 1)
    _min("--max-eval", search.max_eval, 1, allow_none=True)
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
    _check(
        0.0 <= search.margin <= 1.0,
        f"--margin must be in [0, 1] (an error-rate difference), got {search.margin}",
    )


def validate_calibration(search: SearchSettings) -> None:
    """The calibration flags (the switching experiments offer only these)."""
    _min("--calib-utts", search.calib_utts, 1)
    _min("--calib-images", search.calib_images, 1)


def validate_beacons(beacons: BeaconSettings) -> None:
    _min("--beacon-threshold", beacons.threshold, 0)
    _min("--max-beacons", beacons.max_beacons, 0)
    _min("--beacons-per-generation", beacons.per_generation, 1)
    _min("--beacon-epochs", beacons.epochs, 1)
    _min("--verify-retrain", beacons.verify, 0)
    _fraction("--beacon-max-ptq-error", beacons.max_ptq_error, allow_none=True)
    _positive("--beacon-min-speedup", beacons.min_speedup, allow_none=True)


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
    _min("--seeds", sw.seeds, 1)


#: Speech models that are a Flax Linen module qwix can quantize
#: (:data:`mohaq_jax.adapt.deploy.LINEN_MODULES`).
QWIX_MODELS = ("sru",)


def validate_export_qwix(config: ExperimentConfig) -> None:
    """``--export-qwix``: qwix installed (looked up, not imported), a Linen model, a
    plain search (beacon solutions carry retrained weights qwix's PTQ does not)."""
    import importlib.util

    if importlib.util.find_spec("qwix") is None:
        raise ConfigError(
            "--export-qwix needs qwix (a dependency of mohaq_jax: pip install -e .)"
        )
    _check(
        config.model.name in QWIX_MODELS,
        f"--export-qwix: --model {config.model.name} is not a Flax Linen module "
        f"(exportable: {', '.join(QWIX_MODELS)})",
    )
    _check(
        not config.beacons.enabled,
        "--export-qwix deploys PTQ solutions: use it without --beacons",
    )


def compared(search: SearchSettings) -> tuple[str, ...]:
    """The algorithms ``--compare`` names, in order, each once."""
    names = [n.strip() for n in (search.compare or "").split(",")]
    return tuple(dict.fromkeys(n for n in names if n))


def validate(config: ExperimentConfig, parts=("data", "model", "training")) -> None:
    """Checks the named parts of a config (and the output folder); raises ConfigError.

    Args:
      config: the experiment configuration.
      parts: which of "data", "images" (the image data flags), "vgg", "model",
        "training", "search", "calibration" (part of "search"), "beacons",
        "switching" to check (an experiment
        checks only the settings it uses).
    """
    checks = {
        "data": lambda: validate_data(config.data),
        "images": lambda: validate_data_images(config.data),
        "vgg": lambda: validate_vgg(config.vgg),
        "model": lambda: validate_model(config.model),
        "training": lambda: validate_training(config.training),
        "search": lambda: validate_search(config.search),
        "calibration": lambda: validate_calibration(config.search),
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
        _check(
            not (config.search.race and config.beacons.enabled),
            "--race scores inference-only searches: use it without --beacons",
        )
        _check(
            not (
                (config.search.surrogate or config.search.seed_proxy)
                and config.beacons.enabled
            ),
            "--surrogate and --seed-proxy assist inference-only searches: use them "
            "without --beacons",
        )
    if config.output.export_qwix:
        validate_export_qwix(config)
    check_folder("--out", config.output.out)
