"""Offline phone-level forced alignment of word transcripts with pocketsphinx.

Word transcript -> pronunciations from the CMU pronouncing dictionary ->
phone boundaries from pocketsphinx (Huggins-Daines et al., "PocketSphinx: a free,
real-time continuous speech recognition system for hand-held devices", ICASSP
2006; the 5.x wheel ships its US-English acoustic model and cmudict) -> ARPAbet
phone intervals, which :mod:`mohaq_jax.data.phone_times` folds to the 39 TIMIT
phones and turns into frame labels.

pocketsphinx aligns in two passes (its ``Decoder.set_alignment`` docstring): a
word-level pass with ``set_align_text`` (optional silences between words), then a
sub-word pass with ``set_alignment`` whose ``get_alignment()`` yields words ->
phones -> HMM states with start frame and duration at 100 frames/s.

Silence at the utterance edges: the grammar of ``set_align_text`` lets the first
and last word absorb a short leading or trailing silence (a 65 ms pause after the
last word of arctic_a0009 came out as the word's final phone), so the transcript is
aligned between two silence words. A silence word cannot be shorter than its HMM (3
frames, 30 ms); an edge silence of that minimum length means there was none, and
its frames go back to the neighbouring phone. The boundary error this gives against
the shared recordings' labels is measured by ``benchmarks/align_boundaries.py``.

An utterance with a word missing from the dictionary is never aligned with a
guessed pronunciation: it is skipped and counted in :class:`AlignmentSummary`
(pass ``extra_words`` to supply pronunciations). An utterance the decoder cannot
align at all is skipped and counted too.
"""

from __future__ import annotations

import concurrent.futures
import dataclasses
import hashlib
import json
import multiprocessing
import os
import pathlib
import re
from collections.abc import Callable, Iterable

import numpy as np
import scipy.signal
from tqdm.auto import tqdm

from mohaq_jax.data import corpus as corpus_lib
from mohaq_jax.data.phone_times import PhoneInterval
from mohaq_jax.runtime import checkpoint

#: pocketsphinx's acoustic model works on 16 kHz audio.
ALIGN_RATE = 16000

#: Bump when the alignment procedure changes, to invalidate cached alignments.
ALIGN_VERSION = 2

#: pocketsphinx's silence word, aligned at both edges of every utterance.
SILENCE_WORD = "<sil>"
#: Frames of the shortest silence word (its HMM's states); see the module docstring.
MIN_SILENCE_FRAMES = 3

#: Beams of the retry for utterances the default beams lose (pocketsphinx options).
WIDE_BEAMS = {
    "beam": 1e-100,
    "pbeam": 1e-100,
    "wbeam": 1e-80,
    "lpbeam": 1e-80,
    "lponlybeam": 1e-80,
}

_WORD_CHARS = re.compile(r"[^a-z0-9']+")


class AlignmentError(RuntimeError):
    """pocketsphinx could not align an utterance; the message says which and why."""


class MissingWordsError(AlignmentError):
    """Transcript words absent from the pronouncing dictionary."""

    def __init__(self, words: list[str]):
        super().__init__("not in the pronouncing dictionary: " + " ".join(words))
        self.words = words


def normalize_words(text: str) -> list[str]:
    """Lower-cased words; punctuation other than inner apostrophes becomes space.

    Args:
      text: a transcript, e.g. "HE TURNED SHARPLY, AND FACED GREGSON".

    Returns:
      e.g. ["he", "turned", "sharply", "and", "faced", "gregson"].
    """
    words = _WORD_CHARS.sub(" ", text.lower()).split()
    return [w.strip("'") for w in words if w.strip("'")]


