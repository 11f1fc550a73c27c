"""The MOHAQ experiment pipeline, for every task: prepare -> problem -> searches ->
measure -> report.

:func:`run_mohaq` is the whole experiment as a short list of named steps. Only the
first one is task-specific: the experiment's ``prepare`` (speech:
:func:`mohaq_jax.orchestration.prepare.prepare`; images: :func:`mohaq_jax.orchestration.vision_search.prepare`)
gives the data, the error metric's evaluator settings, the float model and its
calibration (:class:`~mohaq_jax.orchestration.prepare.Setup`). Then the problem
(:func:`~mohaq_jax.orchestration.problem_builder.build_problem`: platform, genome space, batched
evaluator, constraints), the search of ``--algorithm`` and each of ``--compare``
(:func:`~mohaq_jax.search.mohaq.run_search`, checkpointed every generation), the
measurements (:mod:`mohaq_jax.orchestration.measure`: test errors, bootstrap intervals, the 16-bit
baseline, the compression sweep) and the files (:mod:`mohaq_jax.orchestration.reporting`,
:func:`mohaq_jax.search.report.write_outputs`), which train and evaluate nothing. With
beacons it runs an inference-only and a beacon-based search with the same seed and
budget, retrains a few Pareto solutions to check the beacon estimates, and compares
the two. Every function takes the :class:`~mohaq_jax.settings.config.ExperimentConfig`.
"""

from __future__ import annotations

import os
import time

import numpy as np

from mohaq_jax.evaluation.evaluate import task_of
from mohaq_jax.numerics import metrics
from mohaq_jax.orchestration import reporting
from mohaq_jax.orchestration.measure import (
    beacon_gains,
    best_within_margin,
    compression_sweep,
    error_intervals,
    test_errors,
)
from mohaq_jax.orchestration.prepare import Setup
from mohaq_jax.orchestration.problem_builder import (
    Assembled,
    SearchExperiment,
    beacon_config,
    build_problem,
)
from mohaq_jax.runtime import atomic, sharding
from mohaq_jax.runtime.console import say
from mohaq_jax.search import compilation, mohaq, report
from mohaq_jax.search.beacon import BeaconConfig
from mohaq_jax.search.scalarized import target_objective
from mohaq_jax.search.sensitivity_report import sensitivity_section
from mohaq_jax.settings import config as config_lib
from mohaq_jax.settings.config import ExperimentConfig

__all__ = ["retrain_front", "run_mohaq", "run_searches", "search_one"]


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
    setup = experiment.prepare(cfg)
    if not cfg.beacons.enabled:
        out = cfg.output.out
        return search_one(cfg, setup, experiment, out, experiment.title, t_start)
    return inference_vs_beacons(cfg, setup, experiment, t_start)


def inference_vs_beacons(cfg, setup: Setup, experiment, t_start: float) -> dict:
    """An inference-only and a beacon-based search of one problem, compared."""
    out, title = cfg.output.out, experiment.title
    plain = search_one(
        cfg,
        setup,
        experiment,
        os.path.join(out, "inference_only"),
        f"{title}: inference-only",
        t_start,
    )
    bcfg = beacon_config(cfg)
    with_beacons = search_one(
        cfg,
        setup,
        experiment,
        os.path.join(out, "beacons"),
        f"{title}: beacon-based",
        t_start,
        beacon_config=bcfg,
    )
    retrained = retrain_front(cfg, setup, with_beacons, bcfg)
    gains = beacon_gains(cfg, setup, plain, with_beacons)
    comparison = reporting.compare_searches(
        setup.corpus,
        plain,
        with_beacons,
        retrained,
        gains,
        metrics.error_reading(cfg.search.error_metric, setup.per_mode),
        cfg.search.confidence,
        f"{task_of(plain['problem'].evaluator.config).example_name}s",
    )
    path = os.path.join(out, "report.md")
    if sharding.is_main_process():
        heading = f"# {title}: inference-only vs beacon-based"
        atomic.write_text(path, "\n".join([heading, ""] + comparison) + "\n")
    if cfg.output.progress:
        print("\n".join(comparison[:12]))
        print(f"-> {path}")
    return {
        "inference_only": plain,
        "beacons": with_beacons,
        "retrained": retrained,
        "gains": gains,
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
    # The beacons' QAT settings: monitored and reported in the search's metric.
    _, info = problem.qat(result.genomes[verify], bcfg.epochs, cfg.output.progress)
    errors = info[f"dev_{problem.rate}"]
    return {int(i): float(e) for i, e in zip(verify, errors, strict=True)}


def run_searches(cfg: ExperimentConfig, built: Assembled, out_dir: str) -> dict:
    """The search of ``--algorithm`` (checkpointed in ``out_dir``; ``--resume``), then
    each of ``--compare`` on the same problem, seed and budget, each starting from
    the scores of the one before (no genome evaluated twice; each compared run is the
    algorithm's plain search, no surrogate or proxy seeding). Returns name ->
    :class:`~mohaq_jax.search.mohaq.SearchResult`, ``--algorithm`` first."""
    s, progress = cfg.search, cfg.output.progress
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
        f"search: {s.algorithm} on {built.platform.name}, population {s.pop}, "
        f"{s.offspring} offspring x {s.generations} generations (NSGA-II's budget); "
        "the first population compiles the evaluator",
    )
    runs = {
        s.algorithm: mohaq.run_search(
            built.problem,
            out_dir if main else None,
            resume=cfg.output.resume,
            progress=progress and main,
            algorithm=s.algorithm,
        )
    }
    for name in config_lib.compared(s):
        say(progress, f"--compare: {name} on the same problem, seed and budget")
        runs[name] = mohaq.run_search(
            built.problem,
            progress=progress and main,
            algorithm=name,
            problem_state=list(runs.values())[-1].state,
            assist=False,
        )
    return runs


