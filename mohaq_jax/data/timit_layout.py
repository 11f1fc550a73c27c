"""Where a TIMIT copy keeps its utterances: the LDC layout and the NLTK sample.

Two layouts are read: the LDC one (``TRAIN|TEST/DR1..DR8/<speaker>/<utt>.WAV``
with ``.PHN``, names in any case) and the NLTK sample
(``nltk_data/corpora/timit/dr1-fvmh0/sx206.wav`` with ``.phn``, 16 speakers). The SA
sentences (the two dialect sentences every speaker reads) are left out, as in the
standard recipe.
"""

from __future__ import annotations

import dataclasses
import os
import pathlib
import re

from mohaq_jax.data.timit_files import TimitError


@dataclasses.dataclass(frozen=True)
class Utterance:
    """One utterance's files."""

    speaker: str  # lower case, e.g. "fcjf0"
    name: str  # lower case, e.g. "si1027"
    wav: pathlib.Path
    phn: pathlib.Path
    directory: str  # "train", "test" (LDC layout) or "" (NLTK sample)

    @property
    def utt_id(self) -> str:
        return f"{self.speaker}_{self.name}"


@dataclasses.dataclass(frozen=True)
class Unlabelled:
    """An SX/SI recording whose .PHN file is missing."""

    speaker: str  # lower case
    wav: pathlib.Path
    directory: str  # as Utterance.directory


def describe_unlabelled(unlabelled, speakers_without_labels, limit: int = 3) -> str:
    """One line naming and counting recordings without .PHN (and such speakers)."""
    names = " ".join(str(u.wav) for u in unlabelled[:limit])
    more = f" ... ({len(unlabelled)} in all)" if len(unlabelled) > limit else ""
    text = f"{len(unlabelled)} recording(s) without a .PHN file: {names}{more}"
    if speakers_without_labels:
        shown = " ".join(sorted(speakers_without_labels)[:limit])
        extra = len(speakers_without_labels) - limit
        text += f"; speaker(s) whose .PHN files are all lost: {shown}" + (
            f" ... ({len(speakers_without_labels)} in all)" if extra > 0 else ""
        )
    return text


# ------------------------------------------------------------------------ layout


def _child(directory: pathlib.Path, name: str) -> pathlib.Path | None:
    """A child whose name matches ``name`` case-insensitively."""
    for entry in directory.iterdir():
        if entry.name.lower() == name:
            return entry
    return None


def _find_ldc_root(root: pathlib.Path, depth: int = 2) -> pathlib.Path | None:
    """The directory holding TRAIN/ and TEST/ at or below ``root``."""
    if _child(root, "train") is not None or _child(root, "test") is not None:
        return root
    if depth == 0:
        return None
    for entry in sorted(root.iterdir()):
        if entry.is_dir():
            found = _find_ldc_root(entry, depth - 1)
            if found is not None:
                return found
    return None


def _count_sa(speaker_dir: pathlib.Path) -> int:
    return sum(
        1
        for entry in speaker_dir.iterdir()
        if entry.name.lower().startswith("sa") and entry.name.lower().endswith(".phn")
    )


def _speaker_utterances(
    speaker_dir: pathlib.Path, speaker: str, directory: str, unlabelled: list
):
    by_stem: dict[str, dict[str, pathlib.Path]] = {}
    for entry in speaker_dir.iterdir():
        stem, _, ext = entry.name.partition(".")
        if ext.lower() in ("wav", "phn"):
            by_stem.setdefault(stem.lower(), {})[ext.lower()] = entry
    for stem in sorted(by_stem):
        if stem.startswith("sa"):  # the two dialect sentences every speaker reads
            continue
        files = by_stem[stem]
        if "phn" not in files:
            unlabelled.append(Unlabelled(speaker, files["wav"], directory))
            continue
        if "wav" not in files:
            raise TimitError(f"{files['phn']}: no matching .WAV file")
        yield Utterance(speaker, stem, files["wav"], files["phn"], directory)


