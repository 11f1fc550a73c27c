"""Corpus assembly shared by the real-speech readers: cache file, features, splits.

TIMIT (:mod:`mohaq_jax.data.timit`) and any transcribed recordings
(:mod:`mohaq_jax.data.transcribed`) end the same way once they know their utterances
and which speakers go to train/dev/test: look for the ``.npz`` feature cache keyed by
the settings, else compute every utterance's features and frame labels, normalize them
per speaker (Kaldi's per-speaker CMVN, :func:`features.normalize_per_speaker`) and
write the cache. This module is that one tail.
"""

from __future__ import annotations

import os
import pathlib
import sys
import time
from collections.abc import Callable, Mapping, Sequence
from typing import Any, Protocol

import numpy as np
from tqdm.auto import tqdm

from mohaq_jax.data import corpus as corpus_lib
from mohaq_jax.data import features as features_lib


class UtteranceLike(Protocol):
    """What assembly needs of a reader's utterance record."""

    speaker: str
    utt_id: str


#: One utterance -> (unnormalized features (T, F) float32, frame labels (T,) int32).
FeaturesFn = Callable[[Any], tuple[np.ndarray, np.ndarray]]


def cache_file(
    prefix: str, settings: Mapping[str, Any], cache_dir: os.PathLike | str | None
) -> pathlib.Path:
    """``<cache_dir>/<prefix>-<hash of settings>.npz``.

    Args:
      prefix: the data set's name, e.g. "timit".
      settings: JSON-able record of everything that shapes the features.
      cache_dir: None = $MOHAQ_CACHE or ~/.cache/mohaq_jax.
    """
    root = (
        pathlib.Path(cache_dir)
        if cache_dir is not None
        else corpus_lib.default_cache_dir()
    )
    return root / f"{prefix}-{corpus_lib.settings_hash(dict(settings))}.npz"


def cache_key(cache_path: pathlib.Path) -> str:
    """The settings hash in a :func:`cache_file` name (stored in the file too)."""
    return cache_path.stem.rsplit("-", 1)[-1]


def build_splits(
    speakers_by_split: Mapping[str, Sequence[str]],
    utterances: Sequence[UtteranceLike],
    features_of: FeaturesFn,
    normalize: bool,
    progress: bool = False,
) -> dict[str, corpus_lib.Split]:
    """Features and labels of every utterance, grouped by split.

    Args:
      speakers_by_split: split name -> the speakers it holds.
      utterances: every candidate utterance, in the order splits keep.
      features_of: one utterance -> (features (T, F), labels (T,)), unnormalized.
      normalize: normalize each split's features per speaker.
      progress: a progress bar per split.

    Returns:
      split name -> :class:`corpus.Split`, utterances in ``utterances`` order.
    """
    splits = {}
    for name, speakers in speakers_by_split.items():
        chosen_speakers = set(speakers)
        chosen = [u for u in utterances if u.speaker in chosen_speakers]
        feats, labels = [], []
        for utt in tqdm(
            chosen, desc=f"features {name}", unit="utt", disable=not progress
        ):
            one_feats, one_labels = features_of(utt)
            feats.append(one_feats)
            labels.append(one_labels)
        if normalize and feats:
            feats = features_lib.normalize_per_speaker(
                feats, [u.speaker for u in chosen]
            )
        splits[name] = corpus_lib.Split(
            feats, labels, [u.speaker for u in chosen], [u.utt_id for u in chosen]
        )
    return splits


def load_or_build_splits(
    cache_path: pathlib.Path,
    speakers_by_split: Mapping[str, Sequence[str]],
    utterances: Sequence[UtteranceLike],
    features_of: FeaturesFn,
    normalize: bool,
    verbose: bool = False,
    what: str = "corpus",
) -> dict[str, corpus_lib.Split]:
    """The cached splits at ``cache_path``, else :func:`build_splits`, then cached.

    A damaged cache (truncated, corrupted, built for another key) is reported in one
    line and built again (:func:`corpus.read_cache`).

    Args:
      cache_path: from :func:`cache_file`.
      speakers_by_split, utterances, features_of, normalize: see :func:`build_splits`.
      verbose: progress bars and the time taken (stderr).
      what: the data set, named in the timing message.
    """
    key = cache_key(cache_path)
    cached = corpus_lib.read_cache(
        cache_path, lambda path: corpus_lib.load_splits(path, key=key)
    )
    if cached is not None:
        return cached
    started = time.time()
    splits = build_splits(
        speakers_by_split, utterances, features_of, normalize, progress=verbose
    )
    corpus_lib.save_splits(cache_path, splits, key=key)
    if verbose:
        print(
            f"{what} features computed in {time.time() - started:.1f}s -> {cache_path}",
            file=sys.stderr,
        )
    return splits
