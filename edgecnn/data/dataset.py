"""What every image source shares: preprocessing on access, and batching that skips bad images."""

from __future__ import annotations

import logging
from collections.abc import Iterator

import numpy as np

log = logging.getLogger(__name__)


class ImageDataset:
    """Map-style dataset of (CHW float32 array, label); also usable as a torch DataLoader source.

    Subclasses implement `load(i) -> (PIL image, label)`; `label` is -1 for unlabelled images.
    """

    classes: tuple[str, ...] = ()
    source: str = ""
    preprocess = None
    skipped: int = 0  # images that could not be decoded while iterating

    def __len__(self) -> int:
        raise NotImplementedError

    def load(self, index: int):
        raise NotImplementedError

    def __getitem__(self, index: int) -> tuple[np.ndarray, int]:
        image, label = self.load(index)
        return self.preprocess(image), label

    def label_values(self) -> np.ndarray | None:
        """Every image's label, read without decoding images (None where the source cannot say)."""
        return None

    def name_of(self, index: int) -> str:
        """How an error names image `index` (its file name where it has one)."""
        return f"#{index}"

    def require_readable(self, what: str) -> None:
        """A one-line error before any work when not one image of the set can be decoded, naming two
        (stops at the first good one, so a healthy set costs one decode)."""
        from edgecnn.data.folder import DataError

        for i in range(len(self)):
            try:
                self.load(i)
                return
            except OSError:
                continue
        raise DataError(f"none of the {len(self)} {what} images from {self.source} can be read{self._e_g()}")

    def readable(self, what: str, *, at_least: int = 1) -> list[int]:
        """The indices of the images that decode (each one decoded once); fewer than `at_least` is a
        one-line error that says how many could be read and names two that could not."""
        from edgecnn.data.folder import DataError

        good, bad = [], []
        for i in range(len(self)):
            try:
                self.load(i)
                good.append(i)
            except OSError:
                bad.append(i)
        if len(good) < at_least:
            some = "none" if not good else f"only {len(good)}"
            need = "" if at_least <= 1 else f"; at least {at_least} are needed"
            raise DataError(
                f"{some} of the {len(self)} {what} images from {self.source} can be read"
                f"{self._e_g(bad)}{need}"
            )
        return good

    def _e_g(self, bad: list[int] | None = None) -> str:
        bad = list(range(min(2, len(self)))) if bad is None else bad[:2]
        return f" (e.g. {', '.join(self.name_of(i) for i in bad)})" if bad else ""

    def batches(
        self, batch_size: int, *, limit: int | None = None, drop_last: bool = False
    ) -> Iterator[tuple[np.ndarray, np.ndarray]]:
        """Yield (N,C,H,W) arrays and labels in order; undecodable images are skipped and counted."""
        xs, ys = [], []
        count = 0
        for i in range(len(self)):
            if limit is not None and count >= limit:
                break
            try:
                x, y = self[i]
            except OSError as e:  # PIL raises OSError subclasses for truncated/corrupt files
                self.skipped += 1
                log.warning("skipping unreadable image #%d of %s: %s", i, self.source, e)
                continue
            xs.append(x)
            ys.append(y)
            count += 1
            if len(xs) == batch_size:
                yield np.stack(xs), np.asarray(ys, dtype=np.int64)
                xs, ys = [], []
        if xs and not drop_last:
            yield np.stack(xs), np.asarray(ys, dtype=np.int64)


class Subset(ImageDataset):
    """A fixed selection of another dataset's images (calibration vs held-out check images)."""

    def __init__(self, base: ImageDataset, indices, label: str):
        self.base, self.indices = base, list(indices)
        self.classes, self.preprocess = base.classes, base.preprocess
        self.source = f"{base.source}:{label}"
        self.skipped = 0

    def __len__(self) -> int:
        return len(self.indices)

    def load(self, index: int):
        return self.base.load(self.indices[index])

    def name_of(self, index: int) -> str:
        return self.base.name_of(self.indices[index])

    def label_values(self) -> np.ndarray | None:
        values = self.base.label_values()
        return None if values is None else np.asarray(values)[self.indices]


def split_dataset(dataset: ImageDataset, val_fraction: float, seed: int = 0) -> tuple[Subset, Subset]:
    """A fixed, seeded train/validation split (for early stopping without touching the test split)."""
    if not 0 < val_fraction < 1:
        from edgecnn.errors import BadArgumentError

        raise BadArgumentError(f"--val-fraction must be between 0 and 1, got {val_fraction}")
    order = np.random.default_rng(seed).permutation(len(dataset))
    n_val = max(1, round(len(dataset) * val_fraction))
    return Subset(dataset, order[n_val:], "train"), Subset(dataset, order[:n_val], "val")
