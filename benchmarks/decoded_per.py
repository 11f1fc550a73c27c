"""Float baseline's phone error rate read three ways: raw argmax, smoothed, decoded.

Loads (never trains) the default float baseline of ``experiments.timit_silago`` on the
default eSpeak corpus from the cache, fits or loads its phone-loop decoder
(``decoder.npz`` beside the checkpoint, :func:`mohaq_jax.decode.get_or_fit`) and prints
dev and test PER for ``per_mode`` raw / smoothed / decoded, plus the dev grid.

  python -m benchmarks.decoded_per [--baseline-dir DIR] [--n-states 1] [--json FILE]
"""

from __future__ import annotations

import argparse
import glob
import json
import os
import time

import numpy as np

from mohaq_jax import decode, train
from mohaq_jax.data import load_corpus
from mohaq_jax.data.corpus import default_cache_dir
from mohaq_jax.models.sru import ModelConfig


def main(argv=None):
    parser = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    parser.add_argument(
        "--baseline-dir",
        default=None,
        help="checkpoint folder (default: the only espeak-* folder under "
        "<cache>/baselines)",
    )
    parser.add_argument("--n-states", type=int, default=decode.DEFAULT_N_STATES)
    parser.add_argument("--json", default=None, help="write the results here")
    args = parser.parse_args(argv)

    ckpt_dir = args.baseline_dir
    if ckpt_dir is None:
        found = sorted(glob.glob(str(default_cache_dir() / "baselines" / "espeak-*")))
        if len(found) != 1:
            raise SystemExit(
                f"--baseline-dir: expected one espeak baseline, got {found}"
            )
        ckpt_dir = found[0]
    path = os.path.join(ckpt_dir, train.BASELINE_FILE)
    corpus = load_corpus("espeak")
    params, meta = train.load_params(path, corpus=corpus)
    config = ModelConfig(**meta["model_config"])
    start = time.perf_counter()
    # n_states other than the default is fitted without touching the cache.
    cache = ckpt_dir if args.n_states == decode.DEFAULT_N_STATES else None
    decoder, info = train.baseline_decoder(
        params, config, corpus, cache, n_states=args.n_states
    )
    fit_s = time.perf_counter() - start
    print(
        f"decoder: {'loaded' if info['loaded'] else 'fitted'} in {fit_s:.1f} s "
        f"({info['path']}); lm_weight {info['lm_weight']}, insertion penalty "
        f"{info['insertion_penalty']}, n_states {info['n_states']}"
    )
    grid = np.asarray(info["dev_per_grid"])
    print(
        "dev PER grid (rows lm_weight " + str(info["lm_weights"]) + ", columns "
        "penalty " + str(info["penalties"]) + "):"
    )
    for w, row in zip(info["lm_weights"], grid, strict=True):
        print(f"  {w:4.1f}: " + " ".join(f"{v:.3f}" for v in row))
    results = {"decoder": {k: v for k, v in info.items() if k != "dev_per_grid"}}
    for split in ("dev", "test"):
        for mode in ("raw", "smoothed", "decoded"):
            rates = train.evaluate(
                params,
                config,
                getattr(corpus, split),
                corpus.fold39,
                decoder=decoder,
                per_mode=mode,
            )
            results[f"{split}_{mode}"] = rates
            print(
                f"{split:4s} {mode:8s}: PER {rates['per']:.3f}  FER {rates['fer']:.3f}"
            )
    if args.json:
        with open(args.json, "w") as f:
            json.dump(results, f, indent=2)
    return results


if __name__ == "__main__":
    main()
