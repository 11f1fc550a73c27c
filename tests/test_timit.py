"""TIMIT reader on tiny corpora written on the fly in the LDC and NLTK layouts."""

import dataclasses
import os
import pathlib

import numpy as np
import pytest

from mohaq_jax.data import PHONES_61, FeatureConfig, load_corpus, load_timit, timit
from mohaq_jax.data import features as F
from tests.timit_files import (
    RATE,
    SEGMENTS,
    fake_utterances,
    sphere_bytes,
    write_utterance,
)


def test_speaker_lists():
    assert len(timit.DEV_SPEAKERS) == len(set(timit.DEV_SPEAKERS)) == 50
    assert len(timit.CORE_TEST_SPEAKERS) == len(set(timit.CORE_TEST_SPEAKERS)) == 24
    assert not set(timit.DEV_SPEAKERS) & set(timit.CORE_TEST_SPEAKERS)
    # core test: two men and one woman from each of the 8 dialect regions
    assert sum(s[0] == "f" for s in timit.CORE_TEST_SPEAKERS) == 8


@pytest.mark.parametrize("byte_format", ["01", "10"])
def test_read_sphere(tmp_path, byte_format):
    samples = np.array([0, 1, -2, 32767, -32768, 1234], dtype=np.int16)
    path = tmp_path / "x.wav"
    path.write_bytes(sphere_bytes(samples, byte_format))
    audio, rate = timit.read_sphere(path)
    assert rate == RATE and audio.dtype == np.float32
    np.testing.assert_array_equal(audio, samples.astype(np.float32))
    fields = timit.parse_sphere_header(path.read_bytes()[:1024])
    assert fields["header_size"] == 1024 and fields["sample_count"] == 6
    assert fields["sample_byte_format"] == byte_format


def test_shorten_is_an_error(tmp_path):
    path = tmp_path / "SI1.WAV"
    path.write_bytes(sphere_bytes(np.zeros(10), coding="pcm,embedded-shorten-v2.00"))
    with pytest.raises(timit.TimitError, match="SI1.WAV.*compressed"):
        timit.read_audio(path)


def test_truncated_audio_is_an_error(tmp_path):
    path = tmp_path / "SX2.WAV"
    path.write_bytes(sphere_bytes(np.zeros(100), count=1000))
    with pytest.raises(timit.TimitError, match="SX2.WAV.*truncated"):
        timit.read_audio(path)


def test_truncated_header_is_an_error(tmp_path):
    path = tmp_path / "SX3.WAV"
    path.write_bytes(sphere_bytes(np.zeros(100))[:500])
    with pytest.raises(timit.TimitError, match="SX3.WAV"):
        timit.read_audio(path)


def test_non_sphere_is_an_error(tmp_path):
    path = tmp_path / "SX4.WAV"
    path.write_bytes(b"hello world, not audio" * 10)
    with pytest.raises(timit.TimitError, match="SX4.WAV.*not a NIST SPHERE"):
        timit.read_audio(path)


@pytest.mark.parametrize(
    "text, message",
    [
        ("0 100 h#\n90 200 aa\n", "overlaps"),
        ("0 100 h#\n100 900 aa\n", "past the audio"),
        ("0 100 h#\n100 200 xyz\n", "unknown phone label 'xyz'"),
        ("0 100 h#\n150 120 aa\n", "bad segment times"),
        ("0 100\n", "expected"),
        ("", "no phone segments"),
    ],
)
def test_bad_phn(tmp_path, text, message):
    path = tmp_path / "SI9.PHN"
    path.write_text(text)
    with pytest.raises(timit.TimitError, match=f"SI9.PHN.*{message}"):
        timit.read_phn(path, n_samples=500)


def test_read_phn(tmp_path):
    path = tmp_path / "a.phn"
    path.write_text("0 100 h#\n120 200 AA\n")  # gaps are allowed, labels any case
    starts, ends, labels = timit.read_phn(path, 200)
    np.testing.assert_array_equal(starts, [0, 120])
    np.testing.assert_array_equal(ends, [100, 200])
    assert labels == ["h#", "aa"]


def test_missing_directory(tmp_path):
    with pytest.raises(timit.TimitError, match="does-not-exist"):
        load_timit(tmp_path / "does-not-exist", cache_dir=tmp_path / "cache")


