"""Phone times from common label formats, mapped to the 39 TIMIT scoring phones.

Every reader returns the same thing: a list of :class:`PhoneInterval`
``(start_s, end_s, phone)`` in time order, phone names as written in the file.
:func:`to_timit39` maps a name (CMU/ARPAbet with or without stress digits, the
lower-case Festival names, TIMIT's 61 labels, silence and noise markers) onto
PHONES_39 (Lee & Hon, 1989; see :mod:`mohaq_jax.data.phones`), and
:func:`intervals_to_frame_labels` turns intervals into frame labels with the
same centre-sample rule as the TIMIT and eSpeak corpora.

Formats:
  * pocketsphinx-style phone JSON (``pocketsphinx_batch -phone_align`` /
    ``pocketsphinx align -p``): nested ``{"b": begin_s, "d": duration_s, "t": name,
    "w": [...]}``; the leaves are phones.
  * HTS labels (``.lab``): ``start end label`` per line, times in 100 ns units;
    the label is either a monophone or a full-context label
    ``p1^p2-p3+p4=p5@...`` whose current phone is ``p3``.
  * Praat TextGrid (read with ``praatio``): an interval tier of phones; empty
    intervals are silence.
"""

from __future__ import annotations

import json
import os
import pathlib
import re
from typing import NamedTuple

import numpy as np

from mohaq_jax.data import features as features_lib
from mohaq_jax.data.phones import PHONES_39, PHONES_61, fold_61_to_39


class PhoneInterval(NamedTuple):
    """One labelled stretch of audio."""

    start_s: float  # seconds from the start of the recording
    end_s: float  # seconds, > start_s
    phone: str  # as written in the source (e.g. "AH0", "ax", "SIL")


class PhoneTimesError(ValueError):
    """A phone-times file that cannot be used; the message names it."""


#: Names that mean "no phone here": silences, pauses, noises, unknown words.
SILENCE_NAMES = frozenset(
    {
        "",
        "sil",
        "sp",
        "spn",
        "pau",
        "<sil>",
        "h#",
        "#",
        "+nsn+",
        "+spn+",
        "+breath+",
        "+noise+",
        "+cough+",
        "+laugh+",
        "+um+",
        "+uh+",
        "<s>",
        "</s>",
    }
)

#: CMU/ARPAbet (and Festival) names that are not themselves TIMIT 39 classes.
_ARPABET_FOLDS = {"ao": "aa", "zh": "sh", "ax": "ah", "axr": "er"}

#: IPA symbols of American English with one clear ARPAbet/TIMIT phone (the CMU
#: dictionary's correspondence, e.g. Wikipedia "ARPABET"; MFA's english_us_mfa
#: diphthongs aj/aw/ej/ow/ɔj and aspirated or dental stops included). Symbols
#: with no single phone (a bare "a", "o", "e") are not listed: they are refused.
IPA_TO_ARPABET = {
    "ɑ": "aa",
    "ɒ": "aa",
    "æ": "ae",
    "ʌ": "ah",
    "ə": "ax",
    "ɐ": "ah",
    "ɔ": "ao",
    "aʊ": "aw",
    "aw": "aw",
    "aɪ": "ay",
    "aj": "ay",
    "ɛ": "eh",
    "ɝ": "er",
    "ɚ": "axr",
    "eɪ": "ey",
    "ej": "ey",
    "ɪ": "ih",
    "ɨ": "ix",
    "i": "iy",
    "oʊ": "ow",
    "əʊ": "ow",
    "ow": "ow",
    "ɔɪ": "oy",
    "ɔj": "oy",
    "ʊ": "uh",
    "u": "uw",
    "ʉ": "ux",
    "b": "b",
    "tʃ": "ch",
    "t͡ʃ": "ch",
    "d": "d",
    "ð": "dh",
    "ɾ": "dx",
    "f": "f",
    "ɡ": "g",
    "g": "g",
    "h": "hh",
    "dʒ": "jh",
    "d͡ʒ": "jh",
    "k": "k",
    "l": "l",
    "ɫ": "l",
    "l̩": "el",
    "ɫ̩": "el",
    "m": "m",
    "m̩": "em",
    "n": "n",
    "n̩": "en",
    "ŋ": "ng",
    "p": "p",
    "ɹ": "r",
    "r": "r",
    "s": "s",
    "ʃ": "sh",
    "t": "t",
    "θ": "th",
    "v": "v",
    "w": "w",
    "j": "y",
    "z": "z",
    "ʒ": "zh",
    "ɾ̃": "nx",
}
#: Marks dropped before the IPA look-up: stress, length, aspiration, dental,
#: unreleased, rhotic hook (``ɝ`` itself is listed above).
_IPA_MARKS = re.compile("[ˈˌːˑʰʲʷ̪̚˞]")