_NLTK_SPEAKER_DIR = re.compile(r"^dr[1-8]-([fm][a-z]{3}[0-9])$", re.IGNORECASE)


def discover(timit_dir: os.PathLike | str) -> tuple[str, list[Utterance]]:
    """Finds the SX/SI utterances of a TIMIT copy (see :func:`discover_all`)."""
    layout, utterances, _ = discover_all(timit_dir)
    return layout, utterances


def discover_all(
    timit_dir: os.PathLike | str,
) -> tuple[str, list[Utterance], list[Unlabelled]]:
    """Finds the SX/SI utterances of a TIMIT copy, and recordings without .PHN.

    Args:
      timit_dir: the LDC directory (holding TRAIN/ and TEST/, possibly one or
        two levels down) or NLTK's ``corpora/timit``.

    Returns:
      (layout, utterances, unlabelled): layout is "ldc" or "nltk"; unlabelled are
      the SX/SI .WAV files without a .PHN beside them.

    Raises:
      TimitError: missing directory or no recognizable layout.
    """
    root = pathlib.Path(timit_dir).expanduser()
    if not root.is_dir():
        raise TimitError(
            f"TIMIT directory {root} does not exist (or is not a directory)"
        )
    nltk_dirs = [
        e
        for e in sorted(root.iterdir())
        if e.is_dir() and _NLTK_SPEAKER_DIR.match(e.name)
    ]
    unlabelled: list[Unlabelled] = []
    if nltk_dirs:
        utterances = []
        for entry in nltk_dirs:
            speaker = _NLTK_SPEAKER_DIR.match(entry.name).group(1).lower()
            utterances.extend(_speaker_utterances(entry, speaker, "", unlabelled))
        return "nltk", utterances, unlabelled
    ldc_root = _find_ldc_root(root)
    if ldc_root is None:
        raise TimitError(
            f"{root}: no TIMIT layout found (expected TRAIN/ and TEST/ with "
            "DR1..DR8/<speaker>/<utt>.WAV|.PHN, or NLTK's dr1-<speaker>/ folders)"
        )
    utterances, n_sa = [], 0
    for part in ("train", "test"):
        part_dir = _child(ldc_root, part)
        if part_dir is None:
            continue
        for region in sorted(part_dir.iterdir()):
            if not (region.is_dir() and re.fullmatch(r"dr[1-8]", region.name.lower())):
                continue
            for speaker_dir in sorted(region.iterdir()):
                if speaker_dir.is_dir():
                    n_sa += _count_sa(speaker_dir)
                    utterances.extend(
                        _speaker_utterances(
                            speaker_dir, speaker_dir.name.lower(), part, unlabelled
                        )
                    )
    if not utterances and n_sa:
        raise TimitError(
            f"{ldc_root}: TRAIN/TEST hold only SA1/SA2 utterances ({n_sa} .PHN files); "
            "the standard recipe excludes the SA sentences by design (every speaker "
            "reads the same two), so the SX and SI utterances are needed"
        )
    if not utterances:
        raise TimitError(
            f"{ldc_root}: TRAIN/TEST hold no .WAV/.PHN utterances"
            + (f" ({describe_unlabelled(unlabelled, [])})" if unlabelled else "")
        )
    return "ldc", utterances, unlabelled


def find_nltk_timit() -> pathlib.Path | None:
    """NLTK's TIMIT sample directory (corpora/timit) if installed, else None."""
    candidates = [p for p in os.environ.get("NLTK_DATA", "").split(os.pathsep) if p]
    candidates += [
        str(pathlib.Path.home() / "nltk_data"),
        "/usr/share/nltk_data",
        "/usr/local/share/nltk_data",
        "/usr/lib/nltk_data",
        "/usr/local/lib/nltk_data",
    ]
    for base in candidates:
        path = pathlib.Path(base) / "corpora" / "timit"
        if path.is_dir():
            return path
    return None
