"""MOHAQ inference-only search for Bitfusion (2 objectives, energy reported).

Objectives: error (dev) and -speedup; constraints: memory <= limit (the paper: 2 MB)
and error <= limit. Energy per frame is computed for every genome and reported.
``--beacons`` compares inference-only and beacon-based search (same seed and budget).

    python -m experiments.timit_bitfusion
    python -m experiments.timit_bitfusion --beacons
    python -m experiments.timit_bitfusion --timit-dir /data/TIMIT --paper-model
"""

from mohaq_jax.orchestration import cli


def experiment():
    """The platform and objectives (imported after the flags are checked)."""
    from mohaq_jax.orchestration.pipeline import SearchExperiment

    return SearchExperiment(
        platform="bitfusion",
        objectives=("error", "speedup"),
        maximize=("speedup",),
        title="MOHAQ on Bitfusion (inference-only search)",
    )


def main(argv=None):
    return cli.search_main(argv, __doc__, experiment, out="runs/timit_bitfusion")


if __name__ == "__main__":
    main()
