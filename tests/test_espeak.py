"""The synthetic eSpeak NG corpus: phoneme mapping, engine events, tiny corpus."""

import numpy as np
import pytest

from mohaq_jax.data import (
    PHONES_39,
    espeak,
    espeak_engine,
    espeak_phonemes,
    espeak_text,
    espeak_voices,
    load_corpus,
    load_espeak,
    split_writer,
)
from mohaq_jax.data import corpus as corpus_lib


@pytest.mark.parametrize(
    "mnemonic, expected",
    [
        ("'A@", ("aa", "r")),  # "start": stress mark stripped, r-coloured vowel split
        ("i@3", ("ih", "r")),  # "near"
        (",aI", ("ay",)),  # secondary stress, diphthong TIMIT keeps
        ("oU", ("ow",)),
        ("t#", ("dx",)),  # en-us flap, as in "water"
        ("dZ", ("jh",)),
        ("Z", ("sh",)),  # zh folds into sh
        ("3", ("er",)),
        ("@L", ("ah", "l")),
        ("_:", ("sil",)),
        (";", ("y",)),
    ],
)
def test_map_phoneme(mnemonic, expected):
    assert espeak_phonemes.map_phoneme(mnemonic) == expected


def test_mapping_targets_are_timit39():
    targets = {
        label
        for labels in espeak_phonemes.ESPEAK_TO_TIMIT39.values()
        for label in labels
    }
    assert targets <= set(PHONES_39)
    assert targets == set(PHONES_39)  # every scoring class can occur


def test_unknown_phoneme_is_an_error():
    with pytest.raises(
        espeak_phonemes.UnknownPhonemeError, match="A~.*no TIMIT mapping"
    ):
        espeak_phonemes.map_phoneme("'A~")


@pytest.fixture(scope="module")
def engine():
    return espeak_engine.Engine()


def test_dictionary_words(engine):
    words = espeak_text.dictionary_words(engine.data_path)
    assert len(words) > 3000
    assert {"their", "what", "record", "kilometer"} <= set(words)
    assert all(w.isalpha() and w.islower() for w in words)


def test_phoneme_events(engine):
    samples, events = engine.synthesize(
        "she had your dark suit", "en-us", 170, 50, 50, 0
    )
    assert engine.sample_rate == 22050 and samples.dtype == np.int16
    names = [name.strip("',") for _, name in events]
    assert names[:5] == ["S", "i:", "h", "a", "d"]
    positions = [s for s, _ in events]
    assert positions == sorted(positions) and 0 < positions[-1] <= samples.shape[0]


def test_unavailable_engine_points_to_timit(monkeypatch, tmp_path):
    import espeakng_loader

    monkeypatch.setattr(
        espeakng_loader, "get_library_path", lambda: str(tmp_path / "libespeak-ng.so")
    )
    with pytest.raises(espeak_engine.EspeakUnavailableError, match="--timit-dir"):
        espeak_engine.Engine()


@pytest.fixture(scope="module")
def tiny(tmp_path_factory):
    return load_espeak(seed=0, size="tiny", cache_dir=tmp_path_factory.mktemp("cache"))


def test_tiny_corpus(tiny):
    sizes = espeak_voices.SIZES["tiny"]
    assert tiny.name == "espeak" and tiny.synthetic
    assert "eSpeak NG" in tiny.notice and "NOT TIMIT" in tiny.notice
    assert tiny.classes == PHONES_39 and tiny.n_classes == 39
    np.testing.assert_array_equal(tiny.fold39, np.arange(39))
    assert len(tiny.train) == sizes.n_train_speakers * sizes.train_sentences
    assert len(tiny.test) == sizes.n_test_speakers * sizes.eval_sentences
    assert not set(tiny.train.speakers) & set(tiny.test.speakers)
    for split in tiny.splits().values():
        for feats, labels in zip(split.features, split.labels, strict=True):
            assert feats.dtype == np.float32 and feats.shape[1] == tiny.n_features == 69
            assert labels.dtype == np.int32 and labels.shape == (feats.shape[0],)
            assert labels.min() >= 0 and labels.max() < 39
            assert labels[0] == PHONES_39.index("sil")  # leading pause
            assert 100 < feats.shape[0] < 600  # 1 .. 6 s
    assert len(set(np.concatenate(tiny.train.labels).tolist())) > 25


