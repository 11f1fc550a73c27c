"""TIMIT (LDC93S1) reader: SPHERE audio, .PHN alignments, the standard recipe.

Users bring their own copy of TIMIT (Garofolo et al., 1993). The recipe is the
one MOHAQ (Rezk et al., 2022, Sec. 5) inherits from PyTorch-Kaldi / Kaldi's
``egs/timit/s5``: the SA sentences are dropped, the 462 speakers of TRAIN train
the model, the 50-speaker development set tunes it and the 24-speaker core test
set (Halberstadt, 1998) scores it. Models are trained on the 61 TIMIT labels and
scored on the 39 of Lee & Hon (1989); see :mod:`mohaq_jax.data.phones`.

Two layouts are read: the LDC one (``TRAIN|TEST/DR1..DR8/<speaker>/<utt>.WAV``
with ``.PHN``, names in any case) and the NLTK sample
(``nltk_data/corpora/timit/dr1-fvmh0/sx206.wav`` with ``.phn``, 16 speakers).
"""

from __future__ import annotations

import dataclasses
import hashlib
import os
import pathlib
import re
import time
from collections.abc import Iterable

import numpy as np

from mohaq_jax.data import corpus as corpus_lib
from mohaq_jax.data import features as features_lib
from mohaq_jax.data.phones import FOLD_61_TO_39, PHONES_61

#: The 24 speakers of the core test set (two male, one female per dialect region).
CORE_TEST_SPEAKERS: tuple[str, ...] = (
    "mdab0",
    "mwbt0",
    "felc0",  # DR1
    "mtas1",
    "mwew0",
    "fpas0",  # DR2
    "mjmp0",
    "mlnt0",
    "fpkt0",  # DR3
    "mlll0",
    "mtls0",
    "fjlm0",  # DR4
    "mbpm0",
    "mklt0",
    "fnlp0",  # DR5
    "mcmj0",
    "mjdh0",
    "fmgd0",  # DR6
    "mgrt0",
    "mnjm0",
    "fdhc0",  # DR7
    "mjln0",
    "mpam0",
    "fmld0",  # DR8
)

#: The 50 development speakers, Kaldi egs/timit/s5/conf/dev_spk.list (same order).
DEV_SPEAKERS: tuple[str, ...] = (
    "faks0",
    "fdac1",
    "fjem0",
    "mgwt0",
    "mjar0",
    "mmdb1",
    "mmdm2",
    "mpdf0",
    "fcmh0",
    "fkms0",
    "mbdg0",
    "mbwm0",
    "mcsh0",
    "fadg0",
    "fdms0",
    "fedw0",
    "mgjf0",
    "mglb0",
    "mrtk0",
    "mtaa0",
    "mtdt0",
    "mthc0",
    "mwjg0",
    "fnmr0",
    "frew0",
    "fsem0",
    "mbns0",
    "mmjr0",
    "mdls0",
    "mdlf0",
    "mdvc0",
    "mers0",
    "fmah0",
    "fdrw0",
    "mrcs0",
    "mrjm4",
    "fcal1",
    "mmwh0",
    "fjsj0",
    "majc0",
    "mjsw0",
    "mreb0",
    "fgjd0",
    "fjmg0",
    "mroa0",
    "mteb0",
    "mjfc0",
    "mrjr0",
    "fmml0",
    "mrws1",
)

#: Speakers in a complete LDC copy: TRAIN and TEST directories.
N_TRAIN_SPEAKERS = 462
N_TEST_DIR_SPEAKERS = 168

SPHERE_HEADER_MAGIC = b"NIST_1A"


class TimitError(ValueError):
    """A TIMIT file or directory that cannot be used; the message names it."""


@dataclasses.dataclass(frozen=True)
class Utterance:
    """One utterance's files."""

    speaker: str  # lower case, e.g. "fcjf0"
    name: str  # lower case, e.g. "si1027"
    wav: pathlib.Path
    phn: pathlib.Path
    directory: str  # "train", "test" (LDC layout) or "" (NLTK sample)

    @property
    def utt_id(self) -> str:
        return f"{self.speaker}_{self.name}"


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


# ------------------------------------------------------------------------ layout


def _child(directory: pathlib.Path, name: str) -> pathlib.Path | None:
    """A child whose name matches ``name`` case-insensitively."""
    for entry in directory.iterdir():
        if entry.name.lower() == name:
            return entry
    return None


