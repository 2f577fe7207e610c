"""Top-1 / top-5 through a runner over a dataset, with the count of images actually used."""

from __future__ import annotations

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


def evaluate(runner, dataset, *, batch: int, limit: int | None = None) -> Accuracy:
    """Static-batch artifacts get the last partial batch zero-padded; padded rows are ignored."""
    correct1 = correct5 = total = 0
    for x, y in dataset.batches(batch, limit=limit):
        n = len(x)
        if n < batch and runner.batch not in (None, n):
            x = np.concatenate([x, np.zeros((batch - n, *x.shape[1:]), x.dtype)])
        logits = runner.run(x)[:n].reshape(n, -1)
        k = min(5, logits.shape[1])
        top = np.argsort(-logits, axis=1, kind="stable")[:, :k]
        correct1 += int((top[:, 0] == y).sum())
        correct5 += int((top == y[:, None]).any(1).sum())
        total += n
    if total == 0:
        from edgecnn.data import DataError

        raise DataError(f"{dataset.source}: no readable images to evaluate")
    top5 = 100 * correct5 / total if logits.shape[1] > 5 else None
    return Accuracy(100 * correct1 / total, top5, total, dataset.skipped, dataset.source)
