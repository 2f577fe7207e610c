"""Data for training: seeded loaders that skip unreadable images, and label checks before any step."""

from __future__ import annotations

import logging

from edgecnn.card import logits
from edgecnn.errors import BadArgumentError

log = logging.getLogger(__name__)


class _Readable:
    """A dataset whose undecodable images come out as None (logged once each) instead of raising:
    one zero-byte PNG must not end a training run; the batch goes on without it."""

    def __init__(self, dataset):
        self.dataset, self.warned = dataset, set()

    def __len__(self) -> int:
        return len(self.dataset)

    def __getitem__(self, index: int):
        try:
            return self.dataset[index]
        except OSError as e:  # PIL raises OSError subclasses for truncated/corrupt files
            if index not in self.warned:
                self.warned.add(index)
                log.warning("skipping unreadable image #%d of %s: %s", index, self.dataset.source, e)
            return None


def _collate(items):
    """The default collation of the readable items; None when none of the batch was readable."""
    from torch.utils.data import default_collate

    items = [item for item in items if item is not None]
    return default_collate(items) if items else None


def make_loader(
    dataset, batch_size: int, *, shuffle: bool, seed: int, dist=None, workers: int = 0, pin=False
):
    """A seeded DataLoader (a DistributedSampler under torchrun); shuffled loaders drop the last batch.
    Unreadable images are skipped; a batch with none readable comes out as None. workers decode in
    parallel processes; pin: page-locked batches, so copies to a GPU overlap compute."""
    import torch
    from torch.utils.data import DataLoader, DistributedSampler

    sampler = DistributedSampler(dataset, shuffle=shuffle, seed=seed) if dist else None
    gen = torch.Generator().manual_seed(seed)
    return DataLoader(
        _Readable(dataset),
        batch_size=batch_size,
        shuffle=shuffle and sampler is None,
        sampler=sampler,
        generator=gen,
        drop_last=shuffle,
        collate_fn=_collate,
        num_workers=workers,
        pin_memory=pin,
        persistent_workers=workers > 0,
    )


def check_labels(model, datasets) -> None:
    """Every label of the data is one of the model's outputs, checked before any training (a label
    file with 999 for a 3-class model would otherwise stop training at its first batch)."""
    datasets = [d for d in datasets if d is not None and len(d)]
    if not datasets:
        return
    device = next(model.parameters()).device  # wherever the caller put it: training moves it later
    outputs = num_classes(model, datasets[0], device)
    for dataset in datasets:
        labels = dataset.label_values()
        if labels is None or not len(labels):
            continue
        if int(labels.min()) < 0:
            raise BadArgumentError(
                f"{dataset.source} has unlabelled images; training needs class subfolders or a labels file"
            )
        if int(labels.max()) >= outputs:
            raise BadArgumentError(
                f"{dataset.source} has label {int(labels.max())} but the model has {outputs} outputs "
                f"(labels 0..{outputs - 1}); check the labels file or --num-classes"
            )


def first_readable(dataset):
    for i in range(len(dataset)):
        try:
            return dataset[i]
        except OSError:
            continue
    dataset.require_readable("training")  # raises: none can be read


def num_classes(model, dataset, device) -> int:
    import torch

    x, _ = first_readable(dataset)
    was = model.training
    model.eval()
    with torch.no_grad():
        out = model(torch.as_tensor(x)[None].to(device))
    model.train(was)
    return logits(out).shape[1]
