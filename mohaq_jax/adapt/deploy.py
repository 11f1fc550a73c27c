"""Deploy a speech experiment's Pareto front with qwix (``--export-qwix``).

After the search, every Pareto solution is exported as qwix rules
(:func:`mohaq_jax.adapt.qwix_export.export`: module path -> weight and activation
qtype, the search's activation clips), qwix's PTQ is applied to the float model, and
qwix's error is read on dev and test exactly as the search reads its own: the run's
error metric (decoded phone error by default: the search's decoder, phone folding and
``--per``), per utterance, with the same percentile bootstrap draws as the search's
intervals (:func:`mohaq_jax.numerics.bootstrap.bootstrap_intervals`, ``--seed``,
``--bootstrap``, ``--confidence``). The report gives per solution the search's
fake-quant error with its interval, qwix's, whether qwix's lies inside the search's
interval, and per site what qwix could not express (16 bits kept float; MSE weight
clips, which qwix replaces by absmax; an op it does not intercept), never rounded
silently.

The model is the run's own Flax Linen module (the SRU's
:class:`~mohaq_jax.models.sru.AcousticModel`), its sites found by
:func:`mohaq_jax.adapt.adapt` (the same names and order as the contract's, so the
search's genome space and calibration apply unchanged).
"""

from __future__ import annotations

import csv
import io
import json
import os

import jax
import jax.numpy as jnp
import numpy as np

from mohaq_jax import models
from mohaq_jax.adapt import api, qwix_export
from mohaq_jax.data import pad_batch
from mohaq_jax.numerics import bootstrap, metrics
from mohaq_jax.runtime import atomic
from mohaq_jax.runtime.console import say

#: Speech models that are a Flax Linen module, and the module's class name.
LINEN_MODULES = {"sru": "AcousticModel"}

#: Files the export writes in the run's folder.
CSV_FILE, JSON_FILE = "qwix.csv", "qwix.json"


def speech_model(model_name: str, model_config, params, batch):
    """The registered speech model's Linen module, adapted (sites by tracing).

    Args:
      model_name: registry name (a key of :data:`LINEN_MODULES`).
      model_config: its ``Config``.
      params: float params.
      batch: ``(features (B, T, F), labels (B, T), lengths (B,))``.
    """
    module = getattr(models.get_model(model_name), LINEN_MODULES[model_name])
    return api.adapt(
        module(model_config),
        params,
        batch,
        inputs=lambda b: (b[0], b[2]),
        per_example=True,
        error="frames",
    )


