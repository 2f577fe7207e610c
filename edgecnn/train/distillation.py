"""`distill`: the one library call behind `edgecnn distill`, the pipeline and Python users.

Teacher -> converted student: the data split once (the same test images score teacher and student),
BatchNorm statistics re-estimated, Hinton KD with feature reconstruction of the swapped layers, the
student saved with the recipe that rebuilds it.
"""

from __future__ import annotations

import logging
from dataclasses import dataclass, field
from pathlib import Path

from edgecnn.errors import UnknownNameError
from edgecnn.train.ddp import is_main_process
from edgecnn.train.evaluate import evaluate_top1
from edgecnn.train.loader import make_loader
from edgecnn.train.loop import TrainResult, fit
from edgecnn.train.options import TrainOptions, train_options

log = logging.getLogger(__name__)

INITS = ("weights", "random")


@dataclass
class DistillOptions:
    train: TrainOptions = field(default_factory=lambda: train_options("distill"))
    val_fraction: float = 0.1  # share of the training images held out for early stopping
    bn_batches: int = 20  # batches that re-estimate BN statistics before any step (0: keep them)
    init: str = "weights"  # "random": the same architecture re-initialised (the baseline to beat)

    def validate(self) -> DistillOptions:
        if self.init not in INITS:
            raise UnknownNameError("init", self.init, INITS)
        self.train.validate()
        return self


@dataclass
class DistillResult:
    model: object  # the distilled student (nn.Module), best validation weights restored
    recipe: dict
    training: TrainResult
    teacher_test_top1: float
    student_test_top1: float
    test_set: str  # which images both were scored on
    path: Path | None = None  # where the student was saved (rank 0 of a distributed run only)

    def to_dict(self) -> dict:
        return {
            **self.training.to_dict(),
            "teacher_test_top1": self.teacher_test_top1,
            "student_test_top1": self.student_test_top1,
            "student_initial_val_top1": self.training.initial_val_top1,
            "test_set": self.test_set,
            "output": str(self.path) if self.path else None,
        }


def distill(
    teacher,
    student,
    data: str | None = None,
    options: DistillOptions | None = None,
    *,
    output: str | Path | None = None,
    force: bool = False,
    splits=None,
    on_step=None,
    on_epoch=None,
) -> DistillResult:
    """Distill `teacher` (a Model or nn.Module) into `student` (a converted model: a Model
    or ConvertResult with a recipe, or the path of a converted .safetensors), trained in place.

    data: an image folder or "digits"; None: the split the student's (or teacher's) model file
    records, so teacher and student are scored on the test images the teacher's training held out
    (the digits when neither records one). output: save the student there (checked before any work).
    splits: train/val/test already made (`data.splits.load_splits`), so a caller that scores the
    teacher itself uses the very same test images.
    """
    from edgecnn.artifacts import check_writable
    from edgecnn.data import Preprocess
    from edgecnn.transforms import card_of, load_model_file, save_with_recipe

    opts = (options or DistillOptions()).validate()
    if output is not None:
        check_writable(output, force=force)
    if isinstance(student, str | Path):
        student = load_model_file(student)
    recipe, student_model, teacher_model = student.recipe, _module(student), _module(teacher)
    preprocess = Preprocess.for_model(card_of(recipe))
    if splits is None:
        splits = _splits(teacher, recipe, data, preprocess, opts)
    _check_classes(teacher, recipe, splits)
    from edgecnn.train.options import resolve_device

    device = opts.train.device = resolve_device(opts.train.device)
    teacher_top1 = evaluate_top1(teacher_model, splits.test, device=device)
    layers = _prepared(student_model, teacher_model, recipe, splits, opts)
    training = fit(
        student_model,
        splits.train,
        splits.val,
        opts.train,
        teacher=teacher_model,
        feature_layers=layers,
        on_step=on_step,
        on_epoch=on_epoch,
    )
    student_top1 = evaluate_top1(student_model, splits.test, device=device)
    student_model.cpu(), teacher_model.cpu()  # trained anywhere, handed back on the CPU
    test_set = f"{len(splits.test)} images from {splits.test.source}"
    scores = {"test_top1": student_top1, "teacher_test_top1": teacher_top1, "test_set": test_set}
    recipe = _distilled_recipe(recipe, teacher, splits, training, scores)
    result = DistillResult(student_model, recipe, training, teacher_top1, student_top1, test_set)
    if output is not None and is_main_process():
        result.path = save_with_recipe(student_model, recipe, output, force=True)
    return result


def _prepared(student_model, teacher_model, recipe: dict, splits, opts: DistillOptions) -> list[str] | None:
    """Ready the student to train (re-initialised if asked, BN re-estimated on the training images);
    returns the swapped layers whose outputs are matched to the teacher's, when feature steps are on."""
    if opts.init == "random":
        reinitialise(student_model, opts.train.seed)
    if opts.bn_batches:
        recalibrate_bn(student_model, splits.train, batches=opts.bn_batches, seed=opts.train.seed)
    student_model.train()
    if not opts.train.feature_steps:
        return None
    teacher_modules = dict(teacher_model.named_modules())
    return [n for n in swapped_layers(recipe) if n in teacher_modules]


