"""61 -> 39 folding against Lee & Hon (1989) Table I, checked by hand."""

import numpy as np
import pytest

from mohaq_jax.data.phones import (
    FOLD_61_TO_39,
    PHONES_39,
    PHONES_61,
    fold_61_to_39,
    fold_table,
)


def test_inventory_sizes():
    assert len(PHONES_61) == len(set(PHONES_61)) == 61
    assert len(PHONES_39) == len(set(PHONES_39)) == 39
    assert FOLD_61_TO_39.shape == (61,) and FOLD_61_TO_39.dtype == np.int32


@pytest.mark.parametrize(
    "phone, expected",
    [
        ("ao", "aa"),
        ("aa", "aa"),
        ("ax", "ah"),
        ("ax-h", "ah"),
        ("ah", "ah"),
        ("axr", "er"),
        ("er", "er"),
        ("hv", "hh"),
        ("ix", "ih"),
        ("el", "l"),
        ("em", "m"),
        ("en", "n"),
        ("nx", "n"),
        ("eng", "ng"),
        ("zh", "sh"),
        ("ux", "uw"),
        ("pcl", "sil"),
        ("bcl", "sil"),
        ("tcl", "sil"),
        ("dcl", "sil"),
        ("kcl", "sil"),
        ("gcl", "sil"),
        ("h#", "sil"),
        ("pau", "sil"),
        ("epi", "sil"),
        ("dx", "dx"),
        ("jh", "jh"),
        ("oy", "oy"),
        ("th", "th"),
        ("y", "y"),
        ("q", None),
    ],
)
def test_fold_hand_checked(phone, expected):
    assert fold_61_to_39(phone) == expected
    index = FOLD_61_TO_39[PHONES_61.index(phone)]
    assert index == (-1 if expected is None else PHONES_39.index(expected))


def test_fold_covers_all_39_and_only_q_is_dropped():
    assert set(FOLD_61_TO_39[FOLD_61_TO_39 >= 0].tolist()) == set(range(39))
    assert [PHONES_61[i] for i in np.flatnonzero(FOLD_61_TO_39 < 0)] == ["q"]


def test_unfolded_phones_count():
    # 61 labels minus 22 that fold elsewhere (Table I) leaves 39 self-mapped
    # minus 'sil' (which no TIMIT label is called) plus 'q' dropped: 38 + q.
    self_mapped = [p for p in PHONES_61 if fold_61_to_39(p) == p]
    assert len(self_mapped) == 38


def test_fold_table_accepts_39_labels():
    np.testing.assert_array_equal(fold_table(PHONES_39), np.arange(39))
    np.testing.assert_array_equal(fold_table(("ix", "sil", "q")), [1, 38, -1])


def test_unknown_label_is_an_error():
    with pytest.raises(ValueError, match="'xx'"):
        fold_61_to_39("xx")
