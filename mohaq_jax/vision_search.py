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
from mohaq_jax.config import ConfigError, DataSettings, ExperimentConfig
from mohaq_jax.data.corpus import default_cache_dir
from mohaq_jax.data.images import ImageDataset, ImageSplit, load_images
from mohaq_jax.evaluate import PopulationEvaluator
from mohaq_jax.flags import IMAGE_SEARCH_DEFAULTS, IMAGE_SEARCH_FIELDS
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


#: The image search's flag defaults and the settings it reads live with the flags, so
#: that its command line is built and checked without importing JAX.
DEFAULTS, FIELDS = IMAGE_SEARCH_DEFAULTS, IMAGE_SEARCH_FIELDS


def default_config(**sections) -> ExperimentConfig:
    """The image search's config with its :data:`DEFAULTS`; ``sections`` (e.g.
    ``data={"max_train_images": 96}``) override fields, as their flags would."""
    from mohaq_jax.flags import FLAGS

    by_flag = {f.flag: f for f in FLAGS if f.section != "switching"}
    values: dict[str, dict] = {}
    for flag, value in DEFAULTS.items():
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
        for section, fields in FIELDS.items()
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


def model_config(cfg: ExperimentConfig, data: ImageDataset) -> vgg.VGGConfig:
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
    if os.path.exists(path) and not tr.retrain:
        shapes = jax.eval_shape(lambda: vgg.init_params(jax.random.key(0), model_cfg))
        template = jax.tree.map(lambda s: np.zeros(s.shape, s.dtype), shapes)
        params, meta = checkpoint.load(path, template)
        say(progress, f"float VGG-9: loaded {path}")
        return params, {**meta, "path": path}
    say(progress, f"float VGG-9: training {tr.epochs} epochs on {data.name}")
    params, info = vision.fit(data, model_cfg, train_cfg, progress=progress)
    meta = {"key": key, "history": info["history"], "seconds": info["seconds"]}
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


def run(cfg: ExperimentConfig) -> dict:
    """The whole image MOHAQ experiment; returns a summary dict (paths, front).

    Args:
      cfg: the settings of :data:`FIELDS` (the image flags of ``cli.build_parser``
        with :data:`DEFAULTS`, or :func:`default_config`); validated by the caller
        (``config.validate``), except that ``--platform`` must name a cost model.
    """
    t_start = time.perf_counter()
    search, output = cfg.search, cfg.output
    if search.platform not in OBJECTIVES:
        raise ConfigError(
            f"--platform {search.platform}: the image search needs one of "
            f"{', '.join(sorted(OBJECTIVES))}"
        )
    data = load_data(cfg.data)
    model_cfg = model_config(cfg, data)
    params, baseline = float_baseline(cfg, data, model_cfg)
    calib = vision.calibration(
        params,
        model_cfg,
        data.train.images[: search.calib_images],
        weight_method=search.calib,
        act_method=search.calib,
    )
    platform = hardware.get_platform(search.platform)
    objectives, maximize = OBJECTIVES[search.platform]
    platform.check_objectives(objectives, maximize)
    space = genome.get_space(platform.space_name, vgg.sites(model_cfg))
    cost_fn = platform.make_cost_fn(space)
    dev = image_batches(data.dev, search.eval_batch, search.max_eval)
    test = image_batches(data.test, search.eval_batch, search.max_eval)
    evaluator = PopulationEvaluator(
        model_cfg,
        space,
        None,
        params,
        calib,
        search.chunk_size,
        pop_size=search.offspring,
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
    say(
        output.progress,
        f"float VGG-9: dev error {float_dev:.4f}, test {float_test:.4f}",
    )
    max_error = (
        search.max_error
        if search.max_error is not None
        else float_dev + search.error_margin
    )
    search_config = mohaq.SearchConfig(
        objectives=objectives,
        maximize=maximize,
        pop_size=search.pop,
        n_offspring=search.offspring,
        n_generations=search.generations,
        seed=search.seed,
        max_error=float(max_error),
        memory_limit_mb=search.memory_limit_mb,
        memory_metric=platform.memory_metric,
        error_metric="class_error",
        seed_uniform=search.seed_uniform,
    )
    ideal, nadir = objective_bounds(cost_fn, space, objectives, maximize, max_error)
    problem = mohaq.QuantizationProblem(
        evaluator, cost_fn, dev, search_config, ideal, nadir
    )
    os.makedirs(output.out, exist_ok=True)
    say(
        output.progress,
        f"search: NSGA-II on {platform.name} ({space.n_genes} genes), population "
        f"{search.pop}, {search.offspring} offspring x {search.generations} generations",
    )
    result = mohaq.run_search(
        problem, output.out, resume=output.resume, progress=output.progress
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
        "platform": search.platform,
        "space": space.name,
        "data": data.settings,
        "model_config": model_cfg.to_dict(),
        "search_config": search_config.to_dict(),
        "run_config": run_settings(cfg),
        "baseline_checkpoint": baseline.get("path"),
        "seconds": {"search": result.seconds, "total": time.perf_counter() - t_start},
        "ideal": ideal.tolist(),
        "nadir": nadir.tolist(),
    }
    paths = report.write_outputs(
        output.out,
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
            memory_limit_mb=search.memory_limit_mb,
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
    if output.progress:
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
        "out": output.out,
        "files": paths,
        "front": rows,
        "baselines": baselines,
        "result": result,
        "problem": problem,
        "n_pareto": len(front),
    }
