"""Top-1 / top-5 of any predict function over a dataset: the one accuracy count of the project
(torch models in training, runners in the benchmark)."""

from __future__ import annotations

from collections.abc import Callable
from dataclasses import asdict, dataclass

import numpy as np


@dataclass
class Accuracy:
    top1: float  # percent
    top5: float | None  # None with 5 classes or fewer: it would be 100% whatever the model does
    images: int
    skipped: int
    dataset: str

    def to_dict(self) -> dict:
        return asdict(self)


def accuracy(
    predict: Callable[[np.ndarray], np.ndarray], dataset, *, batch: int, limit: int | None = None
) -> Accuracy:
    """`predict` maps an (N, C, H, W) float32 batch to N rows of logits. Unreadable images are
    skipped and counted; a set with none readable is an error, never a score on zero images."""
    correct1 = correct5 = total = classes = 0
    skipped_before = dataset.skipped
    for x, y in dataset.batches(batch, limit=limit):
        n = len(x)
        out = np.asarray(predict(x))[:n].reshape(n, -1)
        classes = out.shape[1]
        top = np.argsort(-out, axis=1, kind="stable")[:, : min(5, classes)]
        correct1 += int((top[:, 0] == y).sum())
        correct5 += int((top == y[:, None]).any(1).sum())
        total += n
    skipped = dataset.skipped - skipped_before
    if total == 0:
        from edgecnn.data.folder import DataError

        raise DataError(f"none of the {skipped} images from {dataset.source} could be read; nothing to score")
    top5 = 100 * correct5 / total if classes > 5 else None
    return Accuracy(100 * correct1 / total, top5, total, skipped, dataset.source)