class Aligner:
    """A pocketsphinx decoder set up for forced alignment (one per process)."""

    def __init__(
        self,
        extra_words: dict[str, str] | None = None,
        hmm: str | None = None,
        dictionary: str | None = None,
        edge_silence: bool = True,
    ):
        """Loads the acoustic model and dictionary.

        Args:
          extra_words: word -> space-separated ARPAbet pronunciation added to
            (or replacing in) the dictionary.
          hmm: acoustic model folder; None = the wheel's en-us model.
          dictionary: pronouncing dictionary; None = the wheel's cmudict-en-us.
          edge_silence: align between two optional silence words (see the module
            docstring); False = the transcript alone.

        Raises:
          ImportError: pocketsphinx is not installed (says how to install it).
        """
        try:
            import pocketsphinx
        except ImportError:
            raise ImportError(
                "forced alignment needs pocketsphinx: pip install 'pocketsphinx>=5,<6'"
            ) from None
        self._make = pocketsphinx.Decoder
        self._kwargs = {"lm": None, "samprate": ALIGN_RATE, "loglevel": "ERROR"}
        self._kwargs["bestpath"] = False
        if hmm is not None:
            self._kwargs["hmm"] = hmm
        if dictionary is not None:
            self._kwargs["dict"] = dictionary
        self.extra_words = dict(sorted((extra_words or {}).items()))
        self.edge_silence = edge_silence
        self.decoder = self._new_decoder({})
        self._wide = None  # built on the first utterance the default beams miss
        self.frame_rate = float(self.decoder.config["frate"])

    def _new_decoder(self, beams: dict):
        decoder = self._make(**self._kwargs, **beams)
        for word, pronunciation in self.extra_words.items():
            decoder.add_word(word.lower(), pronunciation.upper(), update=True)
        return decoder

    def pronunciation(self, word: str) -> list[str] | None:
        """The dictionary's first pronunciation (ARPAbet, no stress), or None."""
        phones = self.decoder.lookup_word(word)
        return None if phones is None else phones.split()

    def missing_words(self, words: Iterable[str]) -> list[str]:
        """The distinct words (in order) that the dictionary lacks."""
        missing = [w for w in dict.fromkeys(words) if self.pronunciation(w) is None]
        return missing

    @staticmethod
    def _decode(decoder, pcm: bytes) -> None:
        decoder.start_utt()
        decoder.process_raw(pcm, full_utt=True)
        decoder.end_utt()

    def _two_passes(self, decoder, pcm: bytes, words: list[str]):
        decoder.set_align_text(" ".join(words))
        self._decode(decoder, pcm)
        if decoder.hyp() is None:
            return None
        decoder.set_alignment()
        self._decode(decoder, pcm)
        return decoder.get_alignment()

    def align(
        self, samples: np.ndarray, sample_rate: int, words: list[str]
    ) -> list[PhoneInterval]:
        """Phone intervals of one utterance.

        The default beams are tried first; if they lose the path (long or noisy
        utterances), the utterance is aligned again with beams of WIDE_BEAMS.

        Args:
          samples: shape=(n,), float in int16 units (or int16).
          sample_rate: Hz; resampled to 16 kHz for the acoustic model.
          words: normalized transcript words (see :func:`normalize_words`).

        Returns:
          ARPAbet phone intervals covering the audio ("SIL" for silence), seconds.

        Raises:
          MissingWordsError: some word is not in the dictionary.
          AlignmentError: empty transcript, or the decoder found no alignment.
        """
        if not words:
            raise AlignmentError("empty transcript")
        missing = self.missing_words(words)
        if missing:
            raise MissingWordsError(missing)
        pcm = to_pcm16(samples, sample_rate)
        if self.edge_silence:
            words = [SILENCE_WORD, *words, SILENCE_WORD]
        try:
            alignment = self._two_passes(self.decoder, pcm, words)
            if alignment is None:
                if self._wide is None:
                    self._wide = self._new_decoder(WIDE_BEAMS)
                alignment = self._two_passes(self._wide, pcm, words)
        except RuntimeError as error:
            raise AlignmentError(f"pocketsphinx failed: {error}") from None
        if alignment is None:
            raise AlignmentError("no alignment found, even with wide beams")
        intervals = []
        for word in alignment:
            for phone in word:
                if phone.duration <= 0:
                    continue
                start = phone.start / self.frame_rate
                end = (phone.start + phone.duration) / self.frame_rate
                intervals.append(PhoneInterval(start, end, phone.name))
        if not intervals:
            raise AlignmentError("no phone alignment found")
        if self.edge_silence:
            intervals = _drop_minimal_edge_silence(
                intervals, MIN_SILENCE_FRAMES / self.frame_rate
            )
        return intervals


def _drop_minimal_edge_silence(
    intervals: list[PhoneInterval], shortest: float
) -> list[PhoneInterval]:
    """Gives an edge silence of the silence word's minimum length to its neighbour."""
    out = list(intervals)

    def minimal(interval: PhoneInterval) -> bool:
        is_silence = interval.phone.upper() == "SIL"
        return is_silence and interval.end_s - interval.start_s <= shortest + 1e-6

    if len(out) > 1 and minimal(out[0]):
        out[1] = out[1]._replace(start_s=out[0].start_s)
        out = out[1:]
    if len(out) > 1 and minimal(out[-1]):
        out[-2] = out[-2]._replace(end_s=out[-1].end_s)
        out = out[:-1]
    return out


