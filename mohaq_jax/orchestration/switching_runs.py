"""Switching-aware mixed precision vs uniform QAT (Kim et al., IEEE TNNLS 2021).

The library side of ``experiments/switching_sru.py`` and
``experiments/switching_vgg.py``: each ``--runs`` entry (``uN`` uniform N-bit QAT,
``sN`` switching-aware at base N bits, +1 bit for the weights that switch most)
retrains the float model and reports test error, compression (vs uniform 4-bit and vs
float32, counting extra bits and their index) and energy on the 2-4-bit reconfigurable
accelerator model. The SRU run starts from the same cached float baseline as the
searches (:func:`mohaq_jax.orchestration.prepare.get_baseline`: same flags, same checkpoint). The
VGG run repeats everything for ``--seeds`` training seeds on one data split and, with
more than one, reports the seed study of :mod:`mohaq_jax.orchestration.switching_study`.
"""

from __future__ import annotations

import dataclasses
import json
import os
import time

import jax
import jax.numpy as jnp
import numpy as np

from mohaq_jax import train
from mohaq_jax.orchestration import prepare
from mohaq_jax.retrain import switching
from mohaq_jax.runtime import atomic, console
from mohaq_jax.settings.config import (
    SWITCHING_RUNS,
    ExperimentConfig,
    SwitchingSettings,
)


def schedule(sw: SwitchingSettings, is_switching: bool) -> switching.SwitchingConfig:
    """The retraining schedule of one run."""
    if not is_switching:
        return switching.uniform_config(sw.warmup_epochs + sw.retrain_epochs)
    return switching.SwitchingConfig(
        warmup_epochs=sw.warmup_epochs,
        window_epochs=sw.window_epochs,
        retrain_epochs=sw.retrain_epochs,
        switch_threshold=sw.switch_threshold,
        top_fraction=None if sw.switch_threshold is not None else sw.top_fraction,
        grid=sw.grid,
        lr_band=sw.lr_band,
        lr_scale=sw.lr_scale,
    )


def _first_train_utts(corpus, n: int):
    if not n or n >= len(corpus.train):
        return corpus
    tr = corpus.train
    sub = dataclasses.replace(
        tr,
        features=tr.features[:n],
        labels=tr.labels[:n],
        speakers=tr.speakers[:n],
        utt_ids=tr.utt_ids[:n],
    )
    return dataclasses.replace(
        corpus, train=sub, settings={**corpus.settings, "max_train_utts": n}
    )


def _run_row(name, sw, sc, info, seconds, test: dict) -> dict:
    bits, is_switching = SWITCHING_RUNS[name]
    return {
        "bits_w": bits,
        "bits_a": sw.bits_a,
        "switching": is_switching,
        "config": sc.to_dict(),
        **test,
        "compression": info["compression"],
        "extra_counts": info["extra_counts"],
        "n_weights": info["n_weights"],
        "extra_share": sum(info["extra_counts"]) / sum(info["n_weights"]),
        "window_steps": info["window_steps"],
        "history": info["history"],
        "seconds": seconds,
    }


def _sru_run(name, sw, params, config, calib, qat_corpus, qat_train, corpus, progress):
    """One switching or uniform run of the SRU: retraining, then its test PER.
    Returns ``(its row, its switch counts or None)``."""
    from mohaq_jax.models import sru
    from mohaq_jax.retrain import speech

    n_layers = len(sru.sites(config))
    bits, is_switching = SWITCHING_RUNS[name]
    sc = schedule(sw, is_switching)
    console.say(progress, f"run {name}: retraining ({sc.epochs} epochs)")
    t0 = time.perf_counter()
    bits_a = [sw.bits_a] * n_layers
    _, info = speech.switching_finetune(
        params,
        config,
        calib,
        [bits] * n_layers,
        bits_a,
        qat_corpus,
        sc,
        lr=sw.qat_lr,
        train_config=qat_train,
        progress=progress,
    )
    test = train.evaluate(
        info["quantized_params"],
        config,
        corpus.test,
        corpus.fold39,
        speech.float_bits(config),
        jnp.asarray(bits_a, jnp.int32),
        calib,
    )
    seconds = time.perf_counter() - t0
    rates = {
        "dev_per": info["per"],
        "dev_fer": info["fer"],
        "test_per": test["per"],
        "test_fer": test["fer"],
    }
    print(
        f"{name}: test PER (smoothed) {test['per']:.4f}, compression vs u4 "
        f"{info['compression']['compression_vs_uniform4']:.3f}x, energy vs u4 "
        f"{info['compression']['energy_rel_uniform4']:.3f} ({seconds:.0f} s)"
    )
    row = _run_row(name, sw, sc, info, seconds, rates)
    return row, (info["window_counts"] if is_switching else None)


