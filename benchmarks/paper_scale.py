"""Paper-scale rehearsal: the paper's SRU on a TIMIT-sized dev set.

Builds the MOHAQ authors' TIMIT model (:func:`mohaq_jax.models.sru.paper_config`: 4
bidirectional SRU layers of 550, projections of 256; 39 or 61 phone outputs) with
random weights, and a dev set of TIMIT's size and utterance lengths (400 utterances,
about 305 frames on average, 23 random features: speed and memory do not depend on
the values), and prints:

* the dev set's streaming batches (shapes, padding share);
* population evaluation: seconds of the first call (compilation of every bucket
  shape included) and genomes/s of a second population (compiled);
* the peak RSS of the process (``resource.getrusage``), which must not grow with the
  dev set: run ``--dev-utts 400`` and ``--dev-utts 1600`` and compare;
* the time of a training step of the paper model on TIMIT-sized batches (16
  utterances, time padded to 64), and how many steps one epoch over 3696 utterances
  takes.

Nothing here is extrapolated: the whole experiment at this scale (training epochs,
the search, peak memory) is measured end to end by ``benchmarks/rehearsal.py``.

``--one-batch`` evaluates the dev set as ONE padded batch (the evaluation before
streaming) for contrast; its memory grows with the split, so keep ``--dev-utts``
small with it. Run each setting in its own process (peak RSS is per process):

  nice -n 10 timeout 1800 python benchmarks/paper_scale.py --dev-utts 400 --pop 4
  nice -n 10 timeout 1800 python benchmarks/paper_scale.py --dev-utts 1600 --pop 4 \\
      --part eval
  python benchmarks/paper_scale.py --dev-utts 50 --one-batch --part eval
"""

from __future__ import annotations

import argparse
import json
import resource
import time

import jax
import jax.numpy as jnp
import numpy as np

from mohaq_jax import train
from mohaq_jax.data.batching import (
    DEFAULT_BATCH_FRAMES,
    Batch,
    BucketedSplit,
    bucketed_batches,
    pad_batch,
    round_up,
)
from mohaq_jax.data.corpus import Split
from mohaq_jax.evaluation import evaluate, genome
from mohaq_jax.models import qmodel, sru
from mohaq_jax.runtime import atomic

#: TIMIT's training set (utterances; SA sentences excluded): steps per epoch.
TIMIT_TRAIN_UTTS = 3696
#: TIMIT's utterance lengths at 100 frames/s: mean ~3.05 s, sd ~0.85 s, 0.9..7.8 s.
MEAN_FRAMES, SD_FRAMES, MIN_FRAMES, MAX_FRAMES = 305, 85, 90, 780


def peak_rss_gb() -> float:
    """Peak resident set size of this process so far, GB (Linux reports KiB)."""
    return resource.getrusage(resource.RUSAGE_SELF).ru_maxrss / 2**20


def timit_like_lengths(n: int, seed: int) -> np.ndarray:
    """Frames per utterance, lognormal with TIMIT's mean and spread, clipped."""
    rng = np.random.default_rng(seed)
    sigma = np.sqrt(np.log(1 + (SD_FRAMES / MEAN_FRAMES) ** 2))
    mu = np.log(MEAN_FRAMES) - sigma**2 / 2
    lengths = rng.lognormal(mu, sigma, n).round()
    return np.clip(lengths, MIN_FRAMES, MAX_FRAMES).astype(np.int64)