def test_partial_copy_names_missing_speakers(ldc_dir, tmp_path):
    root, _ = ldc_dir
    with pytest.raises(timit.TimitError) as error:
        load_timit(root, cache_dir=tmp_path / "cache")
    message = str(error.value)
    assert "fdac1" in message and "mtas1" in message  # missing dev / core speakers
    assert "faks0" not in message and "mdab0" not in message  # present ones
    assert "allow_partial" in message


def test_partial_copy_loads(ldc_dir, tmp_path):
    root, audio = ldc_dir
    config = FeatureConfig(normalize=False)
    corpus = load_corpus(
        "timit",
        timit_dir=root,
        feature_config=config,
        cache_dir=tmp_path / "cache",
        allow_partial=True,
    )
    assert corpus.name == "timit" and not corpus.synthetic
    assert corpus.classes == PHONES_61 and corpus.n_classes == 61
    assert corpus.fold39[PHONES_61.index("q")] == -1
    assert corpus.n_features == config.n_features == 69
    assert sorted(set(corpus.train.speakers)) == ["fcjf0", "mdpk0", "mrws0"]
    assert sorted(set(corpus.dev.speakers)) == ["fadg0", "faks0"]
    assert sorted(set(corpus.test.speakers)) == ["mdab0", "mwbt0"]
    for split in corpus.splits().values():
        assert not any(u.endswith("sa1") for u in split.utt_ids)  # SA dropped
        assert len(split) == 2 * len(set(split.speakers))
    # features and labels of one utterance against the pieces computed here
    index = corpus.dev.utt_ids.index("faks0_sx2")
    expected = F.compute_features(audio["faks0_sx2"].astype(np.float32), config)
    centres = np.arange(expected.shape[0]) * 160 + 200
    in_range = centres < 8000
    labels = [next(p for s, e, p in SEGMENTS if s <= c < e) for c in centres[in_range]]
    np.testing.assert_allclose(
        corpus.dev.features[index], expected[in_range], rtol=1e-6
    )
    assert [PHONES_61[i] for i in corpus.dev.labels[index]] == labels
    assert corpus.dev.labels[index].dtype == np.int32


def test_cache_is_reused_and_atomic(ldc_dir, tmp_path):
    root, _ = ldc_dir
    cache = tmp_path / "cache"
    first = load_timit(root, cache_dir=cache, allow_partial=True)
    files = sorted(os.listdir(cache))
    assert len(files) == 1 and files[0].endswith(".npz")  # no temp file left
    second = load_timit(root, cache_dir=cache, allow_partial=True)
    assert second.settings == first.settings
    for a, b in zip(first.train.features, second.train.features, strict=True):
        np.testing.assert_array_equal(a, b)
    # normalized per speaker: zero mean over each speaker's frames
    frames = np.concatenate(
        [
            f
            for f, s in zip(first.train.features, first.train.speakers, strict=True)
            if s == "fcjf0"
        ]
    )
    np.testing.assert_allclose(frames.mean(0), 0, atol=1e-4)
    # other settings get another cache file
    load_timit(root, FeatureConfig(n_mels=40), cache_dir=cache, allow_partial=True)
    assert len(os.listdir(cache)) == 2


def test_cache_env_var(ldc_dir, tmp_path, monkeypatch):
    root, _ = ldc_dir
    monkeypatch.setenv("MOHAQ_CACHE", str(tmp_path / "envcache"))
    corpus = load_timit(root, allow_partial=True)
    assert pathlib.Path(corpus.settings["cache"]).parent == tmp_path / "envcache"


def test_bad_file_in_corpus_is_named(ldc_dir, tmp_path):
    root, _ = ldc_dir
    bad = root / "TRAIN" / "DR1" / "FCJF0" / "SI1.PHN"
    bad.write_text("0 100 h#\n100 200 zz\n")
    with pytest.raises(timit.TimitError, match="FCJF0/SI1.PHN.*'zz'"):
        load_timit(root, cache_dir=tmp_path / "cache", allow_partial=True)
    assert not list((tmp_path / "cache").glob("*"))  # nothing half-written


