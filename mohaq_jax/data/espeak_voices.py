"""Speakers and corpus sizes of the synthesized eSpeak NG corpus.

A synthetic "speaker" is a fixed combination of engine settings: a voice variant
(the files of ``espeak-ng-data/voices/!v``, which change formants, breathiness,
tone ...), a base pitch, a rate, a pitch range and a word gap. Sizes say how many
speakers each split has and how many sentences each speaker reads.

``timit`` copies TIMIT's split sizes (Garofolo et al., 1993): 462 training speakers x
8 sentences = 3 696 utterances, a 50-speaker development set (400 utterances) and the
24-speaker core test set (192 utterances). Its speakers are drawn as distinct
``(variant, pitch, rate)`` voices from the grid of every variant the engine ships x
:data:`PITCH_LEVELS` x :data:`RATE_LEVELS` (:func:`voice_grid_size`: 104 x 10 x 13 =
13 520 with espeakng-loader's data), every variant in use. As in the smaller sizes the
test speakers use variants never heard in training or development; no voice occurs in
two splits.
"""

from __future__ import annotations

import dataclasses
import os

import numpy as np


@dataclasses.dataclass(frozen=True)
class Speaker:
    """One synthetic speaker: a fixed combination of engine settings."""

    speaker_id: str
    voice: str  # e.g. "en-us+f3"
    rate: int  # words per minute
    pitch: int  # 0..100
    pitch_range: int  # 0..100
    word_gap: int  # 10 ms units


#: Voice variants heard in training / dev; the test set uses unseen ones.
TRAIN_VARIANTS = ("m1", "m2", "m3", "m4", "m6", "f1", "f2", "f4", "klatt", "klatt3")
TEST_VARIANTS = ("m5", "m7", "f3", "f5", "klatt2", "klatt4")

#: Base pitches and rates of the ``voices="engine"`` grid, within the ranges the
#: fixed-variant sizes draw from (pitch 25..74, rate 135..199 words per minute); a
#: step of 5 is about the smallest difference that changes the sound audibly.
PITCH_LEVELS = tuple(range(25, 75, 5))  # 10 levels
RATE_LEVELS = tuple(range(135, 200, 5))  # 13 levels
#: Every TEST_EXTRA_STRIDE-th engine variant outside TEST_VARIANTS (sorted) is also
#: reserved for the test set of the ``voices="engine"`` sizes (about 1/8 of them).
TEST_EXTRA_STRIDE = 14


@dataclasses.dataclass(frozen=True)
class EspeakSize:
    """Corpus size: speakers and sentences per speaker for each split."""

    n_train_speakers: int
    n_dev_speakers: int
    n_test_speakers: int
    train_sentences: int
    eval_sentences: int  # per dev / test speaker
    # "fixed": variants from TRAIN_VARIANTS / TEST_VARIANTS, pitch and rate drawn
    # freely; "engine": distinct (variant, pitch, rate) voices from the grid of every
    # variant the engine ships (see the module docstring).
    voices: str = "fixed"

    def __post_init__(self):
        if self.voices not in ("fixed", "engine"):
            raise ValueError(f"voices must be 'fixed' or 'engine', got {self.voices!r}")

    @property
    def n_utterances(self) -> dict[str, int]:
        """Utterances per split."""
        return {
            "train": self.n_train_speakers * self.train_sentences,
            "dev": self.n_dev_speakers * self.eval_sentences,
            "test": self.n_test_speakers * self.eval_sentences,
        }

    def cache_fields(self) -> dict:
        """Fields that key the cache (``voices`` only when not the default, so the
        cache keys of the fixed-variant sizes did not change when it was added)."""
        fields = dataclasses.asdict(self)
        if self.voices == "fixed":
            del fields["voices"]
        return fields


SIZES: dict[str, EspeakSize] = {
    "default": EspeakSize(30, 6, 6, 16, 10),
    "tiny": EspeakSize(3, 2, 2, 3, 2),
    # TIMIT: 462 train speakers x 8 (SI + SX) sentences, 50 dev and 24 core-test
    # speakers x 8 sentences.
    "timit": EspeakSize(462, 50, 24, 8, 8, voices="engine"),
}

#: Valid ``size`` arguments, for CLI choices.
SIZE_NAMES: tuple[str, ...] = tuple(SIZES)


def check_size(size: str) -> EspeakSize:
    """The size called ``size``; a ValueError naming the valid ones otherwise."""
    if size not in SIZES:
        raise ValueError(f"unknown eSpeak corpus size {size!r}; one of {SIZE_NAMES}")
    return SIZES[size]


