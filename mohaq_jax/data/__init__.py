"""Data sets for phone recognition: TIMIT, transcribed recordings, synthetic eSpeak.

``DATASETS`` maps a name to its loader; every loader returns a :class:`Corpus`.
"""

from mohaq_jax.data.batching import PAD_LABEL, Batch, iterate_batches, pad_batch
from mohaq_jax.data.corpus import Corpus, Split, default_cache_dir
from mohaq_jax.data.espeak import load_espeak
from mohaq_jax.data.espeak_engine import EspeakUnavailableError
from mohaq_jax.data.features import FeatureConfig
from mohaq_jax.data.phones import FOLD_61_TO_39, PHONES_39, PHONES_61
from mohaq_jax.data.timit import TimitError, load_timit
from mohaq_jax.data.transcribed import TranscribedError, load_transcribed

DATASETS = {
    "espeak": load_espeak,
    "timit": load_timit,
    "transcribed": load_transcribed,  # any transcribed recordings
}


def load_corpus(name: str, **kwargs) -> Corpus:
    """Loads a data set by registry name, passing kwargs to its loader."""
    if name not in DATASETS:
        raise ValueError(f"unknown data set {name!r}; one of {sorted(DATASETS)}")
    return DATASETS[name](**kwargs)


__all__ = [
    "Batch",
    "Corpus",
    "DATASETS",
    "EspeakUnavailableError",
    "FOLD_61_TO_39",
    "FeatureConfig",
    "PAD_LABEL",
    "PHONES_39",
    "PHONES_61",
    "Split",
    "TimitError",
    "TranscribedError",
    "default_cache_dir",
    "iterate_batches",
    "load_corpus",
    "load_espeak",
    "load_timit",
    "load_transcribed",
    "pad_batch",
]
