"""Train a zoo model on a dataset, and cache reference models.

These are the calls behind `edgecnn train` and the pipeline (distillation: `distillation.py`); the
CLI only draws progress bars around them.
"""

from __future__ import annotations

import contextlib
import hashlib
import logging
import math
from pathlib import Path

from edgecnn.data.splits import Splits, load_splits  # noqa: F401  (the train API's own)
from edgecnn.train.evaluate import evaluate_top1
from edgecnn.train.loop import fit
from edgecnn.train.options import TrainOptions, train_options

log = logging.getLogger(__name__)


def train_model(
    name: str,
    data,
    options: TrainOptions,
    *,
    input_size=None,
    weights=None,
    val_fraction: float = 0.1,
    labels_file=None,
    test_data=None,
    test_fraction: float = 0.2,
    model_kwargs: dict | None = None,
    on_step=None,
    on_epoch=None,
):
    """Build `name` with as many classes as the data has, train it, report top-1 on the test images
    (never the validation images that chose the epoch).

    data: a --data value (split with `test_data` / `test_fraction` / `val_fraction`) or a SplitSpec.
    Returns (Model, TrainResult, test_top1); the Model's recipe is the model file's header
    (classes, input size, mean/std, the split, the builder's `model_kwargs`), which `save_model` writes."""
    from edgecnn.data import Preprocess
    from edgecnn.data.splits import SplitSpec, record, resolve
    from edgecnn.transforms.model_file import card_of, model_recipe
    from edgecnn.zoo import card_for

    kwargs = dict(model_kwargs or {})
    chans = {"in_chans": kwargs.pop("in_chans")} if "in_chans" in kwargs else {}  # the card's, too
    card = card_for(name, **chans)
    size = card.check_input_size(input_size)
    preprocess = Preprocess.for_model(card, input_size=size)
    if not isinstance(data, SplitSpec):
        split_args = dict(test_data=test_data, test_fraction=test_fraction, val_fraction=val_fraction)
        data = resolve(data, **split_args, seed=options.seed, labels_file=labels_file)
    splits = load_splits(data, preprocess)
    loaded, options = _built(name, weights, len(splits.classes), options, {**kwargs, **chans})
    result = fit(loaded.module, splits.train, splits.val, options, on_step=on_step, on_epoch=on_epoch)
    test_top1 = evaluate_top1(loaded.module, splits.test, device=options.device)
    loaded.module.cpu()  # trained anywhere, handed back where everything else (export, files) works
    log.info("test top-1 %.2f%% on %s", test_top1, splits.test_set)
    warn_if_untrained(test_top1, len(splits.classes), result, options, fine_tuning=weights is not None)
    trained = {
        "epochs": len(result.history),
        "best_epoch": result.best_epoch,
        "test_top1": test_top1,
        "test_set": splits.test_set,
        "weights": loaded.weights.source if weights is None else str(weights),
    }
    stats = dict(mean=list(preprocess.mean), std=list(preprocess.std))
    loaded.recipe = model_recipe(
        loaded, size, class_names=list(splits.classes), **stats, data=record(splits), trained=trained
    )
    loaded.card = card_of(loaded.recipe)  # trained: its classes, size and preprocessing
    return loaded, result, test_top1


CHANCE_MARGIN = 10.0  # points above chance within which a trained model has learnt nothing to speak of


def warn_if_untrained(test_top1: float, classes: int, result, options: TrainOptions, *, fine_tuning: bool):
    """A warning naming the likely cause and the fix when training ends within CHANCE_MARGIN points of
    chance, or its last epoch's loss above ln(classes) (what guessing costs): a saved model at chance
    is otherwise silent. Returns the warning, or None."""
    chance = 100.0 / classes
    last = result.history[-1].train_loss if result.history else None
    stuck = last is not None and math.isfinite(last) and last > math.log(classes)
    if test_top1 > chance + CHANCE_MARGIN and not stuck:
        return None
    fix = (
        f"at --lr {options.lr:g} fine-tuning can wipe out what was pretrained: try --lr {options.lr / 10:g}"
        if fine_tuning
        else f"try a lower --lr than {options.lr:g} (e.g. {options.lr / 10:g}) or more --epochs"
    )
    message = (
        f"test top-1 {test_top1:.2f}% is near chance ({chance:.2f}% for {classes} classes)"
        + (
            f" and the last epoch's loss {last:.3f} is above ln({classes}) = {math.log(classes):.3f}"
            if stuck
            else ""
        )
        + f": the model learnt little; {fix}"
    )
    log.warning("%s", message)
    return message


