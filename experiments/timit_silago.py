"""MOHAQ inference-only search for the SiLago CGRA (3 objectives).

Objectives: error (dev), -speedup, energy per frame; constraints: memory <= limit and
error <= limit (the paper: 6 MB and 24 % on TIMIT). Runs on synthesized speech by
default (no download); ``--timit-dir`` runs it on TIMIT.

    python -m experiments.timit_silago            # default data, ~minutes on a CPU
    python -m experiments.timit_silago --timit-dir /data/TIMIT --paper-model
"""

from mohaq_jax.orchestration import cli


def experiment():
    """The platform and objectives (imported after the flags are checked)."""
    from mohaq_jax.orchestration.pipeline import SearchExperiment

    return SearchExperiment(
        platform="silago",
        objectives=("error", "speedup", "energy_pj"),  # error and energy minimized
        maximize=("speedup",),
        title="MOHAQ on SiLago (inference-only search)",
    )


def main(argv=None):
    return cli.search_main(argv, __doc__, experiment, out="runs/timit_silago")


if __name__ == "__main__":
    main()
