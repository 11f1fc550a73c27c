"""The pipeline behind the MOHAQ experiments (``experiments/timit_*.py``).

data -> float baseline (trained on first use, then reused) -> calibration -> batched
population evaluator + platform cost model -> NSGA-II search (checkpointed every
generation) -> Pareto set re-evaluated on the test split -> files (CSV, JSON, report,
plots, per-solution configs). The experiment scripts only choose the platform and the
objectives; every flag is defined here, once.
"""

from __future__ import annotations

import argparse
import dataclasses
import hashlib
import json
import os
import time

import jax
import jax.numpy as jnp
import numpy as np

from mohaq_jax import genome as genome_lib
from mohaq_jax import hardware, qmodel, sharding, train
from mohaq_jax.data import load_corpus, pad_batch
from mohaq_jax.data.corpus import default_cache_dir
from mohaq_jax.evaluate import PopulationEvaluator
from mohaq_jax.models.sru import ModelConfig, layer_specs, paper_config
from mohaq_jax.search import compilation as compile_cache
from mohaq_jax.search import mohaq, report, single_objective
from mohaq_jax.search.beacon import BeaconConfig, BeaconProblem

#: Default model for the default (synthesized speech) data: small enough to train in
#: a few minutes on a 2-core CPU, with projections so that every layer kind of the
#: paper's model (SRU, projection, output) is searched.
DEFAULT_HIDDEN = 128
DEFAULT_LAYERS = 2
DEFAULT_PROJ = 64
DEFAULT_DROPOUT = 0.25  # 0.1 overfits the synthetic corpus (dev PER 0.68 vs 0.60)


