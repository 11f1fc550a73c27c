"""Faults in derived caches and in user corpora: a clean recovery or one clear line.

Each derived cache (corpus/features ``.npz`` of TIMIT and transcribed speech, the
eSpeak corpus written chunk by chunk, alignment JSON, ``decoder.npz``, JAX's
compilation cache) is truncated, corrupted, given another key, or deleted between
runs, and the next run must either rebuild it with results equal to a fresh build
(the damage reported in one line naming the path) or refuse in one line. Then the
corpus rows: TIMIT recordings without .PHN, unreadable audio and empty transcripts,
phone-label tiers (IPA, unknown labels, tier choice, ``NAME_phones.TextGrid``).
"""

import json
import os
import pathlib
import subprocess
import sys
import textwrap

import numpy as np
import pytest
import soundfile

from mohaq_jax.data import align, assemble, espeak, timit, transcribed
from mohaq_jax.data import corpus as corpus_lib
from mohaq_jax.data import phone_times as pt
from mohaq_jax.data.split_writer import SplitWriter
from mohaq_jax.orchestration import cli
from tests.real_speech import ARCTIC_TEXT, REAL_SPEECH, needs_real_speech
from tests.timit_files import fake_utterances

REPO = pathlib.Path(__file__).resolve().parents[1]

# --------------------------------------------------------------------- faults


