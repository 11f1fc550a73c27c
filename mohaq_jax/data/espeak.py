"""The default data set: TIMIT-like phone recognition on eSpeak NG speech.

MOHAQ (Rezk et al., 2022) is evaluated on TIMIT, which is licensed by the LDC
and cannot ship with this package. So that every experiment runs on a fresh
machine, this module synthesizes a small corpus with eSpeak NG (the
``espeakng-loader`` wheel): sentences from a small grammar over the engine's own
English word list, spoken by "speakers" that are fixed combinations of voice
variant, pitch, pitch range, rate and word gap, then degraded with a simple
room impulse response and additive noise. Frame labels come from the engine's
phoneme events (``espeakEVENT_PHONEME``), mapped onto the 39 TIMIT scoring
phones (Lee & Hon, 1989), so that models, folding and phone error rate work as
on TIMIT. It is synthetic speech, not TIMIT; every Corpus says so.
"""

from __future__ import annotations

import ctypes
import dataclasses
import os
import pathlib
import shutil
import struct
import tempfile
import threading
import time

import numpy as np
import scipy.signal

from mohaq_jax.data import corpus as corpus_lib
from mohaq_jax.data import features as features_lib
from mohaq_jax.data.phones import PHONES_39

NOTICE = (
    "This corpus is synthesized speech generated with eSpeak NG (en-us voices with "
    "added reverberation and noise); it is NOT TIMIT, and its phone error rates are "
    "not comparable to TIMIT results."
)

#: Bump when the generator changes, to invalidate caches.
GENERATOR_VERSION = 1

# ------------------------------------------------------------- phoneme mapping

#: eSpeak NG English (en-us) phoneme mnemonics -> TIMIT 39-phone labels.
#: Stress and length marks (' , = % and the like) are stripped before lookup.
#: Multi-label entries split the phoneme's duration evenly: the centring and
#: r-coloured diphthongs that TIMIT writes as vowel + r (A@ "start" -> aa r,
#: i@ "near" -> ih r ...), the triphthongs (aI@ "fire" -> ay er) and the
#: syllabic @L -> ah l. TIMIT's own diphthongs (ay aw ey ow oy) stay single.
#: Pauses become 'sil'. Unknown mnemonics are an error, never dropped.
ESPEAK_TO_TIMIT39: dict[str, tuple[str, ...]] = {
    # pauses
    "_": ("sil",),
    "_:": ("sil",),
    "_!": ("sil",),
    "_|": ("sil",),
    "_^_": ("sil",),
    # stops, flap, affricates
    "p": ("p",),
    "b": ("b",),
    "t": ("t",),
    "d": ("d",),
    "k": ("k",),
    "g": ("g",),
    "t#": ("dx",),
    "d#": ("dx",),
    "t2": ("t",),
    "?": ("t",),  # en-us glottal stop is an allophone of t
    "tS": ("ch",),
    "dZ": ("jh",),
    # fricatives (TIMIT zh folds into sh)
    "f": ("f",),
    "v": ("v",),
    "T": ("th",),
    "D": ("dh",),
    "s": ("s",),
    "z": ("z",),
    "S": ("sh",),
    "Z": ("sh",),
    "h": ("hh",),
    "x": ("k",),
    # nasals (syllabic n / m fold onto n / m)
    "m": ("m",),
    "n": ("n",),
    "N": ("ng",),
    "n-": ("n",),
    "m-": ("m",),
    # liquids and glides
    "l": ("l",),
    "l#": ("l",),
    "l/": ("l",),
    "l/2": ("l",),
    "r": ("r",),
    "r-": ("r",),
    "r/": ("r",),
    "j": ("y",),
    "w": ("w",),
    "W": ("w",),
    ";": ("y",),  # the engine's linking glide between i and a following vowel
    # monophthongs
    "i": ("iy",),
    "i:": ("iy",),
    "I": ("ih",),
    "I2": ("ih",),
    "I#": ("ih",),
    "e": ("eh",),
    "E": ("eh",),
    "a": ("ae",),
    "aa": ("ae",),
    "a#": ("ae",),
    "A:": ("aa",),
    "A": ("aa",),
    "0": ("aa",),
    "O:": ("aa",),
    "O": ("aa",),
    "O2": ("aa",),
    "V": ("ah",),
    "@": ("ah",),
    "@2": ("ah",),
    "@5": ("ah",),
    "@-": ("ah",),
    "U": ("uh",),
    "u:": ("uw",),
    "u": ("uw",),
    "3": ("er",),
    "3:": ("er",),
    "@r": ("er",),
    # diphthongs TIMIT keeps
    "aI": ("ay",),
    "aU": ("aw",),
    "eI": ("ey",),
    "oU": ("ow",),
    "OI": ("oy",),
    "aI2": ("ay",),
    "aI3": ("ay",),
    # r-coloured / centring diphthongs, triphthongs, syllabic l
    "A@": ("aa", "r"),
    "O@": ("aa", "r"),
    "o@": ("ow", "r"),
    "0@": ("aa", "r"),
    "e@": ("eh", "r"),
    "i@": ("ih", "r"),
    "i@3": ("ih", "r"),
    "U@": ("uh", "r"),
    "aI@": ("ay", "er"),
    "aI@3": ("ay", "er"),
    "aU@": ("aw", "er"),
    "@L": ("ah", "l"),
}

