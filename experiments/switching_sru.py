"""Switching-aware mixed precision on the SRU acoustic model (Kim et al. 2021 x MOHAQ).

Gets the float SRU baseline (:func:`mohaq_jax.train.get_or_train_baseline`: loaded if
trained before with the same settings), calibrates clipping tables, then retrains at
uniform 4 and 3 bits and with switching-aware mixed precision at base 3 bits (+1 bit
for the weights that switch most), activations at 4 bits. Reports phone error rate,
compression (vs uniform 4-bit and vs float32, extra bits and their index counted) and
energy on the 2-4-bit reconfigurable accelerator model. Default data: the synthetic
eSpeak NG corpus (NOT TIMIT); ``--timit-dir`` for TIMIT.

    python -m experiments.switching_sru --out results/switching_sru
"""

from __future__ import annotations

import argparse
import dataclasses
import json
import os
import time

import jax
import jax.numpy as jnp
import numpy as np

from experiments.switching_vgg import switch_histogram
from mohaq_jax import qmodel, train
from mohaq_jax.data import load_corpus
from mohaq_jax.data.batching import pad_batch
from mohaq_jax.models.sru import ModelConfig, layer_specs
from mohaq_jax.retrain import speech, switching

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
        default="results/switching_sru",
        help="output folder (results.json, report.md, switch_counts.png)",
    )
    p.add_argument(
        "--ckpt-dir",
        default=None,
        help="baseline checkpoint folder (default: OUT/baseline)",
    )
    p.add_argument("--seed", type=int, default=0, help="init, dropout, batch order")
    p.add_argument("--timit-dir", default=None, help="TIMIT root (else eSpeak corpus)")
    p.add_argument(
        "--size",
        choices=("tiny", "default"),
        default="default",
        help="eSpeak corpus size",
    )
    p.add_argument(
        "--max-train-utts",
        type=int,
        default=120,
        help="train on the first N utterances only (0 = all) to stay fast",
    )
    p.add_argument("--hidden", type=int, default=64, help="SRU units per direction")
    p.add_argument("--layers", type=int, default=2, help="SRU layers")
    p.add_argument("--epochs", type=int, default=6, help="float baseline epochs")
    p.add_argument(
        "--warmup-epochs",
        type=int,
        default=2,
        help="uniform QAT epochs before extra-bit weights are chosen",
    )
    p.add_argument(
        "--window-epochs",
        type=int,
        default=1,
        help="last warm-up epochs in which switches are counted",
    )
    p.add_argument(
        "--retrain-epochs",
        type=int,
        default=1,
        help="epochs with the mixed representation (uniform runs train "
        "warmup + retrain epochs in total)",
    )
    p.add_argument(
        "--top-fraction",
        type=float,
        default=0.1,
        help="share of weights with most switches that get the extra bit",
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
        "--runs", default="u4,u3,s3", help=f"comma-separated runs among {list(RUNS)}"
    )
    p.add_argument("--no-progress", action="store_true", help="no progress bars")
    return p.parse_args(argv)


def load_data(args):
    if args.timit_dir:
        corpus = load_corpus("timit", timit_dir=args.timit_dir)
    else:
        corpus = load_corpus("espeak", size=args.size, seed=args.seed)
    if args.max_train_utts and args.max_train_utts < len(corpus.train):
        n = args.max_train_utts
        tr = corpus.train
        sub = dataclasses.replace(
            tr,
            features=tr.features[:n],
            labels=tr.labels[:n],
            speakers=tr.speakers[:n],
            utt_ids=tr.utt_ids[:n],
        )
        corpus = dataclasses.replace(
            corpus, train=sub, settings={**corpus.settings, "max_train_utts": n}
        )
    return corpus


def report(res: dict) -> str:
    lines = [
        f"# Switching-aware mixed precision, SRU on {res['dataset']}",
        "",
        res["notice"] or "Real speech.",
        "",
        f"Float baseline: dev PER {res['float']['dev_per']:.4f}, test PER "
        f"{res['float']['test_per']:.4f} (trained {res['float']['seconds']:.0f} s, "
        f"loaded: {res['float']['loaded']}).",
        "",
        "| run | base w bits | a bits | extra-bit weights | bits/weight | test PER |"
        " dev PER | test FER | compression vs u4 | vs float32 | energy vs u4 | "
        "time (s) |",
        "|---|---|---|---|---|---|---|---|---|---|---|---|",
    ]
    for name, r in res["runs"].items():
        c = r["compression"]
        lines.append(
            f"| {name} | {r['bits_w']} | {r['bits_a']} | {r['extra_share']:.4%} | "
            f"{c['bits_per_weight']:.3f} | {r['test_per']:.4f} | {r['dev_per']:.4f} | "
            f"{r['test_fer']:.4f} | {c['compression_vs_uniform4']:.3f}x | "
            f"{c['compression_vs_float32']:.2f}x | {c['energy_rel_uniform4']:.3f} | "
            f"{r['seconds']:.0f} |"
        )
    lines += [
        "",
        "Energy: per-frame MAC + weight-memory energy on the 2-4-bit "
        "reconfigurable PE model relative to uniform 4/4 bits (lower is better). "
        "Compression counts base bits, the extra bits and the index marking "
        "them; SRU biases and recurrent vectors are not counted.",
        "",
    ]
    return "\n".join(lines) + "\n"


