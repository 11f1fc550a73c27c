"""TIMIT's files: NIST SPHERE audio and .PHN phone alignments (Garofolo et al., 1993).

The LDC distribution stores audio as NIST SPHERE (``NIST_1A`` header, 16-bit PCM);
converted copies may hold RIFF WAV instead. A ``.PHN`` file lists one
``start end label`` segment per line, in samples, over the 61 TIMIT labels
(:mod:`mohaq_jax.data.phones`). Every reader raises :class:`TimitError` naming the
file (and line) it cannot use.
"""

from __future__ import annotations

import os
import pathlib

import numpy as np

from mohaq_jax.data.phones import PHONES_61

SPHERE_HEADER_MAGIC = b"NIST_1A"


class TimitError(ValueError):
    """A TIMIT file or directory that cannot be used; the message names it."""


# --------------------------------------------------------------------------- audio


def parse_sphere_header(header: bytes, path: os.PathLike | str = "<bytes>") -> dict:
    """Parses a NIST SPHERE (NIST_1A) header.

    Args:
      header: the file's first bytes (at least the header size it declares).
      path: named in error messages.

    Returns:
      dict with 'header_size' (bytes, normally 1024) and every field, typed per
      its ``-i`` (int), ``-r`` (float) or ``-sN`` (str) tag.

    Raises:
      TimitError: not a SPHERE header, or a malformed one.
    """
    if not header.startswith(SPHERE_HEADER_MAGIC):
        raise TimitError(f"{path}: not a NIST SPHERE file (no NIST_1A header)")
    lines = header.split(b"\n")
    try:
        header_size = int(lines[1].strip())
    except (IndexError, ValueError):
        raise TimitError(f"{path}: SPHERE header size line is malformed") from None
    if len(header) < header_size:
        raise TimitError(
            f"{path}: truncated SPHERE header ({len(header)} < {header_size} bytes)"
        )
    fields: dict = {"header_size": header_size}
    for raw in header[:header_size].split(b"\n")[2:]:
        line = raw.decode("ascii", errors="replace").strip()
        if line == "end_head":
            return fields
        if not line or line.startswith(";"):
            continue
        parts = line.split(None, 2)
        if len(parts) != 3:
            raise TimitError(f"{path}: malformed SPHERE header line {line!r}")
        key, kind, value = parts
        try:
            if kind == "-i":
                fields[key] = int(value)
            elif kind == "-r":
                fields[key] = float(value)
            elif kind.startswith("-s"):
                fields[key] = value[: int(kind[2:])]
            else:
                raise ValueError
        except ValueError:
            raise TimitError(f"{path}: malformed SPHERE header line {line!r}") from None
    raise TimitError(f"{path}: SPHERE header has no end_head")


def read_sphere(path: os.PathLike | str) -> tuple[np.ndarray, int]:
    """Reads uncompressed PCM audio from a SPHERE file.

    Args:
      path: a .WAV file of the LDC TIMIT distribution.

    Returns:
      (samples, sample_rate): samples shape=(n,), float32 in int16 units
      (channel 0 if several).

    Raises:
      TimitError: not SPHERE, shorten-compressed, unsupported format or
        truncated data.
    """
    data = pathlib.Path(path).read_bytes()
    fields = parse_sphere_header(data[:4096], path)
    coding = str(fields.get("sample_coding", "pcm"))
    if "shorten" in coding or "wavpack" in coding or "shn" in coding:
        raise TimitError(
            f"{path}: SPHERE audio is compressed ({coding}); decompress it first "
            "(e.g. `sph2pipe -f wav` or `sox`)"
        )
    if coding.split(",")[0] not in ("pcm", ""):
        raise TimitError(f"{path}: unsupported SPHERE sample_coding {coding!r}")
    for key in ("sample_count", "sample_rate", "sample_n_bytes"):
        if key not in fields:
            raise TimitError(f"{path}: SPHERE header lacks {key}")
    n_bytes = fields["sample_n_bytes"]
    channels = fields.get("channel_count", 1)
    byte_format = str(fields.get("sample_byte_format", "01" if n_bytes == 2 else "1"))
    if n_bytes == 2:
        if byte_format not in ("01", "10"):
            raise TimitError(f"{path}: unsupported sample_byte_format {byte_format!r}")
        dtype = np.dtype("<i2" if byte_format == "01" else ">i2")
    elif n_bytes == 1:
        dtype = np.dtype("i1")
    else:
        raise TimitError(f"{path}: unsupported sample_n_bytes {n_bytes}")
    count = fields["sample_count"] * channels
    start = fields["header_size"]
    needed = count * n_bytes
    if len(data) - start < needed:
        raise TimitError(
            f"{path}: truncated audio: header says {fields['sample_count']} samples, "
            f"file holds {(len(data) - start) // (n_bytes * channels)}"
        )
    samples = np.frombuffer(data, dtype=dtype, count=count, offset=start)
    samples = samples.reshape(-1, channels)[:, 0]
    return samples.astype(np.float32), int(fields["sample_rate"])


