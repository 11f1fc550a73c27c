"""MOHAQ on the VGG-9: the same search as the speech experiments, on an image task.

The image counterpart of :func:`mohaq_jax.pipeline.run_mohaq` (Rashed et al. 2021,
Sec. IV, applied to the CIFAR-10 network of Kim et al. 2021): train (or load from the
cache) the float VGG-9 (:func:`mohaq_jax.retrain.vision.fit`), calibrate its clipping
tables, then run NSGA-II (:func:`mohaq_jax.search.mohaq.run_search`) with the model-
neutral population evaluator (:mod:`mohaq_jax.evaluate`, task ``"classification"``)
and a platform's cost model: Bitfusion (error, speedup, energy) or the 2-4-bit
reconfigurable accelerator (error, energy, compression). Error is the dev-set
classification error; the Pareto set is re-evaluated on the test split and written
like the speech searches' (:func:`mohaq_jax.search.report.write_outputs`).
"""

from __future__ import annotations

import dataclasses
import hashlib
import json
import os
import time

import jax
import numpy as np

from mohaq_jax import checkpoint, genome, hardware
from mohaq_jax.data.images import ImageDataset, ImageSplit, load_images
from mohaq_jax.evaluate import PopulationEvaluator
from mohaq_jax.models import vgg
from mohaq_jax.prepare import say
from mohaq_jax.problem_builder import objective_bounds
from mohaq_jax.retrain import vision
from mohaq_jax.search import mohaq, report

#: platform -> (objectives, maximized ones): the platform's speed/energy/size metrics.
OBJECTIVES = {
    "bitfusion": (("error", "speedup", "energy_pj"), ("speedup",)),
    "reconfig": (
        ("error", "energy_pj", "compression_vs_float32"),
        ("compression_vs_float32",),
    ),
}


@dataclasses.dataclass(frozen=True)
class VisionSearchConfig:
    """Settings of one image MOHAQ run (the experiment's flags, one field each)."""

    out: str = "results/vision_mohaq"  # output folder (report, CSVs, plots)
    dataset: str = "digits"  # "digits" (scikit-learn, always there) | "cifar10"
    cifar_dir: str | None = None  # CIFAR-10 python batches (with --dataset cifar10)
    max_train: int | None = None  # keep only this many training images (quick runs)
    image_size: int = 16  # digits: 8x8 upsampled to this (a multiple of 8)
    conv_widths: tuple[int, ...] | None = None  # None: the data set's VGG-9 widths
    fc_widths: tuple[int, ...] | None = None  # None: the data set's VGG-9 widths
    platform: str = "bitfusion"  # "bitfusion" | "reconfig"
    epochs: int = 15  # float training epochs
    batch_size: int = 64  # float training batch
    lr: float = 2e-3  # float training learning rate
    train_seed: int = 0  # init and batch order of the float training
    baseline_dir: str = "results/baselines"  # float VGG cache ("" = no cache)
    calib_images: int = 256  # training images the clips are calibrated on
    calib: str = "mse"  # clipping calibration: "mse" (MSE-optimal) or "max" (max-abs)
    eval_batch: int = 256  # images per evaluation batch (dev/test streamed)
    max_eval: int | None = None  # evaluate on at most this many dev/test images
    pop: int = 40  # NSGA-II population (MOHAQ: 40)
    offspring: int = 10  # genomes per generation (MOHAQ: 10)
    generations: int = 15  # generations after the initial population
    seed: int = 0  # search seed
    max_error: float | None = None  # dev error bound; None: float dev + error_margin
    error_margin: float = 0.05  # allowed dev error above the float model's
    memory_limit_mb: float | None = None  # None: no memory constraint
    chunk_size: int | None = 2  # genomes per lax.map step (None: one vmap)
    resume: bool = False  # continue the search from OUT's checkpoint
    progress: bool = True  # print phases and progress bars

    def __post_init__(self):
        if self.platform not in OBJECTIVES:
            raise ValueError(
                f"--platform must be one of {sorted(OBJECTIVES)}, got {self.platform!r}"
            )
        if self.dataset not in ("digits", "cifar10"):
            raise ValueError(
                f"--dataset must be digits or cifar10, got {self.dataset!r}"
            )
        for name in ("epochs", "batch_size", "calib_images", "eval_batch", "offspring"):
            if getattr(self, name) < 1:
                raise ValueError(f"--{name.replace('_', '-')} must be >= 1")
        if self.calib not in ("mse", "max"):
            raise ValueError(f"--calib must be mse or max, got {self.calib!r}")
        if self.pop < 2 or self.generations < 0:
            raise ValueError("--pop must be >= 2 and --generations >= 0")

    def to_dict(self) -> dict:
        return dataclasses.asdict(self)


