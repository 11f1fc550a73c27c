"""Any transcribed recordings as a phone-recognition corpus (no TIMIT licence needed).

Two layouts are read (:mod:`mohaq_jax.data.transcribed_files` finds them):
  * LibriSpeech (Panayotov et al., "LibriSpeech: an ASR corpus based on public
    domain audio books", ICASSP 2015): ``SPEAKER/CHAPTER/SPEAKER-CHAPTER-NNNN.flac``
    with one ``SPEAKER-CHAPTER.trans.txt`` per chapter ("UTT-ID WORDS ..." lines);
    the speaker is the utterance id up to its first '-'.
  * plain: ``*.wav`` / ``*.flac`` with a same-name ``.txt`` transcript, anywhere
    below the corpus folder; the speaker is the first sub-folder, or for files
    directly in the corpus folder the file name up to its first '-' or '_'.

Frame labels come either from offline forced alignment of the transcripts
(``labels="align"``, :mod:`mohaq_jax.data.align`) or from phone-times files
beside the audio (``labels="given"``: ``NAME.phone.json``, ``NAME.TextGrid``,
``NAME_phones.TextGrid``, ``NAME_phone.lab`` or an HTS ``NAME.lab``; see
:mod:`mohaq_jax.data.phone_times`). A recording that cannot be read, or whose
transcript is empty, is skipped and counted with its reason, as one with a word
missing from the pronouncing dictionary; a phone-times file with a label that has no
TIMIT-39 class is refused, naming file, tier and label.
Features are those of the TIMIT and eSpeak corpora (:mod:`mohaq_jax.data.features`),
audio resampled to the front end's rate; classes are the 39 TIMIT scoring phones.
Speakers, not utterances, are split into train/dev/test, by a hash of the speaker
id and ``split_seed`` (the same speakers land in the same split on every machine).
"""

from __future__ import annotations

import dataclasses
import hashlib
import os
import pathlib
import sys

import numpy as np

from mohaq_jax.data import align as align_lib
from mohaq_jax.data import assemble
from mohaq_jax.data import corpus as corpus_lib
from mohaq_jax.data import features as features_lib
from mohaq_jax.data import phone_times as times_lib
from mohaq_jax.data.phones import PHONES_39
from mohaq_jax.data.transcribed_files import (
    AUDIO_SUFFIXES,
    GIVEN_ENDINGS,
    TranscribedError,
    Utterance,
    audio_problem,
    discover,
    read_audio,
    resample,
)


def assign_speakers(
    speakers: list[str],
    split_seed: int = 0,
    dev_fraction: float = 0.1,
    test_fraction: float = 0.1,
    all_test: bool = False,
) -> dict[str, list[str]]:
    """Splits speakers into train/dev/test, deterministically.

    Speakers are ordered by sha256(f"{split_seed}:{speaker}"); the first
    max(1, round(test_fraction * n)) are test, the next max(1, round(dev_fraction
    * n)) dev, the rest train. ``all_test`` puts every speaker in test (for
    evaluating a model trained elsewhere).

    Returns:
      dict split name -> sorted speaker ids.

    Raises:
      TranscribedError: fewer than 3 speakers (without all_test).
    """
    distinct = sorted(set(speakers))
    if all_test:
        return {"train": [], "dev": [], "test": distinct}
    if len(distinct) < 3:
        raise TranscribedError(
            f"{len(distinct)} speaker(s) cannot be split into train/dev/test by "
            "speaker; add speakers or pass all_test=True to evaluate only"
        )
    order = sorted(
        distinct,
        key=lambda s: hashlib.sha256(f"{split_seed}:{s}".encode()).hexdigest(),
    )
    n_test = max(1, round(test_fraction * len(order)))
    n_dev = max(1, round(dev_fraction * len(order)))
    if n_test + n_dev >= len(order):
        raise TranscribedError(
            f"dev_fraction={dev_fraction} and test_fraction={test_fraction} leave "
            f"no training speakers among {len(order)}"
        )
    return {
        "train": sorted(order[n_test + n_dev :]),
        "dev": sorted(order[n_test : n_test + n_dev]),
        "test": sorted(order[:n_test]),
    }


