"""Padding and length-bucketed batching."""

import numpy as np
import pytest

from mohaq_jax.data import Batch, Split, iterate_batches, pad_batch


@pytest.fixture
def split():
    rng = np.random.default_rng(0)
    lengths = [5, 17, 3, 40, 22, 9, 31]
    return Split(
        features=[rng.standard_normal((n, 4)).astype(np.float32) for n in lengths],
        labels=[rng.integers(0, 10, n).astype(np.int32) for n in lengths],
        speakers=["s"] * len(lengths),
        utt_ids=[f"u{i}" for i in range(len(lengths))],
    )


def test_split_basics(split):
    assert len(split) == 7
    assert split.n_frames == 5 + 17 + 3 + 40 + 22 + 9 + 31


def test_split_rejects_mismatched_labels():
    with pytest.raises(ValueError, match="u0"):
        Split([np.zeros((3, 2), np.float32)], [np.zeros(4, np.int32)], ["s"], ["u0"])


def test_pad_batch_contents(split):
    batch = pad_batch(split, [2, 0])
    assert isinstance(batch, Batch)
    assert batch.features.shape == (2, 5, 4) and batch.features.dtype == np.float32
    assert batch.labels.dtype == np.int32 and batch.lengths.dtype == np.int32
    np.testing.assert_array_equal(batch.lengths, [3, 5])
    np.testing.assert_array_equal(batch.features[0, :3], split.features[2])
    np.testing.assert_array_equal(batch.features[0, 3:], 0)
    np.testing.assert_array_equal(batch.labels[0, :3], split.labels[2])
    np.testing.assert_array_equal(batch.labels[0, 3:], -1)
    np.testing.assert_array_equal(batch.labels[1], split.labels[0])


def test_pad_to(split):
    assert pad_batch(split, [0, 1], pad_to=32).features.shape == (2, 32, 4)
    with pytest.raises(ValueError, match="shorter"):
        pad_batch(split, [3], pad_to=16)


def test_iterate_covers_each_utterance_once(split):
    seen = []
    for batch in iterate_batches(
        split, 3, rng=np.random.default_rng(1), pad_multiple=16
    ):
        assert batch.features.shape[1] % 16 == 0
        for row, length in enumerate(batch.lengths):
            # identify utterances by their (unique) lengths
            seen.append(int(length))
            assert np.all(batch.labels[row, length:] == -1)
    assert sorted(seen) == sorted(f.shape[0] for f in split.features)


def test_iterate_buckets_by_length_without_rng(split):
    batches = list(iterate_batches(split, 3, rng=None, pad_multiple=8))
    assert [b.lengths.tolist() for b in batches] == [[3, 5, 9], [17, 22, 31], [40]]
    assert [b.features.shape[1] for b in batches] == [16, 32, 40]


def test_drop_remainder(split):
    batches = list(iterate_batches(split, 3, rng=None, drop_remainder=True))
    assert [len(b.lengths) for b in batches] == [3, 3]


def test_shuffling_depends_on_rng(split):
    orders = {
        tuple(
            tuple(b.lengths)
            for b in iterate_batches(split, 2, np.random.default_rng(s))
        )
        for s in range(6)
    }
    assert len(orders) > 1
    again = [
        tuple(b.lengths) for b in iterate_batches(split, 2, np.random.default_rng(3))
    ]
    assert again == [
        tuple(b.lengths) for b in iterate_batches(split, 2, np.random.default_rng(3))
    ]
