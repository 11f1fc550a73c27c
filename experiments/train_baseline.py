"""Trains (or loads) the float SRU baseline that every MOHAQ experiment starts from.

    python -m experiments.train_baseline                      # synthetic eSpeak corpus
    python -m experiments.train_baseline --data timit --timit-dir /data/TIMIT

The checkpoint ``OUT/baseline.msgpack`` records the model config, the data settings and
the training config; running again loads it (or resumes it if it was interrupted),
and a checkpoint made for other settings is refused unless ``--retrain``. The logic
lives in :mod:`mohaq_jax.train`.
"""

from __future__ import annotations

import argparse
import dataclasses
import sys

from mohaq_jax import checkpoint, train
from mohaq_jax.data import load_corpus


def parse_args(argv=None) -> argparse.Namespace:
    defaults = train.TrainConfig()
    model_defaults = train.BASELINE_MODEL
    parser = argparse.ArgumentParser(
        description=__doc__.split("\n")[0],
        formatter_class=argparse.ArgumentDefaultsHelpFormatter,
    )
    data = parser.add_argument_group("data")
    data.add_argument(
        "--data",
        choices=("espeak", "timit"),
        default="espeak",
        help="corpus: synthetic eSpeak NG speech (no download) or TIMIT",
    )
    data.add_argument(
        "--timit-dir",
        default=None,
        help="your TIMIT copy (with --data timit); default: NLTK's sample",
    )
    data.add_argument(
        "--size",
        choices=("default", "tiny"),
        default="default",
        help="eSpeak corpus size ('tiny' is for smoke tests)",
    )
    data.add_argument(
        "--data-seed",
        type=int,
        default=0,
        help="eSpeak corpus seed (speakers, sentences, degradations)",
    )
    model = parser.add_argument_group("model")
    model.add_argument(
        "--hidden",
        type=int,
        default=model_defaults["hidden"],
        help="SRU hidden units per direction",
    )
    model.add_argument(
        "--layers",
        type=int,
        default=model_defaults["n_layers"],
        help="stacked SRU layers",
    )
    model.add_argument(
        "--proj",
        type=int,
        default=model_defaults["n_proj"],
        help="low-rank input projection before SRU layers (0 = none)",
    )
    model.add_argument(
        "--dropout",
        type=float,
        default=model_defaults["dropout"],
        help="dropout on every SRU layer's output while training",
    )
    model.add_argument(
        "--unidirectional",
        action="store_true",
        help="forward recurrence only (else bidirectional)",
    )
    opt = parser.add_argument_group("training")
    opt.add_argument(
        "--epochs",
        type=int,
        default=defaults.epochs,
        help="maximum epochs (training also stops when lr < min lr)",
    )
    opt.add_argument(
        "--batch-size",
        type=int,
        default=defaults.batch_size,
        help="utterances per step",
    )
    opt.add_argument(
        "--lr",
        type=float,
        default=defaults.lr,
        help="initial Adam learning rate, halved when dev PER stalls",
    )
    opt.add_argument(
        "--min-lr",
        type=float,
        default=defaults.min_lr,
        help="stop once the halved learning rate falls below this",
    )
    opt.add_argument(
        "--grad-clip",
        type=float,
        default=defaults.grad_clip,
        help="global gradient-norm clip (0 = off)",
    )
    opt.add_argument(
        "--weight-decay",
        type=float,
        default=defaults.weight_decay,
        help="decoupled weight decay (AdamW; 0 = Adam)",
    )
    opt.add_argument(
        "--pad-multiple",
        type=int,
        default=defaults.pad_multiple,
        help="batch lengths are rounded up to a multiple of this "
        "(larger: fewer compilations, more padding)",
    )
    opt.add_argument(
        "--seed",
        type=int,
        default=defaults.seed,
        help="init, dropout and batch-order seed",
    )
    out = parser.add_argument_group("checkpoint")
    out.add_argument(
        "--out",
        default="checkpoints/espeak",
        help="checkpoint folder (holds baseline.msgpack)",
    )
    out.add_argument(
        "--resume",
        action=argparse.BooleanOptionalAction,
        default=True,
        help="continue an interrupted run from its checkpoint; --no-resume starts over",
    )
    out.add_argument(
        "--retrain",
        action="store_true",
        help="train from scratch, overwriting a checkpoint made for other settings",
    )
    out.add_argument("--no-progress", action="store_true", help="no progress bar")
    return parser.parse_args(argv)


def main(argv=None) -> int:
    args = parse_args(argv)
    if args.data == "espeak":
        corpus = load_corpus("espeak", seed=args.data_seed, size=args.size)
    else:
        corpus = load_corpus("timit", timit_dir=args.timit_dir)
    if corpus.notice:
        print(corpus.notice)
    model_config = train.baseline_model_config(
        corpus,
        hidden=args.hidden,
        n_layers=args.layers,
        n_proj=args.proj,
        dropout=args.dropout,
        bidirectional=not args.unidirectional,
    )
    train_config = dataclasses.replace(
        train.TrainConfig(),
        epochs=args.epochs,
        batch_size=args.batch_size,
        lr=args.lr,
        min_lr=args.min_lr,
        grad_clip=args.grad_clip,
        weight_decay=args.weight_decay,
        pad_multiple=args.pad_multiple,
        seed=args.seed,
    )
    try:
        params, info = train.get_or_train_baseline(
            corpus,
            model_config,
            train_config,
            args.out,
            retrain=args.retrain or not args.resume,
            progress=not args.no_progress,
        )
    except checkpoint.CheckpointMismatch as err:
        print(f"error: {err}", file=sys.stderr)
        return 2
    verb = "loaded" if info["loaded"] else "trained"
    print(
        f"{verb} {info['path']}: {info['epoch']} epochs, "
        f"best dev PER {info['best_dev_per']:.4f}"
    )
    if info["epoch_seconds"]:
        per_epoch = sum(info["epoch_seconds"]) / len(info["epoch_seconds"])
        print(f"{per_epoch:.1f} s per epoch ({info['seconds']:.0f} s in all)")
    test = train.evaluate(
        params,
        model_config,
        corpus.test,
        corpus.fold39,
        pad_multiple=train_config.pad_multiple,
    )
    print(f"test PER {test['per']:.4f}  frame error {test['fer']:.4f}")
    return 0


if __name__ == "__main__":
    sys.exit(main())
