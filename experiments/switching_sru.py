"""Switching-aware mixed precision on the SRU acoustic model (Kim et al. 2021 x MOHAQ).

Gets the float SRU baseline (the same cached baseline the searches load for the same
data/model/training flags), calibrates clipping tables, then retrains at uniform 4 and
3 bits and with switching-aware mixed precision at base 3 bits (+1 bit for the weights
that switch most), activations at 4 bits. Reports phone error rate, compression (vs
uniform 4-bit and vs float32, extra bits and their index counted) and energy on the
2-4-bit reconfigurable accelerator model. Default data: the synthetic eSpeak NG corpus
(NOT TIMIT); ``--timit-dir`` for TIMIT.

    python -m experiments.switching_sru --out results/switching_sru
"""

from __future__ import annotations

from mohaq_jax.orchestration import cli
from mohaq_jax.settings import config

SECTIONS = ("data", "model", "training", "search", "switching", "output")


def main(argv=None):
    parser = cli.build_parser(
        __doc__,
        SECTIONS,
        defaults={"--out": "results/switching_sru"},
        exclude=("--seeds",),  # repeated seeds: the VGG experiment only
        only={
            "search": ("calib_utts", "calib"),
            "output": ("out", "progress", "debug"),
        },
    )
    cfg = cli.parse_config(
        parser,
        argv,
        lambda c: config.validate(
            c, ("data", "model", "training", "calibration", "switching")
        ),
    )
    from mohaq_jax.orchestration import (
        switching_runs,  # JAX is imported once the flags are good
    )

    return cli.guarded(
        lambda: switching_runs.run_sru(cfg), cfg.output.debug, parser.prog
    )


if __name__ == "__main__":
    main()
