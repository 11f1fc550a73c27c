"""Files a search leaves behind: CSV/JSON Pareto set, archive, report, plots, configs.

Layout of an output folder (``python -m experiments.timit_silago --out DIR``)::

    pareto.csv, pareto.json   final Pareto set: genome, bits per layer, one column per
                              gene (bits_<gene>), every objective, error on dev and
                              test with bootstrap confidence intervals and whether it
                              is indistinguishable from the float model
    archive.csv               every evaluated genome, in evaluation order
    report.md                 table like the paper's, float baseline, settings, run time
    pareto_*.png              Pareto front projections (pairs of objectives), with
                              constraints, float model, intervals
    hypervolume.png           hypervolume per generation
    configs/solution_N.json   per-layer bits of each Pareto solution, ready to deploy
"""

from __future__ import annotations

import csv
import dataclasses
import json
import os
from collections.abc import Mapping, Sequence
from typing import Any

import numpy as np

from mohaq_jax.evaluation.genome import GenomeSpace
from mohaq_jax.runtime import atomic
from mohaq_jax.search.plots import axis_label, plot_fronts, plot_history


@dataclasses.dataclass(frozen=True)
class Details:
    """What the report states besides the search result (measured by the pipeline)."""

    float_dev: float  # the float model's dev error
    max_error: float  # error constraint (dev error <= this)
    memory_limit_mb: float | None  # memory constraint (None: none)
    error_metric: str = "phone_error"  # what "error" is
    # {"dev"|"test": {"float": {...}, "genomes": {...}}} from bootstrap.split_intervals,
    # genome arrays in archive order of the Pareto set (None: no intervals)
    intervals: dict | None = None
    confidence: float = 0.95  # level of the intervals
    resampled: str = "utterances"  # what the intervals resample (the task's examples)
    sweep: dict | None = (
        None  # compression: uniform-bit sweep (pipeline.compression_sweep)
    )
    # metric -> why its numbers rest on placeholder constants (Platform.placeholders)
    placeholders: dict | None = None


def counts_words(n_evaluations: int, n_unique: int) -> str:
    """The one way counts are said: ``"N evaluations (U unique genomes)"``."""
    return f"{n_evaluations} evaluations ({n_unique} unique genomes)"


def bits_words(space: GenomeSpace, genome) -> str:
    """Bits per layer in words: ``"sru1 w8/a8, proj1 w4/a4, ..."``."""
    return ", ".join(
        f"{name} w{b['w']}/a{b['a']}" for name, b in space.describe(genome).items()
    )


def _rows(space, genomes, metrics, extra_cols: Mapping[str, np.ndarray]) -> list[dict]:
    rows = []
    for i, g in enumerate(genomes):
        row = {"genome": " ".join(str(int(v)) for v in g), "bits": bits_words(space, g)}
        for gene, (name, values) in enumerate(
            zip(space.gene_names, space.gene_values, strict=True)
        ):
            row[f"bits_{name}"] = int(values[int(g[gene])])
        for name, col in extra_cols.items():
            row[name] = col[i].item() if hasattr(col[i], "item") else col[i]
        for name in sorted(metrics):
            row[name] = float(metrics[name][i])
        rows.append(row)
    return rows


def write_csv(path: str, rows: Sequence[dict]) -> None:
    if not rows:
        atomic.write_text(path, "")
        return
    with atomic.atomic_open(path, "w", newline="") as f:
        writer = csv.DictWriter(f, fieldnames=list(rows[0]))
        writer.writeheader()
        writer.writerows(rows)


def _fmt(v: Any) -> str:
    if isinstance(v, float):
        return f"{v:.4g}"
    return str(v)


