"""Finding and reading the recordings of a transcribed-speech folder.

Two layouts are read:
  * LibriSpeech (Panayotov et al., "LibriSpeech: an ASR corpus based on public
    domain audio books", ICASSP 2015): ``SPEAKER/CHAPTER/SPEAKER-CHAPTER-NNNN.flac``
    with one ``SPEAKER-CHAPTER.trans.txt`` per chapter ("UTT-ID WORDS ..." lines);
    the speaker is the utterance id up to its first '-'.
  * plain: ``*.wav`` / ``*.flac`` with a same-name ``.txt`` transcript, anywhere
    below the corpus folder; the speaker is the first sub-folder, or for files
    directly in the corpus folder the file name up to its first '-' or '_'.

Beside each recording a phone-times file (``NAME.phone.json``, ``NAME.TextGrid``,
``NAME_phones.TextGrid``, ``NAME_phone.lab`` or an HTS ``NAME.lab``;
:mod:`mohaq_jax.data.phone_times`) is
noted when there is one. :mod:`mohaq_jax.data.transcribed` turns what is found here
into a corpus.
"""

from __future__ import annotations

import dataclasses
import os
import pathlib

import numpy as np
import scipy.signal

from mohaq_jax.data import phone_times as times_lib

AUDIO_SUFFIXES = (".flac", ".wav")

#: Phone-times files looked for beside NAME.wav with labels="given", in order.
GIVEN_ENDINGS = (
    ".phone.json",
    ".TextGrid",
    "_phones.TextGrid",
    "_phone.TextGrid",
    "_phone.lab",
    ".lab",
)


class TranscribedError(ValueError):
    """A corpus folder or file that cannot be used; the message names it."""


@dataclasses.dataclass(frozen=True)
class Utterance:
    """One recording and where its labels come from."""

    utt_id: str
    speaker: str
    audio: pathlib.Path
    text: str | None  # transcript, None when there is none
    times: pathlib.Path | None  # phone-times file, None when there is none


def read_audio(path: os.PathLike | str) -> tuple[np.ndarray, int]:
    """Reads WAV/FLAC (anything libsndfile reads) as int16-unit floats, channel 0.

    Returns:
      (samples shape=(n,) float32, sample_rate).

    Raises:
      TranscribedError: unreadable file.
    """
    import soundfile

    try:
        samples, rate = soundfile.read(os.fspath(path), dtype="int16", always_2d=True)
    except Exception as error:  # soundfile raises its own error types
        raise TranscribedError(f"{path}: unreadable audio ({error})") from None
    return samples[:, 0].astype(np.float32), int(rate)


def audio_problem(path: os.PathLike | str) -> str | None:
    """Why a recording cannot be used (unreadable header, no samples), or None.

    Reads the header only (cheap for a whole corpus); damage past the header shows
    when the samples are read (:func:`read_audio`).
    """
    import soundfile

    try:
        info = soundfile.info(os.fspath(path))
    except Exception as error:  # soundfile raises its own error types
        return "unreadable audio (" + " ".join(str(error).split()) + ")"
    if info.frames <= 0:
        return "no audio samples"
    return None


def resample(samples: np.ndarray, rate: int, target: int) -> np.ndarray:
    """Polyphase resampling to ``target`` Hz (as the eSpeak corpus resamples)."""
    if rate == target:
        return samples
    gcd = np.gcd(int(rate), int(target))
    return scipy.signal.resample_poly(
        samples.astype(np.float64), target // gcd, rate // gcd
    ).astype(np.float32)


def _given_times(audio: pathlib.Path) -> pathlib.Path | None:
    stem = audio.with_suffix("")
    for ending in GIVEN_ENDINGS:
        candidate = stem.parent / (stem.name + ending)
        if not candidate.is_file():
            continue
        if ending == ".lab":  # MFA and others keep transcripts in .lab files
            try:
                times_lib.read_hts_lab(candidate)
            except times_lib.PhoneTimesError:
                continue
        return candidate
    return None


def _read_transcript(path: pathlib.Path) -> str:
    try:
        return path.read_text(encoding="utf-8")
    except (OSError, UnicodeDecodeError) as error:
        raise TranscribedError(f"{path}: unreadable transcript ({error})") from None


def discover(corpus_dir: os.PathLike | str) -> tuple[str, list[Utterance]]:
    """Finds the recordings of a LibriSpeech-layout or plain folder.

    Args:
      corpus_dir: the folder (a LibriSpeech part such as ``dev-clean`` or its
        parent, or any folder of audio with same-name transcripts).

    Returns:
      (layout "librispeech" or "plain", utterances sorted by id).

    Raises:
      TranscribedError: missing folder, missing audio named by a transcript, an
        unreadable transcript (not UTF-8), no audio at all.
    """
    root = pathlib.Path(corpus_dir).expanduser()
    if not root.is_dir():
        raise TranscribedError(
            f"corpus folder {root} does not exist (or is not a directory)"
        )
    utterances = []
    transcripts = sorted(root.rglob("*.trans.txt"))
    if transcripts:
        for trans in transcripts:
            lines = _read_transcript(trans).splitlines()
            for number, line in enumerate(lines, start=1):
                if not line.strip():
                    continue
                utt_id, _, text = line.strip().partition(" ")
                audio = next(
                    (
                        trans.parent / (utt_id + s)
                        for s in AUDIO_SUFFIXES
                        if (trans.parent / (utt_id + s)).is_file()
                    ),
                    None,
                )
                if audio is None:
                    raise TranscribedError(
                        f"{trans}:{number}: no audio {utt_id}.flac/.wav beside it"
                    )
                speaker = utt_id.split("-")[0]
                utterances.append(
                    Utterance(utt_id, speaker, audio, text, _given_times(audio))
                )
        return "librispeech", sorted(utterances, key=lambda u: u.utt_id)
    for audio in sorted(p for p in root.rglob("*") if p.suffix in AUDIO_SUFFIXES):
        relative = audio.relative_to(root).with_suffix("")
        if len(relative.parts) > 1:
            speaker = relative.parts[0]
        else:
            speaker = relative.name.replace("_", "-").split("-")[0]
        text_path = audio.with_suffix(".txt")
        text = _read_transcript(text_path) if text_path.is_file() else None
        utterances.append(
            Utterance(relative.as_posix(), speaker, audio, text, _given_times(audio))
        )
    if not utterances:
        raise TranscribedError(
            f"{root}: no audio found (expected LibriSpeech SPEAKER/CHAPTER/*.flac "
            "with *.trans.txt, or *.wav/*.flac with same-name .txt transcripts)"
        )
    return "plain", utterances