def read_audio(path: os.PathLike | str) -> tuple[np.ndarray, int]:
    """Reads SPHERE or (for converted copies) RIFF WAV audio, in int16 units.

    Raises:
      TimitError: unreadable, truncated or of unknown format.
    """
    with open(path, "rb") as f:
        magic = f.read(8)
    if magic.startswith(SPHERE_HEADER_MAGIC):
        return read_sphere(path)
    if magic.startswith(b"RIFF"):
        import soundfile

        try:
            samples, rate = soundfile.read(str(path), dtype="int16", always_2d=True)
        except Exception as error:  # soundfile raises its own error types
            raise TimitError(f"{path}: unreadable RIFF WAV ({error})") from None
        return samples[:, 0].astype(np.float32), int(rate)
    raise TimitError(f"{path}: not a NIST SPHERE (or RIFF WAV) audio file")


# ------------------------------------------------------------------ transcriptions


def read_phn(
    path: os.PathLike | str, n_samples: int | None = None
) -> tuple[np.ndarray, np.ndarray, list[str]]:
    """Reads a TIMIT .PHN alignment ("start end label" per line, in samples).

    Args:
      path: the .PHN file.
      n_samples: audio length; segments may not end after it.

    Returns:
      (starts, ends, labels): starts/ends shape=(S,), int64; labels length S.

    Raises:
      TimitError: malformed lines, unknown labels, empty or reversed segments,
        overlapping segments, or times outside the audio.
    """
    starts, ends, labels = [], [], []
    text = pathlib.Path(path).read_text(encoding="ascii", errors="replace")
    for number, line in enumerate(text.splitlines(), start=1):
        if not line.strip():
            continue
        parts = line.split()
        if len(parts) != 3:
            raise TimitError(
                f"{path}:{number}: expected 'start end phone', got {line!r}"
            )
        try:
            start, end = int(parts[0]), int(parts[1])
        except ValueError:
            raise TimitError(
                f"{path}:{number}: non-integer times in {line!r}"
            ) from None
        label = parts[2].lower()
        if label not in PHONES_61:
            raise TimitError(f"{path}:{number}: unknown phone label {parts[2]!r}")
        if start < 0 or end <= start:
            raise TimitError(f"{path}:{number}: bad segment times {start}..{end}")
        if n_samples is not None and end > n_samples:
            raise TimitError(
                f"{path}:{number}: segment ends at sample {end}, past the audio "
                f"({n_samples} samples)"
            )
        if ends and start < ends[-1]:
            raise TimitError(
                f"{path}:{number}: segment {start}..{end} overlaps the previous one "
                f"(ends at {ends[-1]})"
            )
        starts.append(start)
        ends.append(end)
        labels.append(label)
    if not labels:
        raise TimitError(f"{path}: no phone segments")
    return np.array(starts, np.int64), np.array(ends, np.int64), labels
