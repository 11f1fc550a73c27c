"""Sentences for the synthesized corpus: the engine's English word list and a small grammar."""

from __future__ import annotations

import os
import pathlib
import struct

import numpy as np

# ------------------------------------------------------------------- word list


def dictionary_words(data_path: str | os.PathLike) -> list[str]:
    """Decodes the headwords of the engine's compiled English dictionary.

    ``en_dict`` holds the exceptions list (``en_list``) compiled into 1024 hash
    chains; each entry is [entry length][word length | 0x40 if packed |
    0x80 if no phonemes][word][phonemes\\0][flags]. Packed words store each
    letter a..z as 6 bits (1..26), as TransposeAlphabet in espeak-ng's
    dictionary.c does for English.

    Returns:
      Sorted unique lower-case words of 3..10 letters a-z with a vowel letter.
    """
    blob = pathlib.Path(data_path, "en_dict").read_bytes()
    n_hash, rules_offset = struct.unpack("<ii", blob[:8])
    position, words = 8, set()
    for _ in range(n_hash):
        while blob[position] != 0:
            length, word_byte = blob[position], blob[position + 1]
            raw = blob[position + 2 : position + 2 + (word_byte & 0x3F)]
            if word_byte & 0x40:
                bits, n_bits = int.from_bytes(raw, "big"), 8 * len(raw)
                codes = [
                    (bits >> (n_bits - 6 * (i + 1))) & 0x3F for i in range(n_bits // 6)
                ]
                while codes and codes[-1] == 0:
                    codes.pop()
                if codes and all(1 <= c <= 26 for c in codes):
                    words.add("".join(chr(ord("a") - 1 + c) for c in codes))
            position += length
        position += 1
    if position != rules_offset:
        raise ValueError(f"{data_path}/en_dict: unexpected layout")
    return sorted(
        w for w in words if 3 <= len(w) <= 10 and any(v in w for v in "aeiouy")
    )


_DETERMINERS = (
    "the",
    "a",
    "this",
    "that",
    "some",
    "every",
    "my",
    "our",
    "their",
    "one",
)
_PREPOSITIONS = (
    "in",
    "on",
    "near",
    "under",
    "with",
    "from",
    "after",
    "before",
    "over",
    "behind",
)
_CONJUNCTIONS = ("and", "but", "while", "because", "so")
_AUXILIARIES = ("was", "is", "will be", "had been", "might be")
_ADJECTIVE_ENDINGS = (
    "ous",
    "ful",
    "ive",
    "able",
    "ible",
    "al",
    "ic",
    "ent",
    "ant",
    "less",
    "ish",
)

#: Sentence templates; upper-case slots are filled from the word classes.
_TEMPLATES = (
    "DET ADJ NOUN VERBED DET NOUN",
    "DET NOUN VERBED PREP DET ADJ NOUN",
    "DET NOUN AUX VERBING PREP DET NOUN",
    "NOUN and NOUN VERBED ADV",
    "DET ADJ NOUN AUX ADJ CONJ DET NOUN VERBED",
    "DET NOUN of DET NOUN VERBED ADV",
    "PREP DET NOUN DET ADJ NOUN VERBED",
    "DET NOUN VERBED DET NOUN PREP DET NOUN",
)


def word_classes(words: list[str]) -> dict[str, list[str]]:
    """Sorts words into rough grammatical slots by their endings."""
    classes: dict[str, list[str]] = {
        "NOUN": [],
        "ADJ": [],
        "ADV": [],
        "VERBED": [],
        "VERBING": [],
    }
    for word in words:
        if word.endswith("ing") and len(word) > 5:
            classes["VERBING"].append(word)
        elif word.endswith("ed") and len(word) > 4:
            classes["VERBED"].append(word)
        elif word.endswith("ly") and len(word) > 4:
            classes["ADV"].append(word)
        elif word.endswith(_ADJECTIVE_ENDINGS):
            classes["ADJ"].append(word)
        else:
            classes["NOUN"].append(word)
    return classes


def make_sentence(rng: np.random.Generator, classes: dict[str, list[str]]) -> str:
    """One sentence from a random template with random words."""
    slots = {
        "DET": _DETERMINERS,
        "PREP": _PREPOSITIONS,
        "CONJ": _CONJUNCTIONS,
        "AUX": _AUXILIARIES,
        **classes,
    }
    template = _TEMPLATES[rng.integers(len(_TEMPLATES))]
    words = []
    for token in template.split():
        options = slots.get(token)
        words.append(options[rng.integers(len(options))] if options else token)
    return " ".join(words) + "."