_STRESS_MARKS = "'," + "=%"


class UnknownPhonemeError(ValueError):
    """An eSpeak phoneme mnemonic without a TIMIT mapping."""


def map_phoneme(mnemonic: str) -> tuple[str, ...]:
    """TIMIT-39 labels for one eSpeak phoneme mnemonic.

    Args:
      mnemonic: as in the engine's phoneme events, e.g. "'A@" or "t#".

    Returns:
      One or two labels from PHONES_39.

    Raises:
      UnknownPhonemeError: the mnemonic is not in ESPEAK_TO_TIMIT39 (the message
        names it).
    """
    bare = mnemonic.strip(_STRESS_MARKS) or mnemonic
    try:
        return ESPEAK_TO_TIMIT39[bare]
    except KeyError:
        raise UnknownPhonemeError(
            f"eSpeak phoneme {mnemonic!r} has no TIMIT mapping; "
            "add it to ESPEAK_TO_TIMIT39"
        ) from None


# ------------------------------------------------------------------- the engine

ESPEAK_EVENT_PHONEME = 7
AUDIO_OUTPUT_SYNCHRONOUS = 2
ESPEAK_INITIALIZE_PHONEME_EVENTS = 0x0001
POS_CHARACTER = 1
ESPEAK_CHARS_UTF8 = 1
ESPEAK_RATE, ESPEAK_PITCH, ESPEAK_RANGE, ESPEAK_WORDGAP = 1, 3, 4, 7


class _EventId(ctypes.Union):
    _fields_ = [
        ("number", ctypes.c_int),
        ("name", ctypes.c_char_p),
        ("string", ctypes.c_char * 8),
    ]


class _Event(ctypes.Structure):
    """espeak_EVENT of speak_lib.h (API revision 12)."""

    _fields_ = [
        ("type", ctypes.c_int),
        ("unique_identifier", ctypes.c_uint),
        ("text_position", ctypes.c_int),
        ("length", ctypes.c_int),
        ("audio_position", ctypes.c_int),  # ms
        ("sample", ctypes.c_int),  # sample index from the start of the message
        ("user_data", ctypes.c_void_p),
        ("id", _EventId),
    ]


_CALLBACK = ctypes.CFUNCTYPE(
    ctypes.c_int, ctypes.POINTER(ctypes.c_short), ctypes.c_int, ctypes.POINTER(_Event)
)

#: eSpeak is not thread-safe and keeps global state: every call goes through this.
_LOCK = threading.Lock()


class EspeakUnavailableError(RuntimeError):
    """eSpeak NG could not be loaded."""


def _unavailable(reason: str) -> EspeakUnavailableError:
    return EspeakUnavailableError(
        f"eSpeak NG could not be loaded ({reason}). The default data set is "
        "synthesized with it: `pip install espeakng-loader`, or run on real TIMIT "
        "instead with --timit-dir /path/to/TIMIT."
    )