def run_sru(cfg: ExperimentConfig) -> dict:
    """The SRU experiment: float baseline (shared cache), then every run."""

    progress, sw = cfg.output.progress, cfg.switching
    os.makedirs(cfg.output.out, exist_ok=True)
    started = time.perf_counter()
    corpus = prepare.load_data(cfg.data, progress)
    if corpus.notice:
        print(corpus.notice)
    config, params, binfo = prepare.get_baseline(cfg, corpus)
    ev = {
        s: train.evaluate(params, config, getattr(corpus, s), corpus.fold39)
        for s in ("dev", "test")
    }
    console.say(progress, f"calibration: {cfg.search.calib} clipping")
    calib = prepare.calibrate_on_train(cfg.search, corpus, params, config)
    qat_corpus = _first_train_utts(corpus, sw.max_train_utts)
    qat_train = dataclasses.replace(
        prepare.train_config(cfg.training, cfg.search.batch_frames), seed=sw.seed
    )
    runs, counts_by_run = {}, {}
    for name in sw.runs.split(","):
        runs[name], counts = _sru_run(
            name, sw, params, config, calib, qat_corpus, qat_train, corpus, progress
        )
        if counts is not None:
            counts_by_run[name] = counts
    res = {
        "dataset": corpus.name,
        "notice": corpus.notice,
        "synthetic": corpus.synthetic,
        "settings": corpus.settings,
        "model_config": config.to_dict(),
        "config": cfg.to_dict(),
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
    _write(cfg.output.out, res, sru_report(res), counts_by_run)
    return res


def vgg_data(cfg: ExperimentConfig):
    """The image set and the float VGG-9's config of the VGG experiment.

    Digits: the split is fixed (seed 0) whatever ``--seed``, so that every training
    seed is scored on the same dev and test images (paired intervals).
    """
    from mohaq_jax.data import images as images_lib
    from mohaq_jax.models import vgg

    if cfg.data.cifar_dir:
        data = images_lib.load_cifar10(
            cfg.data.cifar_dir, max_train=cfg.data.max_train_images
        )
        base = vgg.cifar_config()
    else:
        data = images_lib.load_digits(
            image_size=cfg.data.image_size, seed=0, noise=cfg.data.image_noise
        )
        base = dataclasses.replace(vgg.digits_config(), image_size=cfg.data.image_size)
        n = cfg.data.max_train_images  # --max-train-images: as with CIFAR-10
        if n is not None:
            train = images_lib.ImageSplit(data.train.images[:n], data.train.labels[:n])
            data = dataclasses.replace(data, train=train)
    config = dataclasses.replace(
        base,
        conv_widths=cfg.vgg.conv_widths or base.conv_widths,
        fc_widths=cfg.vgg.fc_widths or base.fc_widths,
    )
    return data, config


def _bits(wrong) -> list[int]:
    """A per-image bool record as JSON-able 0/1 ints."""
    return np.asarray(wrong, bool).astype(int).tolist()


def vgg_seed(cfg: ExperimentConfig, data, config, seed: int) -> tuple[dict, dict]:
    """Float training and every ``--runs`` entry with one seed.

    Returns:
      ``({"float": ..., "runs": ...}, window switch counts by switching run)``; float
      and every run carry ``dev_wrong``/``test_wrong`` (bool ``(N,)`` per image).
    """
    from mohaq_jax.models import vgg
    from mohaq_jax.retrain import vision

    progress, sw, tr = cfg.output.progress, cfg.switching, cfg.training
    tc = vision.ImageTrainConfig(
        epochs=tr.epochs,
        batch_size=tr.batch_size,
        lr=tr.lr,
        grad_clip=tr.grad_clip,
        seed=seed,
    )
    console.say(progress, f"seed {seed}: float VGG-9, training {tr.epochs} epochs")
    params, float_info = vision.fit(data, config, tc, progress=progress)
    wrong = {
        s: vision.wrong_images(params, config, getattr(data, s))
        for s in ("dev", "test")
    }
    float_res = {
        "dev_error": float(np.mean(wrong["dev"])),
        "test_error": float(np.mean(wrong["test"])),
        "seconds": float_info["seconds"],
        "history": float_info["history"],
        "dev_wrong": _bits(wrong["dev"]),
        "test_wrong": _bits(wrong["test"]),
    }
    calib = vision.calibrate(params, config, data.train.images[:256])
    n_layers = len(vgg.sites(config))
    runs, counts_by_run = {}, {}
    for name in sw.runs.split(","):
        bits, is_switching = SWITCHING_RUNS[name]
        sc = schedule(sw, is_switching)
        console.say(progress, f"run {name}: retraining ({sc.epochs} epochs)")
        t0 = time.perf_counter()
        _, info = vision.switching_finetune(
            params,
            config,
            calib,
            [bits] * n_layers,
            [sw.bits_a] * n_layers,
            data,
            sc,
            lr=sw.qat_lr,
            batch_size=tr.batch_size,
            seed=seed,
            progress=progress,
        )
        seconds = time.perf_counter() - t0
        if is_switching:
            counts_by_run[name] = info["window_counts"]
        runs[name] = _run_row(
            name,
            sw,
            sc,
            info,
            seconds,
            {
                "dev_error": info["dev_error"],
                "test_error": info["test_error"],
                "dev_wrong": _bits(info["dev_wrong"]),
                "test_wrong": _bits(info["test_wrong"]),
            },
        )
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
                f"4-bit, test error {r['test_error'] - ref:+.4f} vs uniform 4-bit QAT"
            )
    return {"seed": seed, "float": float_res, "runs": runs}, counts_by_run