def truncate(path: pathlib.Path) -> None:
    data = path.read_bytes()
    path.write_bytes(data[: len(data) // 2])


def corrupt(path: pathlib.Path) -> None:
    """Flips one bit in the middle of the file (inside the largest member)."""
    data = bytearray(path.read_bytes())
    data[len(data) // 2] ^= 0x01
    path.write_bytes(bytes(data))


def empty(path: pathlib.Path) -> None:
    path.write_bytes(b"")


FAULTS = {"truncated": truncate, "corrupted": corrupt, "emptied": empty}


def damage_reports(err: str) -> list[str]:
    return [line for line in err.splitlines() if "damaged cache" in line]


def assert_splits_equal(got, expected):
    assert got.keys() == expected.keys()
    for name in expected:
        a, b = got[name], expected[name]
        assert a.utt_ids == b.utt_ids and a.speakers == b.speakers
        for fa, fb in zip(a.features, b.features, strict=True):
            np.testing.assert_array_equal(fa, fb)
        for la, lb in zip(a.labels, b.labels, strict=True):
            np.testing.assert_array_equal(la, lb)


# ------------------------------------------------------- corpus / features .npz


class _Utt:
    def __init__(self, speaker, utt_id):
        self.speaker, self.utt_id = speaker, utt_id


UTTS = [_Utt(f"s{k % 3}", f"u{k}") for k in range(6)]
SPEAKERS = {"train": ["s0"], "dev": ["s1"], "test": ["s2"]}


def _features_of(utt):
    """Deterministic stand-in for the front end (seeded by the utterance id)."""
    rng = np.random.default_rng(int(utt.utt_id[1:]))
    n = 5 + int(utt.utt_id[1:])
    return rng.standard_normal((n, 4)).astype(np.float32), np.arange(
        n, dtype=np.int32
    ) % 3


def _load(cache_path, calls=None):
    def features_of(utt):
        if calls is not None:
            calls.append(utt.utt_id)
        return _features_of(utt)

    return assemble.load_or_build_splits(
        cache_path, SPEAKERS, UTTS, features_of, normalize=True
    )


@pytest.fixture
def corpus_cache(tmp_path):
    path = assemble.cache_file("toy", {"x": 1}, tmp_path)
    fresh = _load(path)
    return path, fresh


@pytest.mark.parametrize("fault", sorted(FAULTS))
def test_damaged_corpus_cache_is_reported_and_rebuilt(corpus_cache, fault, capsys):
    path, fresh = corpus_cache
    capsys.readouterr()
    FAULTS[fault](path)
    calls = []
    again = _load(path, calls)
    (line,) = damage_reports(capsys.readouterr().err)
    assert str(path) in line
    assert sorted(calls) == [u.utt_id for u in UTTS]  # rebuilt, not reused
    assert_splits_equal(again, fresh)
    calls.clear()
    assert_splits_equal(_load(path, calls), fresh)  # the rebuilt file is sound
    assert calls == [] and not damage_reports(capsys.readouterr().err)


def test_corpus_cache_of_another_key_is_rebuilt(corpus_cache, capsys):
    path, fresh = corpus_cache
    corpus_lib.save_splits(path, fresh, key="0123456789abcdef")  # e.g. copied over
    capsys.readouterr()
    calls = []
    assert_splits_equal(_load(path, calls), fresh)
    (line,) = damage_reports(capsys.readouterr().err)
    assert str(path) in line and "0123456789abcdef" in line
    assert calls


def test_corpus_cache_deleted_between_runs_is_rebuilt(corpus_cache, capsys):
    path, fresh = corpus_cache
    path.unlink()
    calls = []
    assert_splits_equal(_load(path, calls), fresh)
    assert calls and not damage_reports(capsys.readouterr().err)


def test_unchanged_corpus_cache_is_reused(corpus_cache):
    path, fresh = corpus_cache
    calls = []
    assert_splits_equal(_load(path, calls), fresh)
    assert calls == []


def test_cache_written_before_keys_is_read_on_its_checksums(corpus_cache):
    # Caches of earlier versions have no meta member: their CRCs still protect them.
    path, fresh = corpus_cache
    with np.load(path) as data:
        arrays = {k: data[k] for k in data.files if k != corpus_lib.META_MEMBER}
    np.savez(path, **arrays)
    assert_splits_equal(corpus_lib.load_splits(path, key="any"), fresh)
    corrupt(path)
    with pytest.raises(corpus_lib.DamagedCacheError, match="CRC"):
        corpus_lib.load_splits(path, key="any")


# ------------------------------------------------ eSpeak corpus (SplitWriter)


def _fake_write_espeak(path, seed, size, feature_config, degrade_audio, progress, key):
    """What write_espeak does, on the toy utterances (no speech engine needed)."""
    with SplitWriter(path, ("train", "dev", "test"), 4, key) as writer:
        for name, speakers in SPEAKERS.items():
            chosen = [u for u in UTTS if u.speaker in speakers]
            feats, labels = zip(*(_features_of(u) for u in chosen), strict=True)
            writer.add(
                name,
                feats,
                labels,
                [u.speaker for u in chosen],
                [u.utt_id for u in chosen],
            )
    return pathlib.Path(path)


@pytest.mark.parametrize("fault", ["truncated", "corrupted", "deleted"])
def test_damaged_espeak_cache_is_reported_and_regenerated(
    tmp_path, monkeypatch, fault, capsys
):
    writes = []

    def fake(*args, **kwargs):
        writes.append(args[0])
        return _fake_write_espeak(*args, **kwargs)

    monkeypatch.setattr(espeak, "write_espeak", fake)
    fresh = espeak.load_espeak(size="tiny", cache_dir=tmp_path)
    (path,) = writes
    capsys.readouterr()
    if fault == "deleted":
        path.unlink()
    else:
        FAULTS[fault](path)
    again = espeak.load_espeak(size="tiny", cache_dir=tmp_path)
    assert len(writes) == 2
    assert len(damage_reports(capsys.readouterr().err)) == (fault != "deleted")
    assert_splits_equal(again.splits(), fresh.splits())


def test_interrupted_split_writer_leaves_no_cache(tmp_path):
    path = tmp_path / "c.npz"
    with pytest.raises(KeyboardInterrupt):
        with SplitWriter(path, ("train",), 4, "k") as writer:
            feats, labels = _features_of(UTTS[0])
            writer.add("train", [feats], [labels], ["s0"], ["u0"])
            raise KeyboardInterrupt  # killed mid-write
    assert list(tmp_path.iterdir()) == []  # no cache, no temporary files


_KILLED_WRITER = textwrap.dedent(
    """
    import os, signal, sys
    import numpy as np
    from mohaq_jax.data.split_writer import SplitWriter
    with SplitWriter(sys.argv[1], ("train",), 4, "k") as writer:
        writer.add("train", [np.ones((5, 4), np.float32)], [np.zeros(5, np.int32)],
                   ["s0"], ["u0"])
        os.kill(os.getpid(), signal.SIGKILL)
    """
)


def test_writer_killed_mid_write_publishes_nothing(tmp_path, monkeypatch, capsys):
    path = tmp_path / "espeak-tiny-x.npz"
    env = {**os.environ, "PYTHONPATH": str(REPO), "JAX_PLATFORMS": "cpu"}
    proc = subprocess.run(
        [sys.executable, "-c", _KILLED_WRITER, str(path)], env=env, timeout=120
    )
    assert proc.returncode == -9
    assert not path.exists()  # only its temporary folder is left beside it
    calls = []
    assert_splits_equal(_load(path, calls), _load(tmp_path / "fresh" / path.name))
    assert calls and not damage_reports(capsys.readouterr().err)


# ------------------------------------------------------------- alignment JSON


@pytest.fixture
def noise_wav(tmp_path):
    path = tmp_path / "noise.wav"
    rng = np.random.default_rng(0)
    soundfile.write(path, (rng.standard_normal(4000) * 300).astype(np.int16), 16000)
    return path


def _align(items, cache_dir):
    return align.align_items(items, transcribed.read_audio, cache_dir, progress=False)


@pytest.mark.parametrize("fault", ["truncated", "emptied", "digit", "key"])
def test_damaged_alignment_cache_is_reported_and_redone(
    tmp_path, noise_wav, fault, capsys
):
    pytest.importorskip("pocketsphinx")
    items = [
        align.AlignItem("empty", noise_wav, ()),
        align.AlignItem("oov", noise_wav, ("zorblaxqu",)),
        align.AlignItem("a", noise_wav, ("a",)),
    ]
    cache = tmp_path / "cache"
    fresh = _align(items, cache)
    (path,) = cache.glob("align-*.json")
    original = path.read_text()
    stored = json.loads(original)
    if fault == "digit":  # still valid JSON: only the checksum can tell
        text = path.read_text()
        k = next(i for i, c in enumerate(text) if c in "123456789" and i > 100)
        path.write_text(text[:k] + str(int(text[k]) % 9 + 1) + text[k + 1 :])
        assert json.loads(path.read_text()) != stored
    elif fault == "key":
        stored["key"] = "0" * 16
        path.write_text(json.dumps(stored))
    else:
        FAULTS[fault](path)
    capsys.readouterr()
    again = _align(items, cache)
    (line,) = damage_reports(capsys.readouterr().err)
    assert str(path) in line
    assert again == fresh
    assert path.read_text() == original  # rewritten whole, as a first run writes it


# ---------------------------------------------------------------- decoder.npz


@pytest.fixture(scope="module")
def toy_decoder_corpus():
    def split(n, seed):
        r = np.random.default_rng(seed)
        labels = [r.integers(0, 3, 12).astype(np.int32) for _ in range(n)]
        feats = [np.eye(3, dtype=np.float32)[lab] for lab in labels]
        return corpus_lib.Split(feats, labels, ["s"] * n, [f"u{k}" for k in range(n)])

    return corpus_lib.Corpus(
        name="toy",
        train=split(4, 0),
        dev=split(2, 1),
        test=split(2, 2),
        classes=("aa", "b", "sil"),
        fold39=np.arange(3, dtype=np.int32),
        n_features=3,
        synthetic=True,
        notice="",
        settings={},
    )


def _fit(ckpt_dir, corpus):
    from mohaq_jax import decode

    params = {"w": np.arange(3, dtype=np.float32)}
    return decode.get_or_fit(
        ckpt_dir,
        params,
        corpus,
        lambda feats, lengths: 4.0 * feats,  # confident, correct logits
        lm_weights=(1.0, 2.0),
        penalties=(0.0,),
    )


@pytest.mark.parametrize("fault", sorted(FAULTS))
def test_damaged_decoder_cache_is_reported_and_refitted(
    tmp_path, toy_decoder_corpus, fault, capsys
):
    fresh, info = _fit(tmp_path, toy_decoder_corpus)
    assert not info["loaded"]
    path = pathlib.Path(info["path"])
    FAULTS[fault](path)
    capsys.readouterr()
    again, info2 = _fit(tmp_path, toy_decoder_corpus)
    (line,) = damage_reports(capsys.readouterr().err)
    assert str(path) in line and not info2["loaded"]
    for a, b in zip(
        (again.log_prior, again.log_bigram, again.lm_weight, again.insertion_penalty),
        (fresh.log_prior, fresh.log_bigram, fresh.lm_weight, fresh.insertion_penalty),
        strict=True,
    ):
        np.testing.assert_array_equal(np.asarray(a), np.asarray(b))
    assert {k: v for k, v in info2.items() if k != "loaded"} == {
        k: v for k, v in info.items() if k != "loaded"
    }
    assert _fit(tmp_path, toy_decoder_corpus)[1]["loaded"]  # rewritten whole


def test_decoder_cache_deleted_between_runs_is_refitted(tmp_path, toy_decoder_corpus):
    _, info = _fit(tmp_path, toy_decoder_corpus)
    os.unlink(info["path"])
    _, info2 = _fit(tmp_path, toy_decoder_corpus)
    assert not info2["loaded"] and os.path.exists(info2["path"])


# ------------------------------------------------------ JAX compilation cache

_JAX_CACHE_SCRIPT = textwrap.dedent(
    """
    import pathlib, sys, warnings
    import jax, jax.numpy as jnp
    from mohaq_jax.search.compilation import enable_compilation_cache
    folder = pathlib.Path(enable_compilation_cache(sys.argv[1]))
    def f(x):
        return jnp.sin(x) * 3.0 + (x @ x.T).sum()
    x = jnp.arange(12.0).reshape(3, 4)
    first = jax.jit(f)(x)
    entries = [p for p in folder.rglob("*") if p.is_file()]
    assert entries, "nothing cached"
    for p in entries:  # damage every entry: half of it, then one flipped byte
        data = bytearray(p.read_bytes()[: max(1, p.stat().st_size // 2)])
        data[len(data) // 2] ^= 0x5A
        p.write_bytes(bytes(data))
    jax.clear_caches()
    with warnings.catch_warnings(record=True) as caught:
        warnings.simplefilter("always")
        second = jax.jit(f)(x)
    assert (first == second).all(), "different result from a damaged cache"
    print("warnings:", sum("persistent compilation cache" in str(w.message)
                            for w in caught))
    """
)


def test_damaged_jax_compilation_cache_entry_is_recompiled(tmp_path):
    env = {**os.environ, "PYTHONPATH": str(REPO), "JAX_PLATFORMS": "cpu"}
    proc = subprocess.run(
        [sys.executable, "-c", _JAX_CACHE_SCRIPT, str(tmp_path / "jax_cache")],
        capture_output=True,
        text=True,
        env=env,
        timeout=120,
    )
    assert proc.returncode == 0, proc.stderr[-2000:]
    assert "warnings: " in proc.stdout
    assert int(proc.stdout.split("warnings:")[1].split()[0]) >= 1  # said, recompiled


# ---------------------------------------------------- TIMIT: missing .PHN files


def test_recordings_without_phn_are_named_and_counted(ldc_dir, tmp_path, capsys):
    root, _ = ldc_dir
    lost = next(root.rglob("MRWS0/SX2.PHN"))
    lost.unlink()
    layout, utterances, unlabelled = timit.discover_all(root)
    assert [u.wav.name for u in unlabelled] == ["SX2.WAV"]
    assert "mrws0_sx2" not in {u.utt_id for u in utterances}
    corpus = timit.load_timit(root, cache_dir=tmp_path / "c", allow_partial=True)
    err = capsys.readouterr().err
    assert "1 recording(s) without a .PHN file" in err and "SX2.WAV" in err
    assert corpus.settings["unlabelled"] == 1
    assert "mrws0_sx2" not in corpus.train.utt_ids


def test_speaker_whose_phn_files_are_all_lost_is_not_called_missing(ldc_dir):
    root, _ = ldc_dir
    for phn in next(root.rglob("FADG0")).glob("*.PHN"):  # a dev speaker
        phn.unlink()
    with pytest.raises(timit.TimitError) as caught:
        timit.load_timit(root)
    message = str(caught.value)
    assert "whose .PHN files are all lost: fadg0" in message
    assert "fadg0" not in message.split("missing dev speakers:")[1].split(";")[0]


def _full_copy():
    train = [f"mtr{i:03d}" for i in range(462)]
    others = [f"mte{i:03d}" for i in range(168 - 74)]
    test = list(timit.DEV_SPEAKERS) + list(timit.CORE_TEST_SPEAKERS) + others
    return train, test


def test_full_copy_with_missing_phn_is_refused_unless_allowed():
    train, test = _full_copy()
    utterances = fake_utterances(train, test)
    path = pathlib.Path("/copy/TRAIN/DR1/MTR000/SX9.WAV")
    lost_speaker = timit.DEV_SPEAKERS[0]
    unlabelled = [
        timit.Unlabelled("mtr000", path, "train"),
        timit.Unlabelled(lost_speaker, pathlib.Path("/copy/x.WAV"), "test"),
    ]
    utterances = [u for u in utterances if u.speaker != lost_speaker]
    with pytest.raises(timit.TimitError) as caught:
        timit.assign_splits("ldc", utterances, False, unlabelled)
    message = str(caught.value)
    assert "2 recording(s) without a .PHN file" in message and str(path) in message
    assert f"all lost: {lost_speaker}" in message
    assert "--allow-missing-labels" in message
    splits = timit.assign_splits("ldc", utterances, False, unlabelled, True)
    assert [len(splits[k]) for k in ("train", "dev", "test")] == [462, 49, 24]
    assert lost_speaker not in splits["dev"]


def test_missing_phn_refusal_is_one_line_exit_2(ldc_dir, capsys):
    root, _ = ldc_dir
    next(root.rglob("MRWS0/SX2.PHN")).unlink()
    with pytest.raises(SystemExit) as caught:
        cli.guarded(lambda: timit.load_timit(root), prog="x")
    assert caught.value.code == 2
    err = capsys.readouterr().err.strip()
    assert len(err.splitlines()) == 1 and "SX2.WAV" in err


# ----------------------------------------------- transcribed speech: bad files


def _wav(path, seed, n=8000):
    rng = np.random.default_rng(seed)
    path.parent.mkdir(parents=True, exist_ok=True)
    soundfile.write(path, (rng.standard_normal(n) * 300).astype(np.int16), 16000)


def _textgrid(path, tiers: dict[str, list[tuple[float, float, str]]], end=0.5):
    from praatio import textgrid
    from praatio.data_classes.interval_tier import IntervalTier

    grid = textgrid.Textgrid()
    for name, entries in tiers.items():
        grid.addTier(IntervalTier(name, entries, 0, end))
    grid.save(str(path), format="long_textgrid", includeBlankSpaces=True)


ARPABET = [(0.0, 0.1, "sil"), (0.1, 0.3, "AA1"), (0.3, 0.5, "S")]
IPA = [(0.0, 0.1, ""), (0.1, 0.3, "ɑː"), (0.3, 0.5, "s")]


def _given_corpus(root, n=3, tiers=None, ending=".TextGrid"):
    for k in range(n):
        _wav(root / f"spk{k}" / f"u{k}.wav", k)
        _textgrid(root / f"spk{k}" / f"u{k}{ending}", tiers or {"phones": ARPABET})


def _load_given(root, tmp_path, **kwargs):
    return transcribed.load_transcribed(
        root, labels="given", cache_dir=tmp_path / "cache", all_test=True, **kwargs
    )


def test_unreadable_audio_among_good_ones_is_skipped_and_counted(tmp_path):
    root = tmp_path / "corpus"
    _given_corpus(root)
    (root / "spk1" / "u1.wav").write_bytes(b"RIFF\x00\x00garbage")
    corpus = _load_given(root, tmp_path)
    assert len(corpus.test) == 2
    summary = corpus.settings["labels_summary"]
    assert "1 skipped for unreadable audio" in summary and "spk1/u1" in summary


def test_unreadable_audio_is_skipped_by_the_aligner_with_its_reason(
    tmp_path, noise_wav
):
    pytest.importorskip("pocketsphinx")
    bad = tmp_path / "bad.wav"
    bad.write_bytes(b"not audio at all")
    items = [
        align.AlignItem("bad", bad, ("a",)),
        align.AlignItem("blank", noise_wav, ()),
        align.AlignItem("good", noise_wav, ("a",)),
    ]
    intervals, summary = _align(items, tmp_path / "cache")
    assert set(summary.unreadable) == {"bad"} and "bad.wav" in summary.unreadable["bad"]
    assert summary.empty == ["blank"] and "blank" not in summary.failed
    text = summary.describe()
    assert "1 skipped for unreadable audio" in text
    assert "1 skipped for an empty transcript (e.g. blank)" in text
    assert "pocketsphinx" not in text or "blank" not in text.split("pocketsphinx")[1]


def test_unreadable_transcript_is_one_line_exit_2(tmp_path, capsys):
    root = tmp_path / "corpus"
    _given_corpus(root)
    (root / "spk1" / "u1.txt").write_bytes(b"\xff\xfe bad \x80")
    with pytest.raises(SystemExit) as caught:
        cli.guarded(lambda: _load_given(root, tmp_path), prog="x")
    assert caught.value.code == 2
    (line,) = capsys.readouterr().err.strip().splitlines()
    assert "u1.txt: unreadable transcript" in line


def test_ipa_tier_is_mapped_to_timit_phones(tmp_path):
    root = tmp_path / "corpus"
    _given_corpus(root, tiers={"phones": IPA})
    ipa = _load_given(root, tmp_path)
    root2 = tmp_path / "corpus2"
    _given_corpus(root2)
    arpabet = _load_given(root2, tmp_path)
    for a, b in zip(ipa.test.labels, arpabet.test.labels, strict=True):
        np.testing.assert_array_equal(a, b)  # the same 39-phone frame labels


@pytest.mark.parametrize(
    "label, hint",
    [("PT", "expected ARPAbet"), ("a", "expected ARPAbet"), ("ʔ", "IPA symbol")],
)
def test_unknown_label_is_refused_naming_file_tier_and_label(
    tmp_path, label, hint, capsys
):
    root = tmp_path / "corpus"
    _given_corpus(root, tiers={"phones": [(0.0, 0.2, "S"), (0.2, 0.5, label)]})
    with pytest.raises(SystemExit) as caught:
        cli.guarded(lambda: _load_given(root, tmp_path), prog="x")
    assert caught.value.code == 2
    (line,) = capsys.readouterr().err.strip().splitlines()
    assert "u0.TextGrid" in line and "tier 'phones'" in line
    assert repr(label) in line and hint in line and "0.200s" in line


def test_phones_textgrid_beside_the_audio_is_found(tmp_path):
    root = tmp_path / "corpus"
    _given_corpus(root, ending="_phones.TextGrid")
    corpus = _load_given(root, tmp_path)
    assert len(corpus.test) == 3
    assert "phone times given for 3 of 3" in corpus.notice


def test_phone_tier_choice(tmp_path, capsys):
    root = tmp_path / "corpus"
    tiers = {"words": [(0.0, 0.5, "ah")], "ipa": IPA, "arpabet": ARPABET}
    _given_corpus(root, tiers=tiers)
    by_tier = {t: _load_given(root, tmp_path, phone_tier=t) for t in ("ipa", "arpabet")}
    np.testing.assert_array_equal(
        by_tier["ipa"].test.labels[0], by_tier["arpabet"].test.labels[0]
    )
    for tier, message in ((None, "cannot tell the phone tier"), ("phonez", "no tier")):
        with pytest.raises(SystemExit):
            cli.guarded(lambda t=tier: _load_given(root, tmp_path, phone_tier=t))
        (line,) = capsys.readouterr().err.strip().splitlines()
        assert message in line and "--phone-tier" in line and "'arpabet'" in line


def test_corpus_flags_reach_the_loader(tmp_path, monkeypatch):
    from mohaq_jax.orchestration import prepare
    from mohaq_jax.settings.config import DataSettings

    seen = {}

    def fake_load_corpus(name, **kwargs):
        seen.update(kwargs, name=name)
        raise transcribed.TranscribedError("stop")

    monkeypatch.setattr(prepare, "load_corpus", fake_load_corpus)
    settings = DataSettings(name="transcribed", corpus_dir="x", phone_tier="ipa")
    with pytest.raises(transcribed.TranscribedError):
        prepare.load_data(settings, progress=False)
    assert seen["phone_tier"] == "ipa" and seen["labels"] == "given"
    parser = cli.build_parser("x", ("data",))
    args = parser.parse_args(["--allow-missing-labels", "--timit-dir", "t"])
    with pytest.raises(transcribed.TranscribedError):
        prepare.load_data(cli.config_from_args(args).data, progress=False)
    assert seen["name"] == "timit" and seen["allow_missing_labels"] is True


@needs_real_speech
def test_aligner_keeps_a_short_trailing_silence_out_of_the_last_phone():
    # arctic_a0009 cut to 65 ms of silence after its last phone (labelled end
    # 2.925 s): without the edge silence word the final 'l' took the pause.
    pytest.importorskip("pocketsphinx")
    samples, rate = transcribed.read_audio(REAL_SPEECH / "arctic" / "arctic_a0009.wav")
    cut = samples[: round((2.925 + 0.065) * rate)]
    words = align.normalize_words(ARCTIC_TEXT)
    got = pt.to_timit39_intervals(align.Aligner().align(cut, rate, words))
    assert got[-1].phone == "sil" and abs(got[-2].end_s - 2.925) <= 0.02
