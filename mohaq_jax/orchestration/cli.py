"""The command line of every experiment, built in one place.

Every flag is declared once in :data:`mohaq_jax.settings.flags.FLAGS` (config field, flag name,
kind, help); its default comes from the dataclass in :mod:`mohaq_jax.settings.config` unless an
experiment overrides it, and ``--help`` shows it. :func:`build_parser` adds the
sections an experiment uses; :func:`parse_config` turns the parsed flags into an
:class:`~mohaq_jax.settings.config.ExperimentConfig` and validates it before any work;
:func:`guarded` turns user errors into one line on stderr and exit status 2
(``--debug`` shows the traceback instead).
"""

from __future__ import annotations

import argparse
import os
import sys
from collections.abc import Callable, Iterable, Mapping
from typing import Any

from mohaq_jax.settings import config as config_lib
from mohaq_jax.settings.flags import FLAGS, INTS, ONOFF, SWITCH, Flag

SECTION_TYPES = {
    "data": config_lib.DataSettings,
    "model": config_lib.ModelSettings,
    "vgg": config_lib.VGGSettings,
    "training": config_lib.TrainingSettings,
    "search": config_lib.SearchSettings,
    "beacons": config_lib.BeaconSettings,
    "switching": config_lib.SwitchingSettings,
    "output": config_lib.OutputSettings,
}

SECTION_TITLES = {
    "data": "data",
    "model": "model (float acoustic model)",
    "vgg": "model (float VGG-9)",
    "training": "float baseline training (part of the baseline's cache key)",
    "search": "quantization search",
    "beacons": "beacons (retrain a few genomes, let them stand in for their neighbours)",
    "switching": "switching-aware retraining",
    "output": "output",
}


#: Flags of the image experiments only (marked ``images`` in the flag table).
IMAGE_FLAGS = tuple(f.flag for f in FLAGS if f.images)


def comma_ints(text: str) -> tuple[int, ...]:
    """``"16,16,32"`` -> ``(16, 16, 32)`` (the ``INTS`` flag kind)."""
    try:
        return tuple(int(v) for v in text.split(","))
    except ValueError:
        raise argparse.ArgumentTypeError(
            f"expected comma-separated ints, got {text!r}"
        ) from None


def _argparse_kwargs(flag: Flag) -> dict:
    if flag.kind == SWITCH:
        return {"action": "store_true"}
    if flag.kind == ONOFF:
        return {"action": argparse.BooleanOptionalAction}
    if flag.kind == INTS:
        return {"type": comma_ints, "metavar": "N,N,..."}
    if isinstance(flag.kind, tuple):
        return {"choices": flag.kind}
    return {"type": flag.kind, "metavar": flag.flag[2:].upper().replace("-", "_")}


def _dest(flag: Flag) -> str:
    return f"{flag.section}.{flag.field}"


class HelpFormatter(
    argparse.ArgumentDefaultsHelpFormatter, argparse.RawDescriptionHelpFormatter
):
    """Shows every default and keeps the description's line breaks."""


class ArgumentParser(argparse.ArgumentParser):
    """argparse with one-line errors: ``prog: error: MESSAGE (see --help)``, exit 2."""

    def error(self, message):
        self.exit(2, f"{self.prog}: error: {message} (see --help)\n")


def build_parser(
    description: str,
    sections: Iterable[str],
    defaults: Mapping[str, Any] | None = None,
    only: Mapping[str, Iterable[str]] | None = None,
    exclude: Iterable[str] = (),
    images: bool = False,
    prog: str | None = None,
) -> ArgumentParser:
    """The parser of one experiment.

    Args:
      description: the experiment's docstring.
      sections: config sections whose flags it offers, in help order.
      defaults: per-experiment defaults by flag name (``{"--out": "runs/x"}``).
      only: per section, the fields offered (default: all of the section).
      exclude: flag names not offered.
      images: offer the image experiments' flags (:data:`IMAGE_FLAGS`).
      prog: program name in messages (default: argparse's).

    Returns:
      The parser; ``--debug`` and ``--no-progress`` are always there.
    """
    defaults = dict(defaults or {})
    only = {k: set(v) for k, v in (only or {}).items()}
    parser = ArgumentParser(
        description=description,
        formatter_class=HelpFormatter,
        prog=prog,
        allow_abbrev=False,  # one name per flag: no prefixes (--max-train)
    )
    sections = list(sections)
    if "output" not in sections:
        sections.append("output")
        only.setdefault("output", {"progress", "debug"})
    known = {f.flag for f in FLAGS if f.section in sections}
    unknown = set(defaults) - known
    if unknown:
        raise ValueError(f"defaults for flags not offered: {sorted(unknown)}")
    for section in sections:
        group = parser.add_argument_group(SECTION_TITLES[section])
        base = SECTION_TYPES[section]()
        for flag in FLAGS:
            if flag.section != section:
                continue
            if section in only and flag.field not in only[section]:
                continue
            if flag.flag in exclude or (flag.flag in IMAGE_FLAGS and not images):
                continue
            kwargs = _argparse_kwargs(flag)
            default = defaults.get(flag.flag, getattr(base, flag.field))
            if flag.invert:
                default = False
            group.add_argument(
                flag.flag,
                dest=_dest(flag),
                default=default,
                help=flag.help.replace("%", "%%"),
                **kwargs,
            )
    return parser


