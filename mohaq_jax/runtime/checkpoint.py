"""Self-describing, checksummed, atomically written checkpoints (flax msgpack).

A checkpoint is one msgpack file holding a pytree of arrays (``state``: params,
optimizer state, training progress) and a JSON document (``meta``: the model config,
the data settings, the training config, progress and history) that says what the
arrays are. Serialization is deterministic (msgpack of a nested dict, JSON with sorted
keys, no timestamps), so the same training gives the same bytes. The arrays are stored
as one msgpack blob and a SHA-256 of meta and blob is stored beside them, so a
truncated or corrupted file is refused (:class:`CheckpointDamaged`, naming the file
and the way out) instead of being read as different numbers; files written before the
checksum existed are still read. Files are written through
:func:`mohaq_jax.runtime.atomic.atomic_open` (temporary file, fsync, ``os.replace``), so a
reader never sees a half-written checkpoint and an interrupted write leaves the old
one.

:func:`identity` and :func:`check_identity` record and compare what a saved result
depends on (the baseline's parameters, data, calibration, settings ...) as digests of
plain values, so a resumed run refuses a checkpoint whose scores came from anything
else, naming the field that differs.
"""

from __future__ import annotations

import dataclasses
import hashlib
import json
import os
from collections.abc import Mapping
from typing import Any

import jax
import numpy as np
from flax import serialization

from mohaq_jax.runtime import atomic

#: Version tag stored in every checkpoint's meta.
FORMAT = "mohaq_jax.checkpoint/1"  # a file format, kept when the module moved

#: How to start over, for the kinds of checkpoint the experiments write.
WAY_OUT = (
    "delete it to start over (for a float baseline, --retrain-baseline trains it "
    "again; for a search, run without --resume)"
)


class CheckpointError(ValueError):
    """A checkpoint that cannot be used as it is (a user error: one line, exit 2)."""


class CheckpointMismatch(CheckpointError):
    """A checkpoint was written for another model config, data or training setup."""


class CheckpointDamaged(CheckpointError):
    """A checkpoint file is truncated, corrupted or not a checkpoint at all."""


def _to_numpy(tree: Any) -> Any:
    return jax.tree_util.tree_map(np.asarray, tree)


def write_bytes_atomic(path: str | os.PathLike, data: bytes) -> None:
    """Writes ``data`` to ``path`` atomically (:func:`mohaq_jax.runtime.atomic.write_bytes`)."""
    atomic.write_bytes(path, data)


def _checksum(meta: str, blob: bytes) -> str:
    digest = hashlib.sha256(meta.encode())
    digest.update(blob)
    return digest.hexdigest()


def to_bytes(state: Any, meta: Mapping[str, Any]) -> bytes:
    """Serializes a pytree ``state`` and its JSON-able ``meta`` deterministically."""
    meta_text = json.dumps({"format": FORMAT, **meta}, sort_keys=True)
    blob = serialization.msgpack_serialize(
        serialization.to_state_dict(_to_numpy(state))
    )
    doc = {"meta": meta_text, "blob": blob, "sha256": _checksum(meta_text, blob)}
    return serialization.msgpack_serialize(doc)


def save(path: str | os.PathLike, state: Any, meta: Mapping[str, Any]) -> None:
    """Writes a checkpoint atomically.

    Args:
      path: file to write (its folder is created).
      state: pytree of arrays (dicts, flax struct dataclasses, NamedTuples ...).
      meta: JSON-serializable description (configs, settings, progress).
    """
    write_bytes_atomic(path, to_bytes(state, meta))


def _damaged(path, why: str) -> CheckpointDamaged:
    return CheckpointDamaged(
        f"checkpoint {os.fspath(path)} is damaged ({why}); {WAY_OUT}"
    )


def _read_doc(path: str | os.PathLike, with_state: bool = True) -> dict:
    """The checkpoint's ``meta`` text and (``with_state``) its ``state`` tree.

    Raises:
      CheckpointDamaged: the file is truncated, corrupted or not a checkpoint.
    """
    with open(path, "rb") as f:
        data = f.read()
    try:
        doc = serialization.msgpack_restore(data)
    except Exception as error:  # msgpack names no file: say which one, and why
        raise _damaged(path, f"unreadable: {error}") from None
    if not isinstance(doc, dict) or "meta" not in doc:
        raise _damaged(path, "not a mohaq_jax checkpoint")
    if "blob" in doc:  # checksummed format
        if not isinstance(doc["meta"], str) or not isinstance(doc["blob"], bytes):
            raise _damaged(path, "not a mohaq_jax checkpoint")
        if doc.get("sha256") != _checksum(doc["meta"], doc["blob"]):
            raise _damaged(path, "checksum mismatch")
        if with_state:
            try:
                doc["state"] = serialization.msgpack_restore(doc["blob"])
            except Exception as error:
                raise _damaged(path, f"unreadable arrays: {error}") from None
    elif "state" not in doc:
        raise _damaged(path, "not a mohaq_jax checkpoint")
    return doc


