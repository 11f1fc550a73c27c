"""MOHAQ on the VGG-9: the same pipeline as the speech experiments, on an image task.

Rashed et al. 2021, Sec. IV, applied to the CIFAR-10 network of Kim et al. 2021. Only
the pipeline's first step is the image task's own (:func:`prepare`): the images, the
float VGG-9 (:func:`mohaq_jax.retrain.vision.fit`, trained once and cached by its
settings) and its clipping tables. The rest is :func:`mohaq_jax.orchestration.pipeline.run_mohaq`:
the problem (the model-neutral population evaluator, task ``"classification"``, and a
platform's cost model: Bitfusion (error, speedup, energy) or the 2-4-bit
reconfigurable accelerator (error, energy, compression)), the search of
``--algorithm`` and each of ``--compare``, ``--devices``, ``--resume``, the test
re-evaluation with bootstrap intervals over the images (``--bootstrap``,
``--confidence``) and the same files as the speech searches'. With ``--beacons`` it is
the inference-only vs beacon-based comparison, the beacons retrained by the VGG's
QAT (:func:`mohaq_jax.retrain.vision.qat_finetune`, the :class:`Setup`'s
``retrain``). Error is the dev-set classification error.
"""

from __future__ import annotations

import dataclasses
import functools
import hashlib
import json
import os

import jax
import numpy as np

from mohaq_jax import hardware
from mohaq_jax.data.corpus import default_cache_dir
from mohaq_jax.data.images import ImageDataset, ImageSplit, load_images
from mohaq_jax.models import vgg
from mohaq_jax.orchestration.prepare import Setup
from mohaq_jax.orchestration.problem_builder import SearchExperiment
from mohaq_jax.retrain import vision
from mohaq_jax.runtime import atomic, checkpoint
from mohaq_jax.runtime.console import PhaseClock, say
from mohaq_jax.settings.config import ConfigError, DataSettings, ExperimentConfig
from mohaq_jax.settings.flags import IMAGE_SEARCH_DEFAULTS, IMAGE_SEARCH_FIELDS

#: platform -> (objectives, maximized ones): the platform's speed/energy/size metrics.
OBJECTIVES = {
    "bitfusion": (("error", "speedup", "energy_pj"), ("speedup",)),
    "reconfig": (
        ("error", "energy_pj", "compression_vs_float32"),
        ("compression_vs_float32",),
    ),
}


def default_config(**sections) -> ExperimentConfig:
    """The image search's config with the flags' defaults
    (:data:`~mohaq_jax.settings.flags.IMAGE_SEARCH_DEFAULTS`); ``sections`` (e.g.
    ``data={"max_train_images": 96}``) override fields, as their flags would."""
    from mohaq_jax.settings.flags import FLAGS

    by_flag = {f.flag: f for f in FLAGS if f.section != "switching"}
    values: dict[str, dict] = {}
    for flag, value in IMAGE_SEARCH_DEFAULTS.items():
        values.setdefault(by_flag[flag].section, {})[by_flag[flag].field] = value
    for section, fields in sections.items():
        values.setdefault(section, {}).update(fields)
    base = ExperimentConfig()
    return dataclasses.replace(
        base,
        **{s: dataclasses.replace(getattr(base, s), **v) for s, v in values.items()},
    )


def run_settings(cfg: ExperimentConfig) -> dict:
    """The settings of ``cfg`` that the image search reads (for the report)."""
    return {
        section: {f: getattr(getattr(cfg, section), f) for f in fields}
        for section, fields in IMAGE_SEARCH_FIELDS.items()
        if section != "output"
    }


def load_data(data: DataSettings) -> ImageDataset:
    """The images the flags name: CIFAR-10 with ``--cifar-dir`` (CifarError if its
    files are absent), else the upsampled digits; the first ``--max-train-images``."""
    if data.cifar_dir:
        return load_images(
            "cifar10", cifar_dir=data.cifar_dir, max_train=data.max_train_images
        )
    images = load_images("digits", image_size=data.image_size)
    n = data.max_train_images
    if n is not None:
        train = ImageSplit(images.train.images[:n], images.train.labels[:n])
        images = dataclasses.replace(images, train=train)
    return images


