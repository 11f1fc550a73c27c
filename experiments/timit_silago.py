"""MOHAQ inference-only search for the SiLago CGRA (3 objectives).

Objectives: error (dev), -speedup, energy per frame; constraints: memory <= limit and
error <= limit (the paper: 6 MB and 24 % on TIMIT). Runs on synthesized speech by
default (no download); ``--timit-dir`` runs it on TIMIT.

    python -m experiments.timit_silago            # default data, ~minutes on a CPU
    python -m experiments.timit_silago --timit-dir /data/TIMIT --paper-model
"""

import argparse

from mohaq_jax import experiment

OBJECTIVES = (
    "error",
    "speedup",
    "energy_pj",
)  # error and energy minimized, speedup maximized
MAXIMIZE = ("speedup",)


def main(argv=None):
    parser = argparse.ArgumentParser(
        description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter
    )
    experiment.add_common_args(parser, {"out": "runs/timit_silago"})
    args = parser.parse_args(argv)
    return experiment.run_mohaq(
        args,
        "silago",
        OBJECTIVES,
        MAXIMIZE,
        title="MOHAQ on SiLago (inference-only search)",
    )


if __name__ == "__main__":
    main()