class Engine:
    """A private instance of libespeak-ng.

    The engine's synthesis state (pitch phase, flutter, ...) carries over from
    one utterance to the next and no API call resets it, so the same text gives
    slightly different audio depending on what was spoken before. Each Engine
    therefore loads its own copy of the shared library (fresh globals): a corpus
    generated by one Engine, in a fixed order, is reproducible.
    """

    def __init__(self, rand_seed: int = 0):
        try:
            import espeakng_loader
        except ImportError as error:
            raise _unavailable(f"espeakng_loader is not installed: {error}") from None
        library = pathlib.Path(espeakng_loader.get_library_path())
        self.data_path = str(espeakng_loader.get_data_path())
        tmp_dir = tempfile.mkdtemp(prefix="mohaq_espeak_")
        private = os.path.join(tmp_dir, library.name)
        try:
            shutil.copyfile(library, private)
            self.lib = ctypes.CDLL(private)
        except OSError as error:
            raise _unavailable(str(error)) from None
        finally:
            shutil.rmtree(tmp_dir, ignore_errors=True)
        lib = self.lib
        lib.espeak_Initialize.argtypes = [
            ctypes.c_int,
            ctypes.c_int,
            ctypes.c_char_p,
            ctypes.c_int,
        ]
        lib.espeak_Synth.argtypes = [
            ctypes.c_char_p,
            ctypes.c_size_t,
            ctypes.c_uint,
            ctypes.c_int,
            ctypes.c_uint,
            ctypes.c_uint,
            ctypes.c_void_p,
            ctypes.c_void_p,
        ]
        lib.espeak_SetVoiceByName.argtypes = [ctypes.c_char_p]
        lib.espeak_SetParameter.argtypes = [ctypes.c_int, ctypes.c_int, ctypes.c_int]
        lib.espeak_TextToPhonemes.argtypes = [
            ctypes.POINTER(ctypes.c_char_p),
            ctypes.c_int,
            ctypes.c_int,
        ]
        lib.espeak_TextToPhonemes.restype = ctypes.c_char_p
        lib.espeak_Info.argtypes = [ctypes.POINTER(ctypes.c_char_p)]
        lib.espeak_Info.restype = ctypes.c_char_p
        with _LOCK:
            self.sample_rate = lib.espeak_Initialize(
                AUDIO_OUTPUT_SYNCHRONOUS,
                0,
                self.data_path.encode(),
                ESPEAK_INITIALIZE_PHONEME_EVENTS,
            )
            if self.sample_rate <= 0:
                raise _unavailable(
                    f"espeak_Initialize failed with data at {self.data_path}"
                )
            self._chunks: list[np.ndarray] = []
            self._events: list[tuple[int, str]] = []
            self._callback = _CALLBACK(self._collect)  # keep a reference: C holds it
            lib.espeak_SetSynthCallback(self._callback)
            if hasattr(lib, "espeak_ng_SetRandSeed"):
                lib.espeak_ng_SetRandSeed.argtypes = [ctypes.c_long]
                lib.espeak_ng_SetRandSeed(rand_seed)
            self.version = lib.espeak_Info(None).decode()
            # TextToPhonemes needs a voice (its translator) before any synthesis.
            if lib.espeak_SetVoiceByName(b"en-us") != 0:
                raise _unavailable("the en-us voice is missing from its data")

    def _collect(self, wav, n_samples, events) -> int:
        if wav and n_samples > 0:
            self._chunks.append(np.ctypeslib.as_array(wav, (n_samples,)).copy())
        index = 0
        while events[index].type != 0:
            event = events[index]
            if event.type == ESPEAK_EVENT_PHONEME:
                name = bytes(event.id.string).split(b"\0")[0].decode("utf-8", "replace")
                self._events.append((int(event.sample), name))
            index += 1
        return 0

    def phonemes(self, text: str) -> list[list[str]]:
        """The engine's phoneme mnemonics for text, one list per word."""
        with _LOCK:
            buffer = ctypes.c_char_p(text.encode())
            pointer = ctypes.pointer(buffer)
            words = []
            while buffer.value:
                out = self.lib.espeak_TextToPhonemes(
                    pointer, ESPEAK_CHARS_UTF8, ord("|") << 8
                )
                for word in (out or b"").decode("utf-8", "replace").split():
                    words.append([p for p in word.split("|") if p])
            return words

    def synthesize(
        self,
        text: str,
        voice: str,
        rate: int,
        pitch: int,
        pitch_range: int,
        word_gap: int,
    ) -> tuple[np.ndarray, list[tuple[int, str]]]:
        """Speaks one sentence.

        Args:
          text: the sentence.
          voice: e.g. "en-us+f3".
          rate: words per minute (80..450).
          pitch: base pitch 0..100.
          pitch_range: 0..100.
          word_gap: extra pause between words, units of 10 ms.

        Returns:
          (samples shape=(n,) int16 at self.sample_rate, [(start sample, mnemonic)]).
        """
        with _LOCK:
            if self.lib.espeak_SetVoiceByName(voice.encode()) != 0:
                raise ValueError(f"eSpeak has no voice {voice!r}")
            for parameter, value in (
                (ESPEAK_RATE, rate),
                (ESPEAK_PITCH, pitch),
                (ESPEAK_RANGE, pitch_range),
                (ESPEAK_WORDGAP, word_gap),
            ):
                self.lib.espeak_SetParameter(parameter, int(value), 0)
            self._chunks, self._events = [], []
            data = text.encode()
            status = self.lib.espeak_Synth(
                data, len(data) + 1, 0, POS_CHARACTER, 0, ESPEAK_CHARS_UTF8, None, None
            )
            if status != 0:
                raise RuntimeError(f"espeak_Synth failed ({status}) on {text!r}")
            samples = (
                np.concatenate(self._chunks) if self._chunks else np.zeros(0, np.int16)
            )
            return samples, list(self._events)