def split_batch(split):
    """A split as one padded batch (time padded to a multiple of 16)."""
    n_time = max(len(f) for f in split.features)
    return tuple(pad_batch(split, range(len(split)), pad_to=-(-n_time // 16) * 16))


def make_scorer(forward, fold, decoder, per_mode):
    """``score(params, batch) -> dict``: the counts the search reads, of one batch.

    ``phone_edits``, ``n_phones`` and ``frame_error`` (a rate), from the outputs
    ``forward(params, batch)`` by :func:`mohaq_jax.numerics.metrics.error_counts` with the
    search's decoder, folding and ``--per``.
    """

    @jax.jit
    def score(params, batch):
        _, labels, lengths = batch
        logits = forward(params, batch)
        _, n_frames, wrong, edits, n_phones = metrics.error_counts(
            logits, labels, lengths, fold, decoder=decoder, per_mode=per_mode
        )
        return {
            "phone_edits": edits[None],
            "n_phones": n_phones[None],
            "frame_error": (wrong / jnp.maximum(n_frames, 1))[None],
        }

    return score


def utterance_counts(score, params, batch, metric: str, n_time: int):
    """``(errors (n,), totals (n,))`` of one model on each utterance of a split."""
    one = np.zeros((1, 1), np.int32)
    errors, totals = bootstrap.per_utterance_counts(
        lambda genomes, b: score(params, b), one, batch, metric, n_time
    )
    return errors[0], totals[0]


def site_notes(exported, seen) -> dict[str, list[str]]:
    """Per site, what qwix does differently from the search (empty: nothing)."""
    out = {}
    for site, ok in zip(exported, seen, strict=True):
        notes = []
        if site.w_bits >= qwix_export.FLOAT_FROM:
            notes.append(f"{site.w_bits}-bit weights: qwix has no int16, kept float")
        if site.a_bits >= qwix_export.FLOAT_FROM:
            notes.append(f"{site.a_bits}-bit activations: kept float")
        notes.extend(site.notes)
        if site.weight_qtype is not None and not ok:
            notes.append("qwix did not see this weight at its op: float in qwix")
        if notes:
            out[site.site] = notes
    return out


def export_front(
    cfg, setup, problem, genomes, searched: dict, solutions, out_dir: str | None
) -> list[str]:
    """qwix's PTQ of every Pareto solution beside the search's error; the report.

    Args:
      cfg: the :class:`~mohaq_jax.settings.config.ExperimentConfig` (model name, metric,
        bootstrap settings).
      setup: the prepared :class:`~mohaq_jax.orchestration.prepare.Setup` (float params, the
        search's calibration, dev and test).
      problem: the search's problem (genome space, evaluator: fold, decoder).
      genomes: int ``(g, n_genes)``, the Pareto set.
      searched: split -> ``{"rate", "low", "high"}`` ``(g,)`` arrays, the search's
        fake-quant error and interval of each genome (``low``/``high`` None without
        intervals).
      solutions: ``(g,)`` each genome's solution number in ``pareto.csv``.
      out_dir: where ``qwix.csv`` and ``qwix.json`` go (None: not written).

    Returns:
      The report's markdown lines.
    """
    s = cfg.search
    evaluator = problem.evaluator
    space = problem.space
    splits = {name: split_batch(getattr(setup.corpus, name)) for name in searched}
    n_time = max(b[0].shape[1] for b in splits.values())
    model = speech_model(
        cfg.model.name, setup.model_config, setup.params, splits["dev"]
    )
    names = [site.name for site in model.sites]
    if names != [site.name for site in space.layers]:
        raise ValueError(f"adapted sites {names} differ from the search's")
    first = jax.tree_util.tree_map(lambda x: x[:1], splits["dev"])
    rows, details = [], []
    for k in np.argsort(solutions, kind="stable"):
        genome = np.asarray(genomes[k])
        rules, exported = qwix_export.export(
            model, space, genome, setup.calib, setup.params
        )
        forward, q_params, seen = qwix_export.ptq(model, setup.params, rules, first)
        score = make_scorer(
            forward,
            evaluator.fold,
            evaluator.decoder,
            evaluator.per_mode,
        )
        notes = site_notes(exported, seen)
        for split, batch in splits.items():
            err, tot = utterance_counts(score, q_params, batch, s.error_metric, n_time)
            ci = None
            if s.n_bootstrap:
                ci = bootstrap.bootstrap_intervals(
                    err[None], tot[None], s.n_bootstrap, s.confidence, s.seed
                )
            ours = {key: searched[split][key] for key in ("rate", "low", "high")}
            low = None if ours["low"] is None else float(ours["low"][k])
            high = None if ours["high"] is None else float(ours["high"][k])
            rate = float(err.sum() / max(tot.sum(), 1.0))
            rows.append(
                {
                    "solution": int(solutions[k]),
                    "split": split,
                    "search_error": float(ours["rate"][k]),
                    "search_low": low,
                    "search_high": high,
                    "qwix_error": rate,
                    "qwix_low": None if ci is None else float(ci["low"][0]),
                    "qwix_high": None if ci is None else float(ci["high"][0]),
                    "inside": None if low is None else bool(low <= rate <= high),
                    "qwix_errors": int(err.sum()),
                    "qwix_total": int(tot.sum()),
                    "bits": space.describe(genome),
                    "not_expressed": notes,
                }
            )
        details.append(
            {
                "solution": int(solutions[k]),
                "genome": [int(g) for g in genome],
                "sites": [
                    _site_dict(site, ok)
                    for site, ok in zip(exported, seen, strict=True)
                ],
            }
        )
    if out_dir is not None:
        write_files(out_dir, cfg, rows, details)
    return report_lines(cfg, rows)


def front_section(cfg, setup, problem, result, test_error, intervals, out_dir):
    """:func:`export_front` of a finished search (the pipeline's one call).

    Args:
      cfg, setup, problem: as :func:`export_front`.
      result: the :class:`~mohaq_jax.search.mohaq.SearchResult`.
      test_error: ``(g,)`` test error of the Pareto set (front order).
      intervals: the search's intervals (:func:`mohaq_jax.orchestration.measure.error_intervals`;
        None without ``--bootstrap``).
      out_dir: the run's folder (None: no files, e.g. not the main process).
    """
    front = np.flatnonzero(result.front)
    if not len(front):
        return [
            "## Deployed with qwix (`--export-qwix`)",
            "",
            "No Pareto solution.",
            "",
        ]
    say(
        cfg.output.progress,
        f"qwix: PTQ of {len(front)} Pareto solution(s) (qwix rules from their bits), "
        "scored per utterance on dev and test",
    )
    dev_error = np.asarray(result.metrics[cfg.search.error_metric])[front]
    # pareto.csv numbers its solutions by dev error (search.report.write_outputs)
    order = np.argsort(np.asarray(result.metrics["error"])[front], kind="stable")
    solutions = np.empty(len(front), np.int64)
    solutions[order] = np.arange(len(front))
    searched = {}
    for split, rate in (("dev", dev_error), ("test", np.asarray(test_error))):
        ci = None if intervals is None else intervals[split]["genomes"]
        searched[split] = {
            "rate": rate if ci is None else ci["rate"],
            "low": None if ci is None else ci["low"],
            "high": None if ci is None else ci["high"],
        }
    return export_front(
        cfg, setup, problem, result.genomes[front], searched, solutions, out_dir
    )


def _site_dict(site, seen: bool) -> dict:
    return {
        "site": site.site,
        "module_path": site.module_path,
        "w_bits": site.w_bits,
        "a_bits": site.a_bits,
        "weight_qtype": None if site.weight_qtype is None else str(site.weight_qtype),
        "act_qtype": None if site.act_qtype is None else str(site.act_qtype),
        "act_clip": site.act_clip,
        "quantized_by_qwix": bool(seen and site.weight_qtype is not None),
        "notes": list(site.notes),
    }


def _bits(row) -> str:
    return ", ".join(f"{k} w{v['w']}/a{v['a']}" for k, v in row["bits"].items())


def _interval(rate, low, high) -> str:
    if low is None:
        return f"{rate:.4f}"
    return f"{rate:.4f} [{low:.4f}, {high:.4f}]"


def write_files(out_dir: str, cfg, rows: list[dict], details: list[dict]) -> None:
    """``qwix.csv`` (one row per solution and split) and ``qwix.json`` (all)."""
    fields = [
        "solution", "split", "search_error", "search_low", "search_high",
        "qwix_error", "qwix_low", "qwix_high", "inside", "qwix_errors",
        "qwix_total", "bits", "not_expressed",
    ]  # fmt: skip
    text = io.StringIO()
    writer = csv.DictWriter(text, fieldnames=fields, lineterminator="\n")
    writer.writeheader()
    for row in rows:
        flat = dict(row, bits=_bits(row))
        flat["not_expressed"] = "; ".join(
            f"{site}: {note}"
            for site, notes in row["not_expressed"].items()
            for note in notes
        )
        writer.writerow(flat)
    atomic.write_text(os.path.join(out_dir, CSV_FILE), text.getvalue())
    doc = {
        "error_metric": cfg.search.error_metric,
        "calibration": cfg.search.calib,
        "confidence": cfg.search.confidence,
        "bootstrap": cfg.search.n_bootstrap,
        "backend": jax.default_backend(),
        "rows": rows,
        "solutions": details,
    }
    atomic.write_text(os.path.join(out_dir, JSON_FILE), json.dumps(doc, indent=1))


def report_lines(cfg, rows: list[dict]) -> list[str]:
    """The report's section: the table and what qwix could not express."""
    s = cfg.search
    level = f"{100 * s.confidence:g} %"
    lines = [
        "## Deployed with qwix (`--export-qwix`)",
        "",
        f"Each Pareto solution exported as qwix rules and quantized by qwix's PTQ of "
        f"the float model; its {s.error_metric.replace('_', ' ')} read as the "
        f"search reads its own (per utterance, {level} bootstrap intervals, the "
        f"same draws). Weights: qwix's per-channel absmax scale (the search's: "
        f"`--calib {s.calib}`); activations: the search's clips. Inside = qwix's "
        f"error lies in the search's interval. Files: {CSV_FILE}, {JSON_FILE}.",
        "",
        f"| solution | split | search error [{level}] | qwix PTQ error "
        f"[{level}] | inside |",
        "|---|---|---|---|---|",
    ]
    for row in rows:
        lines.append(
            f"| {row['solution']} | {row['split']} | "
            f"{_interval(row['search_error'], row['search_low'], row['search_high'])} "
            f"| {_interval(row['qwix_error'], row['qwix_low'], row['qwix_high'])} "
            f"| {'-' if row['inside'] is None else ('yes' if row['inside'] else 'NO')} |"
        )
    inside = [r["inside"] for r in rows if r["inside"] is not None]
    if inside:
        lines += [
            "",
            f"qwix inside the search's interval: {sum(inside)}/{len(inside)}.",
        ]
    lines += ["", "What qwix could not express, per solution and site:", ""]
    for row in rows:
        if row["split"] != rows[0]["split"]:
            continue
        lines.append(f"- solution {row['solution']} ({_bits(row)}):")
        if not row["not_expressed"]:
            lines.append("  - nothing: every site exported as searched")
        for site, notes in row["not_expressed"].items():
            lines.extend(f"  - {site}: {note}" for note in notes)
    return lines + [""]


__all__ = [
    "CSV_FILE",
    "JSON_FILE",
    "LINEN_MODULES",
    "export_front",
    "front_section",
    "make_scorer",
    "report_lines",
    "site_notes",
    "speech_model",
    "split_batch",
    "utterance_counts",
    "write_files",
]
