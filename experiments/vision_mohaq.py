"""MOHAQ on the VGG-9: NSGA-II over per-layer weight/activation bits of an image model.

The same search as ``timit_bitfusion`` (Rashed et al. 2021) on the VGG-9 of Kim et al.
(2021): trains (or loads from --baseline-dir) the float VGG-9, then searches dev
classification error against the platform's costs: Bitfusion (speedup, energy; 2/4/8/16
bits) or the 2-4-bit reconfigurable accelerator (energy, compression; 2/3/4 bits).
Default data: scikit-learn's 8x8 digits (real, small, always available);
``--dataset cifar10 --cifar-dir DIR`` for CIFAR-10 (the user's python batches).

    python -m experiments.vision_mohaq --platform bitfusion --out results/vision_bitfusion
"""

from __future__ import annotations

import argparse
import sys

from mohaq_jax import cli, vision_search
from mohaq_jax.data.images import CifarError

DEFAULTS = vision_search.VisionSearchConfig()


def _ints(text: str) -> tuple[int, ...]:
    try:
        return tuple(int(v) for v in text.split(","))
    except ValueError:
        raise argparse.ArgumentTypeError(
            f"expected comma-separated ints, got {text!r}"
        ) from None


def build_parser() -> argparse.ArgumentParser:
    p = argparse.ArgumentParser(
        description=__doc__, formatter_class=cli.HelpFormatter, allow_abbrev=False
    )
    d = DEFAULTS

    def add(flag, help, **kwargs):
        field = flag[2:].replace("-", "_")
        kwargs.setdefault("default", getattr(d, field, None))
        p.add_argument(flag, help=help, **kwargs)

    add("--out", "output folder (report.md, pareto.csv, plots, search checkpoint)")
    add("--dataset", "image data set", choices=("digits", "cifar10"))
    add("--cifar-dir", "CIFAR-10 python batches (cifar-10-batches-py), for cifar10")
    add("--max-train", "keep only this many training images", type=int)
    add("--image-size", "digits: 8x8 images upsampled to this size", type=int)
    add(
        "--conv-widths",
        "six conv widths, comma-separated; None = the data set's",
        type=_ints,
    )
    add("--fc-widths", "two hidden FC widths; None = the data set's", type=_ints)
    add(
        "--platform", "accelerator cost model", choices=sorted(vision_search.OBJECTIVES)
    )
    add("--epochs", "float training epochs", type=int)
    add("--batch-size", "float training batch size", type=int)
    add("--lr", "float training learning rate (Adam, cosine decay)", type=float)
    add("--train-seed", "float training seed (init, batch order)", type=int)
    add("--baseline-dir", "float VGG cache folder ('' = no cache)")
    add(
        "--calib-images",
        "training images the clipping values are calibrated on",
        type=int,
    )
    add(
        "--calib",
        "clipping calibration: MSE-optimal or max-abs",
        choices=("mse", "max"),
    )
    add("--eval-batch", "images per evaluation batch", type=int)
    add("--max-eval", "evaluate on at most this many dev/test images", type=int)
    add("--pop", "NSGA-II population", type=int)
    add("--offspring", "genomes evaluated per generation", type=int)
    add("--generations", "generations after the initial population", type=int)
    add("--seed", "search seed", type=int)
    add(
        "--max-error",
        "dev error bound; None = float dev error + --error-margin",
        type=float,
    )
    add("--error-margin", "allowed dev error above the float model's", type=float)
    add(
        "--memory-limit-mb", "memory constraint in MB; None = no constraint", type=float
    )
    add("--chunk-size", "genomes evaluated together (lax.map batch size)", type=int)
    add("--resume", "continue the search from OUT's checkpoint", action="store_true")
    add("--no-progress", "no progress output", action="store_true", default=False)
    add(
        "--debug",
        "tracebacks instead of one-line errors",
        action="store_true",
        default=False,
    )
    return p


def main(argv=None) -> dict:
    parser = build_parser()
    args = vars(parser.parse_args(argv))
    debug = args.pop("debug")
    args["progress"] = not args.pop("no_progress")
    try:
        return vision_search.run(vision_search.VisionSearchConfig(**args))
    except (CifarError, ValueError) as error:
        if debug:
            raise
        print(f"{parser.prog}: error: {' '.join(str(error).split())}", file=sys.stderr)
        raise SystemExit(2) from None


if __name__ == "__main__":
    main()
