"""Atomic file writes: a reader sees the old file or the new one, never half of one.

Every file the project writes (checkpoints, caches, reports, figures) goes through
:func:`atomic_open`: the data go to a temporary file in the same folder, are flushed
and ``fsync``-ed, and the file is moved into place with ``os.replace`` (atomic on
POSIX within one file system). A process killed mid-write (even with SIGKILL) leaves
the previous file and at most a stray ``.tmp-*`` file, which the next write of the
same folder does not read. This module imports only the standard library, so the
command line can use it before JAX is loaded.
"""

from __future__ import annotations

import contextlib
import os
import tempfile
from collections.abc import Iterator
from typing import IO


@contextlib.contextmanager
def atomic_open(
    path: str | os.PathLike, mode: str = "w", newline: str | None = None
) -> Iterator[IO]:
    """Opens a temporary file that replaces ``path`` when the block ends cleanly.

    Args:
      path: the file to write (its folder is created).
      mode: ``"w"`` (text) or ``"wb"`` (bytes).
      newline: as :func:`open` (``""`` for the csv module).

    Yields:
      The open temporary file. If the block raises, the temporary file is removed
      and ``path`` is left as it was.
    """
    if mode not in ("w", "wb"):
        raise ValueError(f"atomic_open writes whole files ('w' or 'wb'), not {mode!r}")
    path = os.fspath(path)
    folder = os.path.dirname(os.path.abspath(path))
    os.makedirs(folder, exist_ok=True)
    name = os.path.basename(path)
    fd, tmp = tempfile.mkstemp(prefix=f".tmp-{name}-", dir=folder)
    try:
        kwargs = {} if "b" in mode else {"encoding": "utf-8", "newline": newline}
        with os.fdopen(fd, mode, **kwargs) as f:
            yield f
            f.flush()
            os.fsync(f.fileno())
        os.replace(tmp, path)
    except BaseException:
        with contextlib.suppress(FileNotFoundError):
            os.unlink(tmp)
        raise


def write_bytes(path: str | os.PathLike, data: bytes) -> None:
    """Writes ``data`` to ``path`` atomically."""
    with atomic_open(path, "wb") as f:
        f.write(data)


def write_text(path: str | os.PathLike, text: str) -> None:
    """Writes ``text`` (UTF-8) to ``path`` atomically."""
    with atomic_open(path, "w") as f:
        f.write(text)


def savefig(fig, path: str | os.PathLike, **kwargs) -> None:
    """``fig.savefig(path, **kwargs)``, atomically (the format from the suffix)."""
    fmt = kwargs.pop("format", None) or os.path.splitext(os.fspath(path))[1][1:] or None
    with atomic_open(path, "wb") as f:
        fig.savefig(f, format=fmt, **kwargs)


@contextlib.contextmanager
def locked(path: str | os.PathLike, waiting: str | None = None) -> Iterator[None]:
    """Holds an exclusive lock on ``PATH.lock`` for the block (``fcntl.flock``).

    Two processes that would build the same file (a float baseline in a shared cache)
    take turns: the second waits, then finds the file the first one wrote. The lock
    file is left in place (removing it would let a third process lock a different
    file); the kernel releases the lock when its holder exits, even when killed.

    Args:
      path: the file the lock protects (its folder is created).
      waiting: printed once if another process holds the lock (None: nothing).
    """
    import fcntl

    lock_path = f"{os.fspath(path)}.lock"
    os.makedirs(os.path.dirname(os.path.abspath(lock_path)), exist_ok=True)
    with open(lock_path, "a") as handle:
        try:
            fcntl.flock(handle, fcntl.LOCK_EX | fcntl.LOCK_NB)
        except BlockingIOError:
            if waiting:
                print(waiting, flush=True)
            fcntl.flock(handle, fcntl.LOCK_EX)
        try:
            yield
        finally:
            fcntl.flock(handle, fcntl.LOCK_UN)
