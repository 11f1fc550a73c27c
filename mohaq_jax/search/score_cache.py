"""Explicit, immutable score cache of a search: genome -> metrics, never evaluated twice.

MOHAQ evaluates each genome once (NSGA-II never asks for an archived genome, and a
cache answers the rest). The cache is a value, not a mutable attribute: :func:`score`
takes a cache and returns the results and a new cache, so a search's whole state
(NSGA-II state, cache, beacons) can be passed in and out, checkpointed and restored.
"""

from __future__ import annotations

import dataclasses
import types
from collections.abc import Callable, Mapping

import numpy as np

__all__ = ["ScoreCache", "replace_entries", "score"]


@dataclasses.dataclass(frozen=True)
class ScoreCache:
    """Metrics of every genome scored so far (read-only mappings)."""

    entries: Mapping[bytes, Mapping[str, float]] = dataclasses.field(
        default_factory=lambda: types.MappingProxyType({})
    )  # genome.tobytes() (int32) -> name -> value, in first-evaluation order
    n_evaluated: int = 0  # genomes actually run (cache misses)

    def lookup(self, genomes: np.ndarray) -> dict[str, np.ndarray]:
        """name -> float32 ``(n,)`` of cached genomes ``(n, n_genes)`` int32."""
        rows = [self.entries[g.tobytes()] for g in genomes]
        return {k: np.asarray([r[k] for r in rows], np.float32) for k in rows[0]}

    def to_arrays(self) -> tuple[dict[str, np.ndarray], list[str]]:
        """``({"genomes": (n, n_genes), "values": (n, n_names)}, names)``."""
        keys = list(self.entries)
        names = sorted(next(iter(self.entries.values())))
        arrays = {
            "genomes": np.stack([np.frombuffer(k, np.int32) for k in keys]),
            "values": np.asarray(
                [[self.entries[k][n] for n in names] for k in keys], np.float64
            ),
        }
        return arrays, names

    @classmethod
    def from_arrays(cls, genomes, values, names, n_evaluated: int) -> ScoreCache:
        entries = {
            np.asarray(g, np.int32).tobytes(): types.MappingProxyType(
                {n: float(v) for n, v in zip(names, row, strict=True)}
            )
            for g, row in zip(genomes, values, strict=True)
        }
        return cls(types.MappingProxyType(entries), int(n_evaluated))


def replace_entries(
    cache: ScoreCache, updates: Mapping[bytes, Mapping[str, float]]
) -> ScoreCache:
    """A cache with ``updates`` merged over its entries (order kept)."""
    merged = dict(cache.entries)
    merged.update({k: types.MappingProxyType(dict(v)) for k, v in updates.items()})
    return dataclasses.replace(cache, entries=types.MappingProxyType(merged))


def score(
    cache: ScoreCache,
    genomes: np.ndarray,
    score_new: Callable[[np.ndarray], Mapping[str, np.ndarray]],
) -> ScoreCache:
    """The cache after scoring the genomes of ``genomes`` (int32 ``(n, n_genes)``) it
    lacks, each once, with ``score_new`` (``(m, n_genes)`` -> name -> ``(m,)``)."""
    keys = [g.tobytes() for g in genomes]
    missing = sorted(
        {k: i for i, k in enumerate(keys) if k not in cache.entries}.values()
    )
    if not missing:
        return cache
    results = score_new(genomes[missing])
    updates = {
        keys[i]: {k: float(v[j]) for k, v in results.items()}
        for j, i in enumerate(missing)
    }
    cache = replace_entries(cache, updates)
    return dataclasses.replace(cache, n_evaluated=cache.n_evaluated + len(missing))
