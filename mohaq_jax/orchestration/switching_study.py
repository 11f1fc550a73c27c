"""Seed study of switching-aware mixed precision vs uniform QAT (Kim et al. 2021).

Kim et al. (IEEE TNNLS 2021, Sec. V) claim that giving one more quantization level to
the weights that keep switching buys the accuracy of uniform 4-bit at less storage
(VGG-9 on CIFAR-10: 1.37x compression, 1.29x energy). This module turns the runs of
``experiments/switching_vgg.py --seeds N`` (every run repeated with N training seeds
on one fixed data split) into the numbers that test that claim:

* per model (float, each ``uN``/``sN`` run): dev and test error averaged over seeds,
  with a percentile bootstrap interval over images (:mod:`mohaq_jax.numerics.bootstrap`);
* paired comparisons, the same image draws for both models: each uniform run vs the
  float model (does QAT lose accuracy at all?), each switching run vs uniform at the
  same base bits (a little less storage), vs uniform with one more bit (more
  storage), and vs the uniform curve linearly interpolated to the switching run's
  own storage (equal storage);
* operating points: per method, the cheapest run whose paired dev interval vs
  uniform 4-bit does not lie above 0 (chosen on dev), with its compression and
  energy relative to uniform 4-bit (Kim's two figures) and its test difference.

The images are the resampled items; a model's error on an image is its mean over
the seeds (0, 1/N, .., 1), so the intervals cover the choice of test images with the
seeds' noise averaged, not the spread between seeds (the per-seed differences are
listed beside them). Energies come from :mod:`mohaq_jax.hardware.reconfig`, whose
absolute constants are placeholders borrowed from SiLago and whose per-MAC ratios
are our model: the reports label them so.
"""

from __future__ import annotations

import io

import numpy as np

from mohaq_jax.numerics import bootstrap
from mohaq_jax.runtime import checkpoint

SPLITS = ("dev", "test")

#: Label of every energy figure: the reconfigurable PE's constants are not sourced.
ENERGY_LABEL = (
    "energy on the 2-4-bit reconfigurable PE model (PLACEHOLDER constants: absolute "
    "energies borrowed from SiLago, per-MAC ratios our own model; "
    "mohaq_jax/hardware/reconfig.py)"
)


def _uniform(bits: int) -> str:
    return f"u{bits}"


def _storage(row: dict) -> float:
    """Weight bits per weight (float: 32)."""
    if "compression" not in row:
        return 32.0
    return float(row["compression"]["bits_per_weight"])


def _wrong_by_model(per_seed: list[dict], split: str) -> dict[str, np.ndarray]:
    """Per model, the per-image error averaged over seeds, float64 ``(N,)``."""
    models = {"float": [s["float"] for s in per_seed]}
    for name in per_seed[0]["runs"]:
        models[name] = [s["runs"][name] for s in per_seed]
    return {
        name: np.mean([np.asarray(r[f"{split}_wrong"], np.float64) for r in rows], 0)
        for name, rows in models.items()
    }


def paired_difference(
    errors: np.ndarray,
    reference: np.ndarray,
    n_resamples: int,
    confidence: float,
    seed: int = 0,
) -> dict:
    """Mean error difference ``errors - reference`` over images, with its interval.

    Args:
      errors, reference: per-image errors ``(N,)`` (0/1, or means over seeds).
      n_resamples, confidence, seed: as :func:`mohaq_jax.numerics.bootstrap.bootstrap_intervals`.

    Returns:
      ``{"diff", "low", "high", "excludes_zero"}`` (floats, bool).
    """
    ones = np.ones_like(np.asarray(errors, np.float64))
    out = bootstrap.bootstrap_intervals(
        np.asarray(errors, np.float64)[None],
        ones[None],
        n_resamples,
        confidence,
        seed,
        reference=(np.asarray(reference, np.float64), ones),
    )
    low, high = float(out["diff_low"][0]), float(out["diff_high"][0])
    diff = float(np.mean(errors) - np.mean(reference))
    excludes_zero = low > 0 or high < 0
    return {"diff": diff, "low": low, "high": high, "excludes_zero": excludes_zero}


