"""The MOHAQ experiment pipeline: data -> baseline -> calibration -> search -> test.

:func:`run_mohaq` prepares data, the float baseline and calibration once
(:mod:`mohaq_jax.prepare`), builds the batched population evaluator and the platform's
cost model, runs the NSGA-II search (checkpointed every generation), re-evaluates the
Pareto set on the test split (with bootstrap confidence intervals,
:mod:`mohaq_jax.bootstrap`) and hands everything to the report writers
(:mod:`mohaq_jax.reporting`, :mod:`mohaq_jax.search.report`), which train and evaluate
nothing. With beacons it runs an inference-only and a beacon-based search with the same
seed and budget, retrains a few Pareto solutions to check the beacon estimates, and
compares the two. Every function takes the :class:`~mohaq_jax.config.ExperimentConfig`.
"""

from __future__ import annotations

import os
import time

import jax
import jax.numpy as jnp
import numpy as np

from mohaq_jax import config as config_lib
from mohaq_jax import reporting, sharding, train
from mohaq_jax.config import ExperimentConfig
from mohaq_jax.measure import (
    best_within_margin,
    compression_sweep,
    error_intervals,
    test_errors,
)
from mohaq_jax.prepare import Setup, prepare, say
from mohaq_jax.problem_builder import (  # noqa: F401 (SearchExperiment: re-exported)
    SearchExperiment,
    beacon_config,
    build_problem,
)
from mohaq_jax.search import compilation, mohaq, report, single_objective
from mohaq_jax.search.beacon import BeaconConfig
from mohaq_jax.search.sensitivity_report import sensitivity_section


def run_mohaq(cfg: ExperimentConfig, experiment: SearchExperiment) -> dict:
    """The whole MOHAQ experiment for one platform; returns a summary dict.

    With ``cfg.beacons.enabled`` it runs the inference-only search in
    ``OUT/inference_only`` and the beacon-based one in ``OUT/beacons`` (same seed and
    budget), retrains ``--verify-retrain`` Pareto solutions of the beacon search, and
    writes a comparison to ``OUT/report.md``.
    """
    t_start = time.perf_counter()
    sharding.initialize_distributed()
    compilation.enable_compilation_cache(  # a rerun compiles nothing
        os.path.join(cfg.data.cache_dir, "jax_cache") if cfg.data.cache_dir else None
    )
    setup = prepare(cfg)
    out = cfg.output.out
    if not cfg.beacons.enabled:
        return search_one(cfg, setup, experiment, out, experiment.title, t_start)
    plain = search_one(
        cfg,
        setup,
        experiment,
        os.path.join(out, "inference_only"),
        f"{experiment.title}: inference-only",
        t_start,
    )
    bcfg = beacon_config(cfg)
    with_beacons = search_one(
        cfg,
        setup,
        experiment,
        os.path.join(out, "beacons"),
        f"{experiment.title}: beacon-based",
        t_start,
        beacon_config=bcfg,
    )
    retrained = retrain_front(cfg, setup, with_beacons, bcfg)
    comparison = reporting.compare_searches(
        setup.corpus, plain, with_beacons, retrained
    )
    path = os.path.join(out, "report.md")
    if sharding.is_main_process():
        report._write_atomic(
            path,
            "\n".join(
                [f"# {experiment.title}: inference-only vs beacon-based", ""]
                + comparison
            )
            + "\n",
        )
    if cfg.output.progress:
        print("\n".join(comparison[:12]))
        print(f"-> {path}")
    return {
        "inference_only": plain,
        "beacons": with_beacons,
        "retrained": retrained,
        "report": path,
    }


