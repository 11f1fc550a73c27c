"""Markdown sections of the experiment reports (they compute and train nothing).

The pipeline (:mod:`mohaq_jax.orchestration.pipeline`) measures; these functions only format what it
measured: the compression sweep, the beacons, and the inference-only vs beacon-based
comparison. The files of one search are written by :mod:`mohaq_jax.search.report`.
"""

from __future__ import annotations

import numpy as np

from mohaq_jax.search import hypervolume
from mohaq_jax.search.report import bits_words


def compression_section(space, sweep: dict, best: dict | None, margin: float) -> list:
    """Uniform-bit sweep table and the largest compression within ``margin``."""
    lines = [
        "## Uniform weight bits (activations 16-bit)",
        "",
        "| weight bits | compression (x) | memory (MB) | dev error | test error |",
        "|---|---|---|---|---|",
    ]
    dev = sweep["dev"]
    for i, b in enumerate(sweep["bits"]):
        lines.append(
            f"| {b} | {dev['compression'][i]:.2f} | {dev['memory_mb'][i]:.4g} "
            f"| {dev['error'][i]:.4f} | {sweep['test'][i]:.4f} |"
        )
    lines += [
        "",
        f"## Largest compression within {margin:.3f} of the 16-bit error",
        "",
    ]
    if best is not None and best.get("index") is not None:
        lines += [
            f"- **{best['compression']:.2f}x** over float32 "
            f"({best['memory_mb']:.4g} MB): dev error {best['dev_error']:.4f} "
            f"(16-bit: {best['reference']:.4f}), test error {best['test_error']:.4f}",
            f"- bits: {bits_words(space, best['genome'])}",
            "- the paper reports 8x without significant error increase on TIMIT",
        ]
    else:
        lines.append("- no evaluated genome stayed within the margin")
    return lines


def algorithm_rows(problem, results: dict, target: str) -> list[dict]:
    """One row per search run on ``problem`` (name -> ``SearchResult``): distinct
    genomes evaluated, feasible ones, the best feasible value of ``target`` and its dev
    error, the feasible front and its normalized hypervolume, wall time."""
    maximized = target in problem.config.maximize
    rows = []
    for name, result in results.items():
        m, ok = result.metrics, result.feasible
        objectives, _ = problem.fitness(m)
        ref = np.ones(objectives.shape[1], np.float32)
        hv = float(hypervolume.hypervolume(objectives, ref, np.asarray(result.front)))
        best = None
        if ok.any():
            values = np.where(ok, m[target], -np.inf if maximized else np.inf)
            best = int(np.argmax(values) if maximized else np.argmin(values))
        rows.append(
            {
                "algorithm": name,
                "evaluated": int(len(result.genomes)),
                "feasible": int(ok.sum()),
                "front": int(result.front.sum()),
                "hypervolume": hv,
                "best": None if best is None else float(m[target][best]),
                "best_error": None if best is None else float(m["error"][best]),
                "seconds": float(result.seconds),
            }
        )
    return rows


def algorithm_section(rows: list[dict], target: str, maximized: bool) -> list[str]:
    """Markdown: the searches of ``--algorithm`` and ``--compare`` side by side."""
    word = "highest" if maximized else "lowest"
    lines = [
        "## Search algorithms at the same budget",
        "",
        "Same problem, seed, constraints and evaluation budget (distinct genomes); "
        "hypervolume of each run's feasible front in the normalized objectives "
        "(reference point 1). The single-objective algorithms optimize "
        f"{target} ({word} is best) subject to the constraints. Seconds: wall "
        "time of each search; the first one also compiled the evaluator, and later "
        "single-objective ones reuse the scores of genomes an earlier search "
        "evaluated, so they pay only for their new genomes.",
        "",
        f"| algorithm | evaluated | feasible | front | hypervolume | best feasible "
        f"{target} | its dev error | seconds |",
        "|---|---|---|---|---|---|---|---|",
    ]
    for r in rows:
        best = "none" if r["best"] is None else f"{r['best']:.4g}"
        err = "" if r["best_error"] is None else f"{r['best_error']:.4f}"
        lines.append(
            f"| {r['algorithm']} | {r['evaluated']} | {r['feasible']} | {r['front']} "
            f"| {r['hypervolume']:.4f} | {best} | {err} | {r['seconds']:.1f} |"
        )
    return lines


def beacon_section(space, beacons) -> list[str]:
    """Table of the beacons a beacon-based search retrained (its ``BeaconState``)."""
    lines = [
        "## Beacons",
        "",
        "| slot | bits | PTQ dev error | QAT dev error | epochs |",
        "|---|---|---|---|---|",
    ]
    for b in beacons.info:
        lines.append(
            f"| {b['slot']} | {bits_words(space, b['genome'])} | "
            f"{b['ptq_dev_error']:.4f} | {b['qat_dev_error']:.4f} | {b['epochs']} |"
        )
    return lines