def _find_ldc_root(root: pathlib.Path, depth: int = 2) -> pathlib.Path | None:
    """The directory holding TRAIN/ and TEST/ at or below ``root``."""
    if _child(root, "train") is not None or _child(root, "test") is not None:
        return root
    if depth == 0:
        return None
    for entry in sorted(root.iterdir()):
        if entry.is_dir():
            found = _find_ldc_root(entry, depth - 1)
            if found is not None:
                return found
    return None


def speaker_summary(speakers, limit: int = 5) -> str:
    """Speaker ids, a long list cut to ``limit`` names and its count: one short line."""
    speakers = list(speakers)
    if len(speakers) <= limit:
        return " ".join(speakers) or "-"
    return f"{' '.join(speakers[:limit])} ... ({len(speakers)} in all)"


def _count_sa(speaker_dir: pathlib.Path) -> int:
    return sum(
        1
        for entry in speaker_dir.iterdir()
        if entry.name.lower().startswith("sa") and entry.name.lower().endswith(".phn")
    )


def _speaker_utterances(speaker_dir: pathlib.Path, speaker: str, directory: str):
    by_stem: dict[str, dict[str, pathlib.Path]] = {}
    for entry in speaker_dir.iterdir():
        stem, _, ext = entry.name.partition(".")
        if ext.lower() in ("wav", "phn"):
            by_stem.setdefault(stem.lower(), {})[ext.lower()] = entry
    for stem in sorted(by_stem):
        if stem.startswith("sa"):  # the two dialect sentences every speaker reads
            continue
        files = by_stem[stem]
        if "phn" not in files:
            continue
        if "wav" not in files:
            raise TimitError(f"{files['phn']}: no matching .WAV file")
        yield Utterance(speaker, stem, files["wav"], files["phn"], directory)


_NLTK_SPEAKER_DIR = re.compile(r"^dr[1-8]-([fm][a-z]{3}[0-9])$", re.IGNORECASE)


def discover(timit_dir: os.PathLike | str) -> tuple[str, list[Utterance]]:
    """Finds the SX/SI utterances of a TIMIT copy.

    Args:
      timit_dir: the LDC directory (holding TRAIN/ and TEST/, possibly one or
        two levels down) or NLTK's ``corpora/timit``.

    Returns:
      (layout, utterances): layout is "ldc" or "nltk".

    Raises:
      TimitError: missing directory or no recognizable layout.
    """
    root = pathlib.Path(timit_dir).expanduser()
    if not root.is_dir():
        raise TimitError(
            f"TIMIT directory {root} does not exist (or is not a directory)"
        )
    nltk_dirs = [
        e
        for e in sorted(root.iterdir())
        if e.is_dir() and _NLTK_SPEAKER_DIR.match(e.name)
    ]
    if nltk_dirs:
        utterances = []
        for entry in nltk_dirs:
            speaker = _NLTK_SPEAKER_DIR.match(entry.name).group(1).lower()
            utterances.extend(_speaker_utterances(entry, speaker, ""))
        return "nltk", utterances
    ldc_root = _find_ldc_root(root)
    if ldc_root is None:
        raise TimitError(
            f"{root}: no TIMIT layout found (expected TRAIN/ and TEST/ with "
            "DR1..DR8/<speaker>/<utt>.WAV|.PHN, or NLTK's dr1-<speaker>/ folders)"
        )
    utterances, n_sa = [], 0
    for part in ("train", "test"):
        part_dir = _child(ldc_root, part)
        if part_dir is None:
            continue
        for region in sorted(part_dir.iterdir()):
            if not (region.is_dir() and re.fullmatch(r"dr[1-8]", region.name.lower())):
                continue
            for speaker_dir in sorted(region.iterdir()):
                if speaker_dir.is_dir():
                    n_sa += _count_sa(speaker_dir)
                    utterances.extend(
                        _speaker_utterances(speaker_dir, speaker_dir.name.lower(), part)
                    )
    if not utterances and n_sa:
        raise TimitError(
            f"{ldc_root}: TRAIN/TEST hold only SA1/SA2 utterances ({n_sa} .PHN files); "
            "the standard recipe excludes the SA sentences by design (every speaker "
            "reads the same two), so the SX and SI utterances are needed"
        )
    if not utterances:
        raise TimitError(f"{ldc_root}: TRAIN/TEST hold no .WAV/.PHN utterances")
    return "ldc", utterances


