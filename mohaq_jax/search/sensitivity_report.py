"""The sensitivity stage of a finished search, for its report: proxy, fidelity, plot.

:func:`sensitivity_section` measures the stage (:mod:`mohaq_jax.search.sensitivity`)
through the search problem's cached evaluator (genomes the search already scored cost
nothing; the others are timed), predicts every archived genome's error with the
additive proxy and states the proxy's fidelity on the archive (Kendall's tau and
Spearman's rho between predicted and measured dev error), so users see when such a
proxy can be trusted. It also says whether the search itself was assisted (proxy
seeding, surrogate pre-screening: :mod:`mohaq_jax.search.surrogate`).
"""

from __future__ import annotations

import dataclasses
import os

import matplotlib

matplotlib.use("Agg")
import matplotlib.pyplot as plt  # noqa: E402
import numpy as np  # noqa: E402

from mohaq_jax.search import sensitivity  # noqa: E402

__all__ = ["SensitivityReport", "assistance_words", "sensitivity_section"]

PLOT = "sensitivity.png"


@dataclasses.dataclass(frozen=True)
class SensitivityReport:
    """What the report says about the sensitivity stage."""

    lines: list[str]  # markdown section
    summary: dict  # JSON-able: fidelity, seconds, increases
    state: object  # the problem state after scoring the stage's genomes


def assistance_words(surrogate: bool, seed_proxy: bool) -> str:
    """How the search was assisted, in words."""
    used = [
        *(["initial population seeded with the proxy's Pareto set"] * seed_proxy),
        *(["offspring pre-screened by the surrogate error model"] * surrogate),
    ]
    return "; ".join(used) if used else "none (plain search)"


def sensitivity_section(
    problem, result, out_dir: str | None, surrogate: bool, seed_proxy: bool
) -> SensitivityReport:
    """Measures the stage on ``problem`` (cached) and states its fidelity on
    ``result``'s archive; writes ``sensitivity.png`` to ``out_dir`` when given."""
    space = problem.space
    archived = {tuple(g) for g in np.asarray(result.genomes).tolist()}
    pstate = result.state

    def errors_fn(genomes):
        nonlocal pstate
        pstate, metrics = problem.evaluate(pstate, genomes)
        return metrics["error"]

    stage = sensitivity.measure(space.upper, errors_fn)
    n_new = sum(tuple(g) not in archived for g in stage.genomes.tolist())
    predicted = np.asarray(sensitivity.predict(stage.proxy, result.genomes))
    measured = np.asarray(result.metrics["error"])
    fid = sensitivity.fidelity(predicted, measured)
    # With proxy seeding or the surrogate the stage ran as the search's first step:
    # its cost is that step's, the report's look-ups above cost nothing.
    in_search = result.history[0].get("sensitivity_seconds") if result.history else None
    evaluations_share = len(stage.genomes) / max(len(result.genomes), 1)
    seconds = stage.seconds if in_search is None else in_search + stage.seconds
    share = seconds / max(result.seconds, 1e-9)
    when = (
        f"{n_new} of them were not in the search's archive and were scored for this "
        f"report in {stage.seconds:.1f} s"
        if in_search is None
        else f"they were the first {len(stage.genomes)} of the search's "
        f"{len(result.genomes)} evaluations ({100 * evaluations_share:.1f} %), scored "
        f"with the proxy front of the initial population in {in_search:.1f} s "
        "including the evaluator's compilation"
    )
    lines = [
        "",
        "## Sensitivity stage",
        "",
        f"Search assistance: {assistance_words(surrogate, seed_proxy)}.",
        "",
        f"{len(stage.genomes)} genomes (the all-highest one, then each gene alone at "
        "each lower level, the others at their highest): additive proxy = "
        "error(all highest) + sum of each gene's error increase at its level; "
        f"{when} ({seconds:.1f} s, {100 * share:.1f} % of the search's "
        f"{result.seconds:.0f} s).",
        "",
        _fidelity_words(fid),
        "",
        "| gene | "
        + " | ".join(f"level {lv}" for lv in range(stage.proxy.increase.shape[1]))
        + " |",
        "|---|" + "---|" * stage.proxy.increase.shape[1],
    ]
    increase = np.asarray(stage.proxy.increase)
    for gene, name in enumerate(space.gene_names):
        cells = [
            f"{increase[gene, lv]:+.4f}" if lv <= space.upper[gene] else ""
            for lv in range(increase.shape[1])
        ]
        lines.append(f"| {name} | " + " | ".join(cells) + " |")
    if out_dir is not None:
        _plot(os.path.join(out_dir, PLOT), space, increase, predicted, measured, fid)
        lines += ["", f"![{PLOT}]({PLOT})"]
    summary = {
        **fid,
        "n_genomes": len(stage.genomes),
        "n_scored_for_report": int(n_new),
        "seconds": seconds,
        "in_search": in_search is not None,
        "share_of_evaluations": evaluations_share if in_search is not None else 0.0,
        "share_of_search_seconds": share,
        "base_error": float(stage.proxy.base),
        "increase": increase.tolist(),
        "surrogate": bool(surrogate),
        "seed_proxy": bool(seed_proxy),
    }
    return SensitivityReport(lines, summary, pstate)


def _fidelity_words(fid) -> str:
    where = f"on the {fid['n']} archived genomes (proxy vs measured dev error)"
    if np.isnan(fid["kendall_tau"]):
        return f"Fidelity {where}: undefined (fewer than 3 genomes or constant errors)."
    return (
        f"Fidelity {where}: Kendall tau {fid['kendall_tau']:.3f}, Spearman "
        f"{fid['spearman']:.3f}."
    )


def _plot(path, space, increase, predicted, measured, fid) -> None:
    fig, (left, right) = plt.subplots(1, 2, figsize=(10, 4))
    n_genes, n_levels = increase.shape
    width = 0.8 / max(n_levels - 1, 1)
    for level in range(n_levels - 1):
        left.bar(
            np.arange(n_genes) + level * width,
            increase[:, level],
            width,
            label=f"level {level}",
        )
    left.set_xticks(np.arange(n_genes) + 0.4 - width / 2)
    left.set_xticklabels(space.gene_names, rotation=45, ha="right", fontsize=7)
    left.set_ylabel("error increase (dev)")
    left.set_title("each gene alone at a lower level")
    left.legend(fontsize=7)
    right.scatter(predicted, measured, s=8)
    low = float(min(predicted.min(), measured.min()))
    high = float(max(predicted.max(), measured.max()))
    right.plot([low, high], [low, high], color="0.6", lw=0.8)
    right.set_xlabel("additive proxy")
    right.set_ylabel("measured error (dev)")
    right.set_title(
        f"archive: Kendall {fid['kendall_tau']:.2f}, Spearman {fid['spearman']:.2f}"
    )
    fig.tight_layout()
    tmp = f"{path}.tmp.png"
    fig.savefig(tmp, dpi=120)
    plt.close(fig)
    os.replace(tmp, path)
