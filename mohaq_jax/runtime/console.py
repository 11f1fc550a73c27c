"""Console messages of the experiments (one line per phase, flushed at once) and the
wall time and peak memory of each phase."""

from __future__ import annotations

import contextlib
import resource
import sys
import time

__all__ = ["PhaseClock", "peak_rss_gb", "say"]


def say(progress: bool, message: str) -> None:
    """Prints ``message`` (flushed at once) when ``progress`` is on."""
    if progress:
        print(message, flush=True)


def peak_rss_gb() -> float:
    """Peak resident set size of this process so far, GB (``getrusage``: KiB on
    Linux, bytes on macOS)."""
    peak = resource.getrusage(resource.RUSAGE_SELF).ru_maxrss
    return peak / (2**30 if sys.platform == "darwin" else 2**20)


class PhaseClock:
    """Wall seconds of named phases and the process's peak RSS at the end of each.

    ``with clock.phase("search"): ...`` adds the block's wall time to ``seconds``
    (a phase met twice adds up) and records ``peak_rss_gb[name]``, the process's
    peak so far (monotone: the phase that raised it is the first with the new value).
    """

    def __init__(self):
        self.seconds: dict[str, float] = {}
        self.peak_rss_gb: dict[str, float] = {}

    @contextlib.contextmanager
    def phase(self, name: str):
        started = time.perf_counter()
        try:
            yield
        finally:
            elapsed = time.perf_counter() - started
            self.seconds[name] = self.seconds.get(name, 0.0) + elapsed
            self.peak_rss_gb[name] = peak_rss_gb()
