"""Plots of a search: Pareto-front projections and the hypervolume history.

Each front plot shows every evaluated genome, infeasible ones marked by the
constraint they break, the Pareto set with its dev-error confidence interval
(solutions indistinguishable from the float model drawn hollow), the float model's
error and the constraints as lines, and, for the compression experiment, the
uniform-bit sweep. A data notice (e.g. synthesized speech) goes under the axes,
wrapped, so no title is clipped.
"""

from __future__ import annotations

import itertools
import os
import textwrap
from collections.abc import Sequence

import matplotlib

matplotlib.use("Agg")
import matplotlib.pyplot as plt  # noqa: E402
import numpy as np  # noqa: E402
from matplotlib.ticker import MaxNLocator  # noqa: E402

from mohaq_jax.runtime import atomic  # noqa: E402

OBJECTIVE_LABELS = {
    "error": "error (dev)",
    "speedup": "speedup (x)",
    "energy_pj": "energy per frame (pJ)",
    "memory_mb": "memory (MB)",
    "compression": "compression over float32 (x)",
}


def axis_label(name: str, placeholders=()) -> str:
    """An objective's label; "[PLACEHOLDER constants]" when its numbers rest on
    constants without a source (the platform's :attr:`Metric.placeholder`)."""
    label = OBJECTIVE_LABELS.get(name, name)
    return f"{label} [PLACEHOLDER constants]" if name in placeholders else label


def infeasible_reasons(
    metrics, feasible, max_error, memory_limit_mb
) -> dict[str, np.ndarray]:
    """Masks of genomes breaking the error constraint, the memory one, or both."""
    if max_error is None:  # constraints unknown: one class
        return {"infeasible": ~np.asarray(feasible)}
    err = np.asarray(metrics["error"]) > max_error
    mem = np.zeros_like(err)
    if memory_limit_mb is not None and "memory_mb" in metrics:
        mem = np.asarray(metrics["memory_mb"]) > memory_limit_mb
    return {
        f"infeasible: error > {max_error:.4g}": err & ~mem,
        f"infeasible: memory > {memory_limit_mb or 0:.4g} MB": mem & ~err,
        "infeasible: error and memory": err & mem,
    }


def _notice(fig, notice: str) -> float:
    """Writes the notice under the axes; returns the figure fraction it takes."""
    if not notice:
        return 0.0
    text = textwrap.fill(notice, 95)
    n_lines = text.count("\n") + 1
    fig.text(0.5, 0.01, text, ha="center", va="bottom", fontsize=6.5, color="0.3")
    return 0.025 + 0.028 * n_lines


def _axis_line(ax, name, axis_of, value, **kwargs):
    if value is None:
        return
    if axis_of.get(name) == "x":
        ax.axvline(value, **kwargs)
    elif axis_of.get(name) == "y":
        ax.axhline(value, **kwargs)


class _NoDetails:
    float_dev = max_error = memory_limit_mb = sweep = None
    confidence = 0.95


