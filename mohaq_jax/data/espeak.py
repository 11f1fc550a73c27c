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

import dataclasses
import os
import pathlib
import time
from collections.abc import Iterator

import numpy as np
import scipy.signal
from tqdm.auto import tqdm

from mohaq_jax.data import corpus as corpus_lib
from mohaq_jax.data import espeak_voices as voices_lib
from mohaq_jax.data import features as features_lib
from mohaq_jax.data.espeak_engine import Engine
from mohaq_jax.data.espeak_phonemes import UnknownPhonemeError, map_phoneme
from mohaq_jax.data.espeak_text import dictionary_words, make_sentence, word_classes
from mohaq_jax.data.phones import PHONES_39
from mohaq_jax.data.split_writer import SplitWriter

NOTICE = (
    "This corpus is synthesized speech generated with eSpeak NG (en-us voices with "
    "added reverberation and noise); it is NOT TIMIT, and its phone error rates are "
    "not comparable to TIMIT results."
)

#: Bump when the generator changes, to invalidate caches.
GENERATOR_VERSION = 1

# ---------------------------------------------------------------- speakers, sizes


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
    speaker: voices_lib.Speaker,
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


SPLIT_NAMES = ("train", "dev", "test")


def speaker_chunks(
    seed: int = 0,
    size: str = "default",
    feature_config: features_lib.FeatureConfig = features_lib.DEFAULT_CONFIG,
    degrade_audio: bool = True,
    progress: bool = False,
) -> Iterator[tuple[str, corpus_lib.Split]]:
    """Generates the corpus one speaker at a time, in corpus order.

    Only one speaker's utterances (features, not waveforms) are held at a time; the
    per-speaker normalization needs exactly those, so the result equals normalizing
    a whole split.

    Args:
      seed: picks speakers, sentences and degradations.
      size: a name in :data:`~mohaq_jax.data.espeak_voices.SIZE_NAMES`.
      feature_config: front end settings.
      degrade_audio: add reverberation and noise.
      progress: show a progress bar over utterances.

    Yields:
      ``(split name, Split of one speaker's utterances)``.
    """
    sizes = voices_lib.check_size(size)
    engine = Engine(rand_seed=seed)
    classes = word_classes(usable_words(engine))
    root = np.random.SeedSequence(seed)
    variants = (
        voices_lib.engine_variants(engine.data_path)
        if sizes.voices == "engine"
        else None
    )
    speakers = voices_lib.make_speakers(
        np.random.default_rng(root.spawn(1)[0]), sizes, variants
    )
    bar = tqdm(
        total=sum(sizes.n_utterances.values()),
        desc=f"eSpeak corpus ({size})",
        unit="utt",
        disable=not progress,
    )
    try:
        for split_index, split in enumerate(SPLIT_NAMES):
            n_sentences = (
                sizes.train_sentences if split == "train" else sizes.eval_sentences
            )
            for speaker_index, speaker in enumerate(speakers[split]):
                feats, labels, utt_ids = [], [], []
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
                    utt_ids.append(f"{speaker.speaker_id}_s{sentence:03d}")
                    bar.update()
                ids = [speaker.speaker_id] * len(feats)
                if feature_config.normalize:
                    feats = features_lib.normalize_per_speaker(feats, ids)
                yield split, corpus_lib.Split(feats, labels, ids, utt_ids)
    finally:
        bar.close()


def generate_espeak(
    seed: int = 0,
    size: str = "default",
    feature_config: features_lib.FeatureConfig = features_lib.DEFAULT_CONFIG,
    degrade_audio: bool = True,
) -> dict[str, corpus_lib.Split]:
    """Generates the three splits in memory (no caching; see load_espeak)."""
    voices_lib.check_size(size)
    splits = {name: corpus_lib.Split([], [], [], []) for name in SPLIT_NAMES}
    for name, chunk in speaker_chunks(seed, size, feature_config, degrade_audio):
        whole = splits[name]
        whole.features += chunk.features
        whole.labels += chunk.labels
        whole.speakers += chunk.speakers
        whole.utt_ids += chunk.utt_ids
    return splits


def write_espeak(
    path: os.PathLike | str,
    seed: int = 0,
    size: str = "default",
    feature_config: features_lib.FeatureConfig = features_lib.DEFAULT_CONFIG,
    degrade_audio: bool = True,
    progress: bool = False,
    key: str | None = None,
) -> pathlib.Path:
    """Generates the corpus into a cache file in bounded memory (one speaker at a time).

    Writes what :func:`corpus.save_splits` would write for
    :func:`generate_espeak`'s splits, through :class:`SplitWriter`; the file appears
    (atomically) only when complete, with ``key`` stored in it.
    """
    voices_lib.check_size(size)
    with SplitWriter(path, SPLIT_NAMES, feature_config.n_features, key) as writer:
        for name, chunk in speaker_chunks(
            seed, size, feature_config, degrade_audio, progress
        ):
            writer.add(
                name, chunk.features, chunk.labels, chunk.speakers, chunk.utt_ids
            )
    return pathlib.Path(path)


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
      size: one of :data:`~mohaq_jax.data.espeak_voices.SIZE_NAMES`: "default"
        (30/6/6 speakers, 16/10/10 sentences each), "tiny", or "timit" (TIMIT's
        3696/400/192 utterances from 462/50/24 distinct voices; several minutes to
        generate).
      feature_config: front end settings (as TIMIT).
      cache_dir: None = $MOHAQ_CACHE or ~/.cache/mohaq_jax.
      degrade_audio: add reverberation and noise (False for clean speech).
      verbose: print timing and show a progress bar while generating.

    Returns:
      Corpus with the 39 TIMIT scoring phones as classes (fold39 = identity),
      synthetic=True and the NOTICE.

    Raises:
      EspeakUnavailableError: the engine cannot be loaded (says how to use TIMIT).
    """
    sizes = voices_lib.check_size(size)
    settings = {
        "dataset": "espeak",
        "seed": seed,
        "size": size,
        "sizes": sizes.cache_fields(),
        "degrade_audio": degrade_audio,
        "generator_version": GENERATOR_VERSION,
        "feature_config": dataclasses.asdict(feature_config),
    }
    cache_root = (
        pathlib.Path(cache_dir)
        if cache_dir is not None
        else corpus_lib.default_cache_dir()
    )
    key = corpus_lib.settings_hash(settings)
    cache_path = cache_root / f"espeak-{size}-{key}.npz"
    splits = corpus_lib.read_cache(
        cache_path, lambda path: corpus_lib.load_splits(path, key=key)
    )
    if splits is None:
        started = time.time()
        write_espeak(
            cache_path,
            seed,
            size,
            feature_config,
            degrade_audio,
            progress=verbose,
            key=key,
        )
        if verbose:
            print(
                f"eSpeak corpus generated in {time.time() - started:.1f}s "
                f"-> {cache_path}"
            )
        splits = corpus_lib.load_splits(cache_path, key=key)
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