def to_pcm16(samples: np.ndarray, sample_rate: int) -> bytes:
    """16 kHz little-endian int16 bytes of a waveform in int16 units."""
    signal = np.asarray(samples, dtype=np.float64)
    if sample_rate != ALIGN_RATE:
        gcd = np.gcd(int(sample_rate), ALIGN_RATE)
        signal = scipy.signal.resample_poly(
            signal, ALIGN_RATE // gcd, int(sample_rate) // gcd
        )
    return np.clip(np.round(signal), -32768, 32767).astype("<i2").tobytes()


@dataclasses.dataclass
class AlignmentSummary:
    """What happened to each utterance of a batch."""

    n_utterances: int
    aligned: list[str]  # utterance ids with phone intervals
    missing_words: dict[str, list[str]]  # skipped: utt id -> words not in dictionary
    failed: dict[str, str]  # skipped: utt id -> why the decoder failed
    unreadable: dict[str, str] = dataclasses.field(default_factory=dict)  # -> why
    empty: list[str] = dataclasses.field(default_factory=list)  # no words to align

    @property
    def n_skipped(self) -> int:
        """Utterances without an alignment."""
        return (
            len(self.missing_words)
            + len(self.failed)
            + len(self.unreadable)
            + len(self.empty)
        )

    def describe(self, max_words: int = 20) -> str:
        """A short human-readable report (one to three lines)."""
        lines = [
            f"forced alignment: {len(self.aligned)} of {self.n_utterances} "
            f"utterances aligned, {self.n_skipped} skipped"
        ]
        if self.missing_words:
            words = sorted({w for ws in self.missing_words.values() for w in ws})
            shown = " ".join(words[:max_words]) + (
                " ..." if len(words) > max_words else ""
            )
            lines.append(
                f"  {len(self.missing_words)} skipped for {len(words)} word(s) missing "
                f"from the pronouncing dictionary: {shown} (add them with extra_words)"
            )
        if self.unreadable:
            first = next(iter(self.unreadable.items()))
            lines.append(
                f"  {len(self.unreadable)} skipped for unreadable audio "
                f"(e.g. {first[0]}: {first[1]})"
            )
        if self.empty:
            lines.append(
                f"  {len(self.empty)} skipped for an empty transcript "
                f"(e.g. {self.empty[0]})"
            )
        if self.failed:
            first = next(iter(self.failed.items()))
            lines.append(
                f"  {len(self.failed)} skipped because pocketsphinx found no "
                f"alignment (e.g. {first[0]}: {first[1]})"
            )
        return "\n".join(lines)


_WORKER: Aligner | None = None  # this process's aligner (see _start_worker)


def _start_worker(extra_words: dict[str, str] | None) -> None:
    global _WORKER
    _WORKER = Aligner(extra_words)


def _align_job(job) -> tuple[str, str, object]:
    """Aligns one utterance: ``(utt id, outcome, payload)``.

    Outcomes: "aligned" (payload: intervals), "missing_words" (the words), "failed"
    or "unreadable" (why), "empty" (no words to align; payload None).
    """
    item, read_audio = job
    if not item.words:
        return item.utt_id, "empty", None
    try:
        samples, rate = read_audio(item.audio)
    except (OSError, ValueError, RuntimeError) as error:
        return item.utt_id, "unreadable", " ".join(str(error).split())
    try:
        intervals = _WORKER.align(samples, rate, list(item.words))
    except MissingWordsError as error:
        return item.utt_id, "missing_words", error.words
    except AlignmentError as error:
        return item.utt_id, "failed", str(error)
    return item.utt_id, "aligned", [list(i) for i in intervals]


#: Format tag of an alignment cache file.
ALIGN_FORMAT = "mohaq_jax.align/1"
#: What happened to each utterance, one section per outcome of :func:`_align_job`.
DOC_SECTIONS = ("aligned", "missing_words", "failed", "unreadable", "empty")


def _doc_digest(doc: dict) -> str:
    return hashlib.sha256(json.dumps(doc, sort_keys=True).encode()).hexdigest()


def save_alignments(path: pathlib.Path, doc: dict, key: str) -> None:
    """Writes an alignment cache atomically, with its key and a sha256 of ``doc``."""
    text = json.dumps(
        {"format": ALIGN_FORMAT, "key": key, "sha256": _doc_digest(doc), "doc": doc},
        sort_keys=True,
    )
    checkpoint.write_bytes_atomic(path, text.encode())


