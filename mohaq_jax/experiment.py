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
from mohaq_jax import hardware, qmodel, train
from mohaq_jax.data import load_corpus, pad_batch
from mohaq_jax.data.corpus import default_cache_dir
from mohaq_jax.evaluate import PopulationEvaluator
from mohaq_jax.models.sru import ModelConfig, layer_specs, paper_config
from mohaq_jax.search import mohaq, report

#: Default model for the default (synthesized speech) data: small enough to train in
#: a few minutes on a 2-core CPU, with projections so that every layer kind of the
#: paper's model (SRU, projection, output) is searched.
DEFAULT_HIDDEN = 128
DEFAULT_LAYERS = 3
DEFAULT_PROJ = 64


def add_common_args(parser: argparse.ArgumentParser, defaults: dict) -> None:
    """Flags shared by the search experiments; ``defaults`` overrides a few per script."""
    d = parser.add_argument_group("data")
    d.add_argument("--data", choices=("espeak", "timit"), default=None,
                   help="data set: 'espeak' (default; synthesized speech from eSpeak NG, "
                        "generated locally, NOT TIMIT) or 'timit' (needs --timit-dir)")
    d.add_argument("--timit-dir", default=None,
                   help="root of your LDC TIMIT copy (TRAIN/ and TEST/ inside); implies "
                        "--data timit")
    d.add_argument("--timit-partial", action="store_true",
                   help="accept a partial TIMIT copy (e.g. NLTK's sample): splits are built "
                        "from the speakers present instead of the standard lists")
    d.add_argument("--espeak-size", choices=("default", "tiny"), default="default",
                   help="size of the synthesized corpus ('tiny' for smoke tests)")
    d.add_argument("--data-seed", type=int, default=0,
                   help="seed of the synthesized corpus (speakers, sentences, noise)")
    d.add_argument("--cache-dir", default=None,
                   help="where features and baselines are cached (default $MOHAQ_CACHE "
                        "or ~/.cache/mohaq_jax)")
    m = parser.add_argument_group("float baseline")
    m.add_argument("--hidden", type=int, default=DEFAULT_HIDDEN,
                   help="SRU hidden units per direction (paper: 550 with --paper-model)")
    m.add_argument("--layers", type=int, default=DEFAULT_LAYERS, help="SRU layers")
    m.add_argument("--proj", type=int, default=DEFAULT_PROJ,
                   help="low-rank projection size before SRU layers 2.. (0 = none)")
    m.add_argument("--paper-model", action="store_true",
                   help="the authors' size: 4 bidirectional layers of 550, projection 256")
    m.add_argument("--epochs", type=int, default=defaults.get("epochs", 10),
                   help="maximum training epochs of the float baseline")
    m.add_argument("--baseline-dir", default=None,
                   help="checkpoint folder of the float baseline (default: a folder in "
                        "the cache named after data, model and training settings)")
    m.add_argument("--retrain-baseline", action="store_true",
                   help="train the baseline again even if a checkpoint exists")
    m.add_argument("--calib-utts", type=int, default=32,
                   help="training utterances used to calibrate clipping values")
    m.add_argument("--calib", choices=("mse", "max"), default="mse",
                   help="clipping calibration: MSE-optimal clip ratio or max-abs")
    s = parser.add_argument_group("search")
    s.add_argument("--pop", type=int, default=40, help="NSGA-II population size (paper: 40)")
    s.add_argument("--offspring", type=int, default=10,
                   help="genomes evaluated per generation (paper: 10)")
    s.add_argument("--generations", type=int, default=defaults.get("generations", 15),
                   help="generations after the initial population (paper: 15)")
    s.add_argument("--seed", type=int, default=0, help="search seed (same seed, same front)")
    s.add_argument("--budget", type=int, default=None,
                   help="stop after this many genome evaluations (default: no limit)")
    s.add_argument("--max-error", type=float, default=None,
                   help="error constraint as a fraction (paper: 0.24 on TIMIT); default: "
                        "float dev error + --error-margin")
    s.add_argument("--error-margin", type=float, default=0.07,
                   help="default error constraint above the float model's dev error "
                        "(the paper's 24%% was about 7 points above its float PER)")
    s.add_argument("--memory-limit-mb", type=float, default=None,
                   help="memory constraint in MB; default: the paper's limit scaled by "
                        "this model's 16-bit size relative to the paper model's")
    s.add_argument("--error-metric", choices=("phone_error", "frame_error"),
                   default="phone_error", help="error objective measured on the dev set")
    s.add_argument("--chunk-size", type=int, default=2,
                   help="genomes evaluated together (lax.map batch size; small on CPU, "
                        "large on GPU)")
    o = parser.add_argument_group("output")
    o.add_argument("--out", default=defaults.get("out"),
                   help="output folder (pareto.csv/json, archive.csv, report.md, plots)")
    o.add_argument("--resume", action="store_true",
                   help="continue the search checkpointed in --out after a crash or kill")
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
        n_features=corpus.n_features, n_classes=corpus.n_classes, hidden=args.hidden,
        n_layers=args.layers, bidirectional=True, n_proj=args.proj, dropout=0.1,
    )


