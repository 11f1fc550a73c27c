"""Forced alignment: against the shared recordings' given phone times, OOV skipping."""

import numpy as np
import pytest

from mohaq_jax.data import align, transcribed
from mohaq_jax.data import phone_times as pt
from tests.real_speech import ARCTIC_TEXT, REAL_SPEECH, needs_real_speech

LIBRIVOX = REAL_SPEECH / "librivox"


@pytest.mark.parametrize(
    "text, expected",
    [
        ("HE TURNED SHARPLY, AND FACED", ["he", "turned", "sharply", "and", "faced"]),
        ("i'm 'quoted' word-pair", ["i'm", "quoted", "word", "pair"]),
        ("  \n", []),
    ],
)
def test_normalize_words(text, expected):
    assert align.normalize_words(text) == expected


@pytest.fixture(scope="module")
def aligner():
    pytest.importorskip("pocketsphinx")
    return align.Aligner(extra_words={"yknow": "Y AH N OW"})


def _cases():
    """(group, audio, transcript, given phone times) of the recordings used here."""
    cases = []
    for text in sorted(LIBRIVOX.glob("*.txt")):
        stem = text.with_suffix("")
        cases.append(
            (
                "librivox",
                stem.with_suffix(".wav"),
                text.read_text(),
                pt.read_phone_json(stem.with_suffix(".phone.json")),
            )
        )
    arctic = REAL_SPEECH / "arctic"
    cases.append(
        (
            "arctic",
            arctic / "arctic_a0009.wav",
            ARCTIC_TEXT,
            pt.read_hts_lab(arctic / "arctic_a0009_phone.lab"),
        )
    )
    mfa = REAL_SPEECH / "mfa"  # one continuous 26.7 s recording, the longest case
    cases.append(
        (
            "mfa",
            mfa / "acoustic_corpus.wav",
            (mfa / "acoustic_corpus.lab").read_text(),
            pt.read_textgrid(mfa / "acoustic_corpus.TextGrid"),
        )
    )
    return cases


@pytest.fixture(scope="module")
def boundary_errors(aligner):
    """(group, recording) -> boundary errors (s) of every recording (aligned once)."""
    if not REAL_SPEECH.is_dir():
        pytest.skip(f"no shared recordings at {REAL_SPEECH}")
    errors = {}
    for group, audio, text, given in _cases():
        samples, rate = transcribed.read_audio(audio)
        got = aligner.align(samples, rate, align.normalize_words(text))
        assert got[0].start_s == 0.0
        assert got[-1].end_s == pytest.approx(
            samples.shape[0] / rate, abs=0.03
        )  # last whole frame
        errors[group, audio.stem] = pt.boundary_errors(got, given)
    return errors


@needs_real_speech
def test_aligner_boundaries_against_given_times(boundary_errors, capsys):
    groups = {}
    for (group, _), errors in boundary_errors.items():
        groups.setdefault(group, []).append(errors)
    by_group = {g: np.concatenate(parts) for g, parts in groups.items()}
    medians = {g: 1000 * float(np.median(e)) for g, e in by_group.items()}
    independent = np.concatenate([by_group["arctic"], by_group["mfa"]])
    with capsys.disabled():
        print(
            "\nmedian phone-boundary error (ms), per recording: "
            + "; ".join(
                f"{name} {1000 * np.median(e):.1f} "
                f"({100 * np.mean(e <= 0.02):.0f}% <= 20 ms, n={len(e)})"
                for (_, name), e in boundary_errors.items()
            )
            + "; per group: "
            + ", ".join(
                f"{g} {m:.1f} (n={len(by_group[g])})" for g, m in medians.items()
            )
            + f"; arctic+mfa {1000 * np.median(independent):.1f}"
        )
    # Most reference phones are found again (the sequences agree).
    assert len(by_group["arctic"]) >= 30
    assert len(by_group["mfa"]) >= 150
    # Independent references (HTS labels, another aligner): the goal is <= 20 ms,
    # for each recording and pooled.
    assert 1000 * np.median(independent) <= 20.0
    for (_group, name), errors in boundary_errors.items():
        assert 1000 * np.median(errors) <= 20.0, name
    # The librivox times were made by pocketsphinx 5.1.1 itself: a regression check.
    assert medians["librivox"] <= 10.0


