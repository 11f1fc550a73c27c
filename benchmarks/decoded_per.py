"""Float baseline's phone error rate read three ways: raw argmax, smoothed, decoded.

Loads (never trains) the default float baseline of ``experiments.timit_silago`` on the
default eSpeak corpus from the cache, fits or loads its phone-loop decoder
(``decoder.npz`` beside the checkpoint, :func:`mohaq_jax.decode.get_or_fit`) and prints
dev and test PER for ``per_mode`` raw / smoothed / decoded, plus the dev grid. With
``--front pareto.json`` (a search's output on that baseline) it also re-scores the
Pareto solutions with the population evaluator in each mode (calibration as the
pipeline's: 32 training utterances, MSE clipping).

  python -m benchmarks.decoded_per [--baseline-dir DIR] [--front runs/x/pareto.json]
"""

from __future__ import annotations

import argparse
import json
import os
import time

import jax.numpy as jnp
import numpy as np

from mohaq_jax import decode, train
from mohaq_jax.data import load_corpus, pad_batch
from mohaq_jax.evaluation import genome
from mohaq_jax.evaluation.evaluate import PopulationEvaluator
from mohaq_jax.models import qmodel, sru
from mohaq_jax.runtime import atomic


def _whole_split(split) -> tuple:
    n_time = -(-max(len(f) for f in split.features) // 16) * 16
    batch = pad_batch(split, range(len(split)), pad_to=n_time)
    return tuple(jnp.asarray(x) for x in batch)


def rescore_front(path, corpus, config, params, decoder) -> list:
    """Each Pareto solution's dev/test PER in the three modes."""
    with open(path) as f:
        front = json.load(f)
    rng = np.random.default_rng(0)  # the pipeline's calibration batch
    cal = pad_batch(corpus.train, rng.choice(len(corpus.train), 32, replace=False))
    calib = qmodel.calibrate(
        params, config, jnp.asarray(cal.features), jnp.asarray(cal.lengths)
    )
    space = genome.get_space(front["space"], sru.sites(config))
    genomes = np.asarray([s["genome"] for s in front["solutions"]], np.int32)
    out = [
        {"bits": s["bits"], "speedup": s.get("speedup"), "search_error": s["error"]}
        for s in front["solutions"]
    ]
    for mode in ("raw", "smoothed", "decoded"):
        ev = PopulationEvaluator(
            config, space, corpus.fold39, params, calib, decoder=decoder, per_mode=mode
        )
        for split in ("dev", "test"):
            per = ev(genomes, _whole_split(getattr(corpus, split)))["phone_error"]
            for row, value in zip(out, per, strict=True):
                row[f"{split}_{mode}"] = float(value)
    reading = front.get("settings", {}).get("phone_error_read_by", "not recorded")
    print(f"front (search error = the search's dev PER, read {reading}):")
    for row in sorted(out, key=lambda r: -(r["speedup"] or 0)):
        print(
            f"  speedup {row['speedup'] or 0:5.2f} {row['bits']}: dev raw/smoothed/"
            f"decoded {row['dev_raw']:.3f}/{row['dev_smoothed']:.3f}/"
            f"{row['dev_decoded']:.3f}, test {row['test_raw']:.3f}/"
            f"{row['test_smoothed']:.3f}/{row['test_decoded']:.3f} "
            f"(search {row['search_error']:.3f})"
        )
    return out


def main(argv=None):
    parser = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    parser.add_argument(
        "--baseline-dir",
        default=None,
        help="checkpoint folder (default: the only espeak-* folder under "
        "<cache>/baselines)",
    )
    parser.add_argument("--n-states", type=int, default=decode.DEFAULT_N_STATES)
    parser.add_argument(
        "--front", default=None, help="pareto.json of a search to re-score"
    )
    parser.add_argument("--json", default=None, help="write the results here")
    args = parser.parse_args(argv)

    ckpt_dir = args.baseline_dir
    if ckpt_dir is None:  # the experiments' default baseline, keyed as they key it
        from mohaq_jax.orchestration import prepare
        from mohaq_jax.settings import config as config_lib

        cfg = config_lib.ExperimentConfig()
        default_corpus = prepare.load_data(cfg.data, progress=False)
        ckpt_dir = prepare.baseline_dir(
            cfg,
            default_corpus,
            prepare.model_config(cfg.model, default_corpus),
            prepare.train_config(cfg.training),
        )
        if not os.path.exists(os.path.join(ckpt_dir, train.BASELINE_FILE)):
            raise SystemExit(
                f"no default baseline at {ckpt_dir}: run python -m "
                "experiments.train_baseline first, or pass --baseline-dir"
            )
    path = os.path.join(ckpt_dir, train.BASELINE_FILE)
    corpus = load_corpus("espeak")
    params, meta = train.load_params(path, corpus=corpus)
    config = sru.Config(**meta["model_config"])
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
    if args.front:
        results["front"] = rescore_front(args.front, corpus, config, params, decoder)
    if args.json:
        with atomic.atomic_open(args.json) as f:
            json.dump(results, f, indent=2)
    return results


if __name__ == "__main__":
    main()