def model_config(cfg: ExperimentConfig, data: ImageDataset) -> vgg.Config:
    """The VGG-9 for the data: the data set's widths unless the flags give some."""
    base = vgg.cifar_config() if cfg.data.cifar_dir else vgg.digits_config()
    height, _, channels = data.image_shape
    return dataclasses.replace(
        base,
        image_size=height,
        channels=channels,
        n_classes=data.n_classes,
        conv_widths=cfg.vgg.conv_widths or base.conv_widths,
        fc_widths=cfg.vgg.fc_widths or base.fc_widths,
    )


def float_baseline(cfg: ExperimentConfig, data, model_cfg) -> tuple[dict, dict]:
    """Float params, trained once and cached by their settings in ``--baseline-dir``
    (None: ``<cache>/baselines``); ``--retrain-baseline`` trains them again."""
    tr = cfg.training
    train_cfg = vision.ImageTrainConfig(
        epochs=tr.epochs,
        batch_size=tr.batch_size,
        lr=tr.lr,
        grad_clip=tr.grad_clip,
        seed=tr.seed,
    )
    key = {
        "data": data.settings | {"n_train": len(data.train)},
        "model": model_cfg.to_dict(),
        "training": train_cfg.to_dict(),
    }
    digest = hashlib.sha1(json.dumps(key, sort_keys=True).encode()).hexdigest()[:12]
    folder = tr.baseline_dir
    if folder is None:
        folder = os.path.join(cfg.data.cache_dir or default_cache_dir(), "baselines")
    path = os.path.join(folder, f"vgg_{data.name}_{digest}.msgpack")
    progress = cfg.output.progress
    waiting = "float VGG-9: another process is training it, waiting"
    # One process trains, another with the same key waits and loads (the cache is
    # shared); the file is looked for again once the lock is held.
    with atomic.locked(path, waiting if progress else None):
        if os.path.exists(path) and not tr.retrain:
            shapes = jax.eval_shape(
                lambda: vgg.init_params(jax.random.key(0), model_cfg)
            )
            template = jax.tree.map(lambda s: np.zeros(s.shape, s.dtype), shapes)
            params, meta = checkpoint.load(path, template)
            say(progress, f"float VGG-9: loaded {path}")
            return params, {**meta, "path": path}
        say(progress, f"float VGG-9: training {tr.epochs} epochs on {data.name}")
        params, info = vision.fit(data, model_cfg, train_cfg, progress=progress)
        meta = {"key": key, "history": info["history"], "seconds": info["seconds"]}
        checkpoint.save(path, params, meta)
        return params, {**meta, "path": path}


def first_images(split: ImageSplit, limit: int | None) -> ImageSplit:
    """The first ``limit`` images of a split (None: all)."""
    n = len(split) if limit is None else min(limit, len(split))
    return ImageSplit(split.images[:n], split.labels[:n])


def image_batches(split: ImageSplit, size: int, limit: int | None = None) -> list:
    """``(images, labels)`` batches of one shape; the last is padded, label -1."""
    n = len(split) if limit is None else min(limit, len(split))
    batches = []
    for start in range(0, n, size):
        images = split.images[start : min(start + size, n)]
        labels = split.labels[start : min(start + size, n)]
        pad = min(size, n) - len(labels)
        if pad:
            images = np.concatenate([images, np.zeros((pad,) + images.shape[1:])])
            labels = np.concatenate([labels, np.full(pad, -1)])
        batches.append((images.astype(np.float32), labels.astype(np.int32)))
    return batches


