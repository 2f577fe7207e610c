"""Datasets and preprocessing: image folders, the bundled real digits, per-model presets."""

from __future__ import annotations

from edgecnn.data.folder import DataError, ImageFolder
from edgecnn.data.preprocess import Preprocess

DIGITS = "digits"

__all__ = ["DIGITS", "DataError", "ImageFolder", "Preprocess", "open_dataset"]


def open_dataset(
    source: str, preprocess: Preprocess, *, split: str = "test", labels_file=None, min_classes=0
):
    """'digits' (the bundled MNIST images, `split` train/test/all) or an image folder path."""
    if str(source) == DIGITS:
        from edgecnn.data.digits import Digits

        return Digits(split, preprocess)
    return ImageFolder(source, preprocess, labels_file=labels_file, min_classes=min_classes)