def test_test_speakers_use_unseen_variants(tiny):
    rng = np.random.default_rng(0)
    speakers = espeak_voices.make_speakers(rng, espeak_voices.SIZES["default"])
    train_voices = {s.voice for s in speakers["train"] + speakers["dev"]}
    test_voices = {s.voice for s in speakers["test"]}
    assert not train_voices & test_voices
    assert len({(s.voice, s.rate, s.pitch) for s in speakers["train"]}) == 30


def test_deterministic_and_cached(tiny, tmp_path):
    again = load_espeak(seed=0, size="tiny", cache_dir=tmp_path)  # generated afresh
    for a, b in zip(
        tiny.train.features + tiny.test.features,
        again.train.features + again.test.features,
        strict=True,
    ):
        np.testing.assert_array_equal(a, b)
    assert again.train.utt_ids == tiny.train.utt_ids
    cached = load_corpus("espeak", seed=0, size="tiny", cache_dir=tmp_path)
    np.testing.assert_array_equal(cached.dev.features[0], again.dev.features[0])
    assert [p.suffix for p in tmp_path.iterdir()] == [".npz"]
    other = load_espeak(seed=1, size="tiny", cache_dir=tmp_path)
    assert other.train.features[0].shape != again.train.features[
        0
    ].shape or not np.array_equal(other.train.features[0], again.train.features[0])


def test_clean_labels_follow_engine_events(engine):
    """Without degradation, silence frames are quiet and speech frames loud."""
    config = espeak.features_lib.FeatureConfig(
        normalize=False, deltas=False, delta_deltas=False
    )
    speaker = espeak_voices.Speaker("x", "en-us", 170, 50, 50, 0)
    rng = np.random.default_rng(0)
    feats, labels = espeak.utterance(
        engine, speaker, "the dog sat on a mat.", rng, config, degrade_audio=False
    )
    energy = feats.max(axis=1)
    sil = labels == PHONES_39.index("sil")
    vowels = np.isin(
        labels, [PHONES_39.index(p) for p in ("ae", "aa", "ah", "ao") if p in PHONES_39]
    )
    assert sil.any() and vowels.any()
    assert np.median(energy[vowels]) > np.median(energy[sil]) + 5.0


def test_unknown_size():
    with pytest.raises(ValueError, match="huge"):
        load_espeak(size="huge")


# ------------------------------------------------------------- sizes and voices


def test_size_table():
    """TIMIT's split sizes (Garofolo et al. 1993): 462 x 8, 50 x 8, 24 x 8."""
    assert (
        espeak_voices.SIZE_NAMES
        == tuple(espeak_voices.SIZES)
        == ("default", "tiny", "timit")
    )
    assert espeak_voices.SIZES["timit"].n_utterances == {
        "train": 3696,
        "dev": 400,
        "test": 192,
    }
    assert espeak_voices.SIZES["default"].n_utterances == {
        "train": 480,
        "dev": 60,
        "test": 60,
    }
    # The fixed-variant sizes keep their cache keys (no "voices" field in them).
    assert "voices" not in espeak_voices.SIZES["default"].cache_fields()
    assert espeak_voices.SIZES["timit"].cache_fields()["voices"] == "engine"
    with pytest.raises(ValueError, match="'huge'.*timit"):
        espeak_voices.check_size("huge")


@pytest.fixture(scope="module")
def variants(engine):
    return espeak_voices.engine_variants(engine.data_path)


