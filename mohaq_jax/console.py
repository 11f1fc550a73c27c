"""Console messages of the experiments: one line per phase, flushed at once."""

from __future__ import annotations

__all__ = ["say"]


def say(progress: bool, message: str) -> None:
    """Prints ``message`` (flushed at once) when ``progress`` is on."""
    if progress:
        print(message, flush=True)
