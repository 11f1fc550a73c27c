"""Tests of the image loaders: CIFAR-10 pickle batches, scikit-learn digits."""

import pickle

import numpy as np
import pytest

from mohaq_jax.data import images


def _write_batch(path, data, labels):
    with open(path, "wb") as f:
        pickle.dump({b"data": data, b"labels": list(labels), b"batch_label": b"x"}, f)


def test_read_cifar_batch_layout(tmp_path):
    # Image 0: red channel = pixel index % 256, green = 1, blue = 2.
    data = np.zeros((2, 3072), np.uint8)
    data[0, :1024] = np.arange(1024) % 256
    data[0, 1024:2048] = 1
    data[0, 2048:] = 2
    data[1] = 7
    _write_batch(tmp_path / "data_batch_1", data, [3, 9])
    x, y = images.read_cifar_batch(tmp_path / "data_batch_1")
    assert x.shape == (2, 32, 32, 3) and x.dtype == np.uint8
    np.testing.assert_array_equal(y, [3, 9])
    # row-major: pixel (row 1, col 2) is red value 32 + 2
    assert x[0, 1, 2, 0] == 34 and x[0, 1, 2, 1] == 1 and x[0, 1, 2, 2] == 2
    assert np.all(x[1] == 7)


def test_load_cifar10_tiny_fake(tmp_path):
    root = tmp_path / "cifar-10-batches-py"
    root.mkdir()
    rng = np.random.default_rng(0)
    for i in (1, 2):
        _write_batch(
            root / f"data_batch_{i}",
            rng.integers(0, 256, (4, 3072), np.uint8),
            [i, i, i, i],
        )
    _write_batch(root / "test_batch", np.full((3, 3072), 255, np.uint8), [0, 1, 2])
    data = images.load_images("cifar10", cifar_dir=tmp_path, n_dev=2)
    assert (len(data.train), len(data.dev), len(data.test)) == (6, 2, 3)
    assert data.image_shape == (32, 32, 3) and data.n_classes == 10
    assert data.train.images.dtype == np.float32
    np.testing.assert_allclose(data.test.images, 1.0)
    np.testing.assert_array_equal(data.dev.labels, [2, 2])
    with pytest.raises(images.CifarError):
        images.load_cifar10(tmp_path / "nowhere")


def test_digits_default():
    pytest.importorskip("sklearn")
    data = images.load_images("digits", image_size=16)
    assert data.image_shape == (16, 16, 1)
    assert len(data.train) + len(data.dev) + len(data.test) == 1797
    assert 0.0 <= data.train.images.min() and data.train.images.max() <= 1.0
    # pixel repetition: 2x2 blocks are constant
    x = data.train.images[0, :, :, 0]
    np.testing.assert_array_equal(x[::2, ::2], x[1::2, 1::2])
    assert set(np.unique(data.test.labels)) == set(range(10))


def test_iterate_image_batches_drops_partial():
    split = images.ImageSplit(
        np.zeros((10, 8, 8, 1), np.float32), np.arange(10, dtype=np.int32)
    )
    batches = list(images.iterate_image_batches(split, 4, np.random.default_rng(0)))
    assert len(batches) == 2 and all(b[0].shape == (4, 8, 8, 1) for b in batches)
    seen = np.concatenate([b[1] for b in batches])
    assert len(set(seen.tolist())) == 8


def test_digits_noise_is_fixed_per_image_and_keeps_the_split():
    pytest.importorskip("sklearn")
    clean = images.load_digits(image_size=8)
    noisy = images.load_digits(image_size=8, noise=0.3)
    again = images.load_digits(image_size=8, noise=0.3)
    np.testing.assert_array_equal(noisy.test.labels, clean.test.labels)
    np.testing.assert_array_equal(noisy.test.images, again.test.images)
    x, x0 = noisy.train.images, clean.train.images
    assert 0.0 <= x.min() and x.max() <= 1.0 and x.dtype == np.float32
    # where the noisy grey is strictly inside (0, 1) nothing was clipped, so the
    # difference is pure noise (cut at the grey range's edges: spread a bit < sigma)
    delta = (x - x0)[(x > 0) & (x < 1)]
    assert 0.25 < float(np.std(delta)) < 0.33
    assert noisy.settings["noise"] == 0.3 and "noise sigma 0.3" in noisy.notice
    with pytest.raises(ValueError, match="noise must be >= 0"):
        images.load_digits(noise=-0.1)