# ------------------------------------------------------------------- word list


def dictionary_words(data_path: str | os.PathLike) -> list[str]:
    """Decodes the headwords of the engine's compiled English dictionary.

    ``en_dict`` holds the exceptions list (``en_list``) compiled into 1024 hash
    chains; each entry is [entry length][word length | 0x40 if packed |
    0x80 if no phonemes][word][phonemes\\0][flags]. Packed words store each
    letter a..z as 6 bits (1..26), as TransposeAlphabet in espeak-ng's
    dictionary.c does for English.

    Returns:
      Sorted unique lower-case words of 3..10 letters a-z with a vowel letter.
    """
    blob = pathlib.Path(data_path, "en_dict").read_bytes()
    n_hash, rules_offset = struct.unpack("<ii", blob[:8])
    position, words = 8, set()
    for _ in range(n_hash):
        while blob[position] != 0:
            length, word_byte = blob[position], blob[position + 1]
            raw = blob[position + 2 : position + 2 + (word_byte & 0x3F)]
            if word_byte & 0x40:
                bits, n_bits = int.from_bytes(raw, "big"), 8 * len(raw)
                codes = [
                    (bits >> (n_bits - 6 * (i + 1))) & 0x3F for i in range(n_bits // 6)
                ]
                while codes and codes[-1] == 0:
                    codes.pop()
                if codes and all(1 <= c <= 26 for c in codes):
                    words.add("".join(chr(ord("a") - 1 + c) for c in codes))
            position += length
        position += 1
    if position != rules_offset:
        raise ValueError(f"{data_path}/en_dict: unexpected layout")
    return sorted(
        w for w in words if 3 <= len(w) <= 10 and any(v in w for v in "aeiouy")
    )


_DETERMINERS = (
    "the",
    "a",
    "this",
    "that",
    "some",
    "every",
    "my",
    "our",
    "their",
    "one",
)
_PREPOSITIONS = (
    "in",
    "on",
    "near",
    "under",
    "with",
    "from",
    "after",
    "before",
    "over",
    "behind",
)
_CONJUNCTIONS = ("and", "but", "while", "because", "so")
_AUXILIARIES = ("was", "is", "will be", "had been", "might be")
_ADJECTIVE_ENDINGS = (
    "ous",
    "ful",
    "ive",
    "able",
    "ible",
    "al",
    "ic",
    "ent",
    "ant",
    "less",
    "ish",
)

#: Sentence templates; upper-case slots are filled from the word classes.
_TEMPLATES = (
    "DET ADJ NOUN VERBED DET NOUN",
    "DET NOUN VERBED PREP DET ADJ NOUN",
    "DET NOUN AUX VERBING PREP DET NOUN",
    "NOUN and NOUN VERBED ADV",
    "DET ADJ NOUN AUX ADJ CONJ DET NOUN VERBED",
    "DET NOUN of DET NOUN VERBED ADV",
    "PREP DET NOUN DET ADJ NOUN VERBED",
    "DET NOUN VERBED DET NOUN PREP DET NOUN",
)


def word_classes(words: list[str]) -> dict[str, list[str]]:
    """Sorts words into rough grammatical slots by their endings."""
    classes: dict[str, list[str]] = {
        "NOUN": [],
        "ADJ": [],
        "ADV": [],
        "VERBED": [],
        "VERBING": [],
    }
    for word in words:
        if word.endswith("ing") and len(word) > 5:
            classes["VERBING"].append(word)
        elif word.endswith("ed") and len(word) > 4:
            classes["VERBED"].append(word)
        elif word.endswith("ly") and len(word) > 4:
            classes["ADV"].append(word)
        elif word.endswith(_ADJECTIVE_ENDINGS):
            classes["ADJ"].append(word)
        else:
            classes["NOUN"].append(word)
    return classes


def make_sentence(rng: np.random.Generator, classes: dict[str, list[str]]) -> str:
    """One sentence from a random template with random words."""
    slots = {
        "DET": _DETERMINERS,
        "PREP": _PREPOSITIONS,
        "CONJ": _CONJUNCTIONS,
        "AUX": _AUXILIARIES,
        **classes,
    }
    template = _TEMPLATES[rng.integers(len(_TEMPLATES))]
    words = []
    for token in template.split():
        options = slots.get(token)
        words.append(options[rng.integers(len(options))] if options else token)
    return " ".join(words) + "."


# ---------------------------------------------------------------- speakers, sizes


@dataclasses.dataclass(frozen=True)
class Speaker:
    """One synthetic speaker: a fixed combination of engine settings."""

    speaker_id: str
    voice: str  # e.g. "en-us+f3"
    rate: int  # words per minute
    pitch: int  # 0..100
    pitch_range: int  # 0..100
    word_gap: int  # 10 ms units


#: Voice variants heard in training / dev; the test set uses unseen ones.
TRAIN_VARIANTS = ("m1", "m2", "m3", "m4", "m6", "f1", "f2", "f4", "klatt", "klatt3")
TEST_VARIANTS = ("m5", "m7", "f3", "f5", "klatt2", "klatt4")


@dataclasses.dataclass(frozen=True)
class EspeakSize:
    """Corpus size: speakers and sentences per speaker for each split."""

    n_train_speakers: int
    n_dev_speakers: int
    n_test_speakers: int
    train_sentences: int
    eval_sentences: int  # per dev / test speaker


SIZES = {
    "default": EspeakSize(30, 6, 6, 16, 10),
    "tiny": EspeakSize(3, 2, 2, 3, 2),
}


def make_speakers(
    rng: np.random.Generator, size: EspeakSize
) -> dict[str, list[Speaker]]:
    """Draws the speakers of each split (test speakers use TEST_VARIANTS)."""
    out = {}
    for split, count, variants in (
        ("train", size.n_train_speakers, TRAIN_VARIANTS),
        ("dev", size.n_dev_speakers, TRAIN_VARIANTS),
        ("test", size.n_test_speakers, TEST_VARIANTS),
    ):
        out[split] = [
            Speaker(
                speaker_id=f"{split}{index:02d}",
                voice="en-us+"
                + variants[(index + rng.integers(len(variants))) % len(variants)],
                rate=int(rng.integers(135, 200)),
                pitch=int(rng.integers(25, 75)),
                pitch_range=int(rng.integers(20, 90)),
                word_gap=int(rng.integers(0, 3)),
            )
            for index in range(count)
        ]
    return out


# ---------------------------------------------------------------- degradation


def room_impulse_response(rng: np.random.Generator, sample_rate: int) -> np.ndarray:
    """A direct path plus an exponentially decaying noise tail.

    The tail's energy falls by 60 dB over RT60 drawn from 0.15..0.6 s, and its
    level relative to the direct path (direct-to-reverberant ratio) from
    0..12 dB.
    """
    rt60 = rng.uniform(0.15, 0.6)
    length = int(rt60 * sample_rate)
    times = np.arange(length) / sample_rate
    tail = rng.standard_normal(length) * np.exp(-6.9078 * times / rt60)  # ln(1000)
    tail[: int(0.002 * sample_rate)] = 0.0  # first reflections arrive after ~2 ms
    drr_db = rng.uniform(0.0, 12.0)
    tail *= np.sqrt(10 ** (-drr_db / 10) / max(np.sum(tail**2), 1e-12))
    tail[0] = 1.0
    return tail


def degrade(
    rng: np.random.Generator, speech: np.ndarray, sample_rate: int
) -> np.ndarray:
    """Reverberates speech and adds white or brown-ish noise at 0..20 dB SNR."""
    wet = scipy.signal.fftconvolve(speech, room_impulse_response(rng, sample_rate))[
        : speech.shape[0]
    ]
    noise = rng.standard_normal(wet.shape[0])
    if rng.uniform() < 0.5:  # low-passed noise, like fans and traffic
        noise = scipy.signal.lfilter([1.0], [1.0, -0.95], noise)
    snr_db = rng.choice([0.0, 5.0, 10.0, 15.0, 20.0])
    speech_power = np.mean(wet**2) + 1e-12
    noise *= np.sqrt(speech_power / (np.mean(noise**2) * 10 ** (snr_db / 10)))
    return (wet + noise).astype(np.float32)


# ------------------------------------------------------------------ generation


def utterance(
    engine: Engine,
    speaker: Speaker,
    text: str,
    rng: np.random.Generator,
    config: features_lib.FeatureConfig,
    degrade_audio: bool = True,
) -> tuple[np.ndarray, np.ndarray]:
    """Synthesizes, resamples, degrades and labels one sentence.

    Returns:
      (features shape=(T, F) float32 unnormalized, labels shape=(T,) int32 over
      PHONES_39).
    """
    samples, events = engine.synthesize(
        text,
        speaker.voice,
        speaker.rate,
        speaker.pitch,
        speaker.pitch_range,
        speaker.word_gap,
    )
    if not events:
        raise RuntimeError(f"eSpeak gave no phoneme events for {text!r}")
    # Segment boundaries at the engine rate: each phoneme runs to the next one.
    starts = [0] + [s for s, _ in events]
    names = ["_"] + [name for _, name in events]
    ends = starts[1:] + [samples.shape[0]]
    seg_starts, seg_ends, seg_labels = [], [], []
    for start, end, name in zip(starts, ends, names, strict=True):
        labels = map_phoneme(name)
        if end <= start:
            continue
        cuts = np.linspace(start, end, len(labels) + 1)
        for piece, label in enumerate(labels):
            seg_starts.append(cuts[piece])
            seg_ends.append(cuts[piece + 1])
            seg_labels.append(PHONES_39.index(label))
    ratio = config.sample_rate / engine.sample_rate
    gcd = np.gcd(config.sample_rate, engine.sample_rate)
    audio = scipy.signal.resample_poly(
        samples.astype(np.float64), config.sample_rate // gcd, engine.sample_rate // gcd
    )
    # Pad with silence so utterances do not all start with speech onset.
    lead = int(rng.uniform(0.05, 0.25) * config.sample_rate)
    trail = int(rng.uniform(0.05, 0.25) * config.sample_rate)
    audio = np.concatenate([np.zeros(lead), audio, np.zeros(trail)])
    silence = PHONES_39.index("sil")
    seg_starts = (
        [0.0] + [lead + s * ratio for s in seg_starts] + [audio.shape[0] - trail]
    )
    seg_ends = (
        [float(lead)] + [lead + e * ratio for e in seg_ends] + [float(audio.shape[0])]
    )
    seg_labels = [silence] + seg_labels + [silence]
    if degrade_audio:
        audio = degrade(
            rng, audio * (3000.0 / (np.abs(audio).max() + 1e-9)), config.sample_rate
        )
    feats = features_lib.compute_features(audio, config)
    frame_labels = features_lib.frame_labels(
        np.round(seg_starts).astype(np.int64),
        np.round(seg_ends).astype(np.int64),
        np.array(seg_labels, np.int32),
        feats.shape[0],
        config,
    )
    keep = int(np.sum(frame_labels >= 0))
    return feats[:keep], frame_labels[:keep]


def usable_words(engine: Engine) -> list[str]:
    """Dictionary words whose every phoneme has a TIMIT mapping."""
    words = dictionary_words(engine.data_path)
    # One call per word: long texts overflow the engine's buffers.
    pronunciations = [sum(engine.phonemes(word), []) for word in words]
    kept = []
    for word, phones in zip(words, pronunciations, strict=True):
        try:
            for phone in phones:
                map_phoneme(phone)
        except UnknownPhonemeError:
            continue
        kept.append(word)
    return kept


def generate_espeak(
    seed: int = 0,
    size: str = "default",
    feature_config: features_lib.FeatureConfig = features_lib.DEFAULT_CONFIG,
    degrade_audio: bool = True,
) -> dict[str, corpus_lib.Split]:
    """Generates the three splits (no caching; see load_espeak)."""
    if size not in SIZES:
        raise ValueError(f"unknown size {size!r}; one of {sorted(SIZES)}")
    sizes = SIZES[size]
    engine = Engine(rand_seed=seed)
    classes = word_classes(usable_words(engine))
    root = np.random.SeedSequence(seed)
    speakers = make_speakers(np.random.default_rng(root.spawn(1)[0]), sizes)
    splits = {}
    for split_index, split in enumerate(("train", "dev", "test")):
        n_sentences = (
            sizes.train_sentences if split == "train" else sizes.eval_sentences
        )
        feats, labels, speaker_ids, utt_ids = [], [], [], []
        for speaker_index, speaker in enumerate(speakers[split]):
            for sentence in range(n_sentences):
                rng = np.random.default_rng(
                    [seed, split_index, speaker_index, sentence]
                )
                text = make_sentence(rng, classes)
                feats_one, labels_one = utterance(
                    engine, speaker, text, rng, feature_config, degrade_audio
                )
                feats.append(feats_one)
                labels.append(labels_one)
                speaker_ids.append(speaker.speaker_id)
                utt_ids.append(f"{speaker.speaker_id}_s{sentence:03d}")
        if feature_config.normalize:
            feats = features_lib.normalize_per_speaker(feats, speaker_ids)
        splits[split] = corpus_lib.Split(feats, labels, speaker_ids, utt_ids)
    return splits


def load_espeak(
    seed: int = 0,
    size: str = "default",
    feature_config: features_lib.FeatureConfig = features_lib.DEFAULT_CONFIG,
    cache_dir: os.PathLike | str | None = None,
    degrade_audio: bool = True,
    verbose: bool = False,
) -> corpus_lib.Corpus:
    """The synthetic default corpus, generated once per settings and cached.

    Args:
      seed: picks speakers, sentences and degradations.
      size: "default" (30/6/6 speakers, 16/10/10 sentences each) or "tiny".
      feature_config: front end settings (as TIMIT).
      cache_dir: None = $MOHAQ_CACHE or ~/.cache/mohaq_jax.
      degrade_audio: add reverberation and noise (False for clean speech).
      verbose: print timing.

    Returns:
      Corpus with the 39 TIMIT scoring phones as classes (fold39 = identity),
      synthetic=True and the NOTICE.

    Raises:
      EspeakUnavailableError: the engine cannot be loaded (says how to use TIMIT).
    """
    if size not in SIZES:
        raise ValueError(f"unknown size {size!r}; one of {sorted(SIZES)}")
    settings = {
        "dataset": "espeak",
        "seed": seed,
        "size": size,
        "sizes": dataclasses.asdict(SIZES[size]),
        "degrade_audio": degrade_audio,
        "generator_version": GENERATOR_VERSION,
        "feature_config": dataclasses.asdict(feature_config),
    }
    cache_root = (
        pathlib.Path(cache_dir)
        if cache_dir is not None
        else corpus_lib.default_cache_dir()
    )
    cache_path = cache_root / f"espeak-{size}-{corpus_lib.settings_hash(settings)}.npz"
    if cache_path.exists():
        splits = corpus_lib.load_splits(cache_path)
    else:
        started = time.time()
        splits = generate_espeak(seed, size, feature_config, degrade_audio)
        corpus_lib.save_splits(cache_path, splits)
        if verbose:
            print(
                f"eSpeak corpus generated in {time.time() - started:.1f}s "
                f"-> {cache_path}"
            )
    return corpus_lib.Corpus(
        name="espeak",
        train=splits["train"],
        dev=splits["dev"],
        test=splits["test"],
        classes=PHONES_39,
        fold39=np.arange(len(PHONES_39), dtype=np.int32),
        n_features=feature_config.n_features,
        synthetic=True,
        notice=NOTICE,
        settings={**settings, "cache": str(cache_path)},
    )