def load_data(args):
    """The corpus the flags ask for (eSpeak by default, TIMIT with --timit-dir)."""
    name = args.data or ("timit" if args.timit_dir else "espeak")
    if name == "timit":
        if not args.timit_dir:
            raise SystemExit("--data timit needs --timit-dir pointing at your TIMIT copy")
        return load_corpus("timit", timit_dir=args.timit_dir, cache_dir=args.cache_dir,
                           allow_partial=args.timit_partial, verbose=not args.no_progress)
    return load_corpus("espeak", seed=args.data_seed, size=args.espeak_size,
                       cache_dir=args.cache_dir, verbose=not args.no_progress)


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
            [model_config.to_dict(), train_config.to_dict(), train.data_settings(corpus)],
            sort_keys=True, default=str,
        )
        digest = hashlib.sha256(ident.encode()).hexdigest()[:12]
        cache = args.cache_dir or default_cache_dir()
        ckpt_dir = os.path.join(cache, "baselines", f"{corpus.name}-{digest}")
    t0 = time.perf_counter()
    params, info = train.get_or_train_baseline(
        corpus, model_config, train_config, ckpt_dir, retrain=args.retrain_baseline,
        progress=not args.no_progress,
    )
    t_train = time.perf_counter() - t0
    n_cal = min(args.calib_utts, len(corpus.train))
    rng = np.random.default_rng(0)
    cal = pad_batch(corpus.train, rng.choice(len(corpus.train), n_cal, replace=False))
    calib = qmodel.calibrate(
        params, model_config, jnp.asarray(cal.features), jnp.asarray(cal.lengths),
        weight_method=args.calib, act_method=args.calib,
    )
    return Setup(
        corpus=corpus, model_config=model_config, params=params, calib=calib,
        dev_batch=_whole_split(corpus.dev), test_batch=_whole_split(corpus.test),
        baseline_info=info, seconds={"data": t_data, "baseline": t_train},
    )


def objective_bounds(cost_fn, space, objectives, maximize, max_error):
    """(ideal, nadir) per objective: lowest-bit and highest-bit genomes' costs."""
    extremes = np.stack([np.zeros(space.n_genes, np.int32), space.upper.astype(np.int32)])
    costs = {k: np.asarray(v) for k, v in jax.vmap(cost_fn)(jnp.asarray(extremes)).items()}
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
    """The whole MOHAQ experiment for one platform; returns a summary dict."""
    t_start = time.perf_counter()
    setup = prepare(args)
    corpus, cfg = setup.corpus, setup.model_config
    platform = hardware.get_platform(platform_name)
    space = genome_lib.get_space(platform.space_name, layer_specs(cfg))
    cost_fn = platform.make_cost_fn(space)
    evaluator = PopulationEvaluator(
        cfg, space, corpus.fold39, setup.params, setup.calib, chunk_size=args.chunk_size,
        pop_size=args.offspring,
    )
    float_space = genome_lib.tied_space(space.layers, (32,), "float")
    float_eval = PopulationEvaluator(cfg, float_space, corpus.fold39, setup.params,
                                     setup.calib, chunk_size=None)
    zero = np.zeros((1, float_space.n_genes), np.int32)
    float_dev = float_eval(zero, setup.dev_batch)[args.error_metric][0]
    float_test = float_eval(zero, setup.test_batch)[args.error_metric][0]
    max_error = args.max_error if args.max_error is not None else float_dev + args.error_margin
    memory_limit = (args.memory_limit_mb if args.memory_limit_mb is not None
                    else default_memory_limit(platform, space, cfg))
    memory_limit = float(memory_limit) if np.isfinite(memory_limit) else None
    search_config = mohaq.SearchConfig(
        objectives=tuple(objectives), maximize=tuple(maximize), pop_size=args.pop,
        n_offspring=args.offspring, n_generations=args.generations, seed=args.seed,
        max_error=float(max_error), memory_limit_mb=memory_limit,
        error_metric=args.error_metric, budget=args.budget,
    )
    ideal, nadir = objective_bounds(cost_fn, space, objectives, maximize, max_error)
    problem = mohaq.QuantizationProblem(
        evaluator, cost_fn, setup.dev_batch, search_config, ideal, nadir
    )
    os.makedirs(args.out, exist_ok=True)
    result = mohaq.run_search(problem, args.out, resume=args.resume,
                              progress=not args.no_progress)
    front = np.flatnonzero(result.front)
    test = (problem.errors(result.genomes[front], setup.test_batch) if len(front)
            else {args.error_metric: np.zeros(0)})
    test_metrics = {"error": test[args.error_metric]}
    g16 = space.upper[None].astype(np.int32)
    r16 = problem.evaluate(g16)
    t16 = problem.errors(g16, setup.test_batch)[args.error_metric][0]
    baselines = [
        {"name": "float32", "dev_error": float(float_dev), "test_error": float(float_test),
         "notes": "no quantization"},
        {"name": "all 16-bit", "dev_error": float(r16["error"][0]), "test_error": float(t16),
         "notes": f"speedup {r16['speedup'][0]:.3g}, memory {r16['memory_mb'][0]:.4g} MB"},
    ]
    settings = {
        "platform": platform_name, "space": space.name, "data": corpus.name,
        "synthetic_data": bool(corpus.synthetic), "model_config": cfg.to_dict(),
        "search_config": search_config.to_dict(), "calibration": args.calib,
        "baseline_checkpoint": setup.baseline_info.get("path"),
        "seconds": {**setup.seconds, "search": result.seconds,
                    "total": time.perf_counter() - t_start},
        "ideal": ideal.tolist(), "nadir": nadir.tolist(),
    }
    extra = extra_report(problem, result, setup) if extra_report else []
    paths = report.write_outputs(
        args.out, space, result, objectives, test_metrics, baselines, settings,
        notice=corpus.notice if corpus.synthetic else "", title=title,
        extra_sections=extra,
    )
    summary = {"out": args.out, "n_pareto": int(len(front)),
               "n_evaluated": int(len(result.genomes)), "files": paths,
               "baselines": baselines, "seconds": settings["seconds"]}
    if not args.no_progress:
        print(f"\n{title}: {len(front)} Pareto solutions from {len(result.genomes)} genomes "
              f"in {settings['seconds']['total']:.0f} s -> {args.out}/report.md")
        if corpus.synthetic:
            print(corpus.notice)
    return summary