def config_from_args(args: argparse.Namespace) -> config_lib.ExperimentConfig:
    """The ExperimentConfig of parsed flags (flags not offered keep their defaults)."""
    values: dict[str, dict[str, Any]] = {s: {} for s in SECTION_TYPES}
    parsed = vars(args)
    for flag in FLAGS:
        dest = _dest(flag)
        if dest in parsed:
            value = parsed[dest]
            values[flag.section][flag.field] = (not value) if flag.invert else value
    parts = {s: SECTION_TYPES[s](**v) for s, v in values.items()}
    return config_lib.ExperimentConfig(**parts)


def parse_config(
    parser: ArgumentParser,
    argv: list[str] | None,
    validate: Callable[[config_lib.ExperimentConfig], None] | None = None,
) -> config_lib.ExperimentConfig:
    """Parses and validates flags; a user error exits with one line, status 2."""
    args = parser.parse_args(argv)
    cfg = config_from_args(args)
    if validate is not None:
        guarded(lambda: validate(cfg), cfg.output.debug, parser.prog)
    return cfg


#: Where the user-error exception types live (module, class name); a module that was
#: never imported raised none of them, so none is imported only to be caught.
USER_ERRORS = (
    ("mohaq_jax.runtime.checkpoint", "CheckpointError"),
    ("mohaq_jax.data", "TimitError"),  # the package imports all its loaders
    ("mohaq_jax.data", "TranscribedError"),
    ("mohaq_jax.data", "EspeakUnavailableError"),
    ("mohaq_jax.data.images", "CifarError"),
)


def user_errors() -> tuple[type[BaseException], ...]:
    """Exception types that mean the user's input is wrong (not a bug).

    Read from the modules already imported (:data:`USER_ERRORS`), so that a flag
    error costs no import of JAX or of the data code.
    """
    found = [config_lib.ConfigError]
    for module, name in USER_ERRORS:
        kind = getattr(sys.modules.get(module), name, None)
        if isinstance(kind, type) and issubclass(kind, BaseException):
            found.append(kind)
    return tuple(dict.fromkeys(found))


def guarded(fn: Callable[[], Any], debug: bool = False, prog: str | None = None):
    """Runs ``fn``; a user error prints one line on stderr and exits with status 2.

    With ``debug`` the exception propagates with its traceback.
    """
    try:
        return fn()
    except Exception as error:
        if debug or not isinstance(error, user_errors()):
            raise
        text = " ".join(str(error).split())
        print(f"{prog or sys.argv[0]}: error: {text}", file=sys.stderr)
        raise SystemExit(2) from None


def check_devices(search: config_lib.SearchSettings) -> None:
    """``--devices`` against the devices JAX sees (imports JAX; before any data).

    Raises:
      ConfigError: more devices asked for than there are.
    """
    if search.devices <= 1:
        return
    from mohaq_jax.runtime import sharding

    available = sharding.device_count()
    if search.devices > available:
        raise config_lib.ConfigError(
            f"--devices {search.devices}: only {available} device(s) available "
            f"({sharding.describe_devices()})"
        )


def check_resume(output: config_lib.OutputSettings, folders=("",)) -> None:
    """With ``--resume``, the search checkpoints in ``--out`` (and its ``folders``)
    are read before any work, so a damaged one is refused at once, not after the data,
    baseline and calibration were prepared.

    Raises:
      CheckpointDamaged: naming the file and the way out.
    """
    if not output.resume:
        return
    from mohaq_jax.runtime import checkpoint
    from mohaq_jax.search.mohaq import STATE_FILE

    for folder in folders:
        path = os.path.join(output.out, folder, STATE_FILE)
        if os.path.exists(path):
            checkpoint.read_meta(path)  # checksum and format


SEARCH_SECTIONS = ("data", "model", "training", "search", "beacons", "output")


def search_main(argv, description: str, experiment, out: str, margin: bool = False):
    """``main`` of a search experiment: flags -> config -> :func:`pipeline.run_mohaq`.

    Args:
      argv: command-line arguments (None: ``sys.argv[1:]``).
      description: the experiment's docstring (``--help``).
      experiment: a function returning the
        :class:`mohaq_jax.orchestration.pipeline.SearchExperiment` (called after the flags are
        checked, so that a flag error imports no JAX), or the SearchExperiment.
      out: default output folder.
      margin: offer ``--margin`` (the compression experiment).
    """
    import dataclasses as dc

    parser = build_parser(
        description,
        SEARCH_SECTIONS,
        defaults={"--out": out},
        exclude=() if margin else ("--margin",),
    )
    cfg = parse_config(
        parser,
        argv,
        lambda c: config_lib.validate(
            c, ("data", "model", "training", "search", "beacons")
        ),
    )
    guarded(lambda: check_devices(cfg.search), cfg.output.debug, parser.prog)
    folders = ("inference_only", "beacons") if cfg.beacons.enabled else ("",)
    guarded(lambda: check_resume(cfg.output, folders), cfg.output.debug, parser.prog)
    from mohaq_jax.orchestration import pipeline

    if callable(experiment):
        experiment = experiment()
    if margin:
        experiment = dc.replace(experiment, margin=cfg.search.margin)
    return guarded(
        lambda: pipeline.run_mohaq(cfg, experiment), cfg.output.debug, parser.prog
    )