def _front_ci(details: Details | None, rank_of, order) -> dict | None:
    """Intervals of the Pareto set in report ``order`` (None: none)."""
    if details is None or details.intervals is None:
        return None
    ranks = [rank_of[int(i)] for i in order]
    out = {}
    for split, res in details.intervals.items():
        g = res["genomes"]
        out[split] = {
            "low": np.asarray(g["low"])[ranks],
            "high": np.asarray(g["high"])[ranks],
            "same": np.asarray(g["same_as_reference"], bool)[ranks],
        }
    return out


def _constraint_lines(details: Details | None) -> list[str]:
    if details is None:
        return []
    memory = (
        f"memory <= {details.memory_limit_mb:.4g} MB"
        if details.memory_limit_mb is not None
        else "no memory constraint"
    )
    return [
        "## Constraints",
        "",
        f"- dev {details.error_metric.replace('_', ' ')} <= {details.max_error:.4f} "
        f"(the float model's dev error is {details.float_dev:.4f}; --max-error or "
        "--error-margin set it)",
        f"- {memory} (--memory-limit-mb)",
        "- a genome breaking either is infeasible: listed in archive.csv, never in "
        "the Pareto set",
        "",
    ]


def _run_lines(settings: Mapping[str, Any], details: Details | None) -> list[str]:
    """What was measured, on what: the error's reading, the data's provenance, the
    sites searched and the metrics that rest on placeholder constants."""
    lines = []
    if settings.get("error_reading"):
        lines.append(f"- errors: {settings['error_reading']}")
    data = settings.get("data_provenance")
    if data:
        sizes = ", ".join(
            f"{name} {s['utterances']} utterances / {s['speakers']} speakers"
            for name, s in data["splits"].items()
        )
        kind = "synthesized speech" if data["synthetic"] else "real speech"
        where = f" from {data['folder']}" if data.get("folder") else ""
        lines.append(
            f"- data: {data['corpus']} ({kind}, {data['extent']}){where}; {sizes}"
        )
    if settings.get("sites"):
        lines.append(
            f"- sites searched ({len(settings['sites'])}, from the model): "
            + ", ".join(settings["sites"])
        )
    for name, why in ((details.placeholders if details else None) or {}).items():
        lines.append(f"- **{name} rests on PLACEHOLDER constants**: {why}")
    return lines + ([""] if lines else [])


def _ci_words(low, high) -> str:
    return f"[{low:.4f}, {high:.4f}]"


