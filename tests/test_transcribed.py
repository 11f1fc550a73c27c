"""The transcribed-speech corpus: layouts, speaker split, end to end on a tiny folder."""

import numpy as np
import pytest

from mohaq_jax.data import DATASETS, load_corpus, transcribed
from mohaq_jax.data import features as features_lib
from mohaq_jax.data import phone_times as pt
from mohaq_jax.data.phones import PHONES_39
from tests.real_speech import ARCTIC_TEXT, REAL_SPEECH, needs_real_speech

soundfile = pytest.importorskip("soundfile")


def test_registered():
    assert DATASETS["transcribed"] is transcribed.load_transcribed


def test_assign_speakers_deterministic_and_disjoint():
    speakers = [f"s{i}" for i in range(20)] * 2
    split = transcribed.assign_speakers(speakers, split_seed=3)
    assert split == transcribed.assign_speakers(list(reversed(speakers)), 3)
    assert (len(split["train"]), len(split["dev"]), len(split["test"])) == (16, 2, 2)
    assert sorted(sum(split.values(), [])) == sorted(set(speakers))
    assert split != transcribed.assign_speakers(speakers, split_seed=4)
    only = transcribed.assign_speakers(["a", "b"], all_test=True)
    assert only == {"train": [], "dev": [], "test": ["a", "b"]}
    with pytest.raises(transcribed.TranscribedError, match="all_test=True"):
        transcribed.assign_speakers(["a", "b"])


def test_discover_plain_layout(tmp_path):
    for rel in ("spk1/a.wav", "spk1/b.wav", "top-1.wav", "top_2.flac"):
        path = tmp_path / rel
        path.parent.mkdir(parents=True, exist_ok=True)
        soundfile.write(path, np.zeros(800, np.int16), 16000)
    (tmp_path / "spk1" / "a.txt").write_text("hello")
    (tmp_path / "spk1" / "b.lab").write_text("0 1000000 sil\n")  # HTS phone times
    (tmp_path / "top-1.lab").write_text("a transcript, not times\n")
    layout, utts = transcribed.discover(tmp_path)
    assert layout == "plain"
    got = {u.utt_id: (u.speaker, u.text, u.times and u.times.name) for u in utts}
    assert got == {
        "spk1/a": ("spk1", "hello", None),
        "spk1/b": ("spk1", None, "b.lab"),
        "top-1": ("top", None, None),
        "top_2": ("top", None, None),
    }


def test_discover_errors(tmp_path):
    with pytest.raises(transcribed.TranscribedError, match="does not exist"):
        transcribed.discover(tmp_path / "nope")
    with pytest.raises(transcribed.TranscribedError, match="no audio found"):
        transcribed.discover(tmp_path)
    chapter = tmp_path / "1" / "2"
    chapter.mkdir(parents=True)
    (chapter / "1-2.trans.txt").write_text("1-2-0000 HELLO\n")
    with pytest.raises(transcribed.TranscribedError, match=r"1-2.trans.txt:1"):
        transcribed.discover(tmp_path)
    with pytest.raises(transcribed.TranscribedError, match="labels="):
        transcribed.load_transcribed(tmp_path, labels="guess")


# ------------------------------------------------------------ end to end (shared)

LIBRIVOX = "sense_and_sensibility_01_austen_64kb-0{}"
#: speaker -> (librivox utterance numbers); speaker 404 is the ARCTIC recording.
SPEAKERS = {"101": ("870", "880"), "202": ("890", "920"), "303": ("930",)}


@pytest.fixture(scope="module")
def tiny_librispeech(tmp_path_factory):
    """A LibriSpeech-layout folder of the shared recordings, FLAC, one 22.05 kHz."""
    pytest.importorskip("pocketsphinx")
    if not REAL_SPEECH.is_dir():
        pytest.skip(f"no shared recordings at {REAL_SPEECH}")
    root = tmp_path_factory.mktemp("librispeech") / "dev-tiny"
    for speaker, numbers in SPEAKERS.items():
        chapter = root / speaker / "7"
        chapter.mkdir(parents=True)
        lines = []
        for index, number in enumerate(numbers):
            stem = REAL_SPEECH / "librivox" / LIBRIVOX.format(number)
            samples, rate = soundfile.read(stem.with_suffix(".wav"), dtype="int16")
            utt = f"{speaker}-7-{index:04d}"
            soundfile.write(chapter / f"{utt}.flac", samples, rate)
            lines.append(
                f"{utt} {stem.with_suffix('.txt').read_text().strip().upper()}"
            )
        if speaker == "303":  # a word no dictionary has: skipped, counted
            soundfile.write(chapter / "303-7-0009.flac", samples, rate)
            lines.append("303-7-0009 HE MIGHT EVEN HAVE BEEN MADE ZORBLAXQU HIMSELF")
        (chapter / f"{speaker}-7.trans.txt").write_text("\n".join(lines) + "\n")
    samples, rate = soundfile.read(REAL_SPEECH / "arctic" / "arctic_a0009.wav")
    import scipy.signal

    chapter = root / "404" / "9"
    chapter.mkdir(parents=True)
    soundfile.write(
        chapter / "404-9-0000.flac",
        scipy.signal.resample_poly(samples, 441, 320),  # 16 kHz -> 22.05 kHz
        22050,
        subtype="PCM_16",
    )
    (chapter / "404-9.trans.txt").write_text(f"404-9-0000 {ARCTIC_TEXT.upper()}\n")
    return root


@pytest.fixture(scope="module")
def corpus(tiny_librispeech, tmp_path_factory):
    cache = tmp_path_factory.mktemp("cache")
    return load_corpus("transcribed", corpus_dir=tiny_librispeech, cache_dir=cache)