def assign_splits(
    layout: str, utterances: list[Utterance], allow_partial: bool = False
) -> dict[str, list[str]]:
    """Chooses the speakers of train/dev/test.

    A complete LDC copy gets the standard recipe (462 / 50 / 24 speakers) and
    any mismatch with the lists is an error. With ``allow_partial`` an
    incomplete copy (or the NLTK sample) is split by speaker from what exists:
    listed dev/core speakers go to dev/test, the TEST-directory speakers on
    neither list are left out (as in the recipe), the rest train; an empty dev
    or test set is filled with evenly spaced training speakers.

    Returns:
      dict split name -> sorted speaker ids.

    Raises:
      TimitError: naming missing or misplaced speakers.
    """
    where: dict[str, set[str]] = {}
    for utt in utterances:
        where.setdefault(utt.speaker, set()).add(utt.directory)
    present = set(where)
    train_dir = {s for s, d in where.items() if "train" in d}
    test_dir = {s for s, d in where.items() if "test" in d}
    listed = set(DEV_SPEAKERS) | set(CORE_TEST_SPEAKERS)
    if layout == "ldc":
        misplaced = sorted(listed & train_dir)
        if misplaced:
            raise TimitError(
                "speakers of the dev/core-test lists found under TRAIN: "
                + speaker_summary(misplaced)
            )
    missing_dev = [s for s in DEV_SPEAKERS if s not in present]
    missing_core = [s for s in CORE_TEST_SPEAKERS if s not in present]
    full = (
        layout == "ldc"
        and len(train_dir) == N_TRAIN_SPEAKERS
        and len(test_dir) == N_TEST_DIR_SPEAKERS
    )
    if full and (missing_dev or missing_core):
        raise TimitError(
            "this TIMIT copy has all 630 speakers but not those of the standard lists; "
            f"missing dev speakers: {speaker_summary(missing_dev)}; "
            f"missing core test speakers: {speaker_summary(missing_core)}"
        )
    if not full and not allow_partial:
        raise TimitError(
            f"incomplete TIMIT copy ({layout} layout): {len(train_dir)} of "
            f"{N_TRAIN_SPEAKERS} training speakers; missing dev speakers: "
            f"{speaker_summary(missing_dev)}; missing core test speakers: "
            f"{speaker_summary(missing_core)}. Add --timit-partial (in Python: "
            "allow_partial=True) to split "
            "whatever speakers exist"
        )
    dev = sorted(s for s in present if s in DEV_SPEAKERS)
    test = sorted(s for s in present if s in CORE_TEST_SPEAKERS)
    if layout == "ldc":
        train = sorted(train_dir)
    else:
        train = sorted(present - listed)
    for name, chosen in (("test", test), ("dev", dev)):
        if not chosen:
            if len(train) < 3:
                raise TimitError(
                    f"too few speakers to build a {name} set: "
                    + speaker_summary(sorted(present))
                )
            n_take = max(1, round(0.15 * len(train)))
            picks = [
                train[i]
                for i in np.linspace(0, len(train) - 1, n_take).round().astype(int)
            ]
            chosen.extend(sorted(set(picks)))
            train = [s for s in train if s not in chosen]
    return {"train": train, "dev": sorted(dev), "test": sorted(test)}


# ------------------------------------------------------------------------ loading


def utterance_features(
    utt: Utterance, config: features_lib.FeatureConfig
) -> tuple[np.ndarray, np.ndarray]:
    """Unnormalized features and 61-class frame labels of one utterance.

    Frames whose centre lies past the last .PHN segment are dropped.

    Returns:
      (features shape=(T, F) float32, labels shape=(T,) int32).
    """
    samples, rate = read_audio(utt.wav)
    if rate != config.sample_rate:
        raise TimitError(
            f"{utt.wav}: sample rate {rate} Hz, expected {config.sample_rate}"
        )
    starts, ends, labels = read_phn(utt.phn, samples.shape[0])
    feats = features_lib.compute_features(samples, config)
    indices = np.array([PHONES_61.index(p) for p in labels], dtype=np.int32)
    frame_labels = features_lib.frame_labels(
        starts, ends, indices, feats.shape[0], config
    )
    keep = int(np.sum(frame_labels >= 0))  # labels are -1 only at the end
    return feats[:keep], frame_labels[:keep]