def run_vgg(cfg: ExperimentConfig) -> dict:
    """The VGG-9 experiment: float training, then every run, for every seed.

    With ``--seeds`` above 1 the report is the seed study
    (:mod:`mohaq_jax.orchestration.switching_study`: paired intervals, operating points, plot).
    """
    from mohaq_jax.orchestration import switching_study

    sw = cfg.switching
    os.makedirs(cfg.output.out, exist_ok=True)
    started = time.perf_counter()
    data, config = vgg_data(cfg)
    print(data.notice)
    per_seed, counts_by_run = [], {}
    for seed in range(sw.seed, sw.seed + sw.seeds):
        one, counts = vgg_seed(cfg, data, config, seed)
        per_seed.append(one)
        counts_by_run = counts_by_run or counts  # histogram of the first seed
    res = {
        "dataset": data.name,
        "notice": data.notice,
        "settings": data.settings,
        "model_config": config.to_dict(),
        "config": cfg.to_dict(),
        "float": per_seed[0]["float"],
        "runs": per_seed[0]["runs"],
        "seconds_total": None,
        "backend": jax.default_backend(),
    }
    if sw.seeds > 1:
        res["per_seed"] = per_seed
        res["study"] = switching_study.summarize(
            per_seed, cfg.search.n_bootstrap, cfg.search.confidence
        )
    res["seconds_total"] = time.perf_counter() - started
    if sw.seeds > 1:
        text = switching_study.report(res)
        switching_study.plot(
            os.path.join(cfg.output.out, "accuracy_vs_storage.png"), res["study"]
        )
    else:
        text = vgg_report(res)
    _write(cfg.output.out, res, text, counts_by_run)
    return res


def _write(out: str, res: dict, text: str, counts_by_run: dict) -> None:
    with atomic.atomic_open(os.path.join(out, "results.json")) as f:
        json.dump(res, f, indent=1, default=float)
    atomic.write_text(os.path.join(out, "report.md"), text)
    if counts_by_run:
        switch_histogram(os.path.join(out, "switch_counts.png"), counts_by_run)
    print(text)


def switch_histogram(path, counts_by_run: dict) -> None:
    """Histogram of contiguous-level switches per weight, one curve per run."""
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
    ax.set_title("weight switches per run")
    ax.legend()
    fig.tight_layout()
    atomic.savefig(fig, path, dpi=120)
    plt.close(fig)


_ENERGY_NOTE = (
    "reconfigurable PE model relative to uniform 4/4 bits (lower is better). "
    "Compression counts base bits, the extra bits and the index marking them"
)


def sru_report(res: dict) -> str:
    lines = [
        f"# Switching-aware mixed precision, SRU on {res['dataset']}",
        "",
        res["notice"] or "Real speech.",
        "",
        f"Float baseline: dev PER {res['float']['dev_per']:.4f}, test PER "
        f"{res['float']['test_per']:.4f} (trained {res['float']['seconds']:.0f} s, "
        f"loaded: {res['float']['loaded']}).",
        "",
        "Every PER here is smoothed (argmax of posteriors averaged over 7 frames; "
        "no decoder). Energy vs u4 weighs MAC and memory energies that are "
        "PLACEHOLDER constants (SiLago's pJ, hardware/reconfig.py).",
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
        f"Energy: per-frame MAC + weight-memory energy on the 2-4-bit {_ENERGY_NOTE}; "
        "SRU biases and recurrent vectors are not counted.",
        "",
    ]
    return "\n".join(lines) + "\n"


def vgg_report(results: dict) -> str:
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
            f"{r['dev_error']:.4f} | {c['compression_vs_uniform4']:.3f}x | "
            f"{c['compression_vs_float32']:.2f}x | {c['energy_rel_uniform4']:.3f} | "
            f"{r['seconds']:.0f} |"
        )
    lines += [
        "",
        f"Energy: per-inference MAC + weight-memory energy on the 2-4-bit "
        f"{_ENERGY_NOTE} (per layer the cheaper of a 1-bit flag per weight and a "
        "list of positions).",
        "",
        "Paper (Kim et al. 2021, VGG-9 on CIFAR-10): 1.37x better compression "
        "than uniform 4-bit without accuracy loss, 1.29x energy saving.",
        "",
    ]
    for name, r in results["runs"].items():
        if r.get("paper_comparison"):
            lines.append(f"- {name}: {r['paper_comparison']}")
    return "\n".join(lines) + "\n"
