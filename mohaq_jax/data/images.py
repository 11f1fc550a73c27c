"""Image classification data for the VGG experiment of switching-aware retraining.

* ``"cifar10"``: CIFAR-10 (Krizhevsky, 2009) from its standard python-pickle batches
  (``data_batch_1`` .. ``data_batch_5``, ``test_batch`` in ``cifar-10-batches-py``),
  which the user downloads; the last ``n_dev`` training images form the dev split.
* ``"digits"`` (default, works on a fresh machine): the 1 797 real handwritten 8x8
  digit images shipped with scikit-learn (``sklearn.datasets.load_digits``, UCI
  optical recognition of handwritten digits), grey values 0..16 scaled to [0, 1] and
  upsampled by pixel repetition to ``image_size`` (16 by default) for a VGG with three
  poolings. Split 60/20/20 into train/dev/test with a fixed seed, per class.
  ``noise > 0`` makes the task harder: every image gets its own fixed Gaussian
  pixel noise of that standard deviation (drawn once from the split seed, after the
  upsampling, clipped back to [0, 1]), so dev and test stay one fixed set of images.

Images are float32 ``(N, H, W, C)`` in [0, 1]; labels int32.
"""

from __future__ import annotations

import dataclasses
import os
import pathlib
import pickle
from typing import Any

import numpy as np

CIFAR10_CLASSES = (
    "airplane",
    "automobile",
    "bird",
    "cat",
    "deer",
    "dog",
    "frog",
    "horse",
    "ship",
    "truck",
)


@dataclasses.dataclass
class ImageSplit:
    images: np.ndarray  # shape=(N, H, W, C), float32 in [0, 1]
    labels: np.ndarray  # shape=(N,), int32

    def __post_init__(self):
        if self.images.ndim != 4 or self.labels.shape != (self.images.shape[0],):
            raise ValueError(
                f"images {self.images.shape} vs labels {self.labels.shape}"
            )

    def __len__(self) -> int:
        return int(self.labels.shape[0])


@dataclasses.dataclass
class ImageDataset:
    name: str
    train: ImageSplit
    dev: ImageSplit
    test: ImageSplit
    classes: tuple[str, ...]
    notice: str  # a sentence for reports
    settings: dict[str, Any]  # JSON-able record of what built it

    @property
    def n_classes(self) -> int:
        return len(self.classes)

    @property
    def image_shape(self) -> tuple[int, int, int]:
        return tuple(self.train.images.shape[1:])


class CifarError(FileNotFoundError):
    """The CIFAR-10 python batches are not where they were said to be."""


def read_cifar_batch(path: str | os.PathLike) -> tuple[np.ndarray, np.ndarray]:
    """One CIFAR-10 python-pickle batch.

    The file is a pickled dict with ``b"data"`` (uint8 ``(N, 3072)``: the 1024 red,
    then green, then blue values of a 32x32 image, row-major) and ``b"labels"``.

    Returns:
      ``(images uint8 (N, 32, 32, 3), labels int32 (N,))``.
    """
    with open(path, "rb") as f:
        batch = pickle.load(f, encoding="bytes")
    data = np.asarray(batch[b"data"], np.uint8)
    labels = np.asarray(batch[b"labels"], np.int32)
    if data.ndim != 2 or data.shape[1] != 3072 or labels.shape != (data.shape[0],):
        raise ValueError(f"{path}: not a CIFAR-10 batch (data {data.shape})")
    images = data.reshape(-1, 3, 32, 32).transpose(0, 2, 3, 1)
    return images, labels


def _cifar_root(cifar_dir) -> pathlib.Path:
    root = pathlib.Path(cifar_dir)
    for cand in (root, root / "cifar-10-batches-py"):
        if (cand / "test_batch").exists():
            return cand
    raise CifarError(
        f"no CIFAR-10 python batches (data_batch_1..5, test_batch) in {root} or "
        f"{root / 'cifar-10-batches-py'}; download cifar-10-python.tar.gz from "
        "https://www.cs.toronto.edu/~kriz/cifar.html and extract it there"
    )