def utterance_features(
    audio: pathlib.Path,
    intervals: list[times_lib.PhoneInterval],
    config: features_lib.FeatureConfig,
) -> tuple[np.ndarray, np.ndarray]:
    """Unnormalized features and PHONES_39 frame labels of one recording.

    Frames whose centre lies past the last labelled interval are dropped.

    Returns:
      (features shape=(T, F) float32, labels shape=(T,) int32).
    """
    samples, rate = read_audio(audio)
    samples = resample(samples, rate, config.sample_rate)
    feats = features_lib.compute_features(samples, config)
    labels = times_lib.intervals_to_frame_labels(intervals, feats.shape[0], config)
    keep = int(np.sum(labels >= 0))  # -1 only after the last interval
    return feats[:keep], labels[:keep]


def _fingerprint(utterances: list[Utterance]) -> str:
    digest = hashlib.sha256()
    for utt in utterances:
        for path in (utt.audio, utt.times):
            if path is not None:
                stat = path.stat()
                digest.update(f"{path}|{stat.st_size}|{stat.st_mtime_ns}\n".encode())
        digest.update(f"{utt.utt_id}|{utt.speaker}|{utt.text}\n".encode())
    return digest.hexdigest()[:16]


def _labels(
    utterances: list[Utterance],
    labels: str,
    cache_dir,
    extra_words: dict[str, str] | None,
    verbose: bool,
    workers: int,
    phone_tier: str | None = None,
) -> tuple[dict[str, list[times_lib.PhoneInterval]], str]:
    """Phone intervals per usable utterance, and a summary of what was skipped.

    Raises:
      TranscribedError: a phone-times file that cannot be used (unreadable, no
        such tier, a label with no TIMIT-39 class): the message names file, tier
        and label.
    """
    if labels == "given":
        return _given_labels(utterances, phone_tier)
    with_text = [u for u in utterances if u.text is not None]
    items = [
        align_lib.AlignItem(u.utt_id, u.audio, tuple(align_lib.normalize_words(u.text)))
        for u in with_text
    ]
    intervals, summary = align_lib.align_items(
        items,
        read_audio,
        cache_dir=cache_dir,
        extra_words=extra_words,
        progress=verbose,
        workers=workers,
    )
    text = summary.describe()
    if len(with_text) < len(utterances):
        text += (
            f"\n  {len(utterances) - len(with_text)} recording(s) without a "
            "transcript were not used"
        )
    return intervals, text


def _given_labels(
    utterances: list[Utterance], phone_tier: str | None
) -> tuple[dict[str, list[times_lib.PhoneInterval]], str]:
    """Phone intervals read from the files beside the audio; see :func:`_labels`."""
    unreadable = {}
    intervals = {}
    for utt in utterances:
        if utt.times is None:
            continue
        problem = audio_problem(utt.audio)
        if problem is not None:
            unreadable[utt.utt_id] = problem
            continue
        try:
            intervals[utt.utt_id] = times_lib.read_phone_times(utt.times, phone_tier)
        except times_lib.PhoneTimesError as error:
            raise TranscribedError(" ".join(str(error).split())) from None
    without = sum(u.times is None for u in utterances)
    text = f"phone times given for {len(intervals)} of {len(utterances)} utterances"
    if without:
        text += f", {without} without a phone-times file skipped"
    if unreadable:
        first = next(iter(unreadable.items()))
        text += (
            f"\n  {len(unreadable)} skipped for unreadable audio "
            f"(e.g. {first[0]}: {first[1]})"
        )
    return intervals, text