def _comparisons(models: dict) -> list[tuple[str, str, str, float | None]]:
    """``(model, reference, what, interpolation weight)`` pairs to compare.

    The weight ``t`` (when not None) stands for the uniform curve between the
    reference ``uN`` (``1 - t``) and ``u(N+1)`` (``t``) at the model's storage.
    """
    pairs = []
    for name, m in models.items():
        if name != "float" and not m["switching"]:
            pairs.append((name, "float", "uniform QAT vs float", None))
    for name, m in models.items():
        if name == "float" or not m["switching"]:
            continue
        lower, upper = _uniform(m["bits_w"]), _uniform(m["bits_w"] + 1)
        if lower in models:
            pairs.append((name, lower, "same base bits (uniform stores less)", None))
        if upper in models:
            pairs.append((name, upper, "uniform with one more bit (stores more)", None))
        if lower in models and upper in models:
            t = (m["bits_per_weight"] - models[lower]["bits_per_weight"]) / (
                models[upper]["bits_per_weight"] - models[lower]["bits_per_weight"]
            )
            pairs.append((name, lower, "uniform interpolated to equal storage", t))
    return pairs


def summarize(
    per_seed: list[dict], n_resamples: int = 1000, confidence: float = 0.95
) -> dict:
    """The study's numbers from the per-seed runs of :func:`switching_runs.vgg_seed`.

    Args:
      per_seed: one ``{"seed", "float", "runs"}`` per seed, same runs, same splits;
        every float/run entry has ``dev_wrong``/``test_wrong`` 0/1 per image.
      n_resamples: bootstrap resamples of images (0 is read as 1000).
      confidence: level of every interval.

    Returns:
      JSON-able ``{"seeds", "confidence", "models", "comparisons",
      "operating_points"}``; see the module docstring.
    """
    n_resamples = n_resamples or 1000
    wrong = {split: _wrong_by_model(per_seed, split) for split in SPLITS}
    models = {}
    for name in wrong["dev"]:
        rows = [s["float"] if name == "float" else s["runs"][name] for s in per_seed]
        entry = {
            "switching": bool(rows[0].get("switching", False)),
            "bits_w": rows[0].get("bits_w", 32),
            "bits_per_weight": float(np.mean([_storage(r) for r in rows])),
            "extra_share": float(np.mean([r.get("extra_share", 0.0) for r in rows])),
        }
        if name != "float":
            comp = [r["compression"] for r in rows]
            entry["compression_vs_uniform4"] = float(
                np.mean([c["compression_vs_uniform4"] for c in comp])
            )
            entry["energy_rel_uniform4"] = float(
                np.mean([c["energy_rel_uniform4"] for c in comp])
            )
        for split in SPLITS:
            ones = np.ones_like(wrong[split][name])
            ci = bootstrap.bootstrap_intervals(
                wrong[split][name][None], ones[None], n_resamples, confidence
            )
            entry[split] = {
                "error": float(ci["rate"][0]),
                "low": float(ci["low"][0]),
                "high": float(ci["high"][0]),
                "per_seed": [float(r[f"{split}_error"]) for r in rows],
            }
        models[name] = entry
    comparisons = []
    for name, ref, what, t in _comparisons(models):
        row = {"model": name, "reference": ref, "what": what}
        if t is not None:
            upper = _uniform(models[ref]["bits_w"] + 1)
            storage = models[name]["bits_per_weight"]
            row["reference"] = f"{ref}..{upper} at {storage:.3f} b"
            row["weight_upper"] = t
        for split in SPLITS:
            ref_wrong = wrong[split][ref]
            per_seed_ref = np.asarray(models[ref][split]["per_seed"])
            if t is not None:
                ref_wrong = (1 - t) * ref_wrong + t * wrong[split][upper]
                per_seed_ref = (1 - t) * per_seed_ref + t * np.asarray(
                    models[upper][split]["per_seed"]
                )
            row[split] = paired_difference(
                wrong[split][name], ref_wrong, n_resamples, confidence
            )
            row[split]["per_seed"] = (
                np.asarray(models[name][split]["per_seed"]) - per_seed_ref
            ).tolist()
        comparisons.append(row)
    return {
        "seeds": [int(s["seed"]) for s in per_seed],
        "confidence": confidence,
        "n_resamples": n_resamples,
        "n_images": {split: int(len(wrong[split]["float"])) for split in SPLITS},
        "models": models,
        "comparisons": comparisons,
        "operating_points": operating_points(wrong, models, n_resamples, confidence),
    }


