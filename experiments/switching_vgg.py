"""Switching-aware mixed precision on a VGG-9 (Kim et al., IEEE TNNLS 2021, Sec. V).

Trains a float VGG-9 (6 conv + 3 FC), then retrains it with quantization-aware
training at uniform 4, 3 and 2 bits and with switching-aware mixed precision at base
3 and 2 bits (+1 bit for the weights that switch most), all with 4-bit activations,
and reports test error, compression (vs uniform 4-bit and vs float32, counting the
extra bits and the index marking them) and energy on the 2-4-bit reconfigurable
accelerator model (:mod:`mohaq_jax.hardware.reconfig`). Default data: scikit-learn's
8x8 digits (real, small, always available); ``--cifar-dir`` for CIFAR-10.

    python -m experiments.switching_vgg --out results/switching_vgg

``--seeds N`` repeats float training and every run with N seeds on one fixed data
split and writes the seed study (:mod:`mohaq_jax.orchestration.switching_study`): paired bootstrap
intervals on dev and test (uniform vs float, switching vs uniform at the same base
bits, with one more bit, and interpolated to equal storage), the operating points
that match uniform 4-bit on dev (compression and placeholder energy vs u4), and
``accuracy_vs_storage.png``. The regime where uniform 2-bit QAT loses accuracy on the
digits (learning-rate band off: chosen on dev, it lets more weights switch):

    python -m experiments.switching_vgg --runs u2,s2,u3,s3,u4 --seeds 3 \
        --lr-band 0 --out results/switching_vgg_seeds
"""

from __future__ import annotations

from mohaq_jax.orchestration import cli
from mohaq_jax.settings import config

SECTIONS = ("data", "vgg", "training", "search", "switching", "output")


def main(argv=None):
    parser = cli.build_parser(
        __doc__,
        SECTIONS,
        defaults={
            "--out": "results/switching_vgg",
            "--epochs": 15,
            "--batch-size": 64,
            "--runs": ",".join(config.SWITCHING_RUNS),
            "--warmup-epochs": 3,
            "--window-epochs": 2,
            "--retrain-epochs": 3,
        },
        images=True,
        exclude=("--max-train-utts",),
        only={
            "data": ("cifar_dir", "max_train_images", "image_size", "image_noise"),
            "search": ("n_bootstrap", "confidence"),
            "training": ("epochs", "batch_size", "lr", "grad_clip"),
            "output": ("out", "progress", "debug"),
        },
    )

    def check(c):
        config.validate_switching(c.switching)
        config.validate_data_images(c.data)
        config.validate_vgg(c.vgg)
        config.validate_training(c.training)
        config.check_folder("--out", c.output.out)

    cfg = cli.parse_config(parser, argv, check)
    from mohaq_jax.orchestration import (
        switching_runs,  # JAX is imported once the flags are good
    )

    return cli.guarded(
        lambda: switching_runs.run_vgg(cfg), cfg.output.debug, parser.prog
    )


if __name__ == "__main__":
    main()