def load_alignments(path: pathlib.Path, key: str | None = None) -> dict:
    """Reads what :func:`save_alignments` wrote, checking format, key and checksum.

    Raises:
      FileNotFoundError: no file.
      DamagedCacheError: truncated, corrupted, another format or another key.
    """
    try:
        stored = json.loads(path.read_bytes())
    except (UnicodeDecodeError, json.JSONDecodeError) as error:
        raise corpus_lib.DamagedCacheError(f"{path}: not JSON ({error})") from None
    if not isinstance(stored, dict) or not isinstance(stored.get("doc"), dict):
        raise corpus_lib.DamagedCacheError(f"{path}: not a {ALIGN_FORMAT} file")
    corpus_lib.check_meta(path, json.dumps(stored), ALIGN_FORMAT, key)
    doc = stored["doc"]
    if stored.get("sha256") != _doc_digest(doc):
        raise corpus_lib.DamagedCacheError(f"{path}: checksum mismatch")
    if set(doc) != set(DOC_SECTIONS):
        raise corpus_lib.DamagedCacheError(f"{path}: unexpected sections {sorted(doc)}")
    return doc


@dataclasses.dataclass(frozen=True)
class AlignItem:
    """One utterance to align."""

    utt_id: str
    audio: pathlib.Path
    words: tuple[str, ...]  # normalized transcript


def align_items(
    items: list[AlignItem],
    read_audio: Callable[[pathlib.Path], tuple[np.ndarray, int]],
    cache_dir: os.PathLike | str | None = None,
    extra_words: dict[str, str] | None = None,
    progress: bool = True,
    workers: int = 1,
) -> tuple[dict[str, list[PhoneInterval]], AlignmentSummary]:
    """Aligns a batch of utterances, cached as JSON by settings and file fingerprint.

    Args:
      items: the utterances.
      read_audio: path -> (samples in int16 units, sample rate); a module-level
        function when ``workers > 1`` (it is pickled).
      cache_dir: None = $MOHAQ_CACHE or ~/.cache/mohaq_jax (file ``align-*.json``).
      extra_words: pronunciations to add, see :class:`Aligner`.
      progress: show a progress bar.
      workers: processes aligning in parallel (spawned, one decoder each); the
        result does not depend on it.

    Returns:
      (utt id -> ARPAbet phone intervals for the aligned ones, summary).
    """
    if workers < 1:
        raise ValueError(f"workers={workers}: need at least 1")
    digest = hashlib.sha256()
    for item in items:
        stat = item.audio.stat()
        digest.update(
            f"{item.utt_id}|{item.audio}|{stat.st_size}|{stat.st_mtime_ns}|"
            f"{' '.join(item.words)}\n".encode()
        )
    try:
        import pocketsphinx

        version = getattr(pocketsphinx, "__version__", "5")
    except ImportError:
        version = None
    settings = {
        "align_version": ALIGN_VERSION,
        "pocketsphinx": version,
        "extra_words": dict(sorted((extra_words or {}).items())),
        "items": digest.hexdigest(),
    }
    root = (
        pathlib.Path(cache_dir)
        if cache_dir is not None
        else corpus_lib.default_cache_dir()
    )
    key = corpus_lib.settings_hash(settings)
    path = root / f"align-{key}.json"
    doc = corpus_lib.read_cache(path, lambda p: load_alignments(p, key))
    if doc is None:
        doc = {section: {} for section in DOC_SECTIONS}
        jobs = [(item, read_audio) for item in items]
        if workers == 1:
            _start_worker(extra_words)
            results = map(_align_job, jobs)
            pool = None
        else:
            pool = concurrent.futures.ProcessPoolExecutor(
                workers,
                mp_context=multiprocessing.get_context("spawn"),
                initializer=_start_worker,
                initargs=(extra_words,),
            )
            results = pool.map(_align_job, jobs, chunksize=4)
        try:
            for utt_id, outcome, payload in tqdm(
                results,
                total=len(jobs),
                desc="aligning",
                unit="utt",
                disable=not progress,
            ):
                doc[outcome][utt_id] = payload
        finally:
            if pool is not None:
                pool.shutdown()
        save_alignments(path, doc, key)
    alignments = {
        utt: [PhoneInterval(float(s), float(e), str(p)) for s, e, p in rows]
        for utt, rows in doc["aligned"].items()
    }
    summary = AlignmentSummary(
        n_utterances=len(items),
        aligned=list(alignments),
        missing_words=doc["missing_words"],
        failed=doc["failed"],
        unreadable=doc["unreadable"],
        empty=sorted(doc["empty"]),
    )
    return alignments, summary
