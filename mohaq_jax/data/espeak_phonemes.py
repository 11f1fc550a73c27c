"""eSpeak NG phoneme mnemonics mapped onto the 39 TIMIT scoring phones (Lee & Hon, 1989)."""

from __future__ import annotations

# ------------------------------------------------------------- phoneme mapping

#: eSpeak NG English (en-us) phoneme mnemonics -> TIMIT 39-phone labels.
#: Stress and length marks (' , = % and the like) are stripped before lookup.
#: Multi-label entries split the phoneme's duration evenly: the centring and
#: r-coloured diphthongs that TIMIT writes as vowel + r (A@ "start" -> aa r,
#: i@ "near" -> ih r ...), the triphthongs (aI@ "fire" -> ay er) and the
#: syllabic @L -> ah l. TIMIT's own diphthongs (ay aw ey ow oy) stay single.
#: Pauses become 'sil'. Unknown mnemonics are an error, never dropped.
ESPEAK_TO_TIMIT39: dict[str, tuple[str, ...]] = {
    # pauses
    "_": ("sil",),
    "_:": ("sil",),
    "_!": ("sil",),
    "_|": ("sil",),
    "_^_": ("sil",),
    # stops, flap, affricates
    "p": ("p",),
    "b": ("b",),
    "t": ("t",),
    "d": ("d",),
    "k": ("k",),
    "g": ("g",),
    "t#": ("dx",),
    "d#": ("dx",),
    "t2": ("t",),
    "?": ("t",),  # en-us glottal stop is an allophone of t
    "tS": ("ch",),
    "dZ": ("jh",),
    # fricatives (TIMIT zh folds into sh)
    "f": ("f",),
    "v": ("v",),
    "T": ("th",),
    "D": ("dh",),
    "s": ("s",),
    "z": ("z",),
    "S": ("sh",),
    "Z": ("sh",),
    "h": ("hh",),
    "x": ("k",),
    # nasals (syllabic n / m fold onto n / m)
    "m": ("m",),
    "n": ("n",),
    "N": ("ng",),
    "n-": ("n",),
    "m-": ("m",),
    # liquids and glides
    "l": ("l",),
    "l#": ("l",),
    "l/": ("l",),
    "l/2": ("l",),
    "r": ("r",),
    "r-": ("r",),
    "r/": ("r",),
    "j": ("y",),
    "w": ("w",),
    "W": ("w",),
    ";": ("y",),  # the engine's linking glide between i and a following vowel
    # monophthongs
    "i": ("iy",),
    "i:": ("iy",),
    "I": ("ih",),
    "I2": ("ih",),
    "I#": ("ih",),
    "e": ("eh",),
    "E": ("eh",),
    "a": ("ae",),
    "aa": ("ae",),
    "a#": ("ae",),
    "A:": ("aa",),
    "A": ("aa",),
    "0": ("aa",),
    "O:": ("aa",),
    "O": ("aa",),
    "O2": ("aa",),
    "V": ("ah",),
    "@": ("ah",),
    "@2": ("ah",),
    "@5": ("ah",),
    "@-": ("ah",),
    "U": ("uh",),
    "u:": ("uw",),
    "u": ("uw",),
    "3": ("er",),
    "3:": ("er",),
    "@r": ("er",),
    # diphthongs TIMIT keeps
    "aI": ("ay",),
    "aU": ("aw",),
    "eI": ("ey",),
    "oU": ("ow",),
    "OI": ("oy",),
    "aI2": ("ay",),
    "aI3": ("ay",),
    # r-coloured / centring diphthongs, triphthongs, syllabic l
    "A@": ("aa", "r"),
    "O@": ("aa", "r"),
    "o@": ("ow", "r"),
    "0@": ("aa", "r"),
    "e@": ("eh", "r"),
    "i@": ("ih", "r"),
    "i@3": ("ih", "r"),
    "U@": ("uh", "r"),
    "aI@": ("ay", "er"),
    "aI@3": ("ay", "er"),
    "aU@": ("aw", "er"),
    "@L": ("ah", "l"),
}

_STRESS_MARKS = "'," + "=%"


class UnknownPhonemeError(ValueError):
    """An eSpeak phoneme mnemonic without a TIMIT mapping."""


def map_phoneme(mnemonic: str) -> tuple[str, ...]:
    """TIMIT-39 labels for one eSpeak phoneme mnemonic.

    Args:
      mnemonic: as in the engine's phoneme events, e.g. "'A@" or "t#".

    Returns:
      One or two labels from PHONES_39.

    Raises:
      UnknownPhonemeError: the mnemonic is not in ESPEAK_TO_TIMIT39 (the message
        names it).
    """
    bare = mnemonic.strip(_STRESS_MARKS) or mnemonic
    try:
        return ESPEAK_TO_TIMIT39[bare]
    except KeyError:
        raise UnknownPhonemeError(
            f"eSpeak phoneme {mnemonic!r} has no TIMIT mapping; "
            "add it to ESPEAK_TO_TIMIT39"
        ) from None
