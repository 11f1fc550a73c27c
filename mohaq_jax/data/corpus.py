"""Corpus containers and the on-disk feature cache shared by all data sets.

A Corpus holds framewise features and labels for train/dev/test, the class
inventory and how it folds to the 39 scoring phones (Lee & Hon, 1989), and a
record of the settings that built it so checkpoints and reports can name it.

Every file derived from the data (this cache, alignments, decoder fits) is checked
when it is read: its format, the key it was built for, and a checksum (the zip
members' CRC-32 of an ``.npz``). A damaged one is never used: :func:`read_cache`
reports it in one line naming its path, and the caller rebuilds it, which gives the
same result as a first build.
"""

from __future__ import annotations

import dataclasses
import hashlib
import json
import os
import pathlib
import sys
import tempfile
from collections.abc import Callable
from typing import Any, TypeVar

import numpy as np

#: Bump when the feature or label computation changes, to invalidate caches.
CACHE_VERSION = 1
#: Format tag stored in a corpus cache beside the key it was built for.
SPLITS_FORMAT = "mohaq_jax.splits/1"
#: Name of the JSON member (format and key) inside a corpus cache ``.npz``.
META_MEMBER = "meta"

_T = TypeVar("_T")


class DamagedCacheError(ValueError):
    """A derived cache file that cannot be trusted; the message names it and why."""


def read_cache(
    path: os.PathLike | str, load: Callable[[pathlib.Path], _T]
) -> _T | None:
    """``load(path)``, or None when the file is missing or damaged.

    A damaged file (``load`` raised :class:`DamagedCacheError`) is reported in one
    line on stderr naming its path; the caller rebuilds it and writes it again
    atomically (the damaged file is left until then, so a reader never finds none).

    Args:
      path: the cache file.
      load: reads and checks it; raises DamagedCacheError on any damage and
        FileNotFoundError when it is gone.
    """
    path = pathlib.Path(path)
    try:
        return load(path)
    except FileNotFoundError:
        return None
    except DamagedCacheError as error:
        reason = " ".join(str(error).split())
        print(f"damaged cache, rebuilding it: {reason}", file=sys.stderr)
        return None


def splits_meta(key: str | None) -> np.ndarray:
    """The JSON member that records a corpus cache's format and key."""
    return np.asarray(json.dumps({"format": SPLITS_FORMAT, "key": key}))


def check_meta(path: os.PathLike | str, text: str, fmt: str, key: str | None) -> None:
    """Raises DamagedCacheError unless ``text`` is JSON naming ``fmt`` and ``key``.

    Args:
      path: the file, named in the message.
      text: its stored JSON ``{"format": ..., "key": ...}``.
      fmt: the expected format tag.
      key: the expected key (None: any).
    """
    try:
        meta = json.loads(text)
    except json.JSONDecodeError as error:
        raise DamagedCacheError(f"{path}: unreadable meta ({error})") from None
    if not isinstance(meta, dict) or meta.get("format") != fmt:
        raise DamagedCacheError(f"{path}: not a {fmt} file")
    if key is not None and meta.get("key") != key:
        raise DamagedCacheError(
            f"{path}: built for key {meta.get('key')!r}, expected {key!r}"
        )


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


def save_splits(
    path: pathlib.Path, splits: dict[str, Split], key: str | None = None
) -> None:
    """Writes splits to one .npz atomically (temp file in the same dir, fsync, rename).

    Args:
      path: destination file.
      splits: name -> Split.
      key: the settings key it is built for (:func:`settings_hash`), stored with it.
    """
    arrays: dict[str, np.ndarray] = {META_MEMBER: splits_meta(key)}
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
            f.flush()
            os.fsync(f.fileno())
        os.replace(tmp, path)
    except BaseException:
        if os.path.exists(tmp):
            os.unlink(tmp)
        raise


def load_splits(
    path: pathlib.Path, names=("train", "dev", "test"), key: str | None = None
) -> dict[str, Split]:
    """Reads what save_splits (or SplitWriter) wrote, checking it on the way.

    Every member is read whole, so a changed byte fails its zip CRC-32; the stored
    format and key are compared with ``key``. A cache written before keys were
    stored (no meta member) is accepted on its checksums alone.

    Args:
      path: the ``.npz``.
      names: the splits to read.
      key: the settings key expected (None: any).

    Raises:
      FileNotFoundError: no file.
      DamagedCacheError: truncated, corrupted, another format or another key.
    """
    try:
        return _load_splits(path, names, key)
    except (FileNotFoundError, DamagedCacheError):
        raise
    except Exception as error:  # zipfile, numpy and zlib each raise their own
        raise DamagedCacheError(f"{path}: {type(error).__name__}: {error}") from None


def _load_splits(path, names, key) -> dict[str, Split]:
    out = {}
    # The file is opened here so that it is closed even when numpy cannot read it.
    with open(path, "rb") as f, np.load(f, allow_pickle=False) as data:
        if META_MEMBER in data.files:
            check_meta(path, str(data[META_MEMBER]), SPLITS_FORMAT, key)
        for name in names:
            lengths = data[f"{name}/lengths"]
            features, labels = data[f"{name}/features"], data[f"{name}/labels"]
            if lengths.sum() != features.shape[0] or labels.shape != (
                features.shape[0],
            ):
                raise DamagedCacheError(
                    f"{path}: split {name!r} lengths disagree with its frames"
                )
            bounds = np.cumsum(np.concatenate([[0], lengths]))
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