def plot_fronts(
    path_prefix: str, result, objectives, details, order, dev_ci=None, notice=""
):
    """One scatter plot per pair of objectives; returns the file names written.

    Args:
      path_prefix: e.g. ``OUT/pareto``; files are ``{prefix}_{a}_vs_{b}.png``.
      result: the :class:`~mohaq_jax.search.mohaq.SearchResult`.
      objectives: objective names.
      details: :class:`~mohaq_jax.search.report.Details` (float error, constraints,
        intervals, sweep).
      order: archive indices of the Pareto set, in report order.
      dev_ci: ``{"low", "high", "same"}`` arrays in ``order`` (None: no intervals).
      notice: data notice printed under the axes.
    """
    metrics, feasible, front = result.metrics, result.feasible, result.front
    if details is None:
        details = _NoDetails()
    reasons = infeasible_reasons(
        metrics, feasible, details.max_error, details.memory_limit_mb
    )
    ci = dev_ci
    files = []
    for a, b in itertools.combinations(objectives, 2):
        fig, ax = plt.subplots(figsize=(6.4, 4.8))
        x, y = np.asarray(metrics[a]), np.asarray(metrics[b])
        styles = (("x", "0.55"), ("^", "tab:orange"), ("s", "0.3"))
        for (label, mask), style in zip(reasons.items(), styles, strict=False):
            if mask.any():
                ax.scatter(
                    x[mask], y[mask], s=14, marker=style[0], c=style[1], label=label
                )
        rest = feasible & ~front
        ax.scatter(x[rest], y[rest], s=12, c="tab:blue", alpha=0.6, label="feasible")
        axis_of = {a: "x", b: "y"}
        if ci is not None and "error" in axis_of:
            err_lo = metrics["error"][order] - ci["low"]
            err_hi = ci["high"] - metrics["error"][order]
            bars = np.stack([np.maximum(err_lo, 0), np.maximum(err_hi, 0)])
            key = "xerr" if axis_of["error"] == "x" else "yerr"
            ax.errorbar(
                x[order],
                y[order],
                fmt="none",
                ecolor="tab:red",
                elinewidth=0.8,
                capsize=2,
                **{key: bars},
            )
            same = ci["same"]
            level = f"{details.confidence:.0%} CI of dev error"
            if (~same).any():
                ax.scatter(
                    x[order][~same],
                    y[order][~same],
                    s=30,
                    c="tab:red",
                    label=f"Pareto set (bars: {level})",
                )
            if same.any():
                ax.scatter(
                    x[order][same],
                    y[order][same],
                    s=30,
                    facecolors="none",
                    edgecolors="tab:red",
                    label=f"Pareto, same error as float (bars: {level})",
                )
        else:
            ax.scatter(x[front], y[front], s=30, c="tab:red", label="Pareto set")
        _axis_line(ax, "error", axis_of, details.float_dev, c="k", lw=1, ls=":")
        _axis_line(ax, "error", axis_of, details.max_error, c="0.4", lw=1, ls="--")
        _axis_line(
            ax,
            "memory_mb",
            axis_of,
            details.memory_limit_mb,
            c="tab:orange",
            lw=1,
            ls="--",
        )
        sweep = details.sweep
        if sweep is not None and a in sweep["dev"] and b in sweep["dev"]:
            sx, sy = np.asarray(sweep["dev"][a]), np.asarray(sweep["dev"][b])
            ax.plot(
                sx, sy, "D-", c="tab:green", ms=5, lw=0.8, label="uniform weight bits"
            )
            for bits, px, py in zip(sweep["bits"], sx, sy, strict=True):
                ax.annotate(
                    f"{bits}b",
                    (px, py),
                    fontsize=7,
                    xytext=(3, 3),
                    textcoords="offset points",
                )
        handles, labels = ax.get_legend_handles_labels()
        extra = []
        if "error" in axis_of and details.float_dev is not None:
            extra.append(("float model error", dict(c="k", ls=":")))
        if "error" in axis_of and details.max_error is not None:
            extra.append(
                (f"error limit {details.max_error:.4g}", dict(c="0.4", ls="--"))
            )
        if details.memory_limit_mb is not None and "memory_mb" in axis_of:
            label = f"memory limit {details.memory_limit_mb:.4g} MB"
            extra.append((label, dict(c="tab:orange", ls="--")))
        for label, style in extra:
            handles.append(plt.Line2D([], [], lw=1, **style))
            labels.append(label)
        ax.legend(handles, labels, fontsize=6.5, loc="best")
        marked = getattr(details, "placeholders", None) or {}
        label_a, label_b = axis_label(a, marked), axis_label(b, marked)
        ax.set_xlabel(label_a)
        ax.set_ylabel(label_b)
        ax.set_title(f"{label_a} vs {label_b}", fontsize=10)
        bottom = _notice(fig, notice)
        fig.tight_layout(rect=(0, bottom, 1, 1))
        name = f"{path_prefix}_{a}_vs_{b}.png"
        atomic.savefig(fig, name, dpi=110)
        plt.close(fig)
        files.append(os.path.basename(name))
    return files


def plot_history(path: str, history: Sequence[dict]) -> None:
    """Hypervolume and best feasible dev error per generation."""
    gens = [h["generation"] for h in history]
    fig, ax1 = plt.subplots(figsize=(6.0, 4.0))
    ax1.plot(gens, [h["hypervolume"] for h in history], "o-", c="tab:red")
    ax1.set_xlabel("generation")
    ax1.xaxis.set_major_locator(MaxNLocator(integer=True))
    ax1.set_ylabel("hypervolume (normalized)", color="tab:red")
    ax2 = ax1.twinx()
    ax2.plot(gens, [h["best_error"] for h in history], "s--", c="tab:blue")
    ax2.set_ylabel("best feasible dev error", color="tab:blue")
    ax1.set_title("search progress: hypervolume and best feasible error", fontsize=10)
    fig.tight_layout()
    atomic.savefig(fig, path, dpi=110)
    plt.close(fig)
