"""MOHAQ inference-only search for Bitfusion (2 objectives, energy reported).

Objectives: error (dev) and -speedup; constraints: memory <= limit (the paper: 2 MB)
and error <= limit. Energy per frame is computed for every genome and reported.

    python -m experiments.timit_bitfusion
    python -m experiments.timit_bitfusion --timit-dir /data/TIMIT --paper-model
"""

import argparse

from mohaq_jax import experiment

OBJECTIVES = ("error", "speedup")
MAXIMIZE = ("speedup",)


def main(argv=None):
    parser = argparse.ArgumentParser(
        description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter
    )
    experiment.add_common_args(parser, {"out": "runs/timit_bitfusion"})
    args = parser.parse_args(argv)
    return experiment.run_mohaq(
        args,
        "bitfusion",
        OBJECTIVES,
        MAXIMIZE,
        title="MOHAQ on Bitfusion (inference-only search)",
    )


if __name__ == "__main__":
    main()
