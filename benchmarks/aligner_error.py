"""Phone-boundary error of the pocketsphinx aligner on the shared real recordings.

Aligns each recording of ``../shared/data/real_speech`` (``$MOHAQ_SHARED``) from its
transcript with :class:`mohaq_jax.data.align.Aligner` and compares the phone start
times with the recording's own labels (:func:`mohaq_jax.data.phone_times.
boundary_errors`: labels folded to the 39 TIMIT phones, matched by edit distance):

- ``arctic``: CMU ARCTIC ``arctic_a0009`` with its HTS labels (independent),
- ``mfa``: the Montreal Forced Aligner's test recordings with their TextGrids
  (independent),
- ``librivox``: LibriVox excerpts whose phone times came from pocketsphinx itself (a
  consistency check, not an independent reference).

    python -m benchmarks.aligner_error [--json PATH]
"""

from __future__ import annotations

import argparse
import json

import numpy as np

from benchmarks import readme_figures
from experiments.eval_transcribed import shared_recordings
from mohaq_jax.data import align, transcribed
from mohaq_jax.data import phone_times as pt

#: The CMU ARCTIC prompt of arctic_a0009 (from the shared README).
ARCTIC_TEXT = "He turned sharply, and faced Gregson across the table."


def cases(root):
    """(group, audio, transcript, reference intervals) of the recordings."""
    out = []
    for text in sorted((root / "librivox").glob("*.txt")):
        stem = text.with_suffix("")
        given = pt.read_phone_json(stem.with_suffix(".phone.json"))
        out.append(("librivox", stem.with_suffix(".wav"), text.read_text(), given))
    arctic = root / "arctic"
    given = pt.read_hts_lab(arctic / "arctic_a0009_phone.lab")
    out.append(("arctic", arctic / "arctic_a0009.wav", ARCTIC_TEXT, given))
    for grid in sorted((root / "mfa").glob("*.TextGrid")):
        given = pt.read_textgrid(grid)
        text = grid.with_suffix(".lab").read_text()
        out.append(("mfa", grid.with_suffix(".wav"), text, given))
    return out


def _summary(errors_s: np.ndarray) -> dict:
    ms = 1000.0 * errors_s
    return {
        "boundaries": int(ms.size),
        "median_ms": float(np.median(ms)),
        "within_20ms_percent": float(100.0 * np.mean(ms <= 20.0)),
    }


def main(argv=None) -> dict:
    parser = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    parser.add_argument("--json", default=None, help="also write the numbers here")
    args = parser.parse_args(argv)
    root = shared_recordings()
    if not (root / "arctic").is_dir():
        print(f"error: no shared recordings at {root} (set MOHAQ_SHARED)")
        raise SystemExit(2)
    aligner = align.Aligner(extra_words={"yknow": "Y AH N OW"})
    errors, skipped = {}, []
    for group, audio, text, given in cases(root):
        samples, rate = transcribed.read_audio(audio)
        try:
            got = aligner.align(samples, rate, align.normalize_words(text))
        except align.MissingWordsError as exc:  # skipped and counted, never guessed
            skipped.append(audio.name)
            print(f"skipped {audio.name}: {exc}")
            continue
        errors.setdefault(group, []).append(pt.boundary_errors(got, given))
    errors = {g: np.concatenate(parts) for g, parts in errors.items()}
    results = {g: _summary(e) for g, e in errors.items()}
    results["independent"] = _summary(np.concatenate([errors["arctic"], errors["mfa"]]))
    results["recordings_skipped"] = len(skipped)
    print(f"recordings: {root}")
    for group, row in results.items():
        if not isinstance(row, dict):
            continue
        print(
            f"{group:12s} {row['boundaries']:4d} boundaries, median "
            f"{row['median_ms']:.1f} ms, "
            f"{row['within_20ms_percent']:.0f} % within 20 ms"
        )
    if args.json:
        readme_figures.write_atomic(args.json, json.dumps(results, indent=1) + "\n")
    return results


if __name__ == "__main__":
    main()
