"""Self-describing, atomically written checkpoints (flax.serialization msgpack).

A checkpoint is one msgpack file holding a pytree of arrays (``state``: params,
optimizer state, training progress) and a JSON document (``meta``: the model config,
the data settings, the training config, progress and history) that says what the
arrays are. Serialization is deterministic (msgpack of a nested dict, JSON with sorted
keys, no timestamps), so the same training gives the same bytes. Files are written to a
temporary file in the same folder and moved into place with ``os.replace``, so a reader
never sees a half-written checkpoint and an interrupted write leaves the old one.
"""

from __future__ import annotations

import json
import os
import tempfile
from collections.abc import Mapping
from typing import Any

import jax
import numpy as np
from flax import serialization

#: Version tag stored in every checkpoint's meta.
FORMAT = "mohaq_jax.checkpoint/1"


class CheckpointMismatch(ValueError):
    """A checkpoint was written for another model config, data or training setup."""


def _to_numpy(tree: Any) -> Any:
    return jax.tree_util.tree_map(np.asarray, tree)


def write_bytes_atomic(path: str | os.PathLike, data: bytes) -> None:
    """Writes ``data`` to ``path`` through a temporary file and ``os.replace``."""
    path = os.fspath(path)
    folder = os.path.dirname(os.path.abspath(path))
    os.makedirs(folder, exist_ok=True)
    fd, tmp = tempfile.mkstemp(prefix=".tmp-", suffix=".ckpt", dir=folder)
    try:
        with os.fdopen(fd, "wb") as f:
            f.write(data)
            f.flush()
            os.fsync(f.fileno())
        os.replace(tmp, path)
    except BaseException:
        if os.path.exists(tmp):
            os.unlink(tmp)
        raise


def to_bytes(state: Any, meta: Mapping[str, Any]) -> bytes:
    """Serializes a pytree ``state`` and its JSON-able ``meta`` deterministically."""
    doc = {
        "meta": json.dumps({"format": FORMAT, **meta}, sort_keys=True),
        "state": serialization.to_state_dict(_to_numpy(state)),
    }
    return serialization.msgpack_serialize(doc)


def save(path: str | os.PathLike, state: Any, meta: Mapping[str, Any]) -> None:
    """Writes a checkpoint atomically.

    Args:
      path: file to write (its folder is created).
      state: pytree of arrays (dicts, flax struct dataclasses, NamedTuples ...).
      meta: JSON-serializable description (configs, settings, progress).
    """
    write_bytes_atomic(path, to_bytes(state, meta))


def _read_doc(path: str | os.PathLike) -> dict:
    with open(path, "rb") as f:
        doc = serialization.msgpack_restore(f.read())
    if not isinstance(doc, dict) or "meta" not in doc or "state" not in doc:
        raise ValueError(f"{os.fspath(path)} is not a mohaq_jax checkpoint")
    return doc


def read_meta(path: str | os.PathLike) -> dict:
    """The ``meta`` document of a checkpoint (the arrays are not restored)."""
    meta = json.loads(_read_doc(path)["meta"])
    if meta.get("format") != FORMAT:
        raise ValueError(
            f"{os.fspath(path)} has checkpoint format {meta.get('format')!r}, "
            f"expected {FORMAT!r}"
        )
    return meta


def load(path: str | os.PathLike, target: Any = None) -> tuple[Any, dict]:
    """Reads a checkpoint.

    Args:
      path: checkpoint file.
      target: a pytree with the structure of the saved state (e.g. a freshly
        initialized training state); ``None`` returns nested dicts of numpy arrays.

    Returns:
      ``(state, meta)``.
    """
    doc = _read_doc(path)
    meta = json.loads(doc["meta"])
    state = doc["state"]
    if target is not None:
        state = serialization.from_state_dict(target, state)
    return state, meta


def _jsonable(value: Any) -> Any:
    """Normalizes a value as it reads back from JSON (tuples become lists ...)."""
    return json.loads(json.dumps(value, sort_keys=True))


def diff_fields(saved: Mapping[str, Any], expected: Mapping[str, Any]) -> list[str]:
    """Names of the fields that differ, as ``"field: saved=... expected=..."``."""
    saved, expected = _jsonable(dict(saved)), _jsonable(dict(expected))
    out = []
    for name in sorted(set(saved) | set(expected)):
        a, b = saved.get(name, "<missing>"), expected.get(name, "<missing>")
        if a != b:
            out.append(f"{name}: checkpoint={a!r} requested={b!r}")
    return out


def check_compatible(
    meta: Mapping[str, Any], expected: Mapping[str, Mapping[str, Any]], path: str = ""
) -> None:
    """Refuses a checkpoint whose recorded sections differ from ``expected``.

    Args:
      meta: the checkpoint's meta.
      expected: section name (``"model_config"``, ``"data_settings"`` ...) -> the
        dict the caller wants.
      path: named in the error message.

    Raises:
      CheckpointMismatch: listing every differing field, section by section.
    """
    problems = []
    for section, want in expected.items():
        diffs = diff_fields(meta.get(section, {}), want)
        problems += [f"{section}.{d}" for d in diffs]
    if problems:
        where = f" {path}" if path else ""
        raise CheckpointMismatch(
            f"checkpoint{where} was written for a different setup:\n  "
            + "\n  ".join(problems)
            # the hint names the flag the experiments take
            + "\nUse another folder (--baseline-dir for a baseline, --out for a "
            "search), or start over (--retrain-baseline; a search without --resume)."
        )
