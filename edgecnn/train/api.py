"""Train a zoo model on a dataset, and cache reference models.

These are the calls behind `edgecnn train` and the pipeline (distillation: `distillation.py`); the
CLI only draws progress bars around them.
"""

from __future__ import annotations

import hashlib
import logging
import os
from dataclasses import dataclass
from pathlib import Path

from edgecnn.errors import BadArgumentError
from edgecnn.train.loop import TrainOptions, evaluate_top1, fit

log = logging.getLogger(__name__)


@dataclass
class Splits:
    train: object
    val: object
    test: object
    classes: tuple[str, ...]
    source: str


def load_splits(
    data: str, preprocess, *, val_fraction: float = 0.1, seed: int = 0, labels_file=None
) -> Splits:
    """train / val (early stopping) / test. Digits: the fixed 4,000/1,000 split, val carved from train.
    A folder: needs >= 2 classes; val and test are the same held-out part (say so in reports)."""
    from edgecnn.data import DIGITS, open_dataset
    from edgecnn.data.dataset import split_dataset

    if str(data) == DIGITS:
        full = open_dataset(DIGITS, preprocess, split="train")
        train, val = split_dataset(full, val_fraction, seed)
        return Splits(train, val, open_dataset(DIGITS, preprocess, split="test"), full.classes, DIGITS)
    full = open_dataset(data, preprocess, min_classes=2, labels_file=labels_file)
    if not full.classes:
        raise BadArgumentError(f"{data} has no labels: training needs class subfolders or --labels FILE")
    train, val = split_dataset(full, val_fraction, seed)
    return Splits(train, val, val, full.classes, str(data))


def cache_dir() -> Path:
    """$EDGECNN_CACHE, else $XDG_CACHE_HOME/edgecnn, else ~/.cache/edgecnn."""
    if os.environ.get("EDGECNN_CACHE"):
        return Path(os.environ["EDGECNN_CACHE"])
    return Path(os.environ.get("XDG_CACHE_HOME") or Path.home() / ".cache") / "edgecnn"


def train_model(
    name: str,
    data: str,
    options: TrainOptions,
    *,
    input_size=None,
    weights=None,
    val_fraction: float = 0.1,
    labels_file=None,
    on_step=None,
    on_epoch=None,
):
    """Build `name` with as many classes as the data has, train it, report test top-1.

    Returns (LoadedModel, TrainResult, test_top1)."""
    from edgecnn.data import Preprocess
    from edgecnn.zoo import check_input_size, get_spec, load_model

    spec = get_spec(name)
    size = check_input_size(spec, tuple(input_size or spec.input_size))
    preprocess = Preprocess.for_model(spec, input_size=size)
    splits = load_splits(
        data, preprocess, val_fraction=val_fraction, seed=options.seed, labels_file=labels_file
    )
    import torch

    torch.manual_seed(options.seed)
    # Weights of another class count (ImageNet's 1000) are fine-tuned: a fresh head for the data's.
    loaded = load_model(
        name, weights=weights, num_classes=len(splits.classes), reset_head=weights is not None
    )
    loaded.model.train()
    result = fit(loaded.model, splits.train, splits.val, options, on_step=on_step, on_epoch=on_epoch)
    test_top1 = evaluate_top1(loaded.model, splits.test, device=options.device)
    return loaded, result, test_top1


def save_weights(model, path: Path, *, force: bool, meta: dict | None = None) -> Path:
    import json

    from safetensors.torch import save_file

    from edgecnn.artifacts import atomic_output

    state = {k: v.detach().contiguous().clone() for k, v in model.state_dict().items()}
    with atomic_output(path, force=force) as tmp:
        save_file(state, str(tmp), metadata={"edgecnn-train": json.dumps(meta or {})})
    return path


def reference_model(
    name: str,
    data: str = "digits",
    *,
    input_size=None,
    epochs: int = 3,
    seed: int = 0,
    lr: float = 0.05,
    on_step=None,
    on_epoch=None,
):
    """A model trained on `data`, cached under the user cache dir and rebuilt on demand.

    Returns (LoadedModel, info dict with test top-1 and where the weights live)."""
    import json

    from edgecnn.zoo import get_spec, load_model

    spec = get_spec(name)
    size = tuple(input_size or spec.input_size)
    key = f"{name}|{Path(data).resolve() if data != 'digits' else data}|{size}|{epochs}|{seed}|{lr}"
    tag = hashlib.sha1(key.encode()).hexdigest()[:10]
    path = cache_dir() / "reference" / f"{name}-{Path(str(data)).name}-{size[0]}x{size[1]}-{tag}.safetensors"
    info_path = path.with_suffix(".json")
    if path.is_file() and info_path.is_file():
        info = json.loads(info_path.read_text())
        log.info("reference %s from cache %s", name, path)
        return load_model(name, weights=str(path), num_classes=info["num_classes"]), info
    opts = TrainOptions(epochs=epochs, seed=seed, lr=lr)
    loaded, result, test_top1 = train_model(
        name, data, opts, input_size=size, on_step=on_step, on_epoch=on_epoch
    )
    path.parent.mkdir(parents=True, exist_ok=True)
    save_weights(loaded.model, path, force=True)
    info = {
        "weights": str(path),
        "num_classes": loaded.num_classes,
        "test_top1": test_top1,
        "input_size": list(size),
        "data": str(data),
        "history": result.to_dict()["history"],
    }
    from edgecnn.artifacts import atomic_output

    with atomic_output(info_path, force=True) as tmp:
        tmp.write_text(json.dumps(info, indent=2))
    return load_model(name, weights=str(path), num_classes=loaded.num_classes), info