_STRESS = re.compile(r"[0-9]+$")


def to_timit39(phone: str) -> str:
    """Maps a phone name onto PHONES_39.

    Stress digits are dropped and case ignored; CMU AO -> aa, ZH -> sh, AX/AH -> ah;
    silence, pause and noise markers (SILENCE_NAMES) -> sil; TIMIT's 61 labels fold
    as Lee & Hon; IPA symbols with a clear ARPAbet phone (IPA_TO_ARPABET, stress,
    length and aspiration marks dropped) map through it.

    Args:
      phone: e.g. "AO1", "zh", "SIL", "pau", "ix", "ɑː".

    Returns:
      One of PHONES_39.

    Raises:
      PhoneTimesError: an unknown name, an IPA symbol without a clear phone, or
        TIMIT's glottal stop 'q' (not scored, so it has no class); the message
        says which names are expected.
    """
    name = phone.strip().lower()
    if name in SILENCE_NAMES:
        return "sil"
    name = _STRESS.sub("", name)
    if not name.isascii() or (name in IPA_TO_ARPABET and name not in PHONES_61):
        name = IPA_TO_ARPABET.get(_IPA_MARKS.sub("", name), name)
    name = _ARPABET_FOLDS.get(name, name)
    if name in PHONES_39:
        return name
    if name in PHONES_61:
        folded = fold_61_to_39(name)
        if folded is not None:
            return folded
    if not phone.strip().isascii():
        hint = (
            "an IPA symbol with no clear TIMIT-39 phone; map the tier to ARPAbet "
            "(CMU) or TIMIT labels"
        )
    else:
        hint = "expected ARPAbet (CMU), TIMIT, Festival or IPA phone names"
    raise PhoneTimesError(f"phone {phone!r} has no TIMIT-39 class ({hint})")


def _checked(intervals: list[PhoneInterval], path) -> list[PhoneInterval]:
    if not intervals:
        raise PhoneTimesError(f"{path}: no phone intervals")
    for previous, current in zip(intervals, intervals[1:], strict=False):
        if current.start_s < previous.end_s - 1e-6:
            raise PhoneTimesError(
                f"{path}: interval {current.phone!r} at {current.start_s:.3f}s "
                f"overlaps the previous one (ends {previous.end_s:.3f}s)"
            )
    for interval in intervals:
        if not interval.end_s > interval.start_s >= 0:
            raise PhoneTimesError(
                f"{path}: bad interval {interval.phone!r} "
                f"{interval.start_s}..{interval.end_s}s"
            )
    return intervals


def read_phone_json(path: os.PathLike | str) -> list[PhoneInterval]:
    """Reads pocketsphinx-style phone JSON (words holding phones, ``b``/``d``/``t``).

    The file holds one JSON object per line or one object in all; each object's
    innermost ``w`` entries (those without a ``w`` of their own) are phones.

    Args:
      path: a ``.json`` file.

    Returns:
      The phone intervals in time order (zero-length phones dropped).

    Raises:
      PhoneTimesError: unreadable JSON or missing fields.
    """
    text = pathlib.Path(path).read_text(encoding="utf-8")
    try:
        docs = [json.loads(line) for line in text.splitlines() if line.strip()]
    except json.JSONDecodeError:
        try:
            docs = [json.loads(text)]
        except json.JSONDecodeError as error:
            raise PhoneTimesError(f"{path}: not JSON ({error})") from None

    intervals: list[PhoneInterval] = []

    def leaves(node):
        children = node.get("w")
        if children:
            for child in children:
                leaves(child)
            return
        try:
            begin, duration, name = float(node["b"]), float(node["d"]), node["t"]
        except (KeyError, TypeError, ValueError):
            raise PhoneTimesError(
                f"{path}: phone entry {node!r} lacks numeric 'b', 'd' or 't'"
            ) from None
        if duration > 0:
            intervals.append(PhoneInterval(begin, begin + duration, str(name)))

    for doc in docs:
        leaves(doc)
    return _checked(sorted(intervals, key=lambda i: i.start_s), path)


