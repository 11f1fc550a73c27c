"""The forced aligner's phone-boundary error against the shared recordings' labels.

Aligns each shared real-speech recording (``../shared/data/real_speech``, see its
README) from its transcript with :class:`mohaq_jax.data.align.Aligner` and compares
the phone start times with the given labels (:func:`phone_times.boundary_errors`),
per recording and pooled: boundaries matched, median error, share within 20 ms, and
the edge errors (start of the first and end of the last non-silence phone, signed:
positive = the aligner's speech starts or ends later than the reference's).

The librivox labels were made by pocketsphinx 5.1.1 itself (a regression check); the
arctic labels (HTS) and the mfa labels (Montreal Forced Aligner) are independent.
Every recording here has 130 ms or more of silence at both edges, so arctic_a0009 is
also aligned cut to 65 ms and to 40 ms of silence at each edge (its labels shifted
and cut alike): short edge silences are where the aligner used to label silence as
speech.

  python -m benchmarks.align_boundaries [--all-mfa] [--no-edge-silence]
"""

from __future__ import annotations

import argparse
import dataclasses
import os
import pathlib
import time

import numpy as np

from mohaq_jax.data import align, transcribed
from mohaq_jax.data import phone_times as pt

REPO = pathlib.Path(__file__).resolve().parents[1]
ARCTIC_TEXT = "He turned sharply, and faced Gregson across the table."
#: Words of the mfa transcripts missing from the CMU dictionary.
EXTRA_WORDS = {"yknow": "Y AH N OW"}


def real_speech() -> pathlib.Path:
    shared = os.environ.get("MOHAQ_SHARED") or REPO.parent / "shared"
    return pathlib.Path(shared) / "data" / "real_speech"


def cases(all_mfa: bool = False) -> list[tuple[str, str, pathlib.Path, str, list]]:
    """(group, name, audio, transcript, reference intervals) per recording."""
    root = real_speech()
    out = []
    for text in sorted((root / "librivox").glob("*.txt")):
        stem = text.with_suffix("")
        out.append(
            (
                "librivox",
                stem.name.rsplit("-", 1)[-1],
                stem.with_suffix(".wav"),
                text.read_text(),
                pt.read_phone_json(stem.with_suffix(".phone.json")),
            )
        )
    arctic = root / "arctic"
    out.append(
        (
            "arctic",
            "arctic_a0009",
            arctic / "arctic_a0009.wav",
            ARCTIC_TEXT,
            pt.read_hts_lab(arctic / "arctic_a0009_phone.lab"),
        )
    )
    names = ["acoustic_corpus"]
    if all_mfa:
        names += ["cold_corpus", "cold_corpus3"]
    for name in names:
        mfa = root / "mfa" / name
        out.append(
            (
                "mfa",
                name,
                mfa.with_suffix(".wav"),
                mfa.with_suffix(".lab").read_text(),
                pt.read_textgrid(mfa.with_suffix(".TextGrid")),
            )
        )
    return out


#: arctic_a0009's labelled speech: from the end of its leading "sil" to the start
#: of its trailing one (seconds).
ARCTIC_SPEECH = (0.13, 2.925)


def trimmed(samples, rate, given, edge_s: float):
    """A recording cut to ``edge_s`` of silence before and after ARCTIC_SPEECH."""
    start, end = ARCTIC_SPEECH[0] - edge_s, ARCTIC_SPEECH[1] + edge_s
    cut = samples[round(start * rate) : round(end * rate)]
    shifted = [
        pt.PhoneInterval(
            max(i.start_s, start) - start, min(i.end_s, end) - start, i.phone
        )
        for i in given
        if i.end_s > start and i.start_s < end
    ]
    return cut, shifted


def speech_edges(intervals) -> tuple[float, float]:
    """Start of the first and end of the last non-silence phone (s)."""
    speech = [i for i in pt.to_timit39_intervals(intervals) if i.phone != "sil"]
    return speech[0].start_s, speech[-1].end_s


@dataclasses.dataclass
class Row:
    group: str
    name: str
    errors: np.ndarray  # seconds
    lead_ms: float
    trail_ms: float

    def line(self) -> str:
        e = 1000 * self.errors
        return (
            f"| {self.group} | {self.name} | {len(e)} | {np.median(e):.1f} | "
            f"{100 * np.mean(e <= 20):.0f} | {self.lead_ms:+.0f} | "
            f"{self.trail_ms:+.0f} |"
        )


def measure(aligner: align.Aligner, all_mfa: bool = False) -> list[Row]:
    jobs = []
    for group, name, audio, text, given in cases(all_mfa):
        samples, rate = transcribed.read_audio(audio)
        jobs.append((group, name, samples, rate, text, given))
        if name == "arctic_a0009":
            for edge_ms in (65, 40):
                cut, shifted = trimmed(samples, rate, given, edge_ms / 1000)
                name_cut = f"{name} cut to {edge_ms} ms"
                jobs.append(("arctic", name_cut, cut, rate, text, shifted))
    rows = []
    for group, name, samples, rate, text, given in jobs:
        got = aligner.align(samples, rate, align.normalize_words(text))
        (hyp_start, hyp_end), (ref_start, ref_end) = (
            speech_edges(got),
            speech_edges(given),
        )
        rows.append(
            Row(
                group,
                name,
                pt.boundary_errors(got, given),
                1000 * (hyp_start - ref_start),
                1000 * (hyp_end - ref_end),
            )
        )
    return rows


def table(rows: list[Row]) -> str:
    lines = [
        "| labels | recording | boundaries | median (ms) | within 20 ms (%) | "
        "speech start (ms) | speech end (ms) |",
        "|---|---|---|---|---|---|---|",
    ]
    lines += [row.line() for row in rows]
    for label, chosen in (
        (
            "independent (arctic+mfa, uncut)",
            [r for r in rows if r.group != "librivox" and "cut" not in r.name],
        ),
        ("all uncut", [r for r in rows if "cut" not in r.name]),
        ("all", rows),
    ):
        e = 1000 * np.concatenate([r.errors for r in chosen])
        lead = np.mean([abs(r.lead_ms) for r in chosen])
        trail = np.mean([abs(r.trail_ms) for r in chosen])
        lines.append(
            f"| pooled | {label} | {len(e)} | {np.median(e):.1f} | "
            f"{100 * np.mean(e <= 20):.0f} | mean abs {lead:.0f} | "
            f"mean abs {trail:.0f} |"
        )
    return "\n".join(lines)


def main(argv=None) -> None:
    parser = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    parser.add_argument(
        "--all-mfa", action="store_true", help="all three mfa recordings (77 s)"
    )
    parser.add_argument(
        "--no-edge-silence",
        action="store_true",
        help="align without the optional silence words at the utterance edges",
    )
    args = parser.parse_args(argv)
    aligner = align.Aligner(EXTRA_WORDS, edge_silence=not args.no_edge_silence)
    started = time.perf_counter()
    rows = measure(aligner, args.all_mfa)
    print(table(rows))
    print(f"({time.perf_counter() - started:.0f} s)")


if __name__ == "__main__":
    main()
