"""Top-1 / top-5 through a runner over a dataset, with the count of images actually used."""

from __future__ import annotations

import numpy as np

from edgecnn.data.scoring import Accuracy, accuracy

__all__ = ["Accuracy", "evaluate"]


def evaluate(runner, dataset, *, batch: int, limit: int | None = None) -> Accuracy:
    """Static-batch artifacts get the last partial batch zero-padded; padded rows are ignored."""

    def predict(x: np.ndarray) -> np.ndarray:
        n = len(x)
        if n < batch and runner.batch not in (None, n):
            x = np.concatenate([x, np.zeros((batch - n, *x.shape[1:]), x.dtype)])
        return runner.run(x)[:n]

    return accuracy(predict, dataset, batch=batch, limit=limit)