_FULL_CONTEXT = re.compile(r"^[^-+]*\^[^-+]*-([^+]+)\+")


def read_hts_lab(
    path: os.PathLike | str, units_per_second: float = 1e7
) -> list[PhoneInterval]:
    """Reads an HTS label file, full-context or monophone.

    Args:
      path: a ``.lab`` file with ``start end label`` lines.
      units_per_second: time units per second (HTS: 100 ns units, 1e7).

    Returns:
      The phone intervals (the current phone of full-context labels).

    Raises:
      PhoneTimesError: malformed lines or times.
    """
    intervals = []
    text = pathlib.Path(path).read_text(encoding="utf-8", errors="replace")
    for number, line in enumerate(text.splitlines(), start=1):
        if not line.strip():
            continue
        parts = line.split(None, 2)
        if len(parts) != 3:
            raise PhoneTimesError(
                f"{path}:{number}: expected 'start end label', got {line!r}"
            )
        try:
            start = float(parts[0]) / units_per_second
            end = float(parts[1]) / units_per_second
        except ValueError:
            raise PhoneTimesError(f"{path}:{number}: bad times in {line!r}") from None
        label = parts[2].strip()
        context = _FULL_CONTEXT.match(label)
        if context:
            label = context.group(1)
        elif any(mark in label for mark in "^+=@/"):
            raise PhoneTimesError(
                f"{path}:{number}: cannot find the phone in label {label!r}"
            )
        intervals.append(PhoneInterval(start, end, label))
    return _checked(intervals, path)


def read_textgrid(
    path: os.PathLike | str, tier: str | None = None
) -> list[PhoneInterval]:
    """Reads one interval tier of a Praat TextGrid (long or short text format).

    Args:
      path: a ``.TextGrid`` file.
      tier: tier name; None picks "phones" (any case), else the only interval
        tier whose name contains "phone".

    Returns:
      The tier's intervals, empty ones (silence) included with phone "".

    Raises:
      PhoneTimesError: unreadable file or no such tier (the message lists tiers).
    """
    return _read_textgrid(path, tier)[0]


def _read_textgrid(path, tier) -> tuple[list[PhoneInterval], str]:
    """(intervals, the tier read); see :func:`read_textgrid`."""
    from praatio import textgrid

    try:
        grid = textgrid.openTextgrid(os.fspath(path), includeEmptyIntervals=True)
    except Exception as error:  # praatio raises several error types
        raise PhoneTimesError(f"{path}: unreadable TextGrid ({error})") from None
    names = list(grid.tierNames)
    if tier is None:
        candidates = [n for n in names if n.lower() == "phones"] or [
            n for n in names if "phone" in n.lower()
        ]
        if len(candidates) != 1:
            raise PhoneTimesError(
                f"{path}: cannot tell the phone tier among {names}; pass tier= "
                "(--phone-tier)"
            )
        tier = candidates[0]
    if tier not in names:
        raise PhoneTimesError(
            f"{path}: no tier {tier!r}; tiers are {names} (--phone-tier)"
        )
    entries = grid.getTier(tier).entries
    intervals = [
        PhoneInterval(float(e.start), float(e.end), str(e.label).strip())
        for e in entries
        if float(e.end) > float(e.start)
    ]
    return _checked(intervals, path), tier


#: File name endings this module reads, and the reader of each.
READERS = {
    ".phone.json": read_phone_json,
    ".json": read_phone_json,
    ".textgrid": read_textgrid,
    ".lab": read_hts_lab,
}


def read_phone_times(
    path: os.PathLike | str, tier: str | None = None
) -> list[PhoneInterval]:
    """Reads phone times, choosing the reader by file name ending (see READERS).

    Every label is checked on the way: one that :func:`to_timit39` cannot map is an
    error naming the file, the tier and the label.

    Args:
      path: the phone-times file.
      tier: the TextGrid tier (None: see :func:`read_textgrid`); other formats have
        no tiers and ignore it.

    Raises:
      PhoneTimesError: unknown format, unreadable file, no such tier, or a label
        with no TIMIT-39 class.
    """
    name = pathlib.Path(path).name.lower()
    for ending, reader in READERS.items():
        if name.endswith(ending):
            if reader is read_textgrid:
                intervals, tier = _read_textgrid(path, tier)
            else:
                intervals, tier = reader(path), None
            check_labels(intervals, path, tier)
            return intervals
    raise PhoneTimesError(
        f"{path}: unknown phone-times format (endings: {sorted(READERS)})"
    )


