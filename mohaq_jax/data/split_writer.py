"""Writes a corpus cache chunk by chunk, in bounded memory.

:func:`mohaq_jax.data.corpus.save_splits` needs every utterance in memory. A
TIMIT-sized synthesized corpus is generated a few utterances at a time instead:
:class:`SplitWriter` appends each chunk's features and labels to raw temporary files
next to the destination and keeps only per-utterance lengths and ids in memory; on
:meth:`SplitWriter.close` it assembles the same ``.npz`` layout that ``save_splits``
writes (``<split>/features``, ``<split>/labels``, ``<split>/lengths``,
``<split>/speakers``, ``<split>/utt_ids`` and the ``meta`` member with the key),
copying the raw files into the archive in
blocks, and renames it into place atomically. Memory is bounded by one chunk plus a
copy block, whatever the corpus size. :func:`corpus.load_splits` reads the result.
"""

from __future__ import annotations

import os
import pathlib
import shutil
import tempfile
import zipfile
from collections.abc import Sequence

import numpy as np

from mohaq_jax.data import corpus as corpus_lib

#: Bytes copied at a time from the raw files into the archive.
COPY_BLOCK = 1 << 22


class SplitWriter:
    """Appends utterances to a corpus cache file; ``close()`` publishes it.

    Use as a context manager: an exception discards the partial output.

    Args:
      path: destination ``.npz``.
      split_names: the splits, in the order they are stored.
      n_features: F, the width of every utterance's features.
      key: the settings key the file is built for, stored with it (see
        :func:`corpus.load_splits`).
    """

    def __init__(
        self,
        path: os.PathLike | str,
        split_names: Sequence[str] = ("train", "dev", "test"),
        n_features: int = 0,
        key: str | None = None,
    ):
        self.path = pathlib.Path(path)
        self.key = key
        self.path.parent.mkdir(parents=True, exist_ok=True)
        self.n_features = int(n_features)
        self._tmp = pathlib.Path(
            tempfile.mkdtemp(dir=self.path.parent, prefix=self.path.name + ".")
        )
        self._names = tuple(split_names)
        self._files = {
            (name, kind): open(self._tmp / f"{name}.{kind}", "wb")  # noqa: SIM115
            for name in self._names
            for kind in ("features", "labels")
        }
        self._lengths: dict[str, list[int]] = {n: [] for n in self._names}
        self._speakers: dict[str, list[str]] = {n: [] for n in self._names}
        self._utt_ids: dict[str, list[str]] = {n: [] for n in self._names}

    def add(
        self,
        split: str,
        features: Sequence[np.ndarray],
        labels: Sequence[np.ndarray],
        speakers: Sequence[str],
        utt_ids: Sequence[str],
    ) -> None:
        """Appends a chunk of utterances (each ``(T_i, F)`` float32, ``(T_i,)`` int32)."""
        if split not in self._lengths:
            raise ValueError(f"unknown split {split!r}; writer has {self._names}")
        if not len(features) == len(labels) == len(speakers) == len(utt_ids):
            raise ValueError("features, labels, speakers and utt_ids differ in length")
        for utt_id, feats, labs in zip(utt_ids, features, labels, strict=True):
            feats = np.ascontiguousarray(feats, np.float32)
            labs = np.ascontiguousarray(labs, np.int32)
            if not self.n_features:
                self.n_features = feats.shape[1]
            if feats.ndim != 2 or feats.shape[1] != self.n_features:
                raise ValueError(
                    f"utterance {utt_id}: features {feats.shape}, "
                    f"expected (T, {self.n_features})"
                )
            if labs.shape != (feats.shape[0],):
                raise ValueError(
                    f"utterance {utt_id}: features {feats.shape} vs labels {labs.shape}"
                )
            self._files[split, "features"].write(feats.tobytes())
            self._files[split, "labels"].write(labs.tobytes())
            self._lengths[split].append(feats.shape[0])
        for kind in ("features", "labels"):  # the chunk is on disk when add returns
            self._files[split, kind].flush()
        self._speakers[split].extend(str(s) for s in speakers)
        self._utt_ids[split].extend(str(u) for u in utt_ids)

    def __len__(self) -> int:
        return sum(len(v) for v in self._lengths.values())

    def close(self) -> pathlib.Path:
        """Writes the ``.npz`` (atomically) and removes the temporary files."""
        for f in self._files.values():
            f.close()
        fd, tmp = tempfile.mkstemp(
            dir=self.path.parent, prefix=self.path.name + ".", suffix=".tmp"
        )
        try:
            with (
                os.fdopen(fd, "wb") as out,
                zipfile.ZipFile(out, "w", zipfile.ZIP_STORED, allowZip64=True) as zf,
            ):
                for name in self._names:
                    n_frames = sum(self._lengths[name])
                    self._raw_array(
                        zf,
                        f"{name}/features",
                        self._tmp / f"{name}.features",
                        np.float32,
                        (n_frames, self.n_features),
                    )
                    self._raw_array(
                        zf,
                        f"{name}/labels",
                        self._tmp / f"{name}.labels",
                        np.int32,
                        (n_frames,),
                    )
                    small = {
                        "lengths": np.asarray(self._lengths[name], np.int64),
                        "speakers": np.array(self._speakers[name], dtype=str),
                        "utt_ids": np.array(self._utt_ids[name], dtype=str),
                    }
                    for key, value in small.items():
                        with zf.open(f"{name}/{key}.npy", "w", force_zip64=True) as f:
                            np.lib.format.write_array(f, value, allow_pickle=False)
                with zf.open(f"{corpus_lib.META_MEMBER}.npy", "w") as f:
                    np.lib.format.write_array(
                        f, corpus_lib.splits_meta(self.key), allow_pickle=False
                    )
                zf.close()
                out.flush()
                os.fsync(out.fileno())
            os.replace(tmp, self.path)
        except BaseException:
            if os.path.exists(tmp):
                os.unlink(tmp)
            raise
        finally:
            shutil.rmtree(self._tmp, ignore_errors=True)
        return self.path

    def abort(self) -> None:
        """Discards everything written so far."""
        for f in self._files.values():
            f.close()
        shutil.rmtree(self._tmp, ignore_errors=True)

    @staticmethod
    def _raw_array(zf, name, raw_path, dtype, shape) -> None:
        expected = int(np.prod(shape)) * np.dtype(dtype).itemsize
        if os.path.getsize(raw_path) != expected:
            raise RuntimeError(f"{raw_path}: size differs from the utterances added")
        header = {
            "descr": np.lib.format.dtype_to_descr(np.dtype(dtype)),
            "fortran_order": False,
            "shape": tuple(shape),
        }
        with zf.open(f"{name}.npy", "w", force_zip64=True) as f:
            np.lib.format.write_array_header_2_0(f, header)
            with open(raw_path, "rb") as raw:
                shutil.copyfileobj(raw, f, COPY_BLOCK)

    def __enter__(self) -> SplitWriter:
        return self

    def __exit__(self, exc_type, exc, tb) -> None:
        if exc_type is None:
            self.close()
        else:
            self.abort()
