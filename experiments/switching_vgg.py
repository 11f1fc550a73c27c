"""Switching-aware mixed precision on a VGG-9 (Kim et al., IEEE TNNLS 2021, Sec. V).

Trains a float VGG-9 (6 conv + 3 FC), then retrains it with quantization-aware
training at uniform 4, 3 and 2 bits and with switching-aware mixed precision at base
3 and 2 bits (+1 bit for the weights that switch most), all with 4-bit activations,
and reports test error, compression (vs uniform 4-bit and vs float32, counting the
extra bits and the index marking them) and energy on the 2-4-bit reconfigurable
accelerator model (:mod:`mohaq_jax.hardware.reconfig`). Default data: scikit-learn's
8x8 digits (real, small, always available); ``--cifar-dir`` for CIFAR-10.

    python -m experiments.switching_vgg --out results/switching_vgg
"""

from __future__ import annotations

import argparse
import json
import os
import time

import jax
import numpy as np

from mohaq_jax.data import images as images_lib
from mohaq_jax.models import vgg
from mohaq_jax.retrain import switching, vision

# Runs: name -> (base weight bits, switching-aware?).
RUNS = {
    "u4": (4, False),
    "u3": (3, False),
    "s3": (3, True),
    "u2": (2, False),
    "s2": (2, True),
}


def parse_args(argv=None):
    p = argparse.ArgumentParser(
        description=__doc__.split("\n\n")[0],
        formatter_class=argparse.ArgumentDefaultsHelpFormatter,
    )
    p.add_argument(
        "--out",
        default="results/switching_vgg",
        help="output folder (results.json, report.md, switch_counts.png)",
    )
    p.add_argument("--seed", type=int, default=0, help="init, split and batch order")
    p.add_argument(
        "--cifar-dir",
        default=None,
        help="folder with CIFAR-10 python batches (else sklearn digits)",
    )
    p.add_argument(
        "--max-train",
        type=int,
        default=None,
        help="CIFAR-10 only: use the first N training images",
    )
    p.add_argument("--epochs", type=int, default=15, help="float training epochs")
    p.add_argument(
        "--warmup-epochs",
        type=int,
        default=3,
        help="uniform QAT epochs before extra-bit weights are chosen",
    )
    p.add_argument(
        "--window-epochs",
        type=int,
        default=2,
        help="last warm-up epochs in which switches are counted",
    )
    p.add_argument(
        "--retrain-epochs",
        type=int,
        default=3,
        help="epochs with the mixed representation (uniform runs train "
        "warmup + retrain epochs in total)",
    )
    p.add_argument(
        "--top-fraction",
        type=float,
        default=0.1,
        help="share of weights with most switches that get the extra bit "
        "(only weights that switched at least once)",
    )
    p.add_argument(
        "--switch-threshold",
        type=int,
        default=None,
        help="instead of --top-fraction: extra bit where count >= this",
    )
    p.add_argument(
        "--grid",
        choices=switching.GRIDS,
        default="nested",
        help="extra-bit grid: nested = halved step, uniform = plain b+1 bits",
    )
    p.add_argument("--lr", type=float, default=5e-4, help="QAT Adam learning rate")
    p.add_argument(
        "--lr-band",
        type=float,
        default=0.1,
        help="damp updates within this fraction of a step of a threshold",
    )
    p.add_argument(
        "--lr-scale",
        type=float,
        default=0.1,
        help="learning-rate multiplier inside the band",
    )
    p.add_argument("--bits-a", type=int, default=4, help="activation bits (2..4)")
    p.add_argument(
        "--runs",
        default=",".join(RUNS),
        help=f"comma-separated runs among {list(RUNS)} (uN uniform N-bit, "
        "sN switching-aware base N bits)",
    )
    p.add_argument("--batch-size", type=int, default=64, help="images per step")
    p.add_argument("--no-progress", action="store_true", help="no progress bars")
    return p.parse_args(argv)


def switch_histogram(path, counts_by_run: dict):
    import matplotlib

    matplotlib.use("Agg")
    import matplotlib.pyplot as plt

    fig, ax = plt.subplots(figsize=(6, 3.5))
    for name, counts in counts_by_run.items():
        flat = np.concatenate([np.asarray(c).reshape(-1) for c in counts])
        top = max(int(flat.max()), 1)
        ax.hist(
            flat, bins=np.arange(top + 2) - 0.5, histtype="step", label=name, log=True
        )
    ax.set_xlabel("contiguous-level switches in the counting window")
    ax.set_ylabel("weights")
    ax.legend()
    fig.tight_layout()
    fig.savefig(path, dpi=120)
    plt.close(fig)