def write_outputs(
    out_dir: str,
    space: GenomeSpace,
    result,
    objectives: Sequence[str],
    test_metrics: Mapping[str, np.ndarray],
    baselines: Sequence[dict],
    settings: Mapping[str, Any],
    notice: str = "",
    title: str = "MOHAQ search",
    extra_sections: Sequence[str] = (),
    details: Details | None = None,
) -> dict[str, str]:
    """Writes every output file of a search.

    Args:
      out_dir: folder (created).
      space: genome space of the search.
      result: :class:`~mohaq_jax.search.mohaq.SearchResult`.
      objectives: objective names shown in tables and plots.
      test_metrics: metrics of the Pareto set (front order) on the test split, at least
        ``error``.
      baselines: rows ``{"name", "dev_error", "test_error", ...}`` (float model, ...);
        optional ``dev_ci``/``test_ci`` ``[low, high]``.
      settings: run settings for the report.
      notice: e.g. a statement that the data is synthesized speech, not TIMIT.
      title: report title.
      extra_sections: markdown paragraphs appended to the report.
      details: constraints, float error, confidence intervals, sweep (None: a plain
        report without them).

    Returns:
      name -> path of the files written.
    """
    os.makedirs(os.path.join(out_dir, "configs"), exist_ok=True)
    paths = {}
    metrics = result.metrics  # only what the platform declares (no placeholders)
    front_idx = np.flatnonzero(result.front)
    order = front_idx[np.argsort(metrics["error"][front_idx], kind="stable")]
    rank_of = {int(i): r for r, i in enumerate(front_idx)}
    test_err = np.asarray(test_metrics["error"]) if len(front_idx) else np.zeros(0)
    ci = _front_ci(details, rank_of, order)

    archive_rows = _rows(
        space,
        result.genomes,
        metrics,
        {
            "generation": result.generation,
            "feasible": result.feasible,
            "pareto": result.front,
        },
    )
    paths["archive.csv"] = os.path.join(out_dir, "archive.csv")
    write_csv(paths["archive.csv"], archive_rows)

    front_metrics = {k: v[order] for k, v in metrics.items()}
    front_test = np.asarray([test_err[rank_of[int(i)]] for i in order], np.float32)
    columns = {"solution": np.arange(len(order)), "test_error": front_test}
    if ci is not None:
        for split in ("dev", "test"):
            columns[f"{split}_error_ci_low"] = ci[split]["low"]
            columns[f"{split}_error_ci_high"] = ci[split]["high"]
            columns[f"{split}_same_as_float"] = ci[split]["same"]
    pareto_rows = _rows(space, result.genomes[order], front_metrics, columns)
    paths["pareto.csv"] = os.path.join(out_dir, "pareto.csv")
    write_csv(paths["pareto.csv"], pareto_rows)
    doc = {
        "notice": notice,
        "space": space.name,
        "gene_names": list(space.gene_names),
        "objectives": list(objectives),
        "confidence": None if ci is None else details.confidence,
        "settings": dict(settings),
        "baselines": list(baselines),
        "solutions": [
            {
                **row,
                "genome": [int(v) for v in result.genomes[i]],
                "layers": space.describe(result.genomes[i]),
            }
            for row, i in zip(pareto_rows, order, strict=True)
        ],
    }
    paths["pareto.json"] = os.path.join(out_dir, "pareto.json")
    atomic.write_text(
        paths["pareto.json"], json.dumps(doc, indent=1, default=_json_default)
    )
    for n, i in enumerate(order):
        atomic.write_text(
            os.path.join(out_dir, "configs", f"solution_{n}.json"),
            json.dumps(
                {
                    "notice": notice,
                    "space": space.name,
                    "layers": space.describe(result.genomes[i]),
                },
                indent=1,
            ),
        )

    plots = plot_fronts(
        os.path.join(out_dir, "pareto"),
        dataclasses.replace(result, metrics=metrics),
        objectives,
        details,
        order,
        None if ci is None else ci["dev"],
        notice,
    )
    plot_history(os.path.join(out_dir, "hypervolume.png"), result.history)

    feasible = result.feasible
    level = "" if ci is None else f" [{details.confidence:.0%} CI]"
    lines = [f"# {title}", ""]
    if notice:
        lines += [f"> **{notice}**", ""]
    lines += _run_lines(settings, details)
    lines += _constraint_lines(details)
    lines += [
        "## Baselines",
        "",
        f"| model | dev error{level} | test error{level} | notes |",
        "|---|---|---|---|",
    ]
    for b in baselines:
        dev_ci = f" {_ci_words(*b['dev_ci'])}" if "dev_ci" in b else ""
        test_ci = f" {_ci_words(*b['test_ci'])}" if "test_ci" in b else ""
        lines.append(
            f"| {b['name']} | {b['dev_error']:.4f}{dev_ci} | "
            f"{b['test_error']:.4f}{test_ci} | {b.get('notes', '')} |"
        )
    cols = list(objectives) + [
        c for c in ("memory_mb", "compression") if c not in objectives and c in metrics
    ]
    marked = (details.placeholders if details is not None else None) or {}
    ci_head = "" if ci is None else " | dev error CI | test error CI | same as float"
    lines += [
        "",
        f"## Pareto set ({len(order)} solutions, sorted by dev error)",
        "",
        "| # | bits per layer (weights/activations) | "
        + " | ".join(axis_label(c, marked) for c in cols)
        + f" | test error{ci_head} |",
        "|---" * (len(cols) + 3 + (0 if ci is None else 3)) + "|",
    ]
    for n, i in enumerate(order):
        vals = " | ".join(_fmt(float(metrics[c][i])) for c in cols)
        row = f"| {n} | {bits_words(space, result.genomes[i])} | {vals} | {front_test[n]:.4f}"
        if ci is not None:
            same = [s for s in ("dev", "test") if ci[s]["same"][n]]
            row += (
                f" | {_ci_words(ci['dev']['low'][n], ci['dev']['high'][n])} | "
                f"{_ci_words(ci['test']['low'][n], ci['test']['high'][n])} | "
                f"{' and '.join(same) or 'no'}"
            )
        lines.append(row + " |")
    if ci is not None:
        lines += [
            "",
            f"Intervals: {details.confidence:.0%} percentile bootstrap over "
            f"{details.resampled}; "
            "'same as float' = the paired interval of (solution - float model) "
            "contains 0 on that split, i.e. the difference is not significant.",
        ]
    last = result.history[-1]
    lines += [
        "",
        "## Search",
        "",
        f"- {counts_words(int(last['n_evaluations']), len(result.genomes))}, "
        f"{int(feasible.sum())} of the unique genomes feasible; a genome met again is "
        "looked up, not re-evaluated",
        f"- generations: {last['generation']}, final normalized hypervolume "
        f"{last['hypervolume']:.4f}",
        f"- run time: {result.seconds:.1f} s"
        + (" (resumed)" if result.resumed else ""),
        *phase_lines(settings),
        *racing_lines(result.metrics),
        "",
        "| generation | evaluations | feasible so far | best error so far | hypervolume so far |",
        "|---|---|---|---|---|",
    ]
    for h in result.history:
        lines.append(
            f"| {h['generation']} | {h['n_evaluations']} | {h['n_feasible']} | "
            f"{h['best_error']:.4f} | {h['hypervolume']:.4f} |"
        )
    lines += [
        "",
        "## Settings",
        "",
        "```json",
        json.dumps(dict(settings), indent=1, default=_json_default),
        "```",
        "",
    ]
    lines += list(extra_sections)
    lines += ["", "## Plots", ""] + [
        f"![{p}]({p})" for p in plots + ["hypervolume.png"]
    ]
    paths["report.md"] = os.path.join(out_dir, "report.md")
    atomic.write_text(paths["report.md"], "\n".join(lines) + "\n")
    return paths


