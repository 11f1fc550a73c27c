"""A tiny TIMIT copy written on the fly: NIST SPHERE audio, phone files, the LDC
layout (:func:`tests.conftest.ldc_dir`)."""

import pathlib

import numpy as np
import soundfile

from mohaq_jax.data import timit

RATE = 16000


def sphere_bytes(samples, byte_format="01", coding="pcm", count=None):
    """A NIST_1A file as TIMIT ships it (1024-byte header), written independently."""
    samples = np.asarray(samples, dtype=np.int16)
    fields = [
        "database_id -s5 TIMIT",
        f"sample_count -i {len(samples) if count is None else count}",
        f"sample_rate -i {RATE}",
        "channel_count -i 1",
        "sample_n_bytes -i 2",
        f"sample_byte_format -s2 {byte_format}",
        f"sample_coding -s{len(coding)} {coding}",
        "sample_sig_bits -i 16",
        "end_head",
    ]
    header = ("NIST_1A\n   1024\n" + "\n".join(fields) + "\n").encode()
    header += b" " * (1024 - len(header))
    body = samples.astype("<i2" if byte_format == "01" else ">i2").tobytes()
    return header + body


# Segments of every synthetic utterance: (start, end, label), 16 kHz samples.
SEGMENTS = [
    (0, 2000, "h#"),
    (2000, 4500, "aa"),
    (4500, 5200, "q"),
    (5200, 7000, "s"),
    (7000, 8000, "h#"),
]


def utterance_audio(seed):
    rng = np.random.default_rng(seed)
    audio = 30 * rng.standard_normal(8000)
    t = np.arange(2500) / RATE
    audio[2000:4500] += 4000 * np.sin(2 * np.pi * (600 + 50 * seed) * t)
    audio[5200:7000] += 2000 * rng.standard_normal(1800)
    return np.round(audio).astype(np.int16)


def write_utterance(directory, name, seed, upper=True, riff=False):
    directory.mkdir(parents=True, exist_ok=True)
    stem = name.upper() if upper else name
    wav_ext, phn_ext = (".WAV", ".PHN") if upper else (".wav", ".phn")
    audio = utterance_audio(seed)
    if riff:
        soundfile.write(directory / (stem + wav_ext), audio, RATE, subtype="PCM_16")
    else:
        (directory / (stem + wav_ext)).write_bytes(sphere_bytes(audio))
    (directory / (stem + phn_ext)).write_text(
        "".join(f"{s} {e} {p}\n" for s, e, p in SEGMENTS)
    )
    return audio


LAYOUT = {  # speaker -> (TRAIN|TEST, region)
    "fcjf0": ("TRAIN", "DR1"),
    "mdpk0": ("TRAIN", "DR2"),
    "mrws0": ("TRAIN", "DR1"),
    "faks0": ("TEST", "DR1"),
    "mdab0": ("TEST", "DR1"),
    "mwbt0": ("TEST", "DR1"),
    "fadg0": ("TEST", "DR4"),  # dev
    "mabc0": ("TEST", "DR3"),  # a test speaker on neither list: left out
}


def fake_utterances(train_speakers, test_speakers):
    path = pathlib.Path("/nonexistent")
    return [timit.Utterance(s, "si1", path, path, "train") for s in train_speakers] + [
        timit.Utterance(s, "si1", path, path, "test") for s in test_speakers
    ]