def _interval(low, high) -> str:
    return "" if low is None else f" [{100 * low:.2f}, {100 * high:.2f}]"


def compare_searches(
    corpus,
    plain: dict,
    beacons: dict,
    retrained: dict,
    gains: list,
    reading: str = "",
    confidence: float = 0.95,
    resampled: str = "utterances",
) -> list:
    """Report rows: PTQ vs beacon-estimated vs actually-retrained errors, and the gain.

    Every error is the run's one metric (``reading`` names it, e.g. "phone error
    rate, decoded"); each search's solution at a speedup level is chosen on dev and
    its dev and test errors are both reported, the reduction with a paired interval.

    Args:
      corpus: the data (for the synthetic-speech notice).
      plain, beacons: summaries of the inference-only and beacon-based searches.
      retrained: archive index -> dev error after retraining (beacon search).
      gains: :func:`mohaq_jax.orchestration.measure.beacon_gains` rows.
      reading: the error metric in words.
      confidence: level of the intervals.
      resampled: what the intervals resample (the task's examples, plural).
    """
    problem, result = beacons["problem"], beacons["result"]
    space = problem.space
    front = np.flatnonzero(result.front)
    m = result.metrics
    float_dev = beacons["baselines"][0]["dev_error"]
    float_test = beacons["baselines"][0]["test_error"]
    lines = []
    if corpus.synthetic:
        lines += [f"> **{corpus.notice}**", ""]
    lines += [
        "Same seed and budget for both searches. Every error is the "
        f"{reading or 'search error'} (the search's metric, PTQ, beacon estimates and "
        "retrained alike); dev errors unless noted.",
        "",
        "## Final Pareto set of the beacon-based search",
        "",
        "| # | bits | speedup | PTQ error | beacon-estimated error | retrained error |",
        "|---|---|---|---|---|---|",
    ]
    order = front[np.argsort(m["error"][front], kind="stable")]
    for n, i in enumerate(order):
        r = retrained.get(int(i))
        lines.append(
            f"| {n} | {bits_words(space, result.genomes[i])} | {m['speedup'][i]:.3g} | "
            f"{m['ptq_error'][i]:.4f} | {m['error'][i]:.4f} | "
            f"{'' if r is None else f'{r:.4f}'} |"
        )
    pct = f"{100 * confidence:g} %"
    lines += [
        "",
        "## Error increase over the float model at equal speedup",
        "",
        "At each speedup level each search's solution is its front's lowest-dev-error "
        "genome with at least that speedup, with the model (PTQ or its beacon's) "
        "chosen on dev; the test columns score those same models on test. Increases "
        f"in points over the float model (dev {100 * float_dev:.2f}, test "
        f"{100 * float_test:.2f}); reduction = inference-only minus beacon-based, "
        f"with its paired {pct} bootstrap interval over {resampled}.",
        "",
        "| speedup >= | dev: inference-only | dev: beacon-based | dev reduction "
        "| test: inference-only | test: beacon-based | test reduction |",
        "|---|---|---|---|---|---|---|",
    ]
    for g in gains:
        lines.append(
            f"| {g['speedup']:.3g} | {100 * (g['dev_plain'] - float_dev):.2f} "
            f"| {100 * (g['dev_beacon'] - float_dev):.2f} "
            f"| {100 * g['dev_reduction']:.2f}"
            f"{_interval(g['dev_low'], g['dev_high'])} "
            f"| {100 * (g['test_plain'] - float_test):.2f} "
            f"| {100 * (g['test_beacon'] - float_test):.2f} "
            f"| {100 * g['test_reduction']:.2f}"
            f"{_interval(g['test_low'], g['test_high'])} |"
        )
    lines += ["", _gain_sentence(gains, pct), ""]
    lines += [
        f"- beacons retrained: {result.state.extra.count}; inference-only run: "
        f"{plain['out']}/report.md; beacon run: {beacons['out']}/report.md",
    ]
    return lines


def _gain_sentence(gains: list, pct: str) -> str:
    """The headline: the largest dev reduction and what it is on test."""
    if not gains:
        return "No speedup level is reached by both searches: no comparison."
    best = max(gains, key=lambda g: g["dev_reduction"])
    test = best["test_reduction"]
    sentence = (
        f"**Largest dev reduction: {100 * best['dev_reduction']:.2f} points at "
        f"speedup >= {best['speedup']:.3g}; on test the same models differ by "
        f"{100 * test:.2f} points"
    )
    if best["test_low"] is not None:
        sentence += (
            f" ({pct} interval {_interval(best['test_low'], best['test_high'])})"
        )
        if best["test_low"] > 0:
            sentence += ": beacons reduce the test error at this level**"
        elif best["test_high"] < 0:
            sentence += ": beacons increase the test error at this level**"
        else:
            sentence += (
                ": on test the gain is not distinguishable from zero at this "
                "confidence**"
            )
    else:
        sentence += "**"
    return sentence + " (the paper: up to 4.9 points on Bitfusion, TIMIT)."