def test_full_copy_with_wrong_speakers_is_an_error():
    train = [f"mtr{i:03d}" for i in range(462)]
    others = [f"mte{i:03d}" for i in range(168 - 74)]
    test = (
        list(timit.DEV_SPEAKERS)
        + list(timit.CORE_TEST_SPEAKERS)[:-1]
        + others
        + ["mzzz9"]
    )
    with pytest.raises(timit.TimitError, match="all 630 speakers.*fmld0"):
        timit.assign_splits("ldc", fake_utterances(train, test))


def test_full_copy_standard_recipe():
    train = [f"mtr{i:03d}" for i in range(462)]
    others = [f"mte{i:03d}" for i in range(168 - 74)]
    test = list(timit.DEV_SPEAKERS) + list(timit.CORE_TEST_SPEAKERS) + others
    splits = timit.assign_splits("ldc", fake_utterances(train, test))
    assert [len(splits[k]) for k in ("train", "dev", "test")] == [462, 50, 24]


def test_listed_speaker_under_train_is_an_error():
    with pytest.raises(timit.TimitError, match="under TRAIN: mdab0"):
        timit.assign_splits(
            "ldc", fake_utterances(["mdab0", "fcjf0"], []), allow_partial=True
        )


def test_nltk_layout(tmp_path):
    root = tmp_path / "nltk_data" / "corpora" / "timit"
    speakers = ["dr1-fvmh0", "dr1-mcpm0", "dr2-faem0", "dr2-marc0", "dr3-falk0"]
    for index, speaker in enumerate(speakers):
        for k, name in enumerate(("sa1", "si1573", "sx123")):
            write_utterance(
                root / speaker, name, 3 * index + k, upper=False, riff=index % 2 == 0
            )
    (root / "spkrinfo.txt").write_text("; speaker table\n")
    with pytest.raises(timit.TimitError, match="nltk layout"):
        load_timit(root, cache_dir=tmp_path / "cache")
    corpus = load_timit(root, cache_dir=tmp_path / "cache", allow_partial=True)
    assert corpus.settings["layout"] == "nltk"
    everyone = corpus.train.speakers + corpus.dev.speakers + corpus.test.speakers
    assert sorted(set(everyone)) == sorted(s.split("-")[1] for s in speakers)
    assert len(corpus.dev) > 0 and len(corpus.test) > 0
    assert not set(corpus.train.speakers) & set(corpus.test.speakers)


def test_nltk_default_location(tmp_path, monkeypatch):
    monkeypatch.setenv("NLTK_DATA", str(tmp_path / "nltk_data"))
    monkeypatch.setattr(pathlib.Path, "home", lambda: tmp_path / "nohome")
    (tmp_path / "nltk_data" / "corpora" / "timit").mkdir(parents=True)
    assert timit.find_nltk_timit() == tmp_path / "nltk_data" / "corpora" / "timit"


def test_sample_rate_mismatch(ldc_dir, tmp_path):
    root, _ = ldc_dir
    config = dataclasses.replace(FeatureConfig(), sample_rate=8000, n_fft=256)
    with pytest.raises(timit.TimitError, match="16000 Hz, expected 8000"):
        load_timit(root, config, cache_dir=tmp_path / "cache", allow_partial=True)


# Messages a newcomer meets.
def test_sa_only_copy_says_sa_is_excluded_by_design(tmp_path):
    for part, speaker in (("TRAIN", "fcjf0"), ("TEST", "mdab0")):
        for k, name in enumerate(("sa1", "sa2")):
            write_utterance(tmp_path / part / "DR1" / speaker.upper(), name, k)
    with pytest.raises(timit.TimitError, match="only SA1/SA2.*excludes the SA"):
        timit.discover(tmp_path)


def test_long_speaker_lists_are_summarized_and_the_hint_names_the_flag(ldc_dir):
    root, _ = ldc_dir
    layout, utterances = timit.discover(root)
    with pytest.raises(timit.TimitError) as error:
        timit.assign_splits(layout, utterances)
    message = str(error.value)
    assert "--timit-partial" in message
    # 48 of the 50 dev speakers are missing: 5 named, then the count
    assert "(48 in all)" in message and "mrws1" not in message
    assert timit.speaker_summary(["a", "b"]) == "a b"
    assert timit.speaker_summary(list("abcdefg"), 3) == "a b c ... (7 in all)"
