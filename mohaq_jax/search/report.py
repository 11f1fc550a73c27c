"""Files a search leaves behind: CSV/JSON Pareto set, archive, report, plots, configs.

Layout of an output folder (``python -m experiments.timit_silago --out DIR``)::

    pareto.csv, pareto.json   final Pareto set: genome, bits per layer, every objective,
                              error on dev and test
    archive.csv               every evaluated genome, in evaluation order
    report.md                 table like the paper's, float baseline, settings, run time
    pareto_*.png              Pareto front projections (pairs of objectives)
    hypervolume.png           hypervolume per generation
    configs/solution_N.json   per-layer bits of each Pareto solution, ready to deploy
"""

from __future__ import annotations

import csv
import itertools
import json
import os
from collections.abc import Mapping, Sequence
from typing import Any

import matplotlib

matplotlib.use("Agg")
import matplotlib.pyplot as plt  # noqa: E402
import numpy as np  # noqa: E402

from mohaq_jax.genome import GenomeSpace  # noqa: E402

OBJECTIVE_LABELS = {
    "error": "error (dev)",
    "speedup": "speedup (x)",
    "energy_pj": "energy per frame (pJ)",
    "memory_mb": "memory (MB)",
}


def bits_words(space: GenomeSpace, genome) -> str:
    """Bits per layer in words: ``"sru1 w8/a8, proj1 w4/a4, ..."``."""
    return ", ".join(
        f"{name} w{b['w']}/a{b['a']}" for name, b in space.describe(genome).items()
    )


def _write_atomic(path: str, text: str) -> None:
    tmp = f"{path}.tmp"
    with open(tmp, "w") as f:
        f.write(text)
    os.replace(tmp, path)


def _rows(space, genomes, metrics, extra_cols: Mapping[str, np.ndarray]) -> list[dict]:
    rows = []
    for i, g in enumerate(genomes):
        row = {"genome": " ".join(str(int(v)) for v in g), "bits": bits_words(space, g)}
        for name, col in extra_cols.items():
            row[name] = col[i].item() if hasattr(col[i], "item") else col[i]
        for name in sorted(metrics):
            row[name] = float(metrics[name][i])
        rows.append(row)
    return rows


def write_csv(path: str, rows: Sequence[dict]) -> None:
    if not rows:
        _write_atomic(path, "")
        return
    tmp = f"{path}.tmp"
    with open(tmp, "w", newline="") as f:
        writer = csv.DictWriter(f, fieldnames=list(rows[0]))
        writer.writeheader()
        writer.writerows(rows)
    os.replace(tmp, path)


def plot_fronts(
    path_prefix: str, metrics, feasible, front, objectives, notice=""
) -> list[str]:
    """One scatter plot per pair of objectives; returns the file names written."""
    files = []
    for a, b in itertools.combinations(objectives, 2):
        fig, ax = plt.subplots(figsize=(5.5, 4.2))
        x, y = metrics[a], metrics[b]
        ax.scatter(x[~feasible], y[~feasible], s=10, c="lightgray", label="infeasible")
        ax.scatter(
            x[feasible & ~front],
            y[feasible & ~front],
            s=12,
            c="tab:blue",
            alpha=0.6,
            label="feasible",
        )
        ax.scatter(x[front], y[front], s=28, c="tab:red", label="Pareto set")
        ax.set_xlabel(OBJECTIVE_LABELS.get(a, a))
        ax.set_ylabel(OBJECTIVE_LABELS.get(b, b))
        ax.set_title(f"{a} vs {b}" + (f"\n{notice}" if notice else ""), fontsize=9)
        ax.legend(fontsize=7)
        fig.tight_layout()
        name = f"{path_prefix}_{a}_vs_{b}.png"
        fig.savefig(name, dpi=110)
        plt.close(fig)
        files.append(os.path.basename(name))
    return files


def plot_history(path: str, history: Sequence[dict]) -> None:
    gens = [h["generation"] for h in history]
    fig, ax1 = plt.subplots(figsize=(5.5, 3.8))
    ax1.plot(gens, [h["hypervolume"] for h in history], "o-", c="tab:red")
    ax1.set_xlabel("generation")
    ax1.set_ylabel("hypervolume (normalized)", color="tab:red")
    ax2 = ax1.twinx()
    ax2.plot(gens, [h["best_error"] for h in history], "s--", c="tab:blue")
    ax2.set_ylabel("best feasible dev error", color="tab:blue")
    fig.tight_layout()
    fig.savefig(path, dpi=110)
    plt.close(fig)