def phase_lines(settings: Mapping[str, Any]) -> list[str]:
    """The run's phases in this process: wall seconds and the process's peak RSS at
    each phase's end (``settings['seconds']`` / ``['peak_rss_gb']`` of the pipeline)."""
    seconds, rss = settings.get("seconds", {}), settings.get("peak_rss_gb", {})
    if not rss:
        return []
    parts = [f"{name} {seconds[name]:.1f} s / {rss[name]:.2f} GB" for name in rss]
    return [
        "- phases of this process (wall time / peak RSS so far): " + ", ".join(parts)
    ]


def racing_lines(metrics: dict) -> list[str]:
    """What racing saved (no lines when the search did not race)."""
    if "dev_frames" not in metrics:
        return []
    frames = np.asarray(metrics["dev_frames"], np.float64)
    partial = np.asarray(metrics["error_partial"]) > 0
    scored = float(frames.sum())
    whole = float(np.asarray(metrics["dev_frames_full"], np.float64).sum())
    return [
        f"- racing: {int(partial.sum())} of {len(frames)} unique genomes stopped "
        "early, above the error constraint at `--race-confidence` or over the memory "
        "limit (exact, after the first batch); their error in archive.csv is the "
        "partial estimate over the frames they were scored on, `error_partial` = 1; "
        "dev frames scored "
        f"{scored:.0f} of {whole:.0f}: racing saved {100 * (1 - scored / whole):.1f} %"
    ]


def _json_default(value):
    if isinstance(value, np.generic):
        return value.item()
    if isinstance(value, np.ndarray):
        return value.tolist()
    return str(value)