def add_common_args(parser: argparse.ArgumentParser, defaults: dict) -> None:
    """Flags shared by the search experiments; ``defaults`` overrides a few per script."""
    d = parser.add_argument_group("data")
    d.add_argument(
        "--data",
        choices=("espeak", "timit"),
        default=None,
        help="data set: 'espeak' (default; synthesized speech from eSpeak NG, "
        "generated locally, NOT TIMIT) or 'timit' (needs --timit-dir)",
    )
    d.add_argument(
        "--timit-dir",
        default=None,
        help="root of your LDC TIMIT copy (TRAIN/ and TEST/ inside); implies "
        "--data timit",
    )
    d.add_argument(
        "--timit-partial",
        action="store_true",
        help="accept a partial TIMIT copy (e.g. NLTK's sample): splits are built "
        "from the speakers present instead of the standard lists",
    )
    d.add_argument(
        "--espeak-size",
        choices=("default", "tiny"),
        default="default",
        help="size of the synthesized corpus ('tiny' for smoke tests)",
    )
    d.add_argument(
        "--data-seed",
        type=int,
        default=0,
        help="seed of the synthesized corpus (speakers, sentences, noise)",
    )
    d.add_argument(
        "--cache-dir",
        default=None,
        help="where features and baselines are cached (default $MOHAQ_CACHE "
        "or ~/.cache/mohaq_jax)",
    )
    m = parser.add_argument_group("float baseline")
    m.add_argument(
        "--hidden",
        type=int,
        default=DEFAULT_HIDDEN,
        help="SRU hidden units per direction (paper: 550 with --paper-model)",
    )
    m.add_argument("--layers", type=int, default=DEFAULT_LAYERS, help="SRU layers")
    m.add_argument(
        "--proj",
        type=int,
        default=DEFAULT_PROJ,
        help="low-rank projection size before SRU layers 2.. (0 = none)",
    )
    m.add_argument(
        "--paper-model",
        action="store_true",
        help="the authors' size: 4 bidirectional layers of 550, projection 256",
    )
    m.add_argument(
        "--dropout",
        type=float,
        default=DEFAULT_DROPOUT,
        help="dropout on SRU outputs during training (paper: 0.1)",
    )
    m.add_argument(
        "--epochs",
        type=int,
        default=defaults.get("epochs", 12),
        help="maximum training epochs of the float baseline",
    )
    m.add_argument(
        "--baseline-dir",
        default=None,
        help="checkpoint folder of the float baseline (default: a folder in "
        "the cache named after data, model and training settings)",
    )
    m.add_argument(
        "--retrain-baseline",
        action="store_true",
        help="train the baseline again even if a checkpoint exists",
    )
    m.add_argument(
        "--calib-utts",
        type=int,
        default=32,
        help="training utterances used to calibrate clipping values",
    )
    m.add_argument(
        "--calib",
        choices=("mse", "max"),
        default="mse",
        help="clipping calibration: MSE-optimal clip ratio or max-abs",
    )
    s = parser.add_argument_group("search")
    s.add_argument(
        "--pop", type=int, default=40, help="NSGA-II population size (paper: 40)"
    )
    s.add_argument(
        "--offspring",
        type=int,
        default=10,
        help="genomes evaluated per generation (paper: 10)",
    )
    s.add_argument(
        "--generations",
        type=int,
        default=defaults.get("generations", 15),
        help="generations after the initial population (paper: 15)",
    )
    s.add_argument(
        "--seed", type=int, default=0, help="search seed (same seed, same front)"
    )
    # search15: single-objective evosax mode (mohaq_jax.search.single_objective).
    s.add_argument(
        "--algorithm",
        choices=("nsga2", "simple_ga", "de"),
        default="nsga2",
        help="nsga2 (the front) or an evosax single-objective search: maximize "
        "speedup s.t. error and memory limits, at NSGA-II's budget",
    )
    s.add_argument(
        "--budget",
        type=int,
        default=None,
        help="stop after this many genome evaluations (default: no limit)",
    )
    s.add_argument(
        "--max-error",
        type=float,
        default=None,
        help="error constraint as a fraction (paper: 0.24 on TIMIT); default: "
        "float dev error + --error-margin",
    )
    s.add_argument(
        "--error-margin",
        type=float,
        default=0.07,
        help="default error constraint above the float model's dev error "
        "(the paper's 24%% was about 7 points above its float PER)",
    )
    s.add_argument(
        "--memory-limit-mb",
        type=float,
        default=None,
        help="memory constraint in MB; default: the paper's limit scaled by "
        "this model's 16-bit size relative to the paper model's",
    )
    s.add_argument(
        "--error-metric",
        choices=("phone_error", "frame_error"),
        default="phone_error",
        help="error objective measured on the dev set",
    )
    s.add_argument(
        "--chunk-size",
        type=int,
        default=2,
        help="genomes evaluated together (lax.map batch size; small on CPU, "
        "large on GPU)",
    )
    b = parser.add_argument_group(
        "beacons (retrain a few genomes, let them stand in for their neighbours)"
    )
    b.add_argument(
        "--beacons",
        action="store_true",
        help="run an inference-only and a beacon-based search with the same "
        "seed and budget, and compare them",
    )
    b.add_argument(
        "--beacon-threshold",
        type=int,
        default=5,
        help="max level distance to a beacon (the authors: 5)",
    )
    b.add_argument(
        "--beacon-genes",
        choices=("weights", "all"),
        default="weights",
        help="genes the beacon distance counts (the authors: weight genes)",
    )
    b.add_argument(
        "--max-beacons",
        type=int,
        default=4,
        help="beacons retrained at most, besides the float model",
    )
    b.add_argument(
        "--beacons-per-generation",
        type=int,
        default=2,
        help="new beacons retrained at most per generation (batched)",
    )
    b.add_argument(
        "--beacon-epochs",
        type=int,
        default=3,
        help="QAT epochs per beacon (the authors: about 20 on TIMIT)",
    )
    b.add_argument(
        "--beacon-max-ptq-error",
        type=float,
        default=None,
        help="promising genomes have PTQ error below this (default: any)",
    )
    b.add_argument(
        "--beacon-min-speedup",
        type=float,
        default=None,
        help="promising genomes have speedup above this (default: any)",
    )
    b.add_argument(
        "--beacon-retrain",
        choices=("qat", "switching"),
        default="qat",
        help="how beacons are retrained: QAT with the straight-through estimator, or "
        "switching-aware mixed precision (Kim et al. 2021)",
    )
    b.add_argument(
        "--verify-retrain",
        type=int,
        default=3,
        help="Pareto solutions of the beacon search actually retrained to "
        "check the beacon estimate",
    )
    x = parser.add_argument_group("devices")
    x.add_argument(
        "--devices",
        type=int,
        default=1,
        help="devices the population is split over (a jax.sharding mesh; "
        "all hosts' devices in a multi-host run); 1 = no sharding",
    )
    x.add_argument(
        "--data-shards",
        type=int,
        default=1,
        help="of --devices, how many split the data along utterances",
    )
    o = parser.add_argument_group("output")
    o.add_argument(
        "--out",
        default=defaults.get("out"),
        help="output folder (pareto.csv/json, archive.csv, report.md, plots)",
    )
    o.add_argument(
        "--resume",
        action="store_true",
        help="continue the search checkpointed in --out after a crash or kill",
    )
    o.add_argument("--no-progress", action="store_true", help="no progress bars")