def _fingerprint(utterances: Iterable[Utterance]) -> str:
    digest = hashlib.sha256()
    for utt in utterances:
        for path in (utt.wav, utt.phn):
            stat = path.stat()
            digest.update(f"{path}|{stat.st_size}|{stat.st_mtime_ns}\n".encode())
    return digest.hexdigest()[:16]


def load_timit(
    timit_dir: os.PathLike | str | None = None,
    feature_config: features_lib.FeatureConfig = features_lib.DEFAULT_CONFIG,
    cache_dir: os.PathLike | str | None = None,
    allow_partial: bool = False,
    verbose: bool = False,
) -> corpus_lib.Corpus:
    """Loads TIMIT with the standard recipe, caching features.

    Args:
      timit_dir: the user's TIMIT copy (see :func:`discover`); None looks for
        NLTK's sample (``$NLTK_DATA`` or ``~/nltk_data``: corpora/timit).
      feature_config: front end settings.
      cache_dir: where the .npz cache lives; None = $MOHAQ_CACHE or
        ~/.cache/mohaq_jax.
      allow_partial: split an incomplete copy by speaker instead of failing.
      verbose: print progress.

    Returns:
      Corpus with 61 training classes (fold39 maps 'q' to -1), per-speaker
      normalized features.

    Raises:
      TimitError: bad directory, speaker lists or files (the message names them).
    """
    if timit_dir is None:
        timit_dir = find_nltk_timit()
        if timit_dir is None:
            raise TimitError(
                "no TIMIT directory given and no NLTK TIMIT sample found; "
                "pass --timit-dir"
            )
    layout, utterances = discover(timit_dir)
    speakers_by_split = assign_splits(layout, utterances, allow_partial)
    settings = {
        "dataset": "timit",
        "timit_dir": str(pathlib.Path(timit_dir).expanduser().resolve()),
        "layout": layout,
        "allow_partial": allow_partial,
        "feature_config": dataclasses.asdict(feature_config),
        "speakers": {k: len(v) for k, v in speakers_by_split.items()},
        "files": _fingerprint(utterances),
    }
    cache_root = (
        pathlib.Path(cache_dir)
        if cache_dir is not None
        else corpus_lib.default_cache_dir()
    )
    cache_path = cache_root / f"timit-{corpus_lib.settings_hash(settings)}.npz"
    if cache_path.exists():
        splits = corpus_lib.load_splits(cache_path)
    else:
        started = time.time()
        splits = {}
        for name, speakers in speakers_by_split.items():
            chosen = [u for u in utterances if u.speaker in set(speakers)]
            feats, labels = (
                zip(
                    *(utterance_features(u, feature_config) for u in chosen),
                    strict=True,
                )
                if chosen
                else ((), ())
            )
            feats = list(feats)
            if feature_config.normalize and feats:
                feats = features_lib.normalize_per_speaker(
                    feats, [u.speaker for u in chosen]
                )
            splits[name] = corpus_lib.Split(
                feats,
                list(labels),
                [u.speaker for u in chosen],
                [u.utt_id for u in chosen],
            )
        corpus_lib.save_splits(cache_path, splits)
        if verbose:
            print(
                f"TIMIT features computed in {time.time() - started:.1f}s "
                f"-> {cache_path}"
            )
    return corpus_lib.Corpus(
        name="timit",
        train=splits["train"],
        dev=splits["dev"],
        test=splits["test"],
        classes=PHONES_61,
        fold39=FOLD_61_TO_39.copy(),
        n_features=feature_config.n_features,
        synthetic=False,
        notice="",
        settings={**settings, "cache": str(cache_path)},
    )


def find_nltk_timit() -> pathlib.Path | None:
    """NLTK's TIMIT sample directory (corpora/timit) if installed, else None."""
    candidates = [p for p in os.environ.get("NLTK_DATA", "").split(os.pathsep) if p]
    candidates += [
        str(pathlib.Path.home() / "nltk_data"),
        "/usr/share/nltk_data",
        "/usr/local/share/nltk_data",
        "/usr/lib/nltk_data",
        "/usr/local/lib/nltk_data",
    ]
    for base in candidates:
        path = pathlib.Path(base) / "corpora" / "timit"
        if path.is_dir():
            return path
    return None