def measure_front(cfg, setup: Setup, built: Assembled, result, beacon_cfg):
    """The Pareto set's test errors and intervals, and the baselines' rows (float
    model, every gene at its highest bit-width)."""
    problem, metric = built.problem, cfg.search.error_metric
    front = np.flatnonzero(result.front)
    say(
        cfg.output.progress,
        f"test split: re-evaluating {len(front)} Pareto solution(s)",
    )
    genomes = result.genomes[front]
    if len(front) and beacon_cfg is not None:
        test_err = test_errors(problem, result.state, genomes, setup.test_batch)
    elif len(front):
        test_err = problem.errors(genomes, setup.test_batch)[metric]
    else:
        test_err = np.zeros(0)
    intervals = error_intervals(
        cfg, setup, problem, result.state, genomes, built.float_eval, beacon_cfg
    )
    top = problem.space.upper[None].astype(np.int32)
    _, dev_top = problem.evaluate(result.state, top)
    test_top = problem.errors(top, setup.test_batch)[metric][0]
    notes = [  # the platform's declared metrics, nothing made up
        f"{m} {dev_top[m][0]:.4g} {built.platform.metric(m).unit}"
        + (" (placeholder constants)" if built.platform.metric(m).placeholder else "")
        for m in built.platform.metric_names()
        if m in dev_top
    ]
    top_bits = max(max(v) for v in problem.space.gene_values)
    baselines = [
        {
            "name": "float32",
            "dev_error": float(built.float_dev),
            "test_error": float(built.float_test),
            "notes": "no quantization",
        },
        {
            "name": f"all {top_bits}-bit",
            "dev_error": float(dev_top["error"][0]),
            "test_error": float(test_top),
            "notes": ", ".join(notes),
        },
    ]
    if intervals is not None:
        for split in ("dev", "test"):
            f = intervals[split]["float"]
            baselines[0][f"{split}_ci"] = [float(f["low"][0]), float(f["high"][0])]
    return test_err, intervals, baselines


def run_settings(cfg, setup: Setup, experiment, built: Assembled) -> dict:
    """What the report and ``pareto.json`` state about how the run was set up."""
    decoder = setup.decoder
    return {
        "platform": experiment.platform,
        "space": built.space.name,
        "data": setup.corpus.name,
        "synthetic_data": bool(setup.corpus.synthetic),
        "error_reading": metrics.error_reading(cfg.search.error_metric, setup.per_mode),
        "sites": [site.name for site in built.space.layers],  # from the model itself
        "placeholders": built.platform.placeholders(),
        "model_config": setup.model_config.to_dict(),
        "search_config": built.search_config.to_dict(),
        "calibration": cfg.search.calib,
        "phone_error_read_by": setup.per_mode,
        "decoder": None
        if decoder is None
        else {
            "lm_weight": float(decoder.lm_weight),
            "insertion_penalty": float(decoder.insertion_penalty),
            "states_per_phone": int(decoder.n_states),
        },
        "baseline_checkpoint": setup.baseline_info.get("path"),
        "ideal": built.ideal.tolist(),
        "nadir": built.nadir.tolist(),
        **setup.report_settings,
    }