def load_data(cfg: VisionSearchConfig) -> ImageDataset:
    """The image data set the flags name (CifarError if the CIFAR files are absent)."""
    if cfg.dataset == "cifar10":
        if not cfg.cifar_dir:
            raise ValueError("--dataset cifar10 needs --cifar-dir DIR")
        return load_images("cifar10", cifar_dir=cfg.cifar_dir, max_train=cfg.max_train)
    data = load_images("digits", image_size=cfg.image_size)
    if cfg.max_train is not None:
        train = ImageSplit(
            data.train.images[: cfg.max_train], data.train.labels[: cfg.max_train]
        )
        data = dataclasses.replace(data, train=train)
    return data


def model_config(cfg: VisionSearchConfig, data: ImageDataset) -> vgg.VGGConfig:
    """The VGG-9 for the data: the data set's widths unless the flags give some."""
    base = vgg.cifar_config() if cfg.dataset == "cifar10" else vgg.digits_config()
    height, _, channels = data.image_shape
    return dataclasses.replace(
        base,
        image_size=height,
        channels=channels,
        n_classes=data.n_classes,
        conv_widths=cfg.conv_widths or base.conv_widths,
        fc_widths=cfg.fc_widths or base.fc_widths,
    )


def float_baseline(cfg, data, model_cfg) -> tuple[dict, dict]:
    """Float params, trained once and cached under ``baseline_dir`` by their settings."""
    train_cfg = vision.ImageTrainConfig(
        epochs=cfg.epochs, batch_size=cfg.batch_size, lr=cfg.lr, seed=cfg.train_seed
    )
    key = {
        "data": data.settings | {"n_train": len(data.train)},
        "model": model_cfg.to_dict(),
        "training": train_cfg.to_dict(),
    }
    digest = hashlib.sha1(json.dumps(key, sort_keys=True).encode()).hexdigest()[:12]
    path = (
        os.path.join(cfg.baseline_dir, f"vgg_{data.name}_{digest}.msgpack")
        if cfg.baseline_dir
        else None
    )
    if path is not None and os.path.exists(path):
        shapes = jax.eval_shape(lambda: vgg.init_params(jax.random.key(0), model_cfg))
        template = jax.tree.map(lambda s: np.zeros(s.shape, s.dtype), shapes)
        params, meta = checkpoint.load(path, template)
        say(cfg.progress, f"float VGG-9: loaded {path}")
        return params, {**meta, "path": path}
    say(cfg.progress, f"float VGG-9: training {cfg.epochs} epochs on {data.name}")
    params, info = vision.fit(data, model_cfg, train_cfg, progress=cfg.progress)
    meta = {"key": key, "history": info["history"], "seconds": info["seconds"]}
    if path is not None:
        checkpoint.save(path, params, meta)
    return params, {**meta, "path": path}


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


