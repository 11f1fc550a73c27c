"""Corpus containers and the on-disk feature cache shared by all data sets.

A Corpus holds framewise features and labels for train/dev/test, the class
inventory and how it folds to the 39 scoring phones (Lee & Hon, 1989), and a
record of the settings that built it so checkpoints and reports can name it.
"""

from __future__ import annotations

import dataclasses
import hashlib
import json
import os
import pathlib
import tempfile
from typing import Any

import numpy as np

#: Bump when the feature or label computation changes, to invalidate caches.
CACHE_VERSION = 1


@dataclasses.dataclass
class Split:
    """Utterances of one partition (train, dev or test)."""

    features: list[np.ndarray]  # each shape=(T_i, F), float32
    labels: list[np.ndarray]  # each shape=(T_i,), int32: training-class index
    speakers: list[str]  # speaker of each utterance
    utt_ids: list[str]  # unique id of each utterance

    def __post_init__(self):
        lengths = {
            len(self.features),
            len(self.labels),
            len(self.speakers),
            len(self.utt_ids),
        }
        if len(lengths) != 1:
            raise ValueError("features, labels, speakers and utt_ids differ in length")
        for utt_id, feats, labs in zip(
            self.utt_ids, self.features, self.labels, strict=True
        ):
            if feats.ndim != 2 or labs.shape != (feats.shape[0],):
                raise ValueError(
                    f"utterance {utt_id}: features {feats.shape} vs labels {labs.shape}"
                )

    def __len__(self) -> int:
        return len(self.features)

    @property
    def n_frames(self) -> int:
        """Total frames over all utterances."""
        return int(sum(f.shape[0] for f in self.features))


@dataclasses.dataclass
class Corpus:
    """A framewise phone-recognition data set."""

    name: str  # "timit" or "espeak"
    train: Split
    dev: Split
    test: Split
    classes: tuple[str, ...]  # training classes, e.g. TIMIT's 61 phones
    fold39: np.ndarray  # shape=(n_classes,), int32: index into PHONES_39, -1 = unscored
    n_features: int  # F
    synthetic: bool  # True for generated speech
    notice: str  # a sentence to print in reports ("" for real speech)
    settings: dict[str, Any]  # JSON-able record of what built it

    @property
    def n_classes(self) -> int:
        """Number of training classes (model output size)."""
        return len(self.classes)

    def splits(self) -> dict[str, Split]:
        """The three partitions by name."""
        return {"train": self.train, "dev": self.dev, "test": self.test}


def default_cache_dir() -> pathlib.Path:
    """$MOHAQ_CACHE, else ~/.cache/mohaq_jax."""
    env = os.environ.get("MOHAQ_CACHE")
    return pathlib.Path(env) if env else pathlib.Path.home() / ".cache" / "mohaq_jax"


def settings_hash(settings: dict[str, Any]) -> str:
    """A short stable hash of JSON-able settings (the cache key)."""
    blob = json.dumps(
        {"cache_version": CACHE_VERSION, **settings}, sort_keys=True, default=str
    )
    return hashlib.sha256(blob.encode()).hexdigest()[:16]


def save_splits(path: pathlib.Path, splits: dict[str, Split]) -> None:
    """Writes splits to one .npz atomically (temp file in the same dir + os.replace).

    Args:
      path: destination file.
      splits: name -> Split.
    """
    arrays: dict[str, np.ndarray] = {}
    for name, split in splits.items():
        lengths = np.array([f.shape[0] for f in split.features], dtype=np.int64)
        n_feat = split.features[0].shape[1] if len(split) else 0
        arrays[f"{name}/lengths"] = lengths
        arrays[f"{name}/features"] = (
            np.concatenate(split.features, axis=0)
            if len(split)
            else np.zeros((0, n_feat), np.float32)
        )
        arrays[f"{name}/labels"] = (
            np.concatenate(split.labels) if len(split) else np.zeros(0, np.int32)
        )
        arrays[f"{name}/speakers"] = np.array(split.speakers, dtype=str)
        arrays[f"{name}/utt_ids"] = np.array(split.utt_ids, dtype=str)
    path.parent.mkdir(parents=True, exist_ok=True)
    fd, tmp = tempfile.mkstemp(dir=path.parent, prefix=path.name + ".", suffix=".tmp")
    try:
        with os.fdopen(fd, "wb") as f:
            np.savez(f, **arrays)
        os.replace(tmp, path)
    except BaseException:
        if os.path.exists(tmp):
            os.unlink(tmp)
        raise


def load_splits(path: pathlib.Path, names=("train", "dev", "test")) -> dict[str, Split]:
    """Reads what save_splits wrote."""
    out = {}
    with np.load(path, allow_pickle=False) as data:
        for name in names:
            bounds = np.cumsum(np.concatenate([[0], data[f"{name}/lengths"]]))
            features, labels = data[f"{name}/features"], data[f"{name}/labels"]
            out[name] = Split(
                features=[
                    features[a:b] for a, b in zip(bounds[:-1], bounds[1:], strict=True)
                ],
                labels=[
                    labels[a:b] for a, b in zip(bounds[:-1], bounds[1:], strict=True)
                ],
                speakers=[str(s) for s in data[f"{name}/speakers"]],
                utt_ids=[str(u) for u in data[f"{name}/utt_ids"]],
            )
    return out