def _meta(path, doc: dict) -> dict:
    try:
        meta = json.loads(doc["meta"])
    except (TypeError, ValueError):
        raise _damaged(path, "unreadable meta") from None
    if not isinstance(meta, dict) or meta.get("format") != FORMAT:
        found = meta.get("format") if isinstance(meta, dict) else None
        raise _damaged(path, f"checkpoint format {found!r}, expected {FORMAT!r}")
    return meta


def read_meta(path: str | os.PathLike) -> dict:
    """The ``meta`` document of a checkpoint (the arrays are not restored).

    Raises:
      CheckpointDamaged: the file is truncated, corrupted or not a checkpoint.
    """
    return _meta(path, _read_doc(path, with_state=False))


def load(path: str | os.PathLike, target: Any = None) -> tuple[Any, dict]:
    """Reads a checkpoint.

    Args:
      path: checkpoint file.
      target: a pytree with the structure of the saved state (e.g. a freshly
        initialized training state); ``None`` returns nested dicts of numpy arrays.

    Returns:
      ``(state, meta)``.

    Raises:
      CheckpointDamaged: the file is truncated, corrupted, not a checkpoint, or its
        arrays do not fit ``target``.
    """
    doc = _read_doc(path)
    meta = _meta(path, doc)
    state = doc["state"]
    if target is not None:
        try:
            state = serialization.from_state_dict(target, state)
        except (KeyError, ValueError, TypeError) as error:
            raise _damaged(path, f"arrays do not fit: {error}") from None
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


def _feed(digest, value: Any) -> None:
    """Adds ``value`` to ``digest``: arrays by dtype, shape and bytes, containers
    item by item, dataclasses field by field, anything else by its JSON/repr."""
    if dataclasses.is_dataclass(value) and not isinstance(value, type):
        digest.update(type(value).__name__.encode())
        for field in dataclasses.fields(value):
            digest.update(field.name.encode())
            _feed(digest, getattr(value, field.name))
    elif isinstance(value, Mapping):
        digest.update(b"{")
        for key in sorted(value, key=str):
            digest.update(str(key).encode())
            _feed(digest, value[key])
        digest.update(b"}")
    elif isinstance(value, (list, tuple)):
        digest.update(b"[")
        for item in value:
            _feed(digest, item)
        digest.update(b"]")
    elif isinstance(value, (np.ndarray, jax.Array, np.generic)):
        array = np.ascontiguousarray(np.asarray(value))
        digest.update(f"{array.dtype.str}{array.shape}".encode())
        digest.update(array.tobytes())
    elif value is None or isinstance(value, (bool, int, float, str)):
        digest.update(json.dumps(value).encode())
    elif hasattr(value, "__array__"):
        _feed(digest, np.asarray(value))
    else:  # a registered pytree (flax struct, NamedTuple ...) or a plain object
        leaves, treedef = jax.tree_util.tree_flatten(value)
        if len(leaves) == 1 and leaves[0] is value:  # not a pytree: its attributes
            digest.update(type(value).__qualname__.encode())
            attributes = vars(value) if hasattr(value, "__dict__") else str(value)
            _feed(digest, attributes)
        else:
            digest.update(str(treedef).encode())
            _feed(digest, leaves)


def identity(fields: Mapping[str, Any]) -> dict[str, str]:
    """Digests of what a saved result depends on, one per named field.

    Args:
      fields: name -> a plain value (arrays, pytrees, dataclasses, dicts, numbers,
        strings), e.g. ``{"baseline_params": params, "seed": 0, ...}``.

    Returns:
      name -> 16 hex digits of a SHA-256 of the value (JSON-able, for the meta).
    """
    out = {}
    for name, value in fields.items():
        digest = hashlib.sha256()
        _feed(digest, value)
        out[name] = digest.hexdigest()[:16]
    return out


def check_identity(
    saved: Mapping[str, str] | None, requested: Mapping[str, str], path: str = ""
) -> None:
    """Refuses a checkpoint whose recorded :func:`identity` differs from this run's.

    Args:
      saved: the identity the checkpoint recorded (None: written before identities
        were recorded).
      requested: this run's identity.
      path: named in the error message.

    Raises:
      CheckpointMismatch: naming every field that differs.
    """
    where = f" {path}" if path else ""
    if saved is None:
        raise CheckpointMismatch(
            f"--resume: checkpoint{where} does not record what its scores depend on "
            f"(written by an older version); {WAY_OUT}"
        )
    names = sorted(set(saved) | set(requested))
    differ = [n for n in names if saved.get(n) != requested.get(n)]
    if differ:
        raise CheckpointMismatch(
            f"--resume: checkpoint{where} was scored with a different "
            f"{', '.join(differ)} than this run; use another --out, or {WAY_OUT}"
        )