def engine_variants(data_path: str | os.PathLike) -> tuple[str, ...]:
    """Voice variants the engine ships (``voices/!v`` of its data), sorted."""
    folder = os.path.join(os.fspath(data_path), "voices", "!v")
    if not os.path.isdir(folder):
        raise FileNotFoundError(f"eSpeak NG data has no variant folder {folder}")
    return tuple(
        sorted(n for n in os.listdir(folder) if os.path.isfile(os.path.join(folder, n)))
    )


def split_variants(variants: tuple[str, ...]) -> tuple[tuple[str, ...], ...]:
    """(train/dev variants, test variants) of the ``voices="engine"`` grid."""
    rest = [v for v in variants if v not in TEST_VARIANTS]
    test = tuple(v for v in variants if v in TEST_VARIANTS) + tuple(
        rest[::TEST_EXTRA_STRIDE]
    )
    return tuple(v for v in rest if v not in test), test


def voice_grid_size(variants: tuple[str, ...]) -> int:
    """Distinct (variant, pitch, rate) voices of the ``voices="engine"`` grid."""
    return len(variants) * len(PITCH_LEVELS) * len(RATE_LEVELS)


def _speaker_id(split: str, index: int, count: int) -> str:
    return f"{split}{index:0{max(2, len(str(count - 1)))}d}"


def _fixed_speakers(rng, size: EspeakSize) -> dict[str, list[Speaker]]:
    out = {}
    for split, count, variants in (
        ("train", size.n_train_speakers, TRAIN_VARIANTS),
        ("dev", size.n_dev_speakers, TRAIN_VARIANTS),
        ("test", size.n_test_speakers, TEST_VARIANTS),
    ):
        out[split] = [
            Speaker(
                speaker_id=_speaker_id(split, index, count),
                voice="en-us+"
                + variants[(index + rng.integers(len(variants))) % len(variants)],
                rate=int(rng.integers(135, 200)),
                pitch=int(rng.integers(25, 75)),
                pitch_range=int(rng.integers(20, 90)),
                word_gap=int(rng.integers(0, 3)),
            )
            for index in range(count)
        ]
    return out


def _grid_speakers(
    rng, size: EspeakSize, variants: tuple[str, ...]
) -> dict[str, list[Speaker]]:
    train_pool, test_pool = split_variants(variants)
    n_prosody = len(PITCH_LEVELS) * len(RATE_LEVELS)
    out: dict[str, list[Speaker]] = {}
    for pool, splits in (
        (train_pool, (("train", size.n_train_speakers), ("dev", size.n_dev_speakers))),
        (test_pool, (("test", size.n_test_speakers),)),
    ):
        total = sum(count for _, count in splits)
        if not pool or total > len(pool) * n_prosody:
            raise ValueError(
                f"{total} speakers need more distinct voices than {len(pool)} "
                f"variants x {n_prosody} pitch/rate levels give"
            )
        # Variants in turn (each used equally often), a fresh pitch x rate per use.
        order = [pool[i] for i in rng.permutation(len(pool))]
        prosody = {v: rng.permutation(n_prosody) for v in pool}
        index = 0
        for split, count in splits:
            speakers = []
            for local in range(count):
                variant = order[index % len(order)]
                cell = int(prosody[variant][index // len(order)])
                pitch_i, rate_i = divmod(cell, len(RATE_LEVELS))
                speakers.append(
                    Speaker(
                        speaker_id=_speaker_id(split, local, count),
                        voice=f"en-us+{variant}",
                        rate=RATE_LEVELS[rate_i],
                        pitch=PITCH_LEVELS[pitch_i],
                        pitch_range=int(rng.integers(20, 90)),
                        word_gap=int(rng.integers(0, 3)),
                    )
                )
                index += 1
            out[split] = speakers
    return out


def make_speakers(
    rng: np.random.Generator,
    size: EspeakSize,
    variants: tuple[str, ...] | None = None,
) -> dict[str, list[Speaker]]:
    """Draws the speakers of each split (test speakers use unseen variants).

    Args:
      rng: the speakers' generator.
      size: how many speakers per split, and how their voices are chosen.
      variants: the engine's variants (:func:`engine_variants`); needed when
        ``size.voices == "engine"``.

    Returns:
      split name -> speakers, ids ``<split><index>``.
    """
    if size.voices == "fixed":
        return _fixed_speakers(rng, size)
    if not variants:
        raise ValueError("size with voices='engine' needs the engine's variants")
    return _grid_speakers(rng, size, tuple(variants))
