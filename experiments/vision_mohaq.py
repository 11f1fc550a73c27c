"""MOHAQ on the VGG-9: NSGA-II over per-layer weight/activation bits of an image model.

The same search as ``timit_bitfusion`` (Rashed et al. 2021) on the VGG-9 of Kim et al.
(2021): trains (or loads from --baseline-dir) the float VGG-9, then searches dev
classification error against the platform's costs: Bitfusion (speedup, energy; 2/4/8/16
bits) or the 2-4-bit reconfigurable accelerator (energy, compression; 2/3/4 bits).
Default data: scikit-learn's 8x8 digits (real, small, always available);
``--cifar-dir DIR`` for CIFAR-10 (the user's python batches).

    python -m experiments.vision_mohaq --platform bitfusion --out results/vision_bitfusion
"""

from __future__ import annotations

from mohaq_jax.orchestration import cli
from mohaq_jax.settings import config
from mohaq_jax.settings.flags import IMAGE_SEARCH_DEFAULTS, IMAGE_SEARCH_FIELDS

SECTIONS = ("data", "vgg", "training", "search", "beacons", "output")


def build_parser() -> cli.ArgumentParser:
    """The flags of the image search: the flag table's, with its defaults."""
    return cli.build_parser(
        __doc__,
        SECTIONS,
        defaults=IMAGE_SEARCH_DEFAULTS,
        only=IMAGE_SEARCH_FIELDS,
        images=True,
    )


def check(cfg: config.ExperimentConfig) -> None:
    """Everything the user can get wrong, before any work (ConfigError)."""
    config.validate(cfg, ("images", "vgg", "training", "search", "beacons"))


def main(argv=None) -> dict:
    parser = build_parser()
    cfg = cli.parse_config(parser, argv, check)
    cli.guarded(lambda: cli.check_resume(cfg.output), cfg.output.debug, parser.prog)
    from mohaq_jax.orchestration import (
        vision_search,  # JAX is imported once the flags are good
    )

    return cli.guarded(lambda: vision_search.run(cfg), cfg.output.debug, parser.prog)


if __name__ == "__main__":
    main()