def random_split(n: int, n_features: int, n_classes: int, seed: int) -> Split:
    """Utterances of TIMIT-like lengths: random features, phone runs of ~8 frames."""
    rng = np.random.default_rng(seed)
    feats, labels = [], []
    for n_frames in timit_like_lengths(n, seed):
        feats.append(rng.standard_normal((n_frames, n_features)).astype(np.float32))
        runs = rng.integers(0, n_classes, n_frames // 4 + 1)
        durations = rng.integers(4, 13, len(runs))
        labels.append(np.repeat(runs, durations)[:n_frames].astype(np.int32))
        if len(labels[-1]) < n_frames:  # pad a short draw with its last phone
            labels[-1] = np.pad(labels[-1], (0, n_frames - len(labels[-1])), "edge")
    ids = [f"u{i}" for i in range(n)]
    return Split(feats, labels, ["spk"] * n, ids)


def measure_eval(args, config, params, dev) -> dict:
    """Population evaluation: compile + first call, then a timed second call."""
    calib_batch = pad_batch(dev, range(min(16, len(dev))))
    calib = qmodel.calibrate(
        params,
        config,
        jnp.asarray(calib_batch.features),
        jnp.asarray(calib_batch.lengths),
        "max",
        "max",
    )
    if args.one_batch:
        data = BucketedSplit((pad_batch(dev, range(len(dev))),), dev.n_frames, len(dev))
    else:
        data = bucketed_batches(dev, args.batch_frames)
    print("dev:", data.describe())
    space = genome.get_space(args.space, sru.sites(config))
    fold = np.arange(config.n_classes, dtype=np.int32)
    if config.n_classes == 61:
        from mohaq_jax.data.phones import FOLD_61_TO_39

        fold = np.asarray(FOLD_61_TO_39, np.int32)
    chunk = None if args.chunk_size == 0 else args.chunk_size
    evaluator = evaluate.PopulationEvaluator(
        config, space, fold, params, calib, chunk_size=chunk, genome_batch=args.pop
    )
    rng = np.random.default_rng(args.seed)
    populations = [
        rng.integers(0, space.upper + 1, (args.pop, space.n_genes)) for _ in range(2)
    ]
    out = {"padding_share": data.padding_share, "n_shapes": len(data.shapes)}
    start, cpu = time.perf_counter(), time.process_time()
    res = evaluator(populations[0], data)
    out["first_call_s"] = time.perf_counter() - start
    out["first_call_cpu_s"] = time.process_time() - cpu
    print(
        f"first call (compiles {len(data.shapes)} shapes): {out['first_call_s']:.1f} s "
        f"({out['first_call_cpu_s']:.1f} s CPU)"
    )
    out["eval_peak_rss_gb"] = out["first_call_peak_rss_gb"] = peak_rss_gb()
    if args.calls < 2:
        print(f"peak RSS after evaluation: {out['eval_peak_rss_gb']:.2f} GB")
        return out
    start, cpu = time.perf_counter(), time.process_time()
    res = evaluator(populations[1], data)
    seconds = time.perf_counter() - start
    out["second_call_cpu_s"] = time.process_time() - cpu
    out["genomes_per_s"] = args.pop / seconds
    out["eval_peak_rss_gb"] = peak_rss_gb()
    print(
        f"population of {args.pop}: {seconds:.1f} s ({out['second_call_cpu_s']:.1f} s "
        f"CPU) = {out['genomes_per_s']:.4f} genomes/s (PER of random weights "
        f"~{np.mean(res['phone_error']):.2f})"
    )
    print(f"peak RSS after evaluation: {out['eval_peak_rss_gb']:.2f} GB")
    return out


def measure_train(args, config, params) -> dict:
    """Times training steps on TIMIT-sized batches; counts an epoch's steps."""
    tc = train.TrainConfig()
    # Padded frames of one epoch, batched as fit() batches them (16 utterances
    # sorted by jittered length, time padded to a multiple of 64).
    lengths = timit_like_lengths(TIMIT_TRAIN_UTTS, seed=1).astype(np.float64)
    rng = np.random.default_rng(0)
    order = np.argsort(lengths * rng.uniform(0.9, 1.1, lengths.shape), kind="stable")
    epoch_slots, n_steps = 0, 0
    for i in range(0, len(order), tc.batch_size):
        longest = int(lengths[order[i : i + tc.batch_size]].max())
        epoch_slots += tc.batch_size * round_up(longest, tc.pad_multiple)
        n_steps += 1
    # Timed batches: 16 utterances of about the median length, one padded time.
    time_len = round_up(int(np.median(lengths)), tc.pad_multiple)
    batches = []
    for _ in range(args.train_steps + 1):
        n_frames = rng.integers(time_len - tc.pad_multiple + 1, time_len + 1, 16)
        labels = rng.integers(0, config.n_classes, (tc.batch_size, time_len))
        labels = np.where(np.arange(time_len)[None] < n_frames[:, None], labels, -1)
        batches.append(
            Batch(
                rng.standard_normal(
                    (tc.batch_size, time_len, config.n_features), np.float32
                ),
                labels.astype(np.int32),
                n_frames.astype(np.int32),
            )
        )
    step_fn = train._jitted_step(config, tc.grad_clip, tc.weight_decay)
    opt_state = train.make_optimizer(tc).init(params)
    params = jax.tree.map(jnp.copy, params)  # the step donates its inputs
    key = jax.random.key(0)
    start = time.perf_counter()
    params, opt_state, loss = step_fn(params, opt_state, batches[0], key)
    jax.block_until_ready(loss)
    compile_s = time.perf_counter() - start
    start, cpu = time.perf_counter(), time.process_time()
    for i, batch in enumerate(batches[1:]):
        params, opt_state, loss = step_fn(
            params, opt_state, batch, jax.random.fold_in(key, i)
        )
    jax.block_until_ready(loss)
    per_step = (time.perf_counter() - start) / args.train_steps
    cpu_step = (time.process_time() - cpu) / args.train_steps
    print(
        f"training: {args.train_steps} steps of {tc.batch_size} x {time_len} frames: "
        f"{per_step:.2f} s/step ({cpu_step:.2f} s CPU; first step, compilation "
        f"included: {compile_s:.1f} s)"
    )
    print(
        f"one epoch over {TIMIT_TRAIN_UTTS} utterances: {n_steps} steps, "
        f"{epoch_slots} padded frames (epochs measured: benchmarks/rehearsal.py)"
    )
    return {
        "train_step_s": per_step,
        "train_step_cpu_s": cpu_step,
        "train_compile_s": compile_s,
        "epoch_steps": n_steps,
        "epoch_padded_frames": epoch_slots,
        "train_peak_rss_gb": peak_rss_gb(),
    }


def main(argv=None) -> dict:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--dev-utts", type=int, default=400, help="400 (TIMIT) or 1600")
    parser.add_argument(
        "--batch-frames",
        type=int,
        default=DEFAULT_BATCH_FRAMES,
        help="frames (rows x padded time) per evaluation batch",
    )
    parser.add_argument("--pop", type=int, default=4, help="genomes per population")
    parser.add_argument(
        "--chunk-size", type=int, default=2, help="genomes evaluated together (0: all)"
    )
    parser.add_argument("--classes", type=int, choices=(39, 61), default=39)
    parser.add_argument("--space", default="silago", help="genome space")
    parser.add_argument(
        "--model",
        choices=("paper", "default"),
        default="paper",
        help="paper: paper_config; default: the default job's baseline structure",
    )
    parser.add_argument(
        "--one-batch",
        action="store_true",
        help="evaluate the dev set as one padded batch (the old path; memory grows)",
    )
    parser.add_argument("--part", choices=("all", "eval", "train"), default="all")
    parser.add_argument(
        "--calls",
        type=int,
        choices=(1, 2),
        default=2,
        help="populations evaluated: 1 = only the first (compiling) call",
    )
    parser.add_argument("--train-steps", type=int, default=3, help="timed steps")
    parser.add_argument("--seed", type=int, default=0)
    parser.add_argument("--json", help="write the figures here")
    args = parser.parse_args(argv)
    if args.dev_utts < 1 or args.pop < 1 or args.batch_frames < 1:
        parser.error("--dev-utts, --pop and --batch-frames must be >= 1")

    if args.model == "paper":
        config = sru.paper_config(n_classes=args.classes, n_features=23)
    else:
        config = sru.Config(
            n_features=23, n_classes=args.classes, **train.BASELINE_MODEL
        )
    params = sru.init_params(jax.random.key(args.seed), config)
    n_params = sum(x.size for x in jax.tree.leaves(params))
    print(
        f"model: {args.model} ({config.n_layers} x {config.hidden}, "
        f"{n_params / 1e6:.2f} M params), {jax.devices()[0].platform}, "
        f"batch_frames {args.batch_frames}, chunk {args.chunk_size}, pop {args.pop}"
    )
    figures = {"args": vars(args), "n_params": int(n_params)}
    if args.part in ("all", "eval"):
        dev = random_split(args.dev_utts, 23, args.classes, seed=2)
        figures.update(measure_eval(args, config, params, dev))
    if args.part in ("all", "train"):
        figures.update(measure_train(args, config, params))
    figures["peak_rss_gb"] = peak_rss_gb()
    print(f"peak RSS: {figures['peak_rss_gb']:.2f} GB")
    if args.json:
        with atomic.atomic_open(args.json) as f:
            json.dump(figures, f, indent=1)
    return figures


if __name__ == "__main__":
    main()
