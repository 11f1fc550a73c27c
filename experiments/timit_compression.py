"""Post-training compression: error vs model size (MOHAQ Sec. V-A).

Two parts, on the same float baseline:
1. a uniform sweep: every weight at 16, 8, 6, 5, 4, 3, 2 bits (activations 16 bits);
2. an NSGA-II search over per-layer weight bits (2-16) minimizing error and size.
The report names the largest compression (over float32) whose dev error stays within
``--margin`` of the 16-bit model's, and its test error (the paper: 8x with no
significant increase on TIMIT).

    python -m experiments.timit_compression
    python -m experiments.timit_compression --timit-dir /data/TIMIT --margin 0.005
"""

from mohaq_jax.orchestration import cli


def experiment():
    """The platform and objectives (imported after the flags are checked)."""
    from mohaq_jax.orchestration.pipeline import SearchExperiment

    return SearchExperiment(
        platform="memory",
        objectives=("error", "memory_mb"),  # both minimized
        title="Post-training compression (error vs size)",
        sweep_bits=(16, 8, 6, 5, 4, 3, 2),
    )


def main(argv=None):
    return cli.search_main(
        argv, __doc__, experiment, out="runs/timit_compression", margin=True
    )


if __name__ == "__main__":
    main()
