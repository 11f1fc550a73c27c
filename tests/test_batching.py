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


# ---------------------------------------------------------------- bucketed batches


def timit_like_lengths(n, seed=0):
    """Frames per utterance like TIMIT's: mean ~305 (3.05 s), sd ~85, 90..780."""
    rng = np.random.default_rng(seed)
    sigma = np.sqrt(np.log(1 + (85 / 305) ** 2))
    mu = np.log(305) - sigma**2 / 2
    return np.clip(rng.lognormal(mu, sigma, n).round(), 90, 780).astype(int)


def slots_of(lengths, groups, batch_frames, pad_multiple):
    """Independent cost: padded frames of contiguous groups of sorted lengths."""
    total = 0
    for group in groups:
        time = -(-max(group) // pad_multiple) * pad_multiple
        cap = max(1, batch_frames // time)
        n_batches = -(-len(group) // cap)
        rows = -(-len(group) // n_batches)
        total += n_batches * rows * time
    return total


def brute_force_best(lengths, n_groups, batch_frames, pad_multiple):
    """Least padded frames over every cut of the sorted lengths into n_groups runs
    (cuts only between different padded lengths, as equal ones share a bucket)."""
    import itertools

    ordered = sorted(lengths)
    padded = [-(-x // pad_multiple) * pad_multiple for x in ordered]
    cuts = [i for i in range(1, len(padded)) if padded[i] != padded[i - 1]]
    best = None
    for chosen in itertools.combinations(cuts, n_groups - 1):
        bounds = [0, *chosen, len(ordered)]
        groups = [ordered[a:b] for a, b in zip(bounds, bounds[1:], strict=False)]
        cost = slots_of(lengths, groups, batch_frames, pad_multiple)
        best = cost if best is None else min(best, cost)
    return best


@pytest.mark.parametrize(
    "lengths,batch_frames,max_buckets",
    [
        ([5, 17, 3, 40, 22, 9, 31, 33, 8], 64, 3),
        ([12, 12, 13, 50, 51, 90, 7, 30, 31, 32, 33, 60], 100, 4),
        (list(range(1, 40, 3)) * 2, 48, 2),
    ],
)
def test_plan_is_optimal_for_its_bucket_count(lengths, batch_frames, max_buckets):
    from mohaq_jax.data.batching import plan_buckets

    pm = 4
    for target in (0.0, 0.3):
        plan = plan_buckets(lengths, batch_frames, max_buckets, pm, max_padding=target)
        cost = sum(-(-len(b.indices) // b.rows) * b.rows * b.time for b in plan)
        # every utterance once; each bucket's time fits its longest member
        assert sorted(np.concatenate([b.indices for b in plan])) == list(
            range(len(lengths))
        )
        for b in plan:
            assert b.time % pm == 0 and b.time >= max(lengths[i] for i in b.indices)
        assert cost == brute_force_best(lengths, len(plan), batch_frames, pm)
        best = [
            brute_force_best(lengths, k, batch_frames, pm)
            for k in range(1, max_buckets + 1)
        ]
        ok = [k + 1 for k, c in enumerate(best) if sum(lengths) >= (1 - target) * c]
        assert len(plan) == (ok[0] if ok else int(np.argmin(best)) + 1)


def test_bucketed_batches_content_and_bounds(split):
    from mohaq_jax.data.batching import BucketedSplit, bucketed_batches

    batches = bucketed_batches(split, batch_frames=64, max_buckets=3, pad_multiple=8)
    assert isinstance(batches, BucketedSplit) and len(batches.shapes) <= 3
    seen = []
    for batch in batches:
        assert batch.labels.size <= 64 or batch.features.shape[0] == 1
        assert (batch.features.shape[0], batch.features.shape[1]) in batches.shapes
        for row, n in enumerate(batch.lengths):
            if n == 0:  # empty row: pure padding
                assert np.all(batch.labels[row] == -1)
                assert np.all(batch.features[row] == 0)
                continue
            i = [j for j, f in enumerate(split.features) if f.shape[0] == n][0]
            np.testing.assert_array_equal(batch.features[row, :n], split.features[i])
            np.testing.assert_array_equal(batch.labels[row, :n], split.labels[i])
            assert np.all(batch.labels[row, n:] == -1)
            seen.append(i)
    assert sorted(seen) == list(range(len(split)))
    assert batches.n_frames == split.n_frames
    real = sum(int(b.lengths.sum()) for b in batches)
    assert batches.padding_share == pytest.approx(1 - real / batches.n_padded_frames)
    assert "padding" in batches.describe()
    again = bucketed_batches(split, batch_frames=64, max_buckets=3, pad_multiple=8)
    for a, b in zip(batches, again, strict=True):  # deterministic
        np.testing.assert_array_equal(a.features, b.features)


@pytest.mark.parametrize("n_utts", [192, 400, 1600])
def test_padding_under_ten_percent_on_timit_lengths(n_utts):
    from mohaq_jax.data.batching import plan_buckets

    lengths = timit_like_lengths(n_utts)
    batch_frames = 16384
    plan = plan_buckets(lengths, batch_frames)  # defaults: <= 8 shapes, 10 % target
    slots = sum(-(-len(b.indices) // b.rows) * b.rows * b.time for b in plan)
    assert len(plan) <= 8
    assert 1 - lengths.sum() / slots < 0.10
    assert all(b.rows * b.time <= batch_frames for b in plan)
    # one padded batch of the whole split pads far more (the old evaluation)
    one = len(lengths) * (-(-lengths.max() // 16) * 16)
    assert 1 - lengths.sum() / one > 0.3


@pytest.mark.parametrize(
    "kwargs,match",
    [
        (dict(batch_frames=0), "batch_frames"),
        (dict(max_buckets=0), "max_buckets"),
        (dict(max_padding=1.0), "max_padding"),
        (dict(pad_multiple=0), "pad_multiple"),
    ],
)
def test_bad_bucket_settings_rejected(kwargs, match):
    from mohaq_jax.data.batching import plan_buckets

    settings = dict(batch_frames=64, max_buckets=2, pad_multiple=8, max_padding=0.1)
    settings.update(kwargs)
    with pytest.raises(ValueError, match=match):
        plan_buckets([3, 5, 9], **settings)
    with pytest.raises(ValueError, match="empty split"):
        plan_buckets([], 64)


def test_accumulate_sums_exact_and_bounded():
    from mohaq_jax.data.batching import accumulate_sums

    parts = [(np.int32(2**30), np.float32(0.5)), (np.int32(2**30), np.float32(0.25))]
    total = accumulate_sums(lambda p: {"n": p[0], "x": np.asarray([p[1]] * 2)}, parts)
    assert total["n"] == 2**31 and total["n"].dtype == np.int64  # no int32 overflow
    np.testing.assert_array_equal(total["x"], [0.75, 0.75])
    with pytest.raises(ValueError, match="no batches"):
        accumulate_sums(lambda p: p, [])