def _built(name: str, weights, classes: int, options: TrainOptions, kwargs: dict):
    """The zoo model with `classes` outputs, in train mode, seeded; weights of another class count
    (ImageNet's 1000) are fine-tuned with a fresh head, named in the options when it trains apart."""
    import dataclasses

    import torch

    from edgecnn.zoo import load_model
    from edgecnn.zoo.weights import classifier_heads

    torch.manual_seed(options.seed)
    reset = weights is not None
    loaded = load_model(
        name, weights=weights, num_classes=classes, reset_head=reset, for_training=True, **kwargs
    )
    fine_tune = weights is not None and (options.freeze_epochs or options.backbone_lr_scale != 1)
    head = tuple(classifier_heads(loaded.module, loaded.num_classes)) if fine_tune else ()
    loaded.module.train()
    return loaded, dataclasses.replace(options, head=head)


def save_model(loaded, path: Path, *, force: bool) -> Path:
    """A trained model as a model file: its tensors and the recipe header that describes it."""
    from edgecnn.transforms import save_with_recipe

    return save_with_recipe(loaded.module, loaded.recipe, path, force=force)


def save_weights(model, path: Path, *, force: bool) -> Path:
    """Plain weights (a state dict, no header): what other tools exchange, loaded with --weights."""
    from safetensors.torch import save_file

    from edgecnn.artifacts import atomic_output

    state = {k: v.detach().contiguous().clone() for k, v in model.state_dict().items()}
    with atomic_output(path, force=force) as tmp:
        save_file(state, str(tmp))
    return path


def _cached_reference(path: Path, info_path: Path):
    """(Model, info) from the reference cache; None when absent. A cached pair that does not load
    (a corrupt file, an info that is not what this code wrote) is named in a warning, moved aside
    and trained again, never a failure."""
    import json

    from edgecnn.errors import EdgeCNNError
    from edgecnn.transforms import load_model_file

    if not (path.is_file() and info_path.is_file()):
        return None
    try:
        info = json.loads(info_path.read_text())
        if (
            not isinstance(info, dict)
            or not {"weights", "test_top1", "input_size", "test_set"} <= info.keys()
        ):
            raise ValueError("not a reference record")
        return load_model_file(path), info
    except (OSError, UnicodeDecodeError, ValueError, EdgeCNNError) as e:
        for p in (path, info_path):
            with contextlib.suppress(OSError):
                p.replace(p.with_name(p.name + ".bad"))
        log.warning("cached reference %s is unreadable (%s): moved aside (.bad); training it again", path, e)
        return None


def reference_model(
    name: str,
    data: str = "digits",
    *,
    input_size=None,
    epochs: int = 3,
    batch_size: int = 64,
    device: str = "cpu",
    seed: int = 0,
    lr: float = 0.05,
    on_step=None,
    on_epoch=None,
):
    """A model trained on `data`, cached under the user cache dir and rebuilt on demand.

    Returns (Model, info dict with test top-1 and where the weights live)."""
    import json

    from edgecnn.artifacts import cache_dir
    from edgecnn.transforms import load_model_file
    from edgecnn.zoo import card_for

    size = tuple(input_size or card_for(name).input_size)
    # v2: a folder's test images are held out from validation too (model files record the split)
    where = Path(data).resolve() if data != "digits" else data
    key = f"v2|{name}|{where}|{size}|{epochs}|{seed}|{lr}|{batch_size}"
    tag = hashlib.sha1(key.encode()).hexdigest()[:10]
    path = cache_dir() / "reference" / f"{name}-{Path(str(data)).name}-{size[0]}x{size[1]}-{tag}.safetensors"
    info_path = path.with_suffix(".json")
    cached = _cached_reference(path, info_path)
    if cached is not None:
        log.info("reference %s from cache %s", name, path)
        return cached
    opts = train_options("train", epochs=epochs, batch_size=batch_size, seed=seed, lr=lr, device=device)
    loaded, result, test_top1 = train_model(
        name, data, opts, input_size=size, on_step=on_step, on_epoch=on_epoch
    )
    path.parent.mkdir(parents=True, exist_ok=True)
    save_model(loaded, path, force=True)
    info = {
        "weights": str(path),
        "num_classes": loaded.num_classes,
        "test_top1": test_top1,
        "input_size": list(size),
        "data": str(data),
        "test_set": loaded.recipe["trained"]["test_set"],
        "history": result.to_dict()["history"],
    }
    from edgecnn.artifacts import atomic_output

    with atomic_output(info_path, force=True) as tmp:
        tmp.write_text(json.dumps(info, indent=2))
    return load_model_file(path), info
