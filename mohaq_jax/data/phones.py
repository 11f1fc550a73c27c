"""TIMIT phone sets and the 61 -> 39 folding used for scoring.

The 61 labels are those of the TIMIT ``.PHN`` transcriptions (Garofolo et al.,
1993, ``PHONCODE.DOC``). Recognizers are trained on all 61 and scored after
folding to the 39 classes of Lee & Hon, "Speaker-independent phone recognition
using hidden Markov models", IEEE Trans. ASSP 37(11), 1989, Table I: allophones
are merged, the closures and pauses become ``sil`` and the glottal stop ``q`` is
dropped from scoring. This is the mapping MOHAQ's phone error rate uses.
"""

from __future__ import annotations

import numpy as np

#: The 61 TIMIT phone labels, in the order of TIMIT's PHONCODE.DOC groups.
PHONES_61: tuple[str, ...] = (
    # vowels (20)
    "iy",
    "ih",
    "eh",
    "ey",
    "ae",
    "aa",
    "aw",
    "ay",
    "ah",
    "ao",
    "oy",
    "ow",
    "uh",
    "uw",
    "ux",
    "er",
    "ax",
    "ix",
    "axr",
    "ax-h",
    # affricates (2), stops and flap (7)
    "jh",
    "ch",
    "b",
    "d",
    "g",
    "p",
    "t",
    "k",
    "dx",
    # fricatives (8)
    "s",
    "sh",
    "z",
    "zh",
    "f",
    "th",
    "v",
    "dh",
    # nasals (7)
    "m",
    "n",
    "ng",
    "em",
    "nx",
    "en",
    "eng",
    # semivowels and glides (7)
    "l",
    "r",
    "w",
    "y",
    "hh",
    "hv",
    "el",
    # closures (6) and others (4)
    "bcl",
    "dcl",
    "gcl",
    "pcl",
    "tcl",
    "kcl",
    "q",
    "pau",
    "epi",
    "h#",
)

#: The 39 scoring classes of Lee & Hon (1989).
PHONES_39: tuple[str, ...] = (
    "iy",
    "ih",
    "eh",
    "ae",
    "ah",
    "uw",
    "uh",
    "aa",
    "ey",
    "ay",
    "oy",
    "aw",
    "ow",
    "er",
    "l",
    "r",
    "w",
    "y",
    "m",
    "n",
    "ng",
    "ch",
    "jh",
    "dh",
    "b",
    "d",
    "dx",
    "g",
    "p",
    "t",
    "k",
    "z",
    "v",
    "f",
    "th",
    "s",
    "sh",
    "hh",
    "sil",
)

#: Lee & Hon (1989) Table I: the labels that fold onto another; every other label
#: in PHONES_61 is its own class. ``None`` means "drop from scoring".
_FOLDS: dict[str, str | None] = {
    "ao": "aa",
    "ax": "ah",
    "ax-h": "ah",
    "axr": "er",
    "hv": "hh",
    "ix": "ih",
    "el": "l",
    "em": "m",
    "en": "n",
    "nx": "n",
    "eng": "ng",
    "zh": "sh",
    "ux": "uw",
    "pcl": "sil",
    "tcl": "sil",
    "kcl": "sil",
    "bcl": "sil",
    "dcl": "sil",
    "gcl": "sil",
    "h#": "sil",
    "pau": "sil",
    "epi": "sil",
    "q": None,
}


def fold_61_to_39(phone: str) -> str | None:
    """Folds one TIMIT label to its Lee & Hon class.

    Args:
      phone: one of PHONES_61.

    Returns:
      The folded label (one of PHONES_39), or None for 'q' (not scored).

    Raises:
      ValueError: if ``phone`` is not a TIMIT label.
    """
    if phone not in PHONES_61:
        raise ValueError(f"unknown TIMIT phone label {phone!r}")
    return _FOLDS.get(phone, phone)


def fold_table(classes: tuple[str, ...]) -> np.ndarray:
    """Maps training classes onto indices of PHONES_39.

    Args:
      classes: training class labels; each a TIMIT label or already one of
        PHONES_39.

    Returns:
      shape=(len(classes),), int32: index into PHONES_39 per class, -1 where the
      class is dropped from scoring.
    """
    table = np.empty(len(classes), dtype=np.int32)
    for index, phone in enumerate(classes):
        folded = phone if phone in PHONES_39 else fold_61_to_39(phone)
        table[index] = -1 if folded is None else PHONES_39.index(folded)
    return table


#: shape=(61,), int32: PHONES_61 index -> PHONES_39 index (-1 for 'q').
FOLD_61_TO_39: np.ndarray = fold_table(PHONES_61)