def test_engine_variants_all_speak(engine, variants):
    assert len(variants) >= len(espeak_voices.TRAIN_VARIANTS) + len(
        espeak_voices.TEST_VARIANTS
    )
    assert set(espeak_voices.TRAIN_VARIANTS + espeak_voices.TEST_VARIANTS) <= set(
        variants
    )
    for variant in variants[:: max(1, len(variants) // 8)]:
        samples, events = engine.synthesize("a cat", f"en-us+{variant}", 170, 50, 50, 0)
        assert len(samples) > 1000 and events


def test_timit_speakers_distinct_and_disjoint(variants):
    size = espeak_voices.SIZES["timit"]
    speakers = espeak_voices.make_speakers(np.random.default_rng(0), size, variants)
    counts = {split: len(s) for split, s in speakers.items()}
    assert counts == {"train": 462, "dev": 50, "test": 24}
    voice = {
        split: [(s.voice, s.pitch, s.rate) for s in group]
        for split, group in speakers.items()
    }
    every = voice["train"] + voice["dev"] + voice["test"]
    assert len(set(every)) == len(every) == 536  # no voice twice, in or across splits
    ids = [s.speaker_id for group in speakers.values() for s in group]
    assert len(set(ids)) == 536
    train_pool, test_pool = espeak_voices.split_variants(variants)
    assert not set(train_pool) & set(test_pool)
    assert set(train_pool) | set(test_pool) == set(variants)
    assert set(espeak_voices.TEST_VARIANTS) <= set(test_pool)
    # Test speakers use variants unheard in train and dev; every variant is used.
    heard = {v[0] for v in voice["train"] + voice["dev"]}
    tested = {v[0] for v in voice["test"]}
    assert not heard & tested
    assert heard == {f"en-us+{v}" for v in train_pool}
    assert tested == {f"en-us+{v}" for v in test_pool}
    for s in speakers["train"] + speakers["test"]:
        assert s.pitch in espeak_voices.PITCH_LEVELS
        assert s.rate in espeak_voices.RATE_LEVELS
    assert espeak_voices.voice_grid_size(variants) == len(variants) * 10 * 13
    with pytest.raises(ValueError, match="variants"):
        espeak_voices.make_speakers(np.random.default_rng(0), size)


def test_chunked_writer_equals_in_memory(tmp_path):
    """write_espeak (one speaker at a time, via SplitWriter) == save_splits."""
    written = espeak.write_espeak(tmp_path / "chunked.npz", seed=3, size="tiny")
    streamed = corpus_lib.load_splits(written)
    reference = espeak.generate_espeak(seed=3, size="tiny")
    corpus_lib.save_splits(tmp_path / "whole.npz", reference)
    with (
        np.load(written) as a,
        np.load(tmp_path / "whole.npz") as b,
    ):
        assert sorted(a.files) == sorted(b.files)
        for name in a.files:
            np.testing.assert_array_equal(a[name], b[name], err_msg=name)
            assert a[name].dtype == b[name].dtype, name
    for name, split in reference.items():
        assert streamed[name].utt_ids == split.utt_ids
        assert streamed[name].speakers == split.speakers
    assert sorted(p.name for p in tmp_path.iterdir()) == ["chunked.npz", "whole.npz"]


def test_split_writer_bounded_and_atomic(tmp_path):
    """Chunks go to disk as they come; the cache appears only when complete."""
    rng = np.random.default_rng(0)
    path = tmp_path / "c.npz"
    chunks = [
        [rng.standard_normal((int(n), 5)).astype(np.float32) for n in (3, 7)],
        [rng.standard_normal((4, 5)).astype(np.float32)],
    ]
    with split_writer.SplitWriter(path, ("train", "dev"), 5) as writer:
        for i, feats in enumerate(chunks):
            writer.add(
                "train",
                feats,
                [np.full(len(f), i, np.int32) for f in feats],
                [f"spk{i}"] * len(feats),
                [f"spk{i}_u{j}" for j in range(len(feats))],
            )
            # Nothing of the chunk stays in the writer: only lengths and ids.
            assert not path.exists()
            raw = next(tmp_path.glob("c.npz.*")) / "train.features"
            assert raw.stat().st_size == 4 * 5 * sum(
                len(f) for c in chunks[: i + 1] for f in c
            )
        with pytest.raises(ValueError, match="u9.*expected \\(T, 5\\)"):
            writer.add(
                "train", [np.zeros((2, 4), np.float32)], [np.zeros(2)], ["s"], ["u9"]
            )
        with pytest.raises(ValueError, match="unknown split 'test'"):
            writer.add("test", [], [], [], [])
    assert [p.name for p in tmp_path.iterdir()] == ["c.npz"]
    splits = corpus_lib.load_splits(path, names=("train", "dev"))
    flat = [f for c in chunks for f in c]
    assert len(splits["train"]) == 3 and len(splits["dev"]) == 0
    for got, want in zip(splits["train"].features, flat, strict=True):
        np.testing.assert_array_equal(got, want)
    np.testing.assert_array_equal(
        np.concatenate(splits["train"].labels), [0] * 10 + [1] * 4
    )
    assert splits["train"].utt_ids == ["spk0_u0", "spk0_u1", "spk1_u0"]
    # An error inside the block leaves nothing behind.
    with pytest.raises(RuntimeError, match="boom"):
        with split_writer.SplitWriter(tmp_path / "d.npz", ("train",), 5) as writer:
            writer.add("train", flat[:1], [np.zeros(3, np.int32)], ["s"], ["u"])
            raise RuntimeError("boom")
    assert [p.name for p in tmp_path.iterdir()] == ["c.npz"]
