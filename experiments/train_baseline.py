"""Trains (or loads) the float baseline that every MOHAQ experiment starts from.

    python -m experiments.train_baseline                      # synthetic eSpeak corpus
    python -m experiments.train_baseline --timit-dir /data/TIMIT

The data, model and training flags are those of the searches, with the same defaults,
and the checkpoint goes to the same place (``--baseline-dir``, by default a cache folder
named after a digest of data, model and training settings), so a search with the same
flags loads exactly this baseline. Running again loads it (or resumes it if it was
interrupted); ``--retrain-baseline`` trains it again. The logic lives in
:mod:`mohaq_jax.prepare` and :mod:`mohaq_jax.train`.
"""

from __future__ import annotations

import sys

from mohaq_jax import cli
from mohaq_jax.config import ExperimentConfig, validate

SECTIONS = ("data", "model", "training")


def run(cfg: ExperimentConfig) -> dict:
    """Loads or trains the baseline of ``cfg``, prints its dev and test error."""
    from mohaq_jax import prepare, train  # JAX is imported once the flags are good

    corpus = prepare.load_data(cfg.data, cfg.output.progress)
    if corpus.notice:
        print(corpus.notice)
    model_config, params, info = prepare.get_baseline(cfg, corpus)
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
        pad_multiple=cfg.training.pad_multiple,
    )
    print(f"test PER {test['per']:.4f}  frame error {test['fer']:.4f}")
    return {**info, "test_per": test["per"], "test_fer": test["fer"]}


def main(argv=None) -> int:
    parser = cli.build_parser(__doc__, SECTIONS)
    cfg = cli.parse_config(parser, argv, lambda c: validate(c, SECTIONS))
    cli.guarded(lambda: run(cfg), cfg.output.debug, parser.prog)
    return 0


if __name__ == "__main__":
    sys.exit(main())
