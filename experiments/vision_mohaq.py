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

from mohaq_jax import vision_search
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
        description=__doc__,
        formatter_class=argparse.RawDescriptionHelpFormatter,
        allow_abbrev=False,
    )
    add = p.add_argument
    add("--out", default=DEFAULTS.out, help="output folder")
    add("--dataset", choices=("digits", "cifar10"), default=DEFAULTS.dataset)
    add("--cifar-dir", default=None, help="CIFAR-10 python batches (cifar10)")
    add("--max-train", type=int, default=None, help="keep this many train images")
    add("--image-size", type=int, default=DEFAULTS.image_size, help="digits size")
    add("--conv-widths", type=_ints, default=None, help="six conv widths, e.g. 8,8,...")
    add("--fc-widths", type=_ints, default=None, help="two hidden FC widths")
    add("--platform", choices=sorted(vision_search.OBJECTIVES), default="bitfusion")
    add("--epochs", type=int, default=DEFAULTS.epochs, help="float training epochs")
    add("--batch-size", type=int, default=DEFAULTS.batch_size)
    add("--lr", type=float, default=DEFAULTS.lr)
    add("--train-seed", type=int, default=DEFAULTS.train_seed)
    add("--baseline-dir", default=DEFAULTS.baseline_dir, help="float VGG cache")
    add("--calib-images", type=int, default=DEFAULTS.calib_images)
    add("--calib", choices=("mse", "max"), default=DEFAULTS.calib, help="clipping")
    add("--eval-batch", type=int, default=DEFAULTS.eval_batch)
    add("--max-eval", type=int, default=None, help="at most this many dev/test images")
    add("--pop", type=int, default=DEFAULTS.pop)
    add("--offspring", type=int, default=DEFAULTS.offspring)
    add("--generations", type=int, default=DEFAULTS.generations)
    add("--seed", type=int, default=DEFAULTS.seed)
    add("--max-error", type=float, default=None, help="dev error bound")
    add("--error-margin", type=float, default=DEFAULTS.error_margin)
    add("--memory-limit-mb", type=float, default=None)
    add("--chunk-size", type=int, default=DEFAULTS.chunk_size)
    add("--resume", action="store_true")
    add("--no-progress", action="store_true")
    add("--debug", action="store_true", help="tracebacks instead of one-line errors")
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