def check_labels(
    intervals: list[PhoneInterval], path: os.PathLike | str, tier: str | None = None
) -> None:
    """Raises PhoneTimesError naming file, tier and label unless every label maps.

    Args:
      intervals: as read from ``path``.
      path: the file, named in the message.
      tier: its tier (TextGrid), named in the message.
    """
    for interval in intervals:
        try:
            to_timit39(interval.phone)
        except PhoneTimesError as error:
            where = f"{path}" + (f", tier {tier!r}" if tier is not None else "")
            raise PhoneTimesError(
                f"{where}: label at {interval.start_s:.3f}s: {error}"
            ) from None


def to_timit39_intervals(intervals: list[PhoneInterval]) -> list[PhoneInterval]:
    """Maps every phone onto PHONES_39 and merges neighbouring equal labels."""
    merged: list[PhoneInterval] = []
    for interval in intervals:
        phone = to_timit39(interval.phone)
        if (
            merged
            and merged[-1].phone == phone
            and (abs(merged[-1].end_s - interval.start_s) < 1e-6)
        ):
            merged[-1] = merged[-1]._replace(end_s=interval.end_s)
        else:
            merged.append(interval._replace(phone=phone))
    return merged


def intervals_to_frame_labels(
    intervals: list[PhoneInterval],
    n_frames: int,
    config: features_lib.FeatureConfig = features_lib.DEFAULT_CONFIG,
) -> np.ndarray:
    """Frame labels over PHONES_39: the phone holding each frame's centre sample.

    As :func:`mohaq_jax.data.features.frame_labels`: a frame whose centre falls in
    a gap gets the next phone, one past the last interval gets -1 (trim those).

    Args:
      intervals: phone intervals in time order, any names :func:`to_timit39` maps.
      n_frames: frames of the utterance's features.
      config: sample rate, window and hop.

    Returns:
      shape=(n_frames,), int32: PHONES_39 index, -1 after the last interval.
    """
    rate = config.sample_rate
    starts = np.array([round(i.start_s * rate) for i in intervals], np.int64)
    ends = np.array([round(i.end_s * rate) for i in intervals], np.int64)
    labels = np.array([PHONES_39.index(to_timit39(i.phone)) for i in intervals])
    return features_lib.frame_labels(starts, ends, labels, n_frames, config)


def boundary_errors(
    aligned: list[PhoneInterval], reference: list[PhoneInterval]
) -> np.ndarray:
    """Start-time differences of phones that two labelings agree on.

    Both are folded to the 39 TIMIT phones (neighbouring equal labels merged), the
    label sequences are matched by edit distance (Levenshtein backtrace, unit
    costs), and for each pair of equal labels the difference of their start times
    is taken, except for the first phone of either (it starts at 0).

    Args:
      aligned: hypothesis intervals (e.g. from :class:`mohaq_jax.data.align.Aligner`).
      reference: reference intervals.

    Returns:
      shape=(n_matched,), float64: |start_aligned - start_reference| in seconds.
    """
    hyp, ref = to_timit39_intervals(aligned), to_timit39_intervals(reference)
    n, m = len(hyp), len(ref)
    cost = np.zeros((n + 1, m + 1), np.int64)
    cost[:, 0] = np.arange(n + 1)
    cost[0, :] = np.arange(m + 1)
    for i in range(1, n + 1):
        for j in range(1, m + 1):
            cost[i, j] = min(
                cost[i - 1, j] + 1,
                cost[i, j - 1] + 1,
                cost[i - 1, j - 1] + (hyp[i - 1].phone != ref[j - 1].phone),
            )
    errors = []
    i, j = n, m
    while i > 0 and j > 0:
        same = hyp[i - 1].phone == ref[j - 1].phone
        if cost[i, j] == cost[i - 1, j - 1] + (not same):
            if same and i > 1 and j > 1:
                errors.append(abs(hyp[i - 1].start_s - ref[j - 1].start_s))
            i, j = i - 1, j - 1
        elif cost[i, j] == cost[i - 1, j] + 1:
            i -= 1
        else:
            j -= 1
    return np.array(errors[::-1], np.float64)