def run(cfg: VisionSearchConfig) -> dict:
    """The whole image MOHAQ experiment; returns a summary dict (paths, front)."""
    t_start = time.perf_counter()
    data = load_data(cfg)
    model_cfg = model_config(cfg, data)
    params, baseline = float_baseline(cfg, data, model_cfg)
    calib = vision.calibration(
        params,
        model_cfg,
        data.train.images[: cfg.calib_images],
        weight_method=cfg.calib,
        act_method=cfg.calib,
    )
    platform = hardware.get_platform(cfg.platform)
    objectives, maximize = OBJECTIVES[cfg.platform]
    platform.check_objectives(objectives, maximize)
    space = genome.get_space(platform.space_name, vgg.sites(model_cfg))
    cost_fn = platform.make_cost_fn(space)
    dev = image_batches(data.dev, cfg.eval_batch, cfg.max_eval)
    test = image_batches(data.test, cfg.eval_batch, cfg.max_eval)
    evaluator = PopulationEvaluator(
        model_cfg, space, None, params, calib, cfg.chunk_size, pop_size=cfg.offspring
    )
    float_eval = PopulationEvaluator(
        model_cfg,
        genome.tied_space(space.layers, (32,), "float"),
        None,
        params,
        calib,
        chunk_size=None,
    )
    zero = np.zeros((1, float_eval.space.n_genes), np.int32)
    float_dev = float(float_eval(zero, dev)["class_error"][0])
    float_test = float(float_eval(zero, test)["class_error"][0])
    say(cfg.progress, f"float VGG-9: dev error {float_dev:.4f}, test {float_test:.4f}")
    max_error = (
        cfg.max_error if cfg.max_error is not None else float_dev + cfg.error_margin
    )
    search_config = mohaq.SearchConfig(
        objectives=objectives,
        maximize=maximize,
        pop_size=cfg.pop,
        n_offspring=cfg.offspring,
        n_generations=cfg.generations,
        seed=cfg.seed,
        max_error=float(max_error),
        memory_limit_mb=cfg.memory_limit_mb,
        memory_metric=platform.memory_metric,
        error_metric="class_error",
    )
    ideal, nadir = objective_bounds(cost_fn, space, objectives, maximize, max_error)
    problem = mohaq.QuantizationProblem(
        evaluator, cost_fn, dev, search_config, ideal, nadir
    )
    os.makedirs(cfg.out, exist_ok=True)
    say(
        cfg.progress,
        f"search: NSGA-II on {platform.name} ({space.n_genes} genes), population "
        f"{cfg.pop}, {cfg.offspring} offspring x {cfg.generations} generations",
    )
    result = mohaq.run_search(
        problem, cfg.out, resume=cfg.resume, progress=cfg.progress
    )
    front = np.flatnonzero(result.front)
    test_err = (
        problem.errors(result.genomes[front], test)["class_error"]
        if len(front)
        else np.zeros(0)
    )
    top = space.upper[None].astype(np.int32)
    _, r_top = problem.evaluate(result.state, top)
    t_top = problem.errors(top, test)["class_error"][0]
    top_bits = max(max(v) for v in space.gene_values)
    baselines = [
        {"name": "float32", "dev_error": float_dev, "test_error": float_test},
        {
            "name": f"all {top_bits}-bit",
            "dev_error": float(r_top["error"][0]),
            "test_error": float(t_top),
            "notes": ", ".join(
                f"{m} {r_top[m][0]:.4g} {platform.metric(m).unit}"
                for m in objectives[1:]
            ),
        },
    ]
    settings = {
        "platform": cfg.platform,
        "space": space.name,
        "data": data.settings,
        "model_config": model_cfg.to_dict(),
        "search_config": search_config.to_dict(),
        "run_config": cfg.to_dict(),
        "baseline_checkpoint": baseline.get("path"),
        "seconds": {"search": result.seconds, "total": time.perf_counter() - t_start},
        "ideal": ideal.tolist(),
        "nadir": nadir.tolist(),
    }
    paths = report.write_outputs(
        cfg.out,
        space,
        result,
        objectives,
        {"error": test_err},
        baselines,
        settings,
        notice=data.notice,
        title=f"MOHAQ on the VGG-9 ({data.name}, {platform.name})",
        details=report.Details(
            float_dev=float_dev,
            max_error=float(max_error),
            memory_limit_mb=cfg.memory_limit_mb,
            error_metric="class_error",
        ),
    )
    order = front[np.argsort(result.metrics["error"][front], kind="stable")]
    rows = [
        {
            "bits": report.bits_words(space, result.genomes[i]),
            "dev_error": float(result.metrics["error"][i]),
            "test_error": float(test_err[list(front).index(i)]),
            **{m: float(result.metrics[m][i]) for m in objectives[1:]},
        }
        for i in order
    ]
    if cfg.progress:
        print(
            f"\n{len(front)} Pareto solutions; "
            f"{report.counts_words(int(result.history[-1]['n_evaluations']), len(result.genomes))}"
            f", {settings['seconds']['total']:.0f} s in all -> {paths['report.md']}"
        )
        for n, row in enumerate(rows):
            costs = ", ".join(f"{m} {row[m]:.4g}" for m in objectives[1:])
            print(
                f"  {n}: dev error {row['dev_error']:.4f}, test {row['test_error']:.4f}"
                f", {costs}"
            )
    return {
        "out": cfg.out,
        "files": paths,
        "front": rows,
        "baselines": baselines,
        "result": result,
        "problem": problem,
        "n_pareto": len(front),
    }