def _distilled_recipe(recipe: dict, teacher, splits, training, scores: dict) -> dict:
    """The student's header after distillation: its classes, how it was trained and scored, and the
    split (when one was made here)."""
    from edgecnn.data.splits import record

    trained = {
        "distilled_from": _name(teacher),
        "epochs": len(training.history),
        "best_epoch": training.best_epoch,
        **scores,
    }
    recipe = {**recipe, "class_names": list(splits.classes), "trained": trained}
    if splits.split is not None:
        recipe["data"] = record(splits)
    return recipe


def _module(model):
    """The nn.Module of a Model, a ConvertResult or a module."""
    from edgecnn.card import Model

    return model.module if isinstance(model, Model) else getattr(model, "model", model)


def _splits(teacher, recipe: dict, data, preprocess, opts: DistillOptions):
    """The split recorded in the student's file (convert copies the teacher's), else the teacher's,
    when `data` is not given or names the same images; else `data` split afresh."""
    from edgecnn.data.splits import splits_for

    teacher_recipe = getattr(teacher, "recipe", None)
    return splits_for(
        data, preprocess, recipe, teacher_recipe, val_fraction=opts.val_fraction, seed=opts.train.seed
    )


def _check_classes(teacher, recipe: dict, splits) -> None:
    """Teacher, student and data must agree on the classes: a one-line error before any work (a
    3-class teacher on the 10 digits used to die 48 s in with an IndexError)."""
    from edgecnn.data.splits import check_classes
    from edgecnn.errors import BadArgumentError

    classes = recipe["num_classes"]
    counts = {"teacher": getattr(teacher, "num_classes", None), "student": classes}
    counts = {who: n for who, n in counts.items() if n is not None}
    if len(set(counts.values())) > 1:
        raise BadArgumentError(
            f"the teacher has {counts['teacher']} classes and the student {counts['student']}; distill a "
            "student converted from this teacher"
        )
    if classes != len(splits.classes):
        raise BadArgumentError(
            f"{splits.source} has {len(splits.classes)} classes and the models {classes}; give "
            "--data with the images the teacher was trained on"
        )
    for who, header in (("teacher", getattr(teacher, "recipe", None)), ("student", recipe)):
        check_classes((header or {}).get("class_names"), splits.classes, splits.source, f"the {who}")


def _name(teacher) -> str:
    weights = getattr(teacher, "weights", None)
    card = getattr(teacher, "card", None)
    return (weights.path if weights is not None and weights.path else None) or (card.name if card else "?")


def swapped_layers(recipe: dict) -> list[str]:
    """Names of the layers a converter recipe replaced whose outputs keep their shape (the ones
    feature reconstruction matches): every swapped layer, and of a pruned group the layers that
    only lost input channels (a cut conv's narrower output has no teacher counterpart)."""
    names: list[str] = []
    for step in recipe.get("transforms", []):
        layers = step.get("layers", {})
        if step.get("name") == "prune":
            names += [n for n, dims in layers.items() if "out" not in dims]
        else:
            names += list(layers)
    return names


def reinitialise(model, seed: int = 0) -> None:
    """Fresh random weights for every conv/linear/BN (the 'random init' baseline of the same shape)."""
    import torch

    torch.manual_seed(seed)
    for m in model.modules():
        if hasattr(m, "reset_parameters") and m is not model:
            m.reset_parameters()
        if isinstance(m, torch.nn.modules.batchnorm._BatchNorm):
            m.reset_running_stats()


def recalibrate_bn(model, dataset, *, batches: int = 20, batch_size: int = 64, seed: int = 0) -> int:
    """Re-estimate BatchNorm running statistics on real images (no gradients, no labels).

    A truncated swap shifts every activation distribution a little; stale BN statistics compound
    those shifts layer after layer, which is what sends a freshly swapped model to chance accuracy.
    Returns the number of images used.
    """
    import torch
    from torch.nn.modules.batchnorm import _BatchNorm

    bns = [m for m in model.modules() if isinstance(m, _BatchNorm)]
    if not bns or batches <= 0:
        return 0
    momenta = [m.momentum for m in bns]
    for m in bns:
        m.reset_running_stats()
        m.momentum = None  # cumulative average over the calibration batches
    was_training = model.training
    model.train()
    seen = 0
    with torch.no_grad():
        for i, (x, _) in enumerate(make_loader(dataset, batch_size, shuffle=True, seed=seed)):
            if i >= batches:
                break
            model(x)
            seen += len(x)
    for m, momentum in zip(bns, momenta, strict=True):
        m.momentum = momentum
    model.train(was_training)
    return seen