def retrain_front(cfg: ExperimentConfig, setup: Setup, summary: dict, bcfg) -> dict:
    """QAT of the ``--verify-retrain`` lowest-error Pareto solutions of a search.

    Returns:
      archive index -> dev error after retraining that genome.
    """
    problem, result = summary["problem"], summary["result"]
    front = np.flatnonzero(result.front)
    order = front[np.argsort(result.metrics["error"][front], kind="stable")]
    verify = order[: max(cfg.beacons.verify, 0)]
    if not len(verify):
        return {}
    say(
        cfg.output.progress,
        f"retraining {len(verify)} Pareto solution(s) ({bcfg.epochs} QAT epochs) to "
        "check the beacon estimates",
    )
    bits_w, bits_a = jax.vmap(problem.space.decode)(jnp.asarray(result.genomes[verify]))
    _, info = train.qat_finetune(
        setup.params,
        setup.model_config,
        setup.calib,
        np.asarray(bits_w),
        np.asarray(bits_a),
        setup.corpus,
        epochs=bcfg.epochs,
        lr=bcfg.lr,
        progress=cfg.output.progress,
    )
    return {int(i): float(e) for i, e in zip(verify, info["dev_per"], strict=True)}


def run_algorithm(
    problem, name: str, out_dir, resume: bool, progress: bool, state=None
):
    """One search of ``problem`` by ``name`` (NSGA-II, checkpointed in ``out_dir``
    when given, or an evosax single-objective algorithm at the same budget, starting
    from the problem ``state`` of an earlier search when given: shared scores)."""
    if name == "nsga2":
        main = sharding.is_main_process()
        return mohaq.run_search(
            problem, out_dir, resume=resume, progress=progress and main
        )
    return single_objective.run_problem(problem, name, state=state)