def operating_points(wrong, models, n_resamples, confidence) -> dict:
    """Per method, the cheapest run that matches uniform 4-bit on dev.

    "Matches": the paired dev interval of its error minus u4's does not lie above 0.
    The choice uses dev only; the test difference is reported beside it.
    """
    if "u4" not in models:
        return {}
    out = {}
    for method, is_switching in (("uniform", False), ("switching", True)):
        best = None
        for name, m in models.items():
            if name == "float" or m["switching"] != is_switching:
                continue
            dev = paired_difference(
                wrong["dev"][name], wrong["dev"]["u4"], n_resamples, confidence
            )
            if dev["low"] <= 0.0 and (
                best is None or m["bits_per_weight"] < models[best]["bits_per_weight"]
            ):
                best = name
        if best is None:
            out[method] = None
            continue
        out[method] = {
            "run": best,
            "bits_per_weight": models[best]["bits_per_weight"],
            "compression_vs_uniform4": models[best]["compression_vs_uniform4"],
            "energy_saving_vs_uniform4": 1.0 / models[best]["energy_rel_uniform4"],
            **{
                f"{split}_diff_vs_u4": paired_difference(
                    wrong[split][best], wrong[split]["u4"], n_resamples, confidence
                )
                for split in SPLITS
            },
        }
    return out


def _pct(x: float) -> str:
    return f"{100 * x:.2f}"


def _interval(d: dict) -> str:
    return f"{100 * d['diff']:+.2f} [{100 * d['low']:+.2f}, {100 * d['high']:+.2f}]"