@needs_real_speech
def test_end_to_end_librispeech_layout(corpus):
    assert corpus.name == "transcribed" and not corpus.synthetic
    assert corpus.classes == PHONES_39 and corpus.n_features == 69
    assert corpus.settings["layout"] == "librispeech"
    # 7 utterances, the one with "zorblaxqu" skipped and said so.
    assert "6 of 7 utterances aligned, 1 skipped" in corpus.notice
    assert "zorblaxqu" in corpus.settings["labels_summary"]
    ids = sum((s.utt_ids for s in corpus.splits().values()), [])
    assert sorted(ids) == sorted(
        ["101-7-0000", "101-7-0001", "202-7-0000", "202-7-0001", "303-7-0000"]
        + ["404-9-0000"]
    )
    by_split = {name: set(s.speakers) for name, s in corpus.splits().items()}
    assert all(len(v) >= 1 for v in by_split.values())
    assert len(set.union(*by_split.values())) == 4
    assert sum(len(v) for v in by_split.values()) == 4  # disjoint
    for split in corpus.splits().values():
        for feats, labels in zip(split.features, split.labels, strict=True):
            assert feats.shape[1] == 69 and feats.dtype == np.float32
            assert labels.min() >= 0 and labels.max() < 39


@needs_real_speech
def test_end_to_end_features_and_labels_match_a_plain_reference(
    corpus, tiny_librispeech
):
    """The 22.05 kHz utterance: resampled features and labels recomputed by hand."""
    split = next(s for s in corpus.splits().values() if "404" in s.speakers)
    index = split.utt_ids.index("404-9-0000")
    config = features_lib.DEFAULT_CONFIG
    samples, rate = transcribed.read_audio(
        tiny_librispeech / "404" / "9" / "404-9-0000.flac"
    )
    assert rate == 22050
    import scipy.signal

    audio = scipy.signal.resample_poly(samples.astype(np.float64), 320, 441)
    static = features_lib.log_mel(audio, config)
    n_frames = split.features[index].shape[0]
    assert abs(static.shape[0] - n_frames) <= 3  # only frames past the labels trimmed
    # Per-speaker normalization of one utterance = per-utterance z-scores.
    kept = static[:n_frames].astype(np.float64)
    z = (kept - kept.mean(0)) / (kept.std(0) + 1e-8)
    np.testing.assert_allclose(split.features[index][:, :23], z, atol=2e-3)
    # Labels against the given ARCTIC phone times, frame by frame (plain loop).
    given = pt.read_hts_lab(REAL_SPEECH / "arctic" / "arctic_a0009_phone.lab")
    agree = 0
    for t in range(n_frames):
        centre = (t * config.hop_length + config.win_length // 2) / config.sample_rate
        phone = next((i.phone for i in given if i.end_s > centre), given[-1].phone)
        agree += PHONES_39.index(pt.to_timit39(phone)) == split.labels[index][t]
    assert agree / n_frames > 0.75


@needs_real_speech
def test_end_to_end_cached(corpus, tiny_librispeech, monkeypatch):
    def no_features(*args, **kwargs):
        raise AssertionError("the cached corpus should have been used")

    monkeypatch.setattr(transcribed, "utterance_features", no_features)
    cache = corpus.settings["cache"].rsplit("/", 1)[0]
    again = load_corpus("transcribed", corpus_dir=tiny_librispeech, cache_dir=cache)
    assert again.settings == corpus.settings
    for name, split in corpus.splits().items():
        assert again.splits()[name].utt_ids == split.utt_ids
        for a, b in zip(again.splits()[name].labels, split.labels, strict=True):
            np.testing.assert_array_equal(a, b)


@needs_real_speech
def test_given_phone_times_of_the_shared_folder(tmp_path):
    corpus = load_corpus(
        "transcribed",
        corpus_dir=REAL_SPEECH,
        labels="given",
        all_test=True,
        cache_dir=tmp_path,
    )
    assert len(corpus.train) == len(corpus.dev) == 0
    assert sorted(set(corpus.test.speakers)) == ["arctic", "librivox", "mfa"]
    assert len(corpus.test) == 9
    assert "phone times given for 9 of 9" in corpus.notice
    # About 2 minutes of audio at 100 frames/s.
    assert 10000 < corpus.test.n_frames < 12500


def test_given_labels_skip_and_count_recordings_without_times(tmp_path):
    for speaker in ("a", "b", "c"):
        (tmp_path / speaker).mkdir()
        for name in ("x", "y"):
            tone = 3000 * np.sin(np.arange(8000) * 0.3 * (1 + (name == "y")))
            soundfile.write(
                tmp_path / speaker / f"{name}.wav", tone.astype(np.int16), 8000
            )
        (tmp_path / speaker / "x.lab").write_text(
            "0 5000000 sil\n5000000 10000000 aa\n"
        )
    corpus = load_corpus(
        "transcribed", corpus_dir=tmp_path, labels="given", cache_dir=tmp_path / "c"
    )
    assert "given for 3 of 6 utterances, 3 without a phone-times file" in corpus.notice
    ids = sorted(sum((s.utt_ids for s in corpus.splits().values()), []))
    assert ids == ["a/x", "b/x", "c/x"]
    # 8 kHz audio resampled to 16 kHz: 1 s -> 98 whole 25 ms frames, 10 ms apart.
    labels = next(s for s in corpus.splits().values() if len(s)).labels[0]
    sil, aa = PHONES_39.index("sil"), PHONES_39.index("aa")
    np.testing.assert_array_equal(labels, [sil] * 49 + [aa] * 49)
