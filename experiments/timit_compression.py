"""Post-training compression: error vs model size (MOHAQ Sec. V-A).

Two parts, on the same float baseline:
1. a uniform sweep: every weight at 16, 8, 6, 5, 4, 3, 2 bits (activations 16 bits);
2. an NSGA-II search over per-layer weight bits (2-16) minimizing error and size.
The report names the largest compression (over float32) whose dev error stays within
``--margin`` of the float model's, and its test error (the paper: 8x with no
significant increase on TIMIT).

    python -m experiments.timit_compression
    python -m experiments.timit_compression --timit-dir /data/TIMIT --margin 0.005
"""

import argparse

import numpy as np

from mohaq_jax import experiment

OBJECTIVES = ("error", "memory_mb")  # both minimized
SWEEP_BITS = (16, 8, 6, 5, 4, 3, 2)


def compression_section(margin):
    def section(problem, result, setup):
        space = problem.space
        lines = [
            "## Uniform weight bits (activations 16-bit)",
            "",
            "| weight bits | compression (x) | memory (MB) | dev error | test error |",
            "|---|---|---|---|---|",
        ]
        genomes = np.stack(
            [
                space.encode({**{n: b for n in space.gene_names[:-1]}, "a_all": 16})
                for b in SWEEP_BITS
            ]
        )
        dev = problem.evaluate(genomes)
        test = problem.errors(genomes, setup.test_batch)[problem.config.error_metric]
        for i, b in enumerate(SWEEP_BITS):
            lines.append(
                f"| {b} | {dev['compression'][i]:.2f} | {dev['memory_mb'][i]:.4g} "
                f"| {dev['error'][i]:.4f} | {test[i]:.4f} |"
            )
        float_space_err = problem.evaluate(genomes[:1])["error"][0]  # 16-bit ~ float
        allm = result.metrics
        ok = allm["error"] <= float_space_err + margin
        lines += [
            "",
            f"## Largest compression within {margin:.3f} of the 16-bit error",
            "",
        ]
        if ok.any():
            best = int(np.flatnonzero(ok)[np.argmax(allm["compression"][ok])])
            g = result.genomes[best][None]
            t = problem.errors(g, setup.test_batch)[problem.config.error_metric][0]
            from mohaq_jax.search.report import bits_words

            lines += [
                f"- **{allm['compression'][best]:.2f}x** over float32 "
                f"({allm['memory_mb'][best]:.4g} MB): dev error {allm['error'][best]:.4f} "
                f"(16-bit: {float_space_err:.4f}), test error {t:.4f}",
                f"- bits: {bits_words(space, result.genomes[best])}",
                "- the paper reports 8x without significant error increase on TIMIT",
            ]
        else:
            lines.append("- no evaluated genome stayed within the margin")
        return lines

    return section


def main(argv=None):
    parser = argparse.ArgumentParser(
        description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter
    )
    experiment.add_common_args(parser, {"out": "runs/timit_compression"})
    parser.add_argument(
        "--margin",
        type=float,
        default=0.01,
        help="error increase still counted as 'no significant increase' "
        "(absolute fraction, default 0.01 = 1 point)",
    )
    args = parser.parse_args(argv)
    return experiment.run_mohaq(
        args,
        "memory",
        OBJECTIVES,
        (),
        title="Post-training compression (error vs size)",
        extra_report=compression_section(args.margin),
    )


if __name__ == "__main__":
    main()
