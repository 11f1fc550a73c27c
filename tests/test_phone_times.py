"""Phone-times readers: hand-written fixtures, the shared recordings' label files."""

import json
import re

import numpy as np
import pytest

from mohaq_jax.data import features as features_lib
from mohaq_jax.data import phone_times as pt
from mohaq_jax.data.phones import PHONES_39
from tests.real_speech import REAL_SPEECH, needs_real_speech


def assert_intervals(got, expected):
    """Same phones, times equal to 1e-9 s."""
    assert [i[2] for i in got] == [e[2] for e in expected]
    np.testing.assert_allclose(
        [i[:2] for i in got], [e[:2] for e in expected], rtol=0, atol=1e-9
    )


@pytest.mark.parametrize(
    "name, expected",
    [
        ("AO1", "aa"),
        ("ZH", "sh"),
        ("AX", "ah"),
        ("AH0", "ah"),
        ("ER0", "er"),
        ("hh", "hh"),
        ("SIL", "sil"),
        ("spn", "sil"),
        ("sp", "sil"),
        ("pau", "sil"),
        ("", "sil"),
        ("+NSN+", "sil"),
        ("ix", "ih"),  # a TIMIT label, folded as Lee & Hon
        ("axr", "er"),
        ("tcl", "sil"),
    ],
)
def test_to_timit39(name, expected):
    assert pt.to_timit39(name) == expected


@pytest.mark.parametrize("name", ["q", "xx", "AO9X"])
def test_to_timit39_rejects(name):
    with pytest.raises(pt.PhoneTimesError, match="TIMIT-39"):
        pt.to_timit39(name)


def test_every_cmu_phone_maps():
    cmu = (
        "AA AE AH AO AW AY B CH D DH EH ER EY F G HH IH IY JH K L M N NG OW OY P R S "
        "SH T TH UH UW V W Y Z ZH"
    ).split()
    # CMU has no flap: every 39-class but dx and sil is reached.
    assert {pt.to_timit39(p + "1") for p in cmu} == set(PHONES_39) - {"sil", "dx"}


def test_read_phone_json_handwritten(tmp_path):
    doc = {
        "b": 0.0,
        "d": 0.5,
        "t": "hi",
        "w": [
            {"b": 0.0, "d": 0.1, "t": "<sil>", "w": [{"b": 0.0, "d": 0.1, "t": "SIL"}]},
            {
                "b": 0.1,
                "d": 0.4,
                "t": "hi",
                "w": [
                    {"b": 0.1, "d": 0.15, "t": "HH"},
                    {"b": 0.25, "d": 0.25, "t": "AY"},
                ],
            },
        ],
    }
    path = tmp_path / "x.json"
    path.write_text(json.dumps(doc))
    got = pt.read_phone_json(path)
    assert_intervals(
        got,
        [
            (0.0, 0.1, "SIL"),
            (0.1, 0.25, "HH"),
            (0.25, 0.5, "AY"),
        ],
    )
    path.write_text('{"b": 0.0, "t": "x"}')
    with pytest.raises(pt.PhoneTimesError, match="x.json"):
        pt.read_phone_json(path)


def test_read_hts_lab_handwritten(tmp_path):
    mono = tmp_path / "mono.lab"
    mono.write_text("0 1000000 sil\n1000000 2500000 aa\n2500000 3000000 pau\n")
    assert_intervals(
        pt.read_hts_lab(mono),
        [
            (0.0, 0.1, "sil"),
            (0.1, 0.25, "aa"),
            (0.25, 0.3, "pau"),
        ],
    )
    full = tmp_path / "full.lab"
    full.write_text(
        "0 500000 x^x-sil+k=ae@x_x/A:0\n500000 900000 x^sil-k+ae=t@1_2/A:0\n"
    )
    assert [i.phone for i in pt.read_hts_lab(full)] == ["sil", "k"]
    bad = tmp_path / "bad.lab"
    bad.write_text("0 5 x^x=sil@\n")
    with pytest.raises(pt.PhoneTimesError, match="bad.lab:1"):
        pt.read_hts_lab(bad)
    overlap = tmp_path / "overlap.lab"
    overlap.write_text("0 1000000 sil\n500000 2000000 aa\n")
    with pytest.raises(pt.PhoneTimesError, match="overlaps"):
        pt.read_hts_lab(overlap)


def test_read_phone_times_dispatch(tmp_path):
    path = tmp_path / "x.csv"
    path.write_text("0,1,a")
    with pytest.raises(pt.PhoneTimesError, match="unknown phone-times format"):
        pt.read_phone_times(path)