def load_transcribed(
    corpus_dir: os.PathLike | str | None = None,
    labels: str = "align",
    feature_config: features_lib.FeatureConfig = features_lib.DEFAULT_CONFIG,
    cache_dir: os.PathLike | str | None = None,
    extra_words: dict[str, str] | None = None,
    split_seed: int = 0,
    dev_fraction: float = 0.1,
    test_fraction: float = 0.1,
    all_test: bool = False,
    align_workers: int = 1,
    verbose: bool = False,
    phone_tier: str | None = None,
) -> corpus_lib.Corpus:
    """Loads transcribed recordings as a 39-phone corpus, caching features.

    Args:
      corpus_dir: LibriSpeech-layout or plain folder (see :func:`discover`).
      labels: "align" (pocketsphinx forced alignment of the transcripts) or
        "given" (phone-times files beside the audio).
      feature_config: front end settings (as TIMIT and eSpeak).
      cache_dir: None = $MOHAQ_CACHE or ~/.cache/mohaq_jax.
      extra_words: word -> ARPAbet pronunciation for words the CMU dictionary
        lacks (utterances with other missing words are skipped and counted).
      split_seed: seeds the speaker split (see :func:`assign_speakers`).
      dev_fraction: share of speakers for dev.
      test_fraction: share of speakers for test.
      all_test: every speaker in test (evaluation only).
      align_workers: processes for forced alignment (same result for any number).
      verbose: progress bars and the alignment summary on stderr.
      phone_tier: with labels="given", the TextGrid tier of the phones (None: the
        tier named "phones", else the only one whose name contains "phone").

    Returns:
      Corpus named "transcribed", classes PHONES_39 (fold39 = identity),
      per-speaker normalized features; ``notice`` says where the labels come
      from and how many utterances were skipped; ``settings["labels_summary"]``
      holds the full summary.

    Raises:
      TranscribedError: bad folder or arguments, no usable utterance, or a
        phone-times file that cannot be used (file, tier and label named).
    """
    if corpus_dir is None:
        raise TranscribedError("no corpus folder given; pass --corpus-dir DIR")
    if labels not in ("align", "given"):
        raise TranscribedError(f"labels={labels!r}: expected 'align' or 'given'")
    layout, utterances = discover(corpus_dir)
    intervals, summary = _labels(
        utterances, labels, cache_dir, extra_words, verbose, align_workers, phone_tier
    )
    if verbose:
        print(summary, file=sys.stderr)
    usable = [u for u in utterances if u.utt_id in intervals]
    if not usable:
        raise TranscribedError(f"{corpus_dir}: no usable utterance\n{summary}")
    speakers_by_split = assign_speakers(
        [u.speaker for u in usable], split_seed, dev_fraction, test_fraction, all_test
    )
    settings = {
        "dataset": "transcribed",
        "corpus_dir": str(pathlib.Path(corpus_dir).expanduser().resolve()),
        "layout": layout,
        "labels": labels,
        **({"phone_tier": phone_tier} if phone_tier is not None else {}),
        "extra_words": dict(sorted((extra_words or {}).items())),
        "split_seed": split_seed,
        "dev_fraction": dev_fraction,
        "test_fraction": test_fraction,
        "all_test": all_test,
        "feature_config": dataclasses.asdict(feature_config),
        "speakers": {k: len(v) for k, v in speakers_by_split.items()},
        "utterances": len(usable),
        "files": _fingerprint(utterances),
    }
    cache_path = assemble.cache_file("transcribed", settings, cache_dir)
    splits = assemble.load_or_build_splits(
        cache_path,
        speakers_by_split,
        usable,
        lambda utt: utterance_features(
            utt.audio, intervals[utt.utt_id], feature_config
        ),
        feature_config.normalize,
        verbose,
        "transcribed-corpus",
    )
    source = (
        "pocketsphinx forced alignment (not hand labels)"
        if labels == "align"
        else "the given phone-times files"
    )
    return corpus_lib.Corpus(
        name="transcribed",
        train=splits["train"],
        dev=splits["dev"],
        test=splits["test"],
        classes=PHONES_39,
        fold39=np.arange(len(PHONES_39), dtype=np.int32),
        n_features=feature_config.n_features,
        synthetic=False,
        notice=f"Phone labels from {source}; {summary.splitlines()[0]}.",
        settings={
            **settings,
            "labels_summary": summary,
            "cache": str(cache_path),
        },
    )


__all__ = [
    "AUDIO_SUFFIXES",
    "GIVEN_ENDINGS",
    "TranscribedError",
    "Utterance",
    "assign_speakers",
    "discover",
    "load_transcribed",
    "read_audio",
    "resample",
    "utterance_features",
]