def _fmt(v: Any) -> str:
    if isinstance(v, float):
        return f"{v:.4g}"
    return str(v)


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
) -> dict[str, str]:
    """Writes every output file of a search.

    Args:
      out_dir: folder (created).
      space: genome space of the search.
      result: :class:`~mohaq_jax.search.mohaq.SearchResult`.
      objectives: objective names shown in tables and plots.
      test_metrics: metrics of the Pareto set (front order) on the test split, at least
        ``error``.
      baselines: rows ``{"name", "dev_error", "test_error", ...}`` (float model, ...).
      settings: run settings for the report.
      notice: e.g. a statement that the data is synthesized speech, not TIMIT.
      title: report title.
      extra_sections: markdown paragraphs appended to the report.

    Returns:
      name -> path of the files written.
    """
    os.makedirs(os.path.join(out_dir, "configs"), exist_ok=True)
    paths = {}
    front_idx = np.flatnonzero(result.front)
    order = front_idx[np.argsort(result.metrics["error"][front_idx], kind="stable")]
    rank_of = {int(i): r for r, i in enumerate(front_idx)}
    test_err = np.asarray(test_metrics["error"]) if len(front_idx) else np.zeros(0)

    archive_rows = _rows(
        space,
        result.genomes,
        result.metrics,
        {
            "generation": result.generation,
            "feasible": result.feasible,
            "pareto": result.front,
        },
    )
    paths["archive.csv"] = os.path.join(out_dir, "archive.csv")
    write_csv(paths["archive.csv"], archive_rows)

    front_metrics = {k: v[order] for k, v in result.metrics.items()}
    front_test = np.asarray([test_err[rank_of[int(i)]] for i in order], np.float32)
    pareto_rows = _rows(
        space,
        result.genomes[order],
        front_metrics,
        {"solution": np.arange(len(order)), "test_error": front_test},
    )
    paths["pareto.csv"] = os.path.join(out_dir, "pareto.csv")
    write_csv(paths["pareto.csv"], pareto_rows)
    doc = {
        "notice": notice,
        "space": space.name,
        "gene_names": list(space.gene_names),
        "objectives": list(objectives),
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
    _write_atomic(
        paths["pareto.json"], json.dumps(doc, indent=1, default=_json_default)
    )
    for n, i in enumerate(order):
        _write_atomic(
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

    feasible = result.feasible
    plots = plot_fronts(
        os.path.join(out_dir, "pareto"),
        result.metrics,
        feasible,
        result.front,
        objectives,
        notice,
    )
    plot_history(os.path.join(out_dir, "hypervolume.png"), result.history)

    lines = [f"# {title}", ""]
    if notice:
        lines += [f"> **{notice}**", ""]
    lines += [
        "## Baselines",
        "",
        "| model | dev error | test error | notes |",
        "|---|---|---|---|",
    ]
    for b in baselines:
        lines.append(
            f"| {b['name']} | {b['dev_error']:.4f} | {b['test_error']:.4f} | "
            f"{b.get('notes', '')} |"
        )
    cols = list(objectives) + [
        c for c in ("memory_mb",) if c not in objectives and c in result.metrics
    ]  # plat12: a platform may declare no memory_mb
    lines += [
        "",
        f"## Pareto set ({len(order)} solutions, sorted by dev error)",
        "",
        "| # | bits per layer (weights/activations) | "
        + " | ".join(OBJECTIVE_LABELS.get(c, c) for c in cols)
        + " | test error |",
        "|---" * (len(cols) + 3) + "|",
    ]
    for n, i in enumerate(order):
        vals = " | ".join(_fmt(float(result.metrics[c][i])) for c in cols)
        lines.append(
            f"| {n} | {bits_words(space, result.genomes[i])} | {vals} | "
            f"{front_test[n]:.4f} |"
        )
    last = result.history[-1]
    lines += [
        "",
        "## Search",
        "",
        f"- genomes evaluated: {len(result.genomes)} ({int(feasible.sum())} feasible)",
        f"- generations: {last['generation']}, final normalized hypervolume "
        f"{last['hypervolume']:.4f}",
        f"- run time: {result.seconds:.1f} s"
        + (" (resumed)" if result.resumed else ""),
        "",
        "| generation | evaluations | feasible in population | best error | hypervolume |",
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
    _write_atomic(paths["report.md"], "\n".join(lines) + "\n")
    return paths


def _json_default(value):
    if isinstance(value, np.generic):
        return value.item()
    if isinstance(value, np.ndarray):
        return value.tolist()
    return str(value)
