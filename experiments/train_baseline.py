"""Trains (or loads) the float baseline that every MOHAQ experiment starts from.

    python -m experiments.train_baseline                      # synthetic eSpeak corpus
    python -m experiments.train_baseline --timit-dir /data/TIMIT

The data, model and training flags are those of the searches, with the same defaults,
and the checkpoint goes to the same place (``--baseline-dir``, by default a cache folder
named after a digest of data, model and training settings), so a search with the same
flags loads exactly this baseline. Running again loads it (or resumes it if it was
interrupted); ``--retrain-baseline`` trains it again. The logic lives in
:mod:`mohaq_jax.orchestration.prepare` and :mod:`mohaq_jax.train`.
"""

from __future__ import annotations

import os
import sys

from mohaq_jax.orchestration import cli
from mohaq_jax.settings.config import ExperimentConfig, validate

SECTIONS = ("data", "model", "training")


def run(cfg: ExperimentConfig) -> dict:
    """Loads or trains the baseline of ``cfg``, prints its dev and test error.

    Two readings of the phone error rate are printed, each named: *smoothed* (what
    training monitors: argmax of posteriors averaged over a few frames) and
    *decoded* (Viterbi phone loop with a bigram LM, the searches' default ``--per``,
    so these are the float errors a search's report shows for this baseline).
    """
    from mohaq_jax import train
    from mohaq_jax.orchestration import (
        prepare,  # JAX is imported once the flags are good
    )

    corpus = prepare.load_data(cfg.data, cfg.output.progress)
    if corpus.notice:
        print(corpus.notice)
    model_config, params, info = prepare.get_baseline(cfg, corpus)
    verb = "loaded" if info["loaded"] else "trained"
    print(
        f"{verb} {info['path']}: {info['epoch']} epochs, best dev PER (smoothed, the "
        f"training monitor's reading) {info['best_dev_per']:.4f}"
    )
    if info["epoch_seconds"]:
        per_epoch = sum(info["epoch_seconds"]) / len(info["epoch_seconds"])
        print(f"{per_epoch:.1f} s per epoch ({info['seconds']:.0f} s in all)")
    ckpt_dir = os.path.dirname(info["path"])
    decoder, _ = train.baseline_decoder(params, model_config, corpus, ckpt_dir)
    out = {**info}
    for split in ("dev", "test"):
        for mode in ("smoothed", "decoded"):
            rates = train.evaluate(
                params,
                model_config,
                getattr(corpus, split),
                corpus.fold39,
                pad_multiple=cfg.training.pad_multiple,
                decoder=decoder if mode == "decoded" else None,
                per_mode=mode,
            )
            out[f"{split}_per_{mode}"] = rates["per"]
            out[f"{split}_fer"] = rates["fer"]
        print(
            f"{split} PER: decoded {out[f'{split}_per_decoded']:.4f} (the searches' "
            f"reading), smoothed {out[f'{split}_per_smoothed']:.4f}; frame error "
            f"{out[f'{split}_fer']:.4f}"
        )
    out["test_per"], out["test_fer"] = out["test_per_decoded"], out["test_fer"]
    return out


def main(argv=None) -> int:
    parser = cli.build_parser(__doc__, SECTIONS)
    cfg = cli.parse_config(parser, argv, lambda c: validate(c, SECTIONS))
    cli.guarded(lambda: run(cfg), cfg.output.debug, parser.prog)
    return 0


if __name__ == "__main__":
    sys.exit(main())
