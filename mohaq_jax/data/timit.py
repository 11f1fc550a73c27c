"""TIMIT (LDC93S1) reader: SPHERE audio, .PHN alignments, the standard recipe.

Users bring their own copy of TIMIT (Garofolo et al., 1993). The recipe is the
one MOHAQ (Rezk et al., 2022, Sec. 5) inherits from PyTorch-Kaldi / Kaldi's
``egs/timit/s5``: the SA sentences are dropped, the 462 speakers of TRAIN train
the model, the 50-speaker development set tunes it and the 24-speaker core test
set (Halberstadt, 1998) scores it. Models are trained on the 61 TIMIT labels and
scored on the 39 of Lee & Hon (1989); see :mod:`mohaq_jax.data.phones`.

The pieces: :mod:`~mohaq_jax.data.timit_files` reads SPHERE and .PHN files,
:mod:`~mohaq_jax.data.timit_layout` finds the utterances of an LDC copy or of NLTK's
sample, :mod:`~mohaq_jax.data.timit_recipe` splits the speakers, and
:mod:`~mohaq_jax.data.assemble` computes and caches the features; this module loads
the corpus (and re-exports the pieces' public names).
"""

from __future__ import annotations

import dataclasses
import hashlib
import os
import pathlib
import sys
from collections.abc import Iterable

import numpy as np

from mohaq_jax.data import assemble
from mohaq_jax.data import corpus as corpus_lib
from mohaq_jax.data import features as features_lib
from mohaq_jax.data.phones import FOLD_61_TO_39, PHONES_61
from mohaq_jax.data.timit_files import (
    SPHERE_HEADER_MAGIC,
    TimitError,
    parse_sphere_header,
    read_audio,
    read_phn,
    read_sphere,
)
from mohaq_jax.data.timit_layout import (
    Unlabelled,
    Utterance,
    describe_unlabelled,
    discover,
    discover_all,
    find_nltk_timit,
)
from mohaq_jax.data.timit_recipe import (
    CORE_TEST_SPEAKERS,
    DEV_SPEAKERS,
    N_TEST_DIR_SPEAKERS,
    N_TRAIN_SPEAKERS,
    assign_splits,
    speaker_summary,
)


def utterance_features(
    utt: Utterance, config: features_lib.FeatureConfig
) -> tuple[np.ndarray, np.ndarray]:
    """Unnormalized features and 61-class frame labels of one utterance.

    Frames whose centre lies past the last .PHN segment are dropped.

    Returns:
      (features shape=(T, F) float32, labels shape=(T,) int32).
    """
    samples, rate = read_audio(utt.wav)
    if rate != config.sample_rate:
        raise TimitError(
            f"{utt.wav}: sample rate {rate} Hz, expected {config.sample_rate}"
        )
    starts, ends, labels = read_phn(utt.phn, samples.shape[0])
    feats = features_lib.compute_features(samples, config)
    indices = np.array([PHONES_61.index(p) for p in labels], dtype=np.int32)
    frame_labels = features_lib.frame_labels(
        starts, ends, indices, feats.shape[0], config
    )
    keep = int(np.sum(frame_labels >= 0))  # labels are -1 only at the end
    return feats[:keep], frame_labels[:keep]


def _fingerprint(utterances: Iterable[Utterance]) -> str:
    digest = hashlib.sha256()
    for utt in utterances:
        for path in (utt.wav, utt.phn):
            stat = path.stat()
            digest.update(f"{path}|{stat.st_size}|{stat.st_mtime_ns}\n".encode())
    return digest.hexdigest()[:16]


def load_timit(
    timit_dir: os.PathLike | str | None = None,
    feature_config: features_lib.FeatureConfig = features_lib.DEFAULT_CONFIG,
    cache_dir: os.PathLike | str | None = None,
    allow_partial: bool = False,
    verbose: bool = False,
    allow_missing_labels: bool = False,
) -> corpus_lib.Corpus:
    """Loads TIMIT with the standard recipe, caching features.

    Args:
      timit_dir: the user's TIMIT copy (see :func:`discover`); None looks for
        NLTK's sample (``$NLTK_DATA`` or ``~/nltk_data``: corpora/timit).
      feature_config: front end settings.
      cache_dir: where the .npz cache lives; None = $MOHAQ_CACHE or
        ~/.cache/mohaq_jax.
      allow_partial: split an incomplete copy by speaker instead of failing.
      verbose: progress bars and the time taken (stderr).
      allow_missing_labels: leave out the recordings of a complete copy that have
        no .PHN file instead of failing (they are named and counted either way).

    Returns:
      Corpus with 61 training classes (fold39 maps 'q' to -1), per-speaker
      normalized features.

    Raises:
      TimitError: bad directory, speaker lists or files (the message names them).
    """
    if timit_dir is None:
        timit_dir = find_nltk_timit()
        if timit_dir is None:
            raise TimitError(
                "no TIMIT directory given and no NLTK TIMIT sample found; "
                "pass --timit-dir"
            )
    layout, utterances, unlabelled = discover_all(timit_dir)
    speakers_by_split = assign_splits(
        layout, utterances, allow_partial, unlabelled, allow_missing_labels
    )
    if unlabelled:
        labelled = {u.speaker for u in utterances}
        lost = sorted({u.speaker for u in unlabelled} - labelled)
        print(
            f"TIMIT: left out {describe_unlabelled(unlabelled, lost)}",
            file=sys.stderr,
        )
    settings = {
        "dataset": "timit",
        "timit_dir": str(pathlib.Path(timit_dir).expanduser().resolve()),
        "layout": layout,
        "allow_partial": allow_partial,
        "feature_config": dataclasses.asdict(feature_config),
        "speakers": {k: len(v) for k, v in speakers_by_split.items()},
        "files": _fingerprint(utterances),
        **({"unlabelled": len(unlabelled)} if unlabelled else {}),
    }
    cache_path = assemble.cache_file("timit", settings, cache_dir)
    splits = assemble.load_or_build_splits(
        cache_path,
        speakers_by_split,
        utterances,
        lambda utt: utterance_features(utt, feature_config),
        feature_config.normalize,
        verbose,
        "TIMIT",
    )
    return corpus_lib.Corpus(
        name="timit",
        train=splits["train"],
        dev=splits["dev"],
        test=splits["test"],
        classes=PHONES_61,
        fold39=FOLD_61_TO_39.copy(),
        n_features=feature_config.n_features,
        synthetic=False,
        notice="",
        settings={**settings, "cache": str(cache_path)},
    )


__all__ = [
    "CORE_TEST_SPEAKERS",
    "DEV_SPEAKERS",
    "N_TEST_DIR_SPEAKERS",
    "N_TRAIN_SPEAKERS",
    "SPHERE_HEADER_MAGIC",
    "TimitError",
    "Unlabelled",
    "Utterance",
    "assign_splits",
    "discover",
    "discover_all",
    "find_nltk_timit",
    "load_timit",
    "parse_sphere_header",
    "read_audio",
    "read_phn",
    "read_sphere",
    "speaker_summary",
    "utterance_features",
]
