"""Where a corpus came from, for reports: name, folder, extent, split sizes.

A 6-speaker partial TIMIT copy and the full corpus both have ``corpus.name ==
"timit"``; numbers measured on them are not comparable, so every report and
``pareto.json`` records the provenance :func:`describe` gives.
"""

from __future__ import annotations

__all__ = ["describe"]


def describe(corpus) -> dict:
    """The provenance of a :class:`~mohaq_jax.data.corpus.Corpus` (JSON-able).

    Returns:
      ``{"corpus", "synthetic", "folder", "extent", "splits": {split: {"utterances",
      "speakers", "frames"}}}``; ``folder`` is None for a synthesized corpus, and
      ``extent`` says full or partial (TIMIT's ``--timit-partial``), or the
      synthesized corpus' size and seed.
    """
    settings = corpus.settings or {}
    folder = settings.get("timit_dir") or settings.get("corpus_dir")
    if corpus.name == "timit":
        extent = (
            "partial copy (--timit-partial: splits built from the speakers present)"
            if settings.get("allow_partial")
            else "full (the standard speaker lists)"
        )
    elif corpus.synthetic:
        extent = f"size {settings.get('size', '?')}, seed {settings.get('seed', '?')}"
    else:
        extent = settings.get("layout", "as found") or "as found"
    return {
        "corpus": corpus.name,
        "synthetic": bool(corpus.synthetic),
        "folder": folder,
        "extent": extent,
        "splits": {
            name: {
                "utterances": len(split),
                "speakers": len(set(split.speakers)),
                "frames": split.n_frames,
            }
            for name, split in corpus.splits().items()
        },
    }