def load_cifar10(
    cifar_dir, n_dev: int = 5000, max_train: int | None = None
) -> ImageDataset:
    """CIFAR-10 from its python batches.

    Args:
      cifar_dir: folder with the batches (or its parent holding
        ``cifar-10-batches-py``).
      n_dev: last training images kept apart as the dev split.
      max_train: keep only the first this many training images (quick runs).

    Returns:
      The :class:`ImageDataset` (32x32x3).
    """
    root = _cifar_root(cifar_dir)
    names = sorted(p.name for p in root.glob("data_batch_*"))
    if not names:
        raise CifarError(f"no data_batch_* files in {root}")
    parts = [read_cifar_batch(root / n) for n in names]
    images = np.concatenate([p[0] for p in parts])
    labels = np.concatenate([p[1] for p in parts])
    test_images, test_labels = read_cifar_batch(root / "test_batch")
    n_dev = min(n_dev, len(labels) // 2)
    train_x, train_y = images[: len(labels) - n_dev], labels[: len(labels) - n_dev]
    if max_train is not None:
        train_x, train_y = train_x[:max_train], train_y[:max_train]

    def split(x, y):
        return ImageSplit(x.astype(np.float32) / 255.0, y.astype(np.int32))

    return ImageDataset(
        name="cifar10",
        train=split(train_x, train_y),
        dev=split(images[len(labels) - n_dev :], labels[len(labels) - n_dev :]),
        test=split(test_images, test_labels),
        classes=CIFAR10_CLASSES,
        notice="CIFAR-10 (Krizhevsky, 2009), as in Kim et al. 2021.",
        settings={
            "dataset": "cifar10",
            "dir": str(root),
            "n_dev": n_dev,
            "max_train": max_train,
            "batches": names,
        },
    )


def load_digits(
    image_size: int = 16, seed: int = 0, noise: float = 0.0
) -> ImageDataset:
    """scikit-learn's 8x8 handwritten digits, upsampled to ``image_size``.

    Args:
      image_size: a multiple of 8; each pixel is repeated ``image_size // 8`` times
        along both axes.
      seed: the per-class 60/20/20 split (and the noise draws).
      noise: standard deviation of the Gaussian pixel noise added to every image
        (grey values in [0, 1]; clipped back to [0, 1]); 0 = clean.

    Returns:
      The :class:`ImageDataset` ``(image_size, image_size, 1)``.
    """
    try:
        from sklearn.datasets import load_digits as sk_load_digits
    except ImportError as err:  # pragma: no cover - depends on the environment
        raise ImportError(
            "the default image set needs scikit-learn (pip install scikit-learn); "
            "or pass a CIFAR-10 folder"
        ) from err
    if image_size % 8 or image_size < 8:
        raise ValueError("image_size must be a positive multiple of 8")
    if not noise >= 0.0:
        raise ValueError(f"noise must be >= 0, got {noise}")
    bunch = sk_load_digits()
    images = np.asarray(bunch.images, np.float32) / 16.0  # (1797, 8, 8), 0..16
    factor = image_size // 8
    images = np.repeat(np.repeat(images, factor, axis=1), factor, axis=2)[..., None]
    labels = np.asarray(bunch.target, np.int32)
    if noise > 0.0:
        # its own stream (not the split's), so the split does not depend on noise
        noise_rng = np.random.default_rng((seed, 1))
        pixel_noise = noise_rng.normal(0.0, noise, images.shape).astype(np.float32)
        images = np.clip(images + pixel_noise, 0.0, 1.0)
    rng = np.random.default_rng(seed)
    parts = {"train": [], "dev": [], "test": []}
    for c in range(10):
        idx = rng.permutation(np.flatnonzero(labels == c))
        n_train, n_dev = int(round(0.6 * len(idx))), int(round(0.2 * len(idx)))
        parts["train"].append(idx[:n_train])
        parts["dev"].append(idx[n_train : n_train + n_dev])
        parts["test"].append(idx[n_train + n_dev :])
    splits = {k: np.sort(np.concatenate(v)) for k, v in parts.items()}
    return ImageDataset(
        name="digits",
        train=ImageSplit(images[splits["train"]], labels[splits["train"]]),
        dev=ImageSplit(images[splits["dev"]], labels[splits["dev"]]),
        test=ImageSplit(images[splits["test"]], labels[splits["test"]]),
        classes=tuple(str(c) for c in range(10)),
        notice=(
            "scikit-learn's 8x8 handwritten digits (UCI), upsampled to "
            f"{image_size}x{image_size}"
            + (f", Gaussian pixel noise sigma {noise:g}" if noise else "")
            + ": a small real image set, NOT CIFAR-10; "
            "accuracies are not comparable to the paper's CIFAR-10 results."
        ),
        settings={
            "dataset": "digits",
            "image_size": image_size,
            "seed": seed,
            "noise": noise,
        },
    )


IMAGE_DATASETS = {"digits": load_digits, "cifar10": load_cifar10}


def load_images(name: str, **kwargs) -> ImageDataset:
    """Loads an image data set by registry name."""
    if name not in IMAGE_DATASETS:
        raise ValueError(
            f"unknown image data set {name!r}; one of {sorted(IMAGE_DATASETS)}"
        )
    return IMAGE_DATASETS[name](**kwargs)


def iterate_image_batches(split: ImageSplit, batch_size: int, rng: np.random.Generator):
    """Shuffled full batches ``(images, labels)``; the last partial batch is dropped
    so every step has one shape."""
    order = rng.permutation(len(split))
    for start in range(0, len(order) - batch_size + 1, batch_size):
        idx = order[start : start + batch_size]
        yield split.images[idx], split.labels[idx]