def main(argv=None):
    args = parse_args(argv)
    os.makedirs(args.out, exist_ok=True)
    progress = not args.no_progress
    started = time.perf_counter()
    corpus = load_data(args)
    if corpus.notice:
        print(corpus.notice)
    config = ModelConfig(
        n_features=corpus.n_features,
        n_classes=corpus.n_classes,
        hidden=args.hidden,
        n_layers=args.layers,
    )
    tc = train.TrainConfig(epochs=args.epochs, seed=args.seed)
    params, binfo = train.get_or_train_baseline(
        corpus,
        config,
        tc,
        args.ckpt_dir or os.path.join(args.out, "baseline"),
        progress=progress,
    )
    ev = {
        s: train.evaluate(params, config, getattr(corpus, s), corpus.fold39)
        for s in ("dev", "test")
    }
    calib_idx = np.arange(min(32, len(corpus.train)))
    cb = pad_batch(corpus.train, calib_idx)
    calib = qmodel.calibrate(
        params, config, jnp.asarray(cb.features), jnp.asarray(cb.lengths)
    )
    n_layers = len(layer_specs(config))
    fbits = speech.float_bits(config)
    runs, counts_by_run = {}, {}
    total = args.warmup_epochs + args.retrain_epochs
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
            sc = switching.uniform_config(total)
        t0 = time.perf_counter()
        bits_a = [args.bits_a] * n_layers
        _, info = speech.switching_finetune(
            params,
            config,
            calib,
            [bits] * n_layers,
            bits_a,
            corpus,
            sc,
            lr=args.lr,
            train_config=tc,
            progress=progress,
        )
        test = train.evaluate(
            info["quantized_params"],
            config,
            corpus.test,
            corpus.fold39,
            fbits,
            jnp.asarray(bits_a, jnp.int32),
            calib,
        )
        seconds = time.perf_counter() - t0
        if is_switching:
            counts_by_run[name] = info["window_counts"]
        runs[name] = {
            "bits_w": bits,
            "bits_a": args.bits_a,
            "switching": is_switching,
            "config": sc.to_dict(),
            "dev_per": info["per"],
            "dev_fer": info["fer"],
            "test_per": test["per"],
            "test_fer": test["fer"],
            "compression": info["compression"],
            "extra_counts": info["extra_counts"],
            "n_weights": info["n_weights"],
            "extra_share": sum(info["extra_counts"]) / sum(info["n_weights"]),
            "window_steps": info["window_steps"],
            "history": info["history"],
            "seconds": seconds,
        }
        print(
            f"{name}: test PER {test['per']:.4f}, compression vs u4 "
            f"{info['compression']['compression_vs_uniform4']:.3f}x, energy vs u4 "
            f"{info['compression']['energy_rel_uniform4']:.3f} ({seconds:.0f} s)"
        )
    res = {
        "dataset": corpus.name,
        "notice": corpus.notice,
        "synthetic": corpus.synthetic,
        "settings": corpus.settings,
        "model_config": config.to_dict(),
        "args": vars(args),
        "float": {
            "dev_per": ev["dev"]["per"],
            "test_per": ev["test"]["per"],
            "seconds": binfo["seconds"],
            "loaded": binfo["loaded"],
        },
        "runs": runs,
        "seconds_total": time.perf_counter() - started,
        "backend": jax.default_backend(),
    }
    with open(os.path.join(args.out, "results.json"), "w") as f:
        json.dump(res, f, indent=1, default=float)
    with open(os.path.join(args.out, "report.md"), "w") as f:
        f.write(report(res))
    if counts_by_run:
        switch_histogram(os.path.join(args.out, "switch_counts.png"), counts_by_run)
    print(report(res))
    return res


if __name__ == "__main__":
    main()