def report(res: dict) -> str:
    """Markdown report of a seed study (``res["study"]`` from :func:`summarize`)."""
    st = res["study"]
    conf = f"{100 * st['confidence']:g} %"
    cfg = res["config"]
    sw, tr = cfg["switching"], cfg["training"]
    lines = [
        f"# Switching-aware vs uniform QAT, VGG-9 on {res['dataset']}: seed study",
        "",
        res["notice"],
        "",
        f"Seeds {st['seeds']} (float training and QAT; one fixed data split), "
        f"{st['n_images']['dev']} dev / {st['n_images']['test']} test images; float "
        f"{tr['epochs']} epochs, QAT {sw['warmup_epochs']} + {sw['retrain_epochs']} "
        f"epochs (switches counted in the last {sw['window_epochs']} warm-up epochs, "
        f"top fraction {sw['top_fraction']}, LR band {sw['lr_band']} x "
        f"{sw['lr_scale']}), activations {sw['bits_a']} bits. Errors in %, averaged "
        f"over seeds; [..] = {conf} percentile bootstrap over images "
        f"({st['n_resamples']} resamples, seed-averaged per-image errors).",
        "",
        "| model | bits/weight | extra-bit weights | compression vs u4 | "
        "energy vs u4 (placeholder) | dev error | test error | test per seed |",
        "|---|---|---|---|---|---|---|---|",
    ]
    for name, m in st["models"].items():
        comp, energy = "-", "-"
        if name != "float":
            comp = f"{m['compression_vs_uniform4']:.3f}x"
            energy = f"{m['energy_rel_uniform4']:.3f}"
        dev, test = m["dev"], m["test"]
        lines.append(
            f"| {name} | {m['bits_per_weight']:.3f} | {m['extra_share']:.3%} | "
            f"{comp} | {energy} | "
            f"{_pct(dev['error'])} [{_pct(dev['low'])}, {_pct(dev['high'])}] | "
            f"{_pct(test['error'])} [{_pct(test['low'])}, {_pct(test['high'])}] | "
            + ", ".join(_pct(x) for x in test["per_seed"])
            + " |"
        )
    lines += [
        "",
        f"Paired differences (model minus reference, points; {conf} interval, the "
        "same image draws for both; * = interval excludes 0):",
        "",
        "| model | reference | comparison | dev | test | test per seed |",
        "|---|---|---|---|---|---|",
    ]
    for c in st["comparisons"]:
        marks = {s: " *" if c[s]["excludes_zero"] else "" for s in SPLITS}
        lines.append(
            f"| {c['model']} | {c['reference']} | {c['what']} | "
            f"{_interval(c['dev'])}{marks['dev']} | {_interval(c['test'])}"
            f"{marks['test']} | "
            + ", ".join(f"{100 * x:+.2f}" for x in c["test"]["per_seed"])
            + " |"
        )
    ops = st["operating_points"]
    if ops:
        lines += [
            "",
            "Operating points (the cheapest run of each method whose paired dev "
            "interval vs u4 does not lie above 0; chosen on dev):",
            "",
        ]
        for method, op in ops.items():
            if op is None:
                lines.append(f"- {method}: no run matches u4 on dev")
                continue
            lines.append(
                f"- {method}: {op['run']}, {op['bits_per_weight']:.3f} bits/weight, "
                f"{op['compression_vs_uniform4']:.3f}x compression and "
                f"{op['energy_saving_vs_uniform4']:.3f}x energy saving (placeholder "
                f"constants) vs u4; error vs u4: dev {_interval(op['dev_diff_vs_u4'])}"
                f", test {_interval(op['test_diff_vs_u4'])}"
            )
    lines += [
        "",
        f"Energy: {ENERGY_LABEL}; relative to uniform 4/4 bits, lower is better. "
        "Compression counts base bits, extra bits and the index marking them.",
        "",
        "Paper (Kim et al. 2021, VGG-9 on CIFAR-10): 1.37x better compression than "
        "uniform 4-bit without accuracy loss, 1.29x energy saving.",
        "",
    ]
    return "\n".join(lines) + "\n"


def plot(path: str, study: dict) -> None:
    """Error vs storage (bits per weight), dev and test, both methods and float."""
    import matplotlib

    matplotlib.use("Agg")
    import matplotlib.pyplot as plt

    models = study["models"]
    fig, axes = plt.subplots(1, 2, figsize=(9, 3.6), sharey=True)
    for ax, split in zip(axes, SPLITS, strict=True):
        for is_switching, label, style in (
            (False, "uniform QAT", "o-"),
            (True, "switching-aware", "s--"),
        ):
            names = sorted(
                (
                    n
                    for n, m in models.items()
                    if n != "float" and m["switching"] == is_switching
                ),
                key=lambda n: models[n]["bits_per_weight"],
            )
            if not names:
                continue
            x = [models[n]["bits_per_weight"] for n in names]
            y = np.array([100 * models[n][split]["error"] for n in names])
            rows = [models[n][split] for n in names]
            below = [r["error"] - r["low"] for r in rows]
            above = [r["high"] - r["error"] for r in rows]
            err = 100 * np.array([below, above])
            ax.errorbar(x, y, yerr=err, fmt=style, capsize=3, label=label)
            for n, xi, yi in zip(names, x, y, strict=True):
                offset = (4, -12) if is_switching else (4, 4)  # labels apart
                ax.annotate(n, (xi, yi), textcoords="offset points", xytext=offset)
        ax.axhline(
            100 * models["float"][split]["error"], color="grey", ls=":", label="float"
        )
        ax.set_xlabel("weight storage (bits per weight, index included)")
        ax.set_title(f"{split} ({len(study['seeds'])} seeds)")
    axes[0].set_ylabel("error (%)")
    axes[0].legend()
    fig.tight_layout()
    buffer = io.BytesIO()
    fig.savefig(buffer, format="png", dpi=120)
    plt.close(fig)
    checkpoint.write_bytes_atomic(path, buffer.getvalue())