@dataclasses.dataclass
class Setup:
    """Everything a search needs, prepared once."""

    corpus: object
    model_config: ModelConfig
    params: dict
    calib: qmodel.Calibration
    dev_batch: tuple
    test_batch: tuple
    baseline_info: dict
    seconds: dict


def model_config_from(args, corpus) -> ModelConfig:
    if args.paper_model:
        return paper_config(n_classes=corpus.n_classes, n_features=corpus.n_features)
    return ModelConfig(
        n_features=corpus.n_features,
        n_classes=corpus.n_classes,
        hidden=args.hidden,
        n_layers=args.layers,
        bidirectional=True,
        n_proj=args.proj,
        dropout=args.dropout,
    )


def load_data(args):
    """The corpus the flags ask for (eSpeak by default, TIMIT with --timit-dir)."""
    name = args.data or ("timit" if args.timit_dir else "espeak")
    if name == "timit":
        if not args.timit_dir:
            raise SystemExit(
                "--data timit needs --timit-dir pointing at your TIMIT copy"
            )
        return load_corpus(
            "timit",
            timit_dir=args.timit_dir,
            cache_dir=args.cache_dir,
            allow_partial=args.timit_partial,
            verbose=not args.no_progress,
        )
    return load_corpus(
        "espeak",
        seed=args.data_seed,
        size=args.espeak_size,
        cache_dir=args.cache_dir,
        verbose=not args.no_progress,
    )