@dataclasses.dataclass(frozen=True)
class ImageData:
    """The image data set as the pipeline's report reads a corpus."""

    images: ImageDataset
    name: str  # data set name (report, settings)
    notice: str  # what the data is, said in every output
    # the scored images of dev and test (the first --max-eval): the bootstrap
    # intervals resample them, as the speech corpus's utterances
    dev: ImageSplit
    test: ImageSplit
    synthetic: bool = True  # the notice is always shown (the data is not CIFAR-10)
    fold39: None = None  # no phone folding: classification


def prepare(cfg: ExperimentConfig) -> Setup:
    """The image task's first pipeline step: the images, the float VGG-9 (trained
    once, cached) and its calibration, as a :class:`~mohaq_jax.orchestration.prepare.Setup`."""
    search = cfg.search
    clock = PhaseClock()
    with clock.phase("data"):
        data = load_data(cfg.data)
        model_cfg = model_config(cfg, data)
    with clock.phase("baseline"):
        params, baseline = float_baseline(cfg, data, model_cfg)
    with clock.phase("calibration"):
        calib = vision.calibration(
            params,
            model_cfg,
            data.train.images[: search.calib_images],
            weight_method=search.calib,
            act_method=search.calib,
        )
    dev, test = (first_images(s, search.max_eval) for s in (data.dev, data.test))
    dev_batch = image_batches(dev, search.eval_batch)
    tr = cfg.training
    # beacons' QAT: the float training's batch size, clipping and seed, monitored on
    # the search's dev batches (their error is the search's)
    retrain = functools.partial(
        vision.qat_finetune,
        train_split=data.train,
        dev_batches=dev_batch,
        batch_size=tr.batch_size,
        grad_clip=tr.grad_clip,
        seed=tr.seed,
    )
    return Setup(
        corpus=ImageData(data, data.name, data.notice, dev, test),
        model_config=model_cfg,
        params=params,
        calib=calib,
        dev_batch=dev_batch,
        test_batch=image_batches(test, search.eval_batch),
        baseline_info=baseline,
        clock=clock,
        per_mode=None,
        report_settings={
            "data_settings": data.settings,
            "run_config": run_settings(cfg),
        },
        retrain=retrain,
    )


def experiment(cfg: ExperimentConfig) -> SearchExperiment:
    """The image search of ``--platform``: its objectives, :func:`prepare`, a title."""
    platform = cfg.search.platform
    if platform not in OBJECTIVES:
        raise ConfigError(
            f"--platform {platform}: the image search needs one of "
            f"{', '.join(sorted(OBJECTIVES))}"
        )
    objectives, maximize = OBJECTIVES[platform]
    if cfg.beacons.enabled and "speedup" not in objectives:
        raise ConfigError(
            f"--beacons compares the two searches at equal speedup: --platform "
            f"{platform} has no speedup objective (use --platform bitfusion)"
        )
    name = hardware.get_platform(platform).name
    return SearchExperiment(
        platform=platform,
        objectives=objectives,
        maximize=maximize,
        title=f"MOHAQ on the VGG-9 ({'cifar10' if cfg.data.cifar_dir else 'digits'}"
        f", {name})",
        prepare=prepare,
    )


def run(cfg: ExperimentConfig) -> dict:
    """The whole image MOHAQ experiment (:func:`mohaq_jax.orchestration.pipeline.run_mohaq`).

    Args:
      cfg: the settings of :data:`~mohaq_jax.settings.flags.IMAGE_SEARCH_FIELDS` (the image
        flags of ``cli.build_parser`` with their defaults, or :func:`default_config`);
        validated by the caller (``config.validate``), except that ``--platform``
        must name a cost model.
    """
    from mohaq_jax.orchestration import pipeline  # the pipeline sits above the tasks

    search = dataclasses.replace(cfg.search, error_metric="class_error")
    cfg = dataclasses.replace(cfg, search=search)
    return pipeline.run_mohaq(cfg, experiment(cfg))