def test_intervals_to_frame_labels_by_hand():
    # Frame t has its centre at 0.01 t + 0.0125 s (25 ms window, 10 ms hop).
    intervals = [
        pt.PhoneInterval(0.0, 0.05, "SIL"),
        pt.PhoneInterval(0.05, 0.1, "AA1"),
        pt.PhoneInterval(0.1, 0.2, "S"),
    ]
    got = pt.intervals_to_frame_labels(intervals, 21, features_lib.DEFAULT_CONFIG)
    sil, aa, s = (PHONES_39.index(p) for p in ("sil", "aa", "s"))
    expected = [sil] * 4 + [aa] * 5 + [s] * 10 + [-1, -1]
    np.testing.assert_array_equal(got, expected)


def test_to_timit39_intervals_merges_neighbours():
    merged = pt.to_timit39_intervals(
        [
            pt.PhoneInterval(0.0, 0.1, "SIL"),
            pt.PhoneInterval(0.1, 0.2, "sp"),
            pt.PhoneInterval(0.2, 0.3, "AO1"),
            pt.PhoneInterval(0.3, 0.4, "AA0"),
        ]
    )
    assert_intervals(
        merged,
        [(0.0, 0.2, "sil"), (0.2, 0.4, "aa")],
    )


def test_boundary_errors_by_hand():
    ref = [
        pt.PhoneInterval(0.0, 0.1, "sil"),
        pt.PhoneInterval(0.1, 0.2, "k"),
        pt.PhoneInterval(0.2, 0.3, "ae"),
        pt.PhoneInterval(0.3, 0.5, "t"),
    ]
    hyp = [
        pt.PhoneInterval(0.0, 0.12, "SIL"),
        pt.PhoneInterval(0.12, 0.19, "K"),
        pt.PhoneInterval(0.19, 0.25, "EH1"),  # substituted: not compared
        pt.PhoneInterval(0.25, 0.27, "SIL"),  # inserted: not compared
        pt.PhoneInterval(0.27, 0.5, "T"),
    ]
    np.testing.assert_allclose(
        pt.boundary_errors(hyp, ref), [0.02, 0.03], rtol=0, atol=1e-12
    )


# ---------------------------------------------------------------- shared fixtures


@needs_real_speech
def test_read_phone_json_librivox():
    stem = REAL_SPEECH / "librivox" / "sense_and_sensibility_01_austen_64kb-0880"
    got = pt.read_phone_json(stem.with_suffix(".phone.json"))
    # Values copied from the file by eye: <sil>, he, was(2), not.
    assert_intervals(
        got[:9],
        [
            (0.0, 0.21, "SIL"),
            (0.21, 0.27, "HH"),
            (0.27, 0.33, "IY"),
            (0.33, 0.41, "W"),
            (0.41, 0.45, "AH"),
            (0.45, 0.56, "Z"),
            (0.56, 0.61, "N"),
            (0.61, 0.86, "AA"),
            (0.86, 1.06, "T"),
        ],
    )
    # Independent count: every innermost "t" is a phone (all durations > 0 here).
    text = stem.with_suffix(".phone.json").read_text()
    n_leaves = len(
        re.findall(r'\{"b":[0-9.]+,"d":[0-9.]+,"p":[0-9.]+,"t":"[A-Z]+"\}', text)
    )
    assert len(got) == n_leaves
    assert all(
        a.end_s == pytest.approx(b.start_s) for a, b in zip(got, got[1:], strict=False)
    )


@needs_real_speech
def test_read_hts_lab_arctic():
    got = pt.read_hts_lab(REAL_SPEECH / "arctic" / "arctic_a0009_phone.lab")
    phones = [i.phone for i in got]
    # "He turned sharply, and faced Gregson ..." in Festival's phone set.
    assert phones[:12] == "sil hh iy t er n d sh aa r p l".split()
    assert_intervals(got[1:2], [(0.13, 0.205, "hh")])
    assert got[-1].end_s == pytest.approx(
        int((REAL_SPEECH / "arctic" / "arctic_a0009_phone.lab").read_text().split()[-2])
        * 1e-7
    )
    assert all(pt.to_timit39(p) in PHONES_39 for p in phones)


@needs_real_speech
def test_read_textgrid_mfa():
    path = REAL_SPEECH / "mfa" / "acoustic_corpus.TextGrid"
    got = pt.read_textgrid(path)
    assert_intervals(
        got[:3], [(0.0, 1.05, ""), (1.05, 1.06, "DH"), (1.06, 1.11, "IH0")]
    )
    # Independent reading of the long text format: the count line of "phones".
    lines = [line.strip() for line in path.read_text().splitlines()]
    tier = lines.index('"phones"')
    assert len(got) == int(lines[tier + 3])
    assert pt.read_phone_times(path) == got
    with pytest.raises(pt.PhoneTimesError, match="no tier 'tones'"):
        pt.read_textgrid(path, tier="tones")