def search_one(
    cfg: ExperimentConfig,
    setup: Setup,
    experiment: SearchExperiment,
    out_dir: str,
    title: str,
    t_start: float,
    beacon_config: BeaconConfig | None = None,
) -> dict:
    """One search (inference-only, or beacon-based with ``beacon_config``) and its files."""
    progress = cfg.output.progress
    corpus, model_cfg, s = setup.corpus, setup.model_config, cfg.search
    objectives, maximize = experiment.objectives, experiment.maximize
    built = build_problem(cfg, setup, experiment, beacon_config)
    problem, platform, space = built.problem, built.platform, built.space
    float_eval, float_dev, float_test = (
        built.float_eval,
        built.float_dev,
        built.float_test,
    )
    max_error, memory_limit = built.max_error, built.memory_limit
    search_config, ideal, nadir = built.search_config, built.ideal, built.nadir
    os.makedirs(out_dir, exist_ok=True)
    main = sharding.is_main_process()  # only host 0 writes checkpoints and files
    state_path = os.path.join(out_dir, mohaq.STATE_FILE)
    if cfg.output.resume and not os.path.exists(state_path):
        say(
            True,
            f"--resume: no search checkpoint in {out_dir} ({mohaq.STATE_FILE}); "
            "starting from scratch",
        )
    say(
        progress,
        f"search: {s.algorithm} on {platform.name}, population {s.pop}, "
        f"{s.offspring} offspring x {s.generations} generations (NSGA-II's budget); "
        "the first population compiles the evaluator",
    )
    result = run_algorithm(
        problem, s.algorithm, out_dir if main else None, cfg.output.resume, progress
    )
    runs = {s.algorithm: result}
    for name in config_lib.compared(s):
        say(progress, f"--compare: {name} on the same problem, seed and budget")
        # Genomes an earlier search scored are not evaluated again (same problem).
        latest = list(runs.values())[-1].state
        runs[name] = run_algorithm(problem, name, None, False, progress, latest)
    front = np.flatnonzero(result.front)
    say(progress, f"test split: re-evaluating {len(front)} Pareto solution(s)")
    if len(front) and beacon_config is not None:
        test_err = test_errors(
            problem, result.state, result.genomes[front], setup.test_batch
        )
    elif len(front):
        test_err = problem.errors(result.genomes[front], setup.test_batch)[
            s.error_metric
        ]
    else:
        test_err = np.zeros(0)
    intervals = error_intervals(
        cfg,
        setup,
        problem,
        result.state,
        result.genomes[front],
        float_eval,
        beacon_config,
    )
    g16 = space.upper[None].astype(np.int32)
    _, r16 = problem.evaluate(result.state, g16)
    t16 = problem.errors(g16, setup.test_batch)[s.error_metric][0]
    notes16 = [  # the platform's declared metrics, nothing made up
        f"{m} {r16[m][0]:.4g} {platform.metric(m).unit}"
        for m in platform.metric_names()
        if m in r16
    ]
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
            "notes": ", ".join(notes16),
        },
    ]
    if intervals is not None:
        for split in ("dev", "test"):
            f = intervals[split]["float"]
            baselines[0][f"{split}_ci"] = [float(f["low"][0]), float(f["high"][0])]
    settings = {
        "platform": experiment.platform,
        "space": space.name,
        "data": corpus.name,
        "synthetic_data": bool(corpus.synthetic),
        "model_config": model_cfg.to_dict(),
        "search_config": search_config.to_dict(),
        "calibration": s.calib,
        "phone_error_read_by": setup.per_mode,
        "decoder": None
        if setup.decoder is None
        else {
            "lm_weight": float(setup.decoder.lm_weight),
            "insertion_penalty": float(setup.decoder.insertion_penalty),
            "states_per_phone": int(setup.decoder.n_states),
        },
        "baseline_checkpoint": setup.baseline_info.get("path"),
        "seconds": {
            **setup.seconds,
            "search": result.seconds,
            "total": time.perf_counter() - t_start,
        },
        "ideal": ideal.tolist(),
        "nadir": nadir.tolist(),
    }
    sweep = None
    if experiment.sweep_bits:
        sweep = compression_sweep(problem, result.state, setup, experiment.sweep_bits)
    extra = []
    if sweep is not None:
        best = best_within_margin(problem, result, setup, sweep, experiment.margin)
        extra = reporting.compression_section(space, sweep, best, experiment.margin)
    if len(runs) > 1:
        target = single_objective.target_objective(objectives, maximize)
        rows = reporting.algorithm_rows(problem, runs, target)
        settings["compared"] = rows
        extra = list(extra) + reporting.algorithm_section(
            rows, target, target in maximize
        )
    if beacon_config is None:  # the proxy's fidelity on this search's archive
        say(progress, "sensitivity stage: the additive proxy's fidelity")
        sens = sensitivity_section(
            problem, result, out_dir if main else None, s.surrogate, s.seed_proxy
        )
        settings["sensitivity"] = sens.summary
        extra = list(extra) + sens.lines
    if beacon_config is not None:
        settings["beacon_config"] = beacon_config.to_dict()
        extra = list(extra) + reporting.beacon_section(space, result.state.extra)
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
            details=report.Details(
                float_dev=float(float_dev),
                max_error=float(max_error),
                memory_limit_mb=memory_limit,
                error_metric=s.error_metric,
                intervals=intervals,
                confidence=s.confidence,
                sweep=sweep,
            ),
        )
    n_evaluations = int(result.history[-1]["n_evaluations"])
    summary = {
        "out": out_dir,
        "n_pareto": int(len(front)),
        "n_evaluated": int(len(result.genomes)),
        "n_evaluations": n_evaluations,
        "intervals": intervals,
        "files": paths,
        "baselines": baselines,
        "seconds": settings["seconds"],
        "problem": problem,
        "result": result,
        "runs": runs,
        "test_error": test_err,
        "sweep": sweep,
    }
    if progress:
        print(
            f"\n{title}: {len(front)} Pareto solutions; "
            f"{report.counts_words(n_evaluations, len(result.genomes))}, "
            f"{settings['seconds']['total']:.0f} s in all -> {out_dir}/report.md"
        )
        if corpus.synthetic:
            print(corpus.notice)
    return summary
