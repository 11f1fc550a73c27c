"""The synthetic eSpeak NG corpus: phoneme mapping, engine events, tiny corpus."""

import numpy as np
import pytest

from mohaq_jax.data import PHONES_39, espeak, load_corpus, load_espeak


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
    assert espeak.map_phoneme(mnemonic) == expected


def test_mapping_targets_are_timit39():
    targets = {
        label for labels in espeak.ESPEAK_TO_TIMIT39.values() for label in labels
    }
    assert targets <= set(PHONES_39)
    assert targets == set(PHONES_39)  # every scoring class can occur


def test_unknown_phoneme_is_an_error():
    with pytest.raises(espeak.UnknownPhonemeError, match="A~.*no TIMIT mapping"):
        espeak.map_phoneme("'A~")


@pytest.fixture(scope="module")
def engine():
    return espeak.Engine()


def test_dictionary_words(engine):
    words = espeak.dictionary_words(engine.data_path)
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
    with pytest.raises(espeak.EspeakUnavailableError, match="--timit-dir"):
        espeak.Engine()


@pytest.fixture(scope="module")
def tiny(tmp_path_factory):
    return load_espeak(seed=0, size="tiny", cache_dir=tmp_path_factory.mktemp("cache"))


def test_tiny_corpus(tiny):
    sizes = espeak.SIZES["tiny"]
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
    speakers = espeak.make_speakers(rng, espeak.SIZES["default"])
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
    speaker = espeak.Speaker("x", "en-us", 170, 50, 50, 0)
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