def _whole_split(split) -> tuple:
    n_time = max(len(f) for f in split.features)
    batch = pad_batch(split, range(len(split)), pad_to=-(-n_time // 16) * 16)
    return tuple(jnp.asarray(x) for x in batch)


def prepare(args) -> Setup:
    """Data, float baseline (trained on first use), calibration, dev/test batches."""
    t0 = time.perf_counter()
    corpus = load_data(args)
    t_data = time.perf_counter() - t0
    model_config = model_config_from(args, corpus)
    train_config = train.TrainConfig(epochs=args.epochs)
    ckpt_dir = args.baseline_dir
    if ckpt_dir is None:
        ident = json.dumps(
            [
                model_config.to_dict(),
                train_config.to_dict(),
                train.data_settings(corpus),
            ],
            sort_keys=True,
            default=str,
        )
        digest = hashlib.sha256(ident.encode()).hexdigest()[:12]
        cache = args.cache_dir or default_cache_dir()
        ckpt_dir = os.path.join(cache, "baselines", f"{corpus.name}-{digest}")
    t0 = time.perf_counter()
    params, info = train.get_or_train_baseline(
        corpus,
        model_config,
        train_config,
        ckpt_dir,
        retrain=args.retrain_baseline,
        progress=not args.no_progress,
    )
    t_train = time.perf_counter() - t0
    n_cal = min(args.calib_utts, len(corpus.train))
    rng = np.random.default_rng(0)
    cal = pad_batch(corpus.train, rng.choice(len(corpus.train), n_cal, replace=False))
    calib = qmodel.calibrate(
        params,
        model_config,
        jnp.asarray(cal.features),
        jnp.asarray(cal.lengths),
        weight_method=args.calib,
        act_method=args.calib,
    )
    return Setup(
        corpus=corpus,
        model_config=model_config,
        params=params,
        calib=calib,
        dev_batch=_whole_split(corpus.dev),
        test_batch=_whole_split(corpus.test),
        baseline_info=info,
        seconds={"data": t_data, "baseline": t_train},
    )


def objective_bounds(cost_fn, space, objectives, maximize, max_error):
    """(ideal, nadir) per objective: lowest-bit and highest-bit genomes' costs."""
    extremes = np.stack(
        [np.zeros(space.n_genes, np.int32), space.upper.astype(np.int32)]
    )
    costs = {
        k: np.asarray(v) for k, v in jax.vmap(cost_fn)(jnp.asarray(extremes)).items()
    }
    ideal, nadir = [], []
    for name in objectives:
        if name == "error":
            lo, hi = 0.0, max_error
        else:
            vals = -costs[name] if name in maximize else costs[name]
            lo, hi = float(vals.min()), float(vals.max())
            if hi <= lo:
                hi = lo + 1.0
        ideal.append(lo)
        nadir.append(hi)
    return np.asarray(ideal, np.float32), np.asarray(nadir, np.float32)


def default_memory_limit(platform, space, model_config) -> float:
    """The platform's paper limit scaled by this model's 16-bit size / the paper model's."""
    paper_space = genome_lib.get_space(space.name, layer_specs(paper_config()))
    paper16 = platform.evaluate(paper_space, paper_space.upper)["memory_mb"]
    ours16 = platform.evaluate(space, space.upper)["memory_mb"]
    return float(platform.memory_limit_mb * ours16 / paper16)


def run_mohaq(
    args, platform_name: str, objectives, maximize, title: str, extra_report=None
) -> dict:
    """The whole MOHAQ experiment for one platform; returns a summary dict.

    With ``args.beacons`` it runs the inference-only search in ``OUT/inference_only``
    and the beacon-based one in ``OUT/beacons`` (same seed and budget) and writes a
    comparison to ``OUT/report.md``.
    """
    t_start = time.perf_counter()
    sharding.initialize_distributed()
    compile_cache.enable_compilation_cache()  # search15: a rerun compiles nothing
    setup = prepare(args)
    if not args.beacons:
        return _search(
            args,
            setup,
            platform_name,
            objectives,
            maximize,
            title,
            args.out,
            extra_report,
            t_start,
        )
    plain = _search(
        args,
        setup,
        platform_name,
        objectives,
        maximize,
        f"{title}: inference-only",
        os.path.join(args.out, "inference_only"),
        extra_report,
        t_start,
    )
    bcfg = BeaconConfig(
        threshold=args.beacon_threshold,
        genes=args.beacon_genes,
        max_beacons=args.max_beacons,
        per_generation=args.beacons_per_generation,
        max_ptq_error=args.beacon_max_ptq_error,
        min_speedup=args.beacon_min_speedup,
        epochs=args.beacon_epochs,
        retrain=args.beacon_retrain,
    )
    with_beacons = _search(
        args,
        setup,
        platform_name,
        objectives,
        maximize,
        f"{title}: beacon-based",
        os.path.join(args.out, "beacons"),
        extra_report,
        t_start,
        beacon_config=bcfg,
    )
    comparison = compare_searches(args, setup, plain, with_beacons, bcfg)
    path = os.path.join(args.out, "report.md")
    report._write_atomic(
        path,
        "\n".join([f"# {title}: inference-only vs beacon-based", ""] + comparison)
        + "\n",
    )
    if not args.no_progress:
        print("\n".join(comparison[:12]))
        print(f"-> {path}")
    return {"inference_only": plain, "beacons": with_beacons, "report": path}


def _search(
    args,
    setup,
    platform_name,
    objectives,
    maximize,
    title,
    out_dir,
    extra_report,
    t_start,
    beacon_config=None,
) -> dict:
    corpus, cfg = setup.corpus, setup.model_config
    platform = hardware.get_platform(platform_name)
    space = genome_lib.get_space(platform.space_name, layer_specs(cfg))
    cost_fn = platform.make_cost_fn(space)
    mesh = None
    if args.devices > 1 or args.data_shards > 1:
        mesh = sharding.population_mesh(args.devices, args.data_shards)
        if not args.no_progress:
            print(f"population split over {sharding.describe(mesh)}")
    evaluator = PopulationEvaluator(
        cfg,
        space,
        corpus.fold39,
        setup.params,
        setup.calib,
        chunk_size=args.chunk_size,
        pop_size=args.offspring,
        mesh=mesh,
    )
    float_space = genome_lib.tied_space(space.layers, (32,), "float")
    float_eval = PopulationEvaluator(
        cfg, float_space, corpus.fold39, setup.params, setup.calib, chunk_size=None
    )
    zero = np.zeros((1, float_space.n_genes), np.int32)
    float_dev = float_eval(zero, setup.dev_batch)[args.error_metric][0]
    float_test = float_eval(zero, setup.test_batch)[args.error_metric][0]
    max_error = (
        args.max_error if args.max_error is not None else float_dev + args.error_margin
    )
    memory_limit = (
        args.memory_limit_mb
        if args.memory_limit_mb is not None
        else default_memory_limit(platform, space, cfg)
    )
    memory_limit = float(memory_limit) if np.isfinite(memory_limit) else None
    search_config = mohaq.SearchConfig(
        objectives=tuple(objectives),
        maximize=tuple(maximize),
        pop_size=args.pop,
        n_offspring=args.offspring,
        n_generations=args.generations,
        seed=args.seed,
        max_error=float(max_error),
        memory_limit_mb=memory_limit,
        error_metric=args.error_metric,
        budget=args.budget,
    )
    ideal, nadir = objective_bounds(cost_fn, space, objectives, maximize, max_error)
    if beacon_config is None:
        problem = mohaq.QuantizationProblem(
            evaluator, cost_fn, setup.dev_batch, search_config, ideal, nadir
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
            progress=not args.no_progress,
        )
    os.makedirs(out_dir, exist_ok=True)
    main = sharding.is_main_process()  # only host 0 writes checkpoints and files
    if getattr(args, "algorithm", "nsga2") != "nsga2":  # search15
        result = single_objective.run_problem(problem, args.algorithm)
    else:
        result = mohaq.run_search(
            problem,
            out_dir if main else None,
            resume=args.resume,
            progress=not args.no_progress and main,
        )
    front = np.flatnonzero(result.front)
    if len(front) and beacon_config is not None:
        test_err = test_errors(problem, result.genomes[front], setup.test_batch)
    elif len(front):
        test_err = problem.errors(result.genomes[front], setup.test_batch)[
            args.error_metric
        ]
    else:
        test_err = np.zeros(0)
    g16 = space.upper[None].astype(np.int32)
    r16 = problem.evaluate(g16)
    t16 = problem.errors(g16, setup.test_batch)[args.error_metric][0]
    baselines = [
        {
            "name": "float32",
            "dev_error": float(float_dev),
            "test_error": float(float_test),
            "notes": "no quantization",
        },
        {
            "name": "all 16-bit",
            "dev_error": float(r16["error"][0]),
            "test_error": float(t16),
            "notes": f"speedup {r16['speedup'][0]:.3g}, memory {r16['memory_mb'][0]:.4g} MB",
        },
    ]
    settings = {
        "platform": platform_name,
        "space": space.name,
        "data": corpus.name,
        "synthetic_data": bool(corpus.synthetic),
        "model_config": cfg.to_dict(),
        "search_config": search_config.to_dict(),
        "calibration": args.calib,
        "baseline_checkpoint": setup.baseline_info.get("path"),
        "seconds": {
            **setup.seconds,
            "search": result.seconds,
            "total": time.perf_counter() - t_start,
        },
        "ideal": ideal.tolist(),
        "nadir": nadir.tolist(),
    }
    extra = extra_report(problem, result, setup) if extra_report else []
    if beacon_config is not None:
        settings["beacon_config"] = beacon_config.to_dict()
        extra = list(extra) + beacon_section(problem)
    paths = {}
    if main:
        paths = report.write_outputs(
            out_dir,
            space,
            result,
            objectives,
            {"error": test_err},
            baselines,
            settings,
            notice=corpus.notice if corpus.synthetic else "",
            title=title,
            extra_sections=extra,
        )
    summary = {
        "out": out_dir,
        "n_pareto": int(len(front)),
        "n_evaluated": int(len(result.genomes)),
        "files": paths,
        "baselines": baselines,
        "seconds": settings["seconds"],
        "problem": problem,
        "result": result,
        "test_error": test_err,
    }
    if not args.no_progress:
        print(
            f"\n{title}: {len(front)} Pareto solutions from {len(result.genomes)} genomes "
            f"in {settings['seconds']['total']:.0f} s -> {out_dir}/report.md"
        )
        if corpus.synthetic:
            print(corpus.notice)
    return summary


def test_errors(problem, genomes, batch) -> np.ndarray:
    """Test error of genomes, with the beacon each one used on dev (min with PTQ)."""
    metric = problem.config.error_metric
    ptq = problem.errors(genomes, batch)[metric]
    index = problem.evaluate(genomes)["beacon"].astype(np.int32)
    if not np.any(index):
        return ptq
    beacon = problem.beacon_errors(genomes, index, batch)
    return np.where(index > 0, np.minimum(ptq, beacon), ptq)


def beacon_section(problem) -> list[str]:
    lines = [
        "## Beacons",
        "",
        "| slot | bits | PTQ dev error | QAT dev error | epochs |",
        "|---|---|---|---|---|",
    ]
    for b in problem.beacon_info:
        lines.append(
            f"| {b['slot']} | {report.bits_words(problem.space, b['genome'])} | "
            f"{b['ptq_dev_per']:.4f} | {b['qat_dev_per']:.4f} | {b['epochs']} |"
        )
    return lines


def compare_searches(args, setup, plain, beacons, bcfg) -> list[str]:
    """Report rows: PTQ vs beacon-estimated vs actually-retrained errors, and the gain."""
    problem, result = beacons["problem"], beacons["result"]
    space = problem.space
    front = np.flatnonzero(result.front)
    m = result.metrics
    float_dev = beacons["baselines"][0]["dev_error"]
    lines = []
    if setup.corpus.synthetic:
        lines += [f"> **{setup.corpus.notice}**", ""]
    lines += [
        "Same seed and budget for both searches; errors on the dev set unless noted.",
        "",
        "## Final Pareto set of the beacon-based search",
        "",
        "| # | bits | speedup | PTQ error | beacon-estimated error | retrained error |",
        "|---|---|---|---|---|---|",
    ]
    order = front[np.argsort(m["error"][front], kind="stable")]
    verify = order[: max(args.verify_retrain, 0)]
    retrained = {}
    if len(verify):
        bits_w, bits_a = jax.vmap(space.decode)(jnp.asarray(result.genomes[verify]))
        _, info = train.qat_finetune(
            setup.params,
            setup.model_config,
            setup.calib,
            np.asarray(bits_w),
            np.asarray(bits_a),
            setup.corpus,
            epochs=bcfg.epochs,
            lr=bcfg.lr,
            progress=not args.no_progress,
        )
        retrained = {
            int(i): float(e) for i, e in zip(verify, info["dev_per"], strict=True)
        }
    for n, i in enumerate(order):
        r = retrained.get(int(i))
        lines.append(
            f"| {n} | {report.bits_words(space, result.genomes[i])} | {m['speedup'][i]:.3g} | "
            f"{m['ptq_error'][i]:.4f} | {m['error'][i]:.4f} | "
            f"{'' if r is None else f'{r:.4f}'} |"
        )
    # Error increase over float at each speedup level: best error with speedup >= s.
    pm, pf = plain["result"].metrics, plain["result"].front
    gains = []
    for s in np.unique(np.concatenate([pm["speedup"][pf], m["speedup"][result.front]])):
        a = pm["error"][pf & (pm["speedup"] >= s)]
        b = m["error"][result.front & (m["speedup"] >= s)]
        if len(a) and len(b):
            gains.append(
                (float(s), float(a.min() - float_dev), float(b.min() - float_dev))
            )
    lines += [
        "",
        "## Error increase over the float model at equal speedup",
        "",
        "| speedup >= | inference-only | beacon-based | reduction (points) |",
        "|---|---|---|---|",
    ]
    for s, a, b in gains:
        lines.append(
            f"| {s:.3g} | {100 * a:.2f} | {100 * b:.2f} | {100 * (a - b):.2f} |"
        )
    best = max((a - b for _, a, b in gains), default=float("nan"))
    lines += [
        "",
        f"**Beacons reduced the error increase of inference-only search by up to "
        f"{100 * best:.2f} percentage points** (the paper: up to 4.9 on Bitfusion, "
        "TIMIT).",
        "",
        f"- beacons retrained: {problem.n_beacons}; inference-only run: "
        f"{plain['out']}/report.md; beacon run: {beacons['out']}/report.md",
    ]
    return lines