def test_missing_words_are_skipped_and_counted(aligner, tmp_path):
    assert aligner.pronunciation("table") == ["T", "EY", "B", "AH", "L"]
    assert aligner.pronunciation("zorblaxqu") is None
    assert aligner.missing_words(["the", "zorblaxqu", "vrumpt", "zorblaxqu"]) == [
        "zorblaxqu",
        "vrumpt",
    ]
    silence = np.zeros(16000, np.float32)
    with pytest.raises(align.MissingWordsError, match="zorblaxqu") as caught:
        aligner.align(silence, 16000, ["the", "zorblaxqu"])
    assert caught.value.words == ["zorblaxqu"]

    audio = tmp_path / "a.wav"
    import soundfile

    rng = np.random.default_rng(0)
    soundfile.write(audio, (rng.standard_normal(8000) * 300).astype(np.int16), 16000)
    items = [
        align.AlignItem("u1", audio, ("zorblaxqu", "a")),
        align.AlignItem("u2", audio, ("vrumpt",)),
        align.AlignItem("u3", audio, ()),
    ]
    _, summary = align.align_items(
        items, transcribed.read_audio, cache_dir=tmp_path, progress=False
    )
    assert summary.n_utterances == 3
    assert summary.aligned == []
    assert summary.missing_words == {"u1": ["zorblaxqu"], "u2": ["vrumpt"]}
    assert summary.empty == ["u3"] and summary.failed == {}
    assert summary.n_skipped == 3
    text = summary.describe()
    assert "0 of 3 utterances aligned, 3 skipped" in text
    assert "2 skipped for 2 word(s) missing" in text and "vrumpt zorblaxqu" in text
    assert "1 skipped for an empty transcript (e.g. u3)" in text


@needs_real_speech
def test_align_items_caches(tmp_path, monkeypatch):
    pytest.importorskip("pocketsphinx")
    stem = LIBRIVOX / "sense_and_sensibility_01_austen_64kb-0880"
    items = [
        align.AlignItem(
            "0880",
            stem.with_suffix(".wav"),
            tuple(align.normalize_words(stem.with_suffix(".txt").read_text())),
        )
    ]
    first, summary = align.align_items(
        items, transcribed.read_audio, cache_dir=tmp_path, progress=False
    )
    assert summary.aligned == ["0880"] and summary.n_skipped == 0
    assert len(list(tmp_path.glob("align-*.json"))) == 1

    def no_aligner(*args, **kwargs):
        raise AssertionError("the cached alignment should have been used")

    monkeypatch.setattr(align, "Aligner", no_aligner)
    again, _ = align.align_items(
        items, transcribed.read_audio, cache_dir=tmp_path, progress=False
    )
    assert again == first


def test_wide_beams_retry_when_the_default_beams_lose_the_path(aligner, monkeypatch):
    tried = []

    def two_passes(decoder, pcm, words):
        tried.append(decoder)
        return None if decoder is aligner.decoder else [[]]

    monkeypatch.setattr(aligner, "_two_passes", two_passes)
    with pytest.raises(align.AlignmentError, match="no phone alignment"):
        aligner.align(np.zeros(1600, np.float32), 16000, ["the"])
    assert tried[0] is aligner.decoder
    assert tried[1] is aligner._wide and aligner._wide is not aligner.decoder
    assert float(aligner._wide.config["beam"]) == pytest.approx(1e-100)
    monkeypatch.setattr(aligner, "_two_passes", lambda *args: None)
    with pytest.raises(align.AlignmentError, match="even with wide beams"):
        aligner.align(np.zeros(1600, np.float32), 16000, ["the"])


@needs_real_speech
def test_parallel_alignment_equals_serial(tmp_path):
    pytest.importorskip("pocketsphinx")
    items = [
        align.AlignItem(
            stem.name,
            stem.with_suffix(".wav"),
            tuple(align.normalize_words(stem.with_suffix(".txt").read_text())),
        )
        for stem in (
            LIBRIVOX / "sense_and_sensibility_01_austen_64kb-0880",
            LIBRIVOX / "sense_and_sensibility_01_austen_64kb-0930",
        )
    ] + [
        align.AlignItem(
            "oov",
            LIBRIVOX / "sense_and_sensibility_01_austen_64kb-0880.wav",
            ("vrumpt",),
        )
    ]
    serial = align.align_items(
        items, transcribed.read_audio, cache_dir=tmp_path / "1", progress=False
    )
    parallel = align.align_items(
        items,
        transcribed.read_audio,
        cache_dir=tmp_path / "2",
        progress=False,
        workers=2,
    )
    assert parallel == serial
    assert serial[1].missing_words == {"oov": ["vrumpt"]}
    with pytest.raises(ValueError, match="workers=0"):
        align.align_items(items, transcribed.read_audio, workers=0)