def extra_sections(cfg, setup, experiment, built, runs, settings, beacon_cfg, out_dir):
    """The report's task-specific sections: compression sweep, the compared
    algorithms, the sensitivity proxy's fidelity, the beacons. Returns ``(markdown
    lines, sweep or None)``."""
    problem, result = built.problem, runs[cfg.search.algorithm]
    extra, sweep = [], None
    if experiment.sweep_bits:
        sweep = compression_sweep(problem, result.state, setup, experiment.sweep_bits)
        best = best_within_margin(problem, result, setup, sweep, experiment.margin)
        extra = reporting.compression_section(
            built.space, sweep, best, experiment.margin
        )
    if len(runs) > 1:
        target = target_objective(experiment.objectives, experiment.maximize)
        rows = reporting.algorithm_rows(problem, runs, target)
        settings["compared"] = rows
        maximized = target in experiment.maximize
        extra = list(extra) + reporting.algorithm_section(rows, target, maximized)
    if beacon_cfg is None:  # the additive proxy's fidelity on this search's archive
        say(cfg.output.progress, "sensitivity stage: the additive proxy's fidelity")
        sens = sensitivity_section(
            problem,
            result,
            out_dir if sharding.is_main_process() else None,
            problem.config.surrogate,
            problem.config.seed_proxy,
        )
        settings["sensitivity"] = sens.summary
        extra = list(extra) + sens.lines
    if beacon_cfg is not None:
        settings["beacon_config"] = beacon_cfg.to_dict()
        extra = list(extra) + reporting.beacon_section(built.space, result.state.extra)
    return extra, sweep


def search_one(
    cfg: ExperimentConfig,
    setup: Setup,
    experiment: SearchExperiment,
    out_dir: str,
    title: str,
    t_start: float,
    beacon_config: BeaconConfig | None = None,
) -> dict:
    """One search (inference-only, or beacon-based with ``beacon_config``) and its
    files: problem -> searches -> measure -> report."""
    clock = setup.clock
    with clock.phase("problem"):  # evaluators, the float model on dev and test
        built = build_problem(cfg, setup, experiment, beacon_config)
    os.makedirs(out_dir, exist_ok=True)
    with clock.phase("search"):
        runs = run_searches(cfg, built, out_dir)
    result = runs[cfg.search.algorithm]
    with clock.phase("measure"):  # test errors and intervals of the front
        test_err, intervals, baselines = measure_front(
            cfg, setup, built, result, beacon_config
        )
    settings = run_settings(cfg, setup, experiment, built)
    with clock.phase("report_sections"):  # sweep, comparisons, proxy fidelity
        extra, sweep = extra_sections(
            cfg, setup, experiment, built, runs, settings, beacon_config, out_dir
        )
    if cfg.output.export_qwix:  # qwix's PTQ of every Pareto solution, beside ours
        from mohaq_jax.adapt import deploy

        with clock.phase("export_qwix"):
            extra = list(extra) + deploy.front_section(
                cfg,
                setup,
                built.problem,
                result,
                test_err,
                intervals,
                out_dir if sharding.is_main_process() else None,
            )
    settings["seconds"] = {
        **clock.seconds,
        "search": result.seconds,  # every session of a resumed search
        "search_this_session": clock.seconds["search"],
        "total": time.perf_counter() - t_start,
    }
    settings["peak_rss_gb"] = dict(clock.peak_rss_gb)
    paths = write_files(
        cfg, setup, experiment, built, result, out_dir, title, extra, sweep,
        test_err, baselines, settings, intervals,
    )  # fmt: skip
    summary = {
        "out": out_dir,
        "n_pareto": int(result.front.sum()),
        "n_evaluated": int(len(result.genomes)),
        "n_evaluations": int(result.history[-1]["n_evaluations"]),
        "intervals": intervals,
        "files": paths,
        "baselines": baselines,
        "seconds": settings["seconds"],
        "problem": built.problem,
        "result": result,
        "runs": runs,
        "test_error": test_err,
        "sweep": sweep,
    }
    announce(cfg, setup, title, summary)
    return summary


def write_files(
    cfg, setup, experiment, built, result, out_dir, title, extra, sweep,
    test_err, baselines, settings, intervals,
) -> dict:  # fmt: skip
    """The run's files (report.md, CSV, JSON, plots) from the main process; their
    paths ({} elsewhere)."""
    if not sharding.is_main_process():
        return {}
    return report.write_outputs(
        out_dir,
        built.space,
        result,
        experiment.objectives,
        {"error": test_err},
        baselines,
        settings,
        notice=setup.corpus.notice if setup.corpus.synthetic else "",
        title=title,
        extra_sections=extra,
        details=report.Details(
            float_dev=float(built.float_dev),
            max_error=float(built.max_error),
            memory_limit_mb=built.memory_limit,
            error_metric=cfg.search.error_metric,
            intervals=intervals,
            confidence=cfg.search.confidence,
            resampled=f"{task_of(built.problem.evaluator.config).example_name}s",
            sweep=sweep,
            placeholders=built.platform.placeholders(),
        ),
    )


def announce(cfg, setup: Setup, title: str, summary: dict) -> None:
    """The run's last console lines: front size, counts, time, where the files are."""
    if not cfg.output.progress:
        return
    counts = report.counts_words(summary["n_evaluations"], summary["n_evaluated"])
    print(
        f"\n{title}: {summary['n_pareto']} Pareto solutions; {counts}, "
        f"{summary['seconds']['total']:.0f} s in all -> {summary['out']}/report.md"
    )
    if setup.corpus.synthetic:
        print(setup.corpus.notice)