def report(results: dict) -> str:
    lines = [
        f"# Switching-aware mixed precision, VGG-9 on {results['dataset']}",
        "",
        results["notice"],
        "",
        f"Float model: test error {results['float']['test_error']:.4f}, dev error "
        f"{results['float']['dev_error']:.4f} ({results['float']['seconds']:.0f} s).",
        "",
        "| run | base w bits | a bits | extra-bit weights | bits/weight | "
        "test error | dev error | compression vs u4 | vs float32 | energy vs u4 |"
        " time (s) |",
        "|---|---|---|---|---|---|---|---|---|---|---|",
    ]
    for name, r in results["runs"].items():
        c = r["compression"]
        lines.append(
            f"| {name} | {r['bits_w']} | {r['bits_a']} | {r['extra_share']:.4%} | "
            f"{c['bits_per_weight']:.3f} | {r['test_error']:.4f} | "
            f"{r['dev_error']:.4f} "
            f"| {c['compression_vs_uniform4']:.3f}x | "
            f"{c['compression_vs_float32']:.2f}x "
            f"| {c['energy_rel_uniform4']:.3f} | {r['seconds']:.0f} |"
        )
    lines += [
        "",
        "Energy: per-inference MAC + weight-memory energy on the 2-4-bit "
        "reconfigurable PE model, relative to the same network at uniform 4/4 "
        "bits (lower is better; its inverse is the energy saving). Compression "
        "counts base bits, one extra bit per extra-bit weight and the index that "
        "marks them (per layer the cheaper of a 1-bit flag per weight and a list "
        "of positions).",
        "",
        "Paper (Kim et al. 2021, VGG-9 on CIFAR-10): 1.37x better compression "
        "than uniform 4-bit without accuracy loss, 1.29x energy saving.",
        "",
    ]
    for name, r in results["runs"].items():
        if r.get("paper_comparison"):
            lines.append(f"- {name}: {r['paper_comparison']}")
    return "\n".join(lines) + "\n"


def main(argv=None):
    args = parse_args(argv)
    os.makedirs(args.out, exist_ok=True)
    progress = not args.no_progress
    started = time.perf_counter()
    if args.cifar_dir:
        data = images_lib.load_cifar10(args.cifar_dir, max_train=args.max_train)
        config = vgg.cifar_config()
    else:
        data = images_lib.load_digits(image_size=16, seed=args.seed)
        config = vgg.digits_config()
    print(data.notice)
    tc = vision.ImageTrainConfig(
        epochs=args.epochs, batch_size=args.batch_size, seed=args.seed
    )
    params, float_info = vision.fit(data, config, tc, progress=progress)
    float_res = {
        "dev_error": vision.error_rate(params, config, data.dev),
        "test_error": vision.error_rate(params, config, data.test),
        "seconds": float_info["seconds"],
        "history": float_info["history"],
    }
    calib = vision.calibrate(params, config, data.train.images[:256])
    n_layers = len(vgg.layer_specs(config))
    total_epochs = args.warmup_epochs + args.retrain_epochs
    runs, counts_by_run = {}, {}
    for name in args.runs.split(","):
        bits, is_switching = RUNS[name]
        if is_switching:
            sc = switching.SwitchingConfig(
                warmup_epochs=args.warmup_epochs,
                window_epochs=args.window_epochs,
                retrain_epochs=args.retrain_epochs,
                switch_threshold=args.switch_threshold,
                top_fraction=None
                if args.switch_threshold is not None
                else args.top_fraction,
                grid=args.grid,
                lr_band=args.lr_band,
                lr_scale=args.lr_scale,
            )
        else:
            sc = switching.uniform_config(total_epochs)
        t0 = time.perf_counter()
        _, info = vision.switching_finetune(
            params,
            config,
            calib,
            [bits] * n_layers,
            [args.bits_a] * n_layers,
            data,
            sc,
            lr=args.lr,
            batch_size=args.batch_size,
            seed=args.seed,
            progress=progress,
        )
        seconds = time.perf_counter() - t0
        if is_switching:
            counts_by_run[name] = info["window_counts"]
        runs[name] = {
            "bits_w": bits,
            "bits_a": args.bits_a,
            "switching": is_switching,
            "config": sc.to_dict(),
            "dev_error": info["dev_error"],
            "test_error": info["test_error"],
            "compression": info["compression"],
            "extra_counts": info["extra_counts"],
            "n_weights": info["n_weights"],
            "extra_share": sum(info["extra_counts"]) / sum(info["n_weights"]),
            "window_steps": info["window_steps"],
            "history": info["history"],
            "seconds": seconds,
        }
        print(
            f"{name}: test error {info['test_error']:.4f}, compression vs u4 "
            f"{info['compression']['compression_vs_uniform4']:.3f}x, energy vs u4 "
            f"{info['compression']['energy_rel_uniform4']:.3f} ({seconds:.0f} s)"
        )
    if "u4" in runs:
        ref = runs["u4"]["test_error"]
        for name, r in runs.items():
            if name == "u4":
                continue
            c = r["compression"]
            r["paper_comparison"] = (
                f"{c['compression_vs_uniform4']:.2f}x compression and "
                f"{1.0 / c['energy_rel_uniform4']:.2f}x energy saving vs uniform "
                "4-bit, "
                f"test error {r['test_error'] - ref:+.4f} vs uniform 4-bit QAT"
            )
    results = {
        "dataset": data.name,
        "notice": data.notice,
        "settings": data.settings,
        "model_config": config.to_dict(),
        "args": vars(args),
        "float": float_res,
        "runs": runs,
        "seconds_total": time.perf_counter() - started,
        "backend": jax.default_backend(),
    }
    with open(os.path.join(args.out, "results.json"), "w") as f:
        json.dump(results, f, indent=1)
    with open(os.path.join(args.out, "report.md"), "w") as f:
        f.write(report(results))
    if counts_by_run:
        switch_histogram(os.path.join(args.out, "switch_counts.png"), counts_by_run)
    print(report(results))
    return results


if __name__ == "__main__":
    main()
