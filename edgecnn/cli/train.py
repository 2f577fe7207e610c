"""`edgecnn train` and `edgecnn distill`: progress bars around edgecnn.train."""

from __future__ import annotations

import json
from contextlib import contextmanager
from pathlib import Path
from typing import Annotated

import typer

from edgecnn.artifacts import check_writable
from edgecnn.cli import _options as o
from edgecnn.cli._common import console, handle_errors, parse_kv
from edgecnn.cli._progress import reporting
from edgecnn.train.options import USES

Data = Annotated[str, typer.Option(help="An image folder (class subfolders) or 'digits' (bundled MNIST).")]
Epochs = Annotated[int, typer.Option(help="Epochs.")]
BatchSize = Annotated[
    int | None, typer.Option(help="Batch size; default 64, 16 when fine-tuning --weights (more steps).")
]
Lr = Annotated[
    float | None,
    typer.Option(
        help=f"Peak learning rate (one-cycle schedule); default {USES['train']['lr']:g}, "
        f"{USES['finetune']['lr']:g} when fine-tuning --weights."
    ),
]
Optimizer = Annotated[str, typer.Option(help="sgd or adam.")]
ValFraction = Annotated[float, typer.Option(help="Share of the training images held out for early stopping.")]
Patience = Annotated[int | None, typer.Option(help="Stop after this many epochs without a better val top-1.")]
Resume = Annotated[
    bool,
    typer.Option("--resume", help="Continue from the checkpoint an interrupted run left beside the output."),
]
Seed = Annotated[int, typer.Option(help="Random seed (data order, init).")]
Device = Annotated[str, typer.Option(help="auto (CUDA when there is a GPU), cpu or cuda.")]
Amp = Annotated[bool, typer.Option("--amp", help="CUDA mixed precision (bf16 autocast, else fp16).")]
Workers = Annotated[int, typer.Option(help="DataLoader processes decoding images (0: none).")]
TestData = Annotated[
    str | None,
    typer.Option(
        help="A folder of test images with the same class subfolders (default: DATA/test if DATA "
        "has train/ and test/, else a seeded share of DATA)."
    ),
]
TestFraction = Annotated[
    float, typer.Option(help="Share of a folder held out as test images when it has no test folder.")
]


@contextmanager
def progress_bars(title: str):
    """(on_step, on_epoch) callbacks: a bar and one line per epoch on stderr, so stdout stays clean
    for --json (plain lines off a terminal)."""
    with reporting(title) as rep:
        yield rep.on_step, rep.on_epoch


Model = Annotated[
    str, typer.Argument(metavar="MODEL", help="Zoo name (`edgecnn zoo`), timm:NAME or file.py:function.")
]
FreezeEpochs = Annotated[
    int, typer.Option(help="With --weights: epochs that train the new head alone, backbone frozen.")
]
BackboneLrScale = Annotated[
    float, typer.Option(help="With --weights: the pretrained layers' learning rate as a share of --lr.")
]
Labels = Annotated[Path | None, typer.Option(help="Labels file for a flat image folder.")]
Output = Annotated[
    Path | None, typer.Option("-o", "--output", help="Default export/<model>/<model>.trained.safetensors")
]


@handle_errors
def train(
    model: Model,
    data: Data = "digits",
    epochs: Epochs = 3,
    batch_size: BatchSize = None,
    lr: Lr = None,
    optimizer: Optimizer = "sgd",
    val_fraction: ValFraction = 0.1,
    test_data: TestData = None,
    test_fraction: TestFraction = 0.2,
    patience: Patience = None,
    input_size: o.InputSize = None,
    weights: o.Weights = None,
    freeze_epochs: FreezeEpochs = 0,
    backbone_lr_scale: BackboneLrScale = 1.0,
    labels: Labels = None,
    output: Output = None,
    resume: Resume = False,
    seed: Seed = 0,
    device: Device = "auto",
    amp: Amp = False,
    workers: Workers = 0,
    model_arg: o.ModelArg = None,
    force: o.Force = False,
    trust_code: o.TrustCode = False,
    as_json: o.AsJson = False,
) -> None:
    """Train a zoo model on your images, or fine-tune pretrained --weights to your classes.

    Writes one model file (classes, input size, mean/std and the test split in its header) that every
    other command takes in place of the model name."""
    from edgecnn.train.api import save_model, train_model

    out, opts, split = _train_options(locals())
    with progress_bars(f"training {model}") as (on_step, on_epoch):
        kw = dict(input_size=input_size, weights=weights, model_kwargs=parse_kv(model_arg))
        loaded, result, test_top1 = train_model(model, split, opts, **kw, on_step=on_step, on_epoch=on_epoch)
    save_model(loaded, out, force=True)
    out.with_suffix(".ckpt").unlink(missing_ok=True)  # saved: an interrupted run's checkpoint is spent
    _print_trained(model, loaded, result, test_top1, out, as_json)


def _train_options(p: dict):
    """(output file, validated TrainOptions, the data split) from the command's parameters, checked
    before any work."""
    from edgecnn.data.splits import resolve
    from edgecnn.errors import BadArgumentError
    from edgecnn.train import train_options
    from edgecnn.zoo.external import short_name

    model = short_name(p["model"])
    out = p["output"] or Path("export") / model / f"{model}.trained.safetensors"
    if out.suffix != ".safetensors":
        raise BadArgumentError(f"trained weights are written as .safetensors, got {out.name}")
    check_writable(out, force=p["force"])
    same = ("epochs", "batch_size", "lr", "optimizer", "patience", "seed", "resume", "freeze_epochs")
    same += ("backbone_lr_scale", "device", "amp", "workers")
    opts = train_options(
        "finetune" if p["weights"] else "train",
        checkpoint=out.with_suffix(".ckpt"),
        # validate() needs to know a head will be trained; train_model names its layers
        head=("(the new head)",) if p["weights"] else (),
        **{k: p[k] for k in same},
    ).validate()
    split_args = dict(
        test_data=p["test_data"], test_fraction=p["test_fraction"], val_fraction=p["val_fraction"]
    )
    labels = str(p["labels"]) if p["labels"] else None
    return out, opts, resolve(p["data"], **split_args, seed=p["seed"], labels_file=labels)


def _print_trained(model: str, loaded, result, test_top1: float, out: Path, as_json: bool) -> None:
    test_set = loaded.recipe["trained"]["test_set"]
    if as_json:
        meta = {
            "model": model,
            "num_classes": loaded.num_classes,
            "class_names": loaded.recipe["class_names"],
        }
        body = {**result.to_dict(), **meta, "test_top1": test_top1, "test_set": test_set, "output": str(out)}
        typer.echo(json.dumps(body, indent=2))
        return
    console.print(
        f"{model}: test top-1 {test_top1:.2f}% on {test_set}\n"
        f"kept {result.kept} (val top-1 {result.best_val_top1:.2f}%"
        f"{', early stop' if result.stopped_early else ''}); saved {out}\n"
        f"use it in place of the model name: edgecnn bench {out}",
        highlight=False,
    )


Teacher = Annotated[
    str,
    typer.Argument(
        metavar="TEACHER", help="Teacher: the model file `train` wrote, or a zoo name with --teacher-weights."
    ),
]
Student = Annotated[
    Path, typer.Argument(metavar="STUDENT", help="Student: a converted .safetensors from `edgecnn convert`.")
]
TeacherWeights = Annotated[
    str | None, typer.Option(help="The teacher's trained weights, for a zoo name teacher.")
]
DistillData = Annotated[
    str | None,
    typer.Option(help="Images to distill on (default: the split the model files record, else digits)."),
]
Temperature = Annotated[float, typer.Option(help="KD temperature T.")]
Alpha = Annotated[float, typer.Option(help="Weight of the KD term (1 - alpha: cross-entropy).")]
FeatureSteps = Annotated[
    int, typer.Option(help="Steps matching each swapped layer's output to the teacher's first.")
]
Init = Annotated[str, typer.Option(help="'weights' (the converter's SVD/Tucker init) or 'random'.")]
DistillOutput = Annotated[
    Path | None, typer.Option("-o", "--output", help="Default: <student>.distilled.safetensors")
]


@handle_errors
def distill(
    teacher: Teacher,
    student: Student,
    teacher_weights: TeacherWeights = None,
    data: DistillData = None,
    epochs: Epochs = 2,
    batch_size: Annotated[int, typer.Option(help="Batch size.")] = 64,
    lr: Lr = USES["distill"]["lr"],
    optimizer: Optimizer = "sgd",
    temperature: Temperature = 4.0,
    alpha: Alpha = 0.9,
    feature_steps: FeatureSteps = 100,
    init: Init = "weights",
    val_fraction: ValFraction = 0.1,
    patience: Patience = None,
    output: DistillOutput = None,
    resume: Resume = False,
    seed: Seed = 0,
    device: Device = "auto",
    amp: Amp = False,
    workers: Workers = 0,
    force: o.Force = False,
    trust_code: o.TrustCode = False,
    as_json: o.AsJson = False,
) -> None:
    """Knowledge distillation from the original model into its converted student.

    Runs on several processes / machines unchanged:
    torchrun --nproc-per-node 2 -m edgecnn distill TEACHER STUDENT
    """
    from edgecnn.train import distill as run_distill
    from edgecnn.train import is_main_process

    out, opts = _distill_options(locals())
    teach, stu = _distill_models(teacher, teacher_weights, student)
    with progress_bars(f"distilling into {student.name}") as (on_step, on_epoch):
        result = run_distill(
            teach, stu, data, opts, output=out, force=force, on_step=on_step, on_epoch=on_epoch
        )
    if not is_main_process():  # under torchrun, rank 0 saves and reports
        return
    out.with_suffix(".ckpt").unlink(missing_ok=True)  # saved: an interrupted run's checkpoint is spent
    if as_json:
        typer.echo(json.dumps(result.to_dict(), indent=2))
        return
    console.print(
        f"teacher {result.teacher_test_top1:.2f}% -> student {result.student_test_top1:.2f}% test top-1 on "
        f"{result.test_set} (student before distillation: {result.training.initial_val_top1:.2f}% val; "
        f"kept {result.training.kept}); saved {out}",
        highlight=False,
    )


def _distill_options(p: dict):
    """(output file, validated DistillOptions) from the command's parameters, checked before work."""
    from edgecnn.train import DistillOptions, train_options

    student = p["student"]
    out = p["output"] or student.with_name(
        student.name.removesuffix(".safetensors") + ".distilled.safetensors"
    )
    same = ("epochs", "batch_size", "lr", "optimizer", "temperature", "alpha", "feature_steps", "patience")
    same += ("seed", "resume", "device", "amp", "workers")
    train = train_options("distill", checkpoint=out.with_suffix(".ckpt"), **{k: p[k] for k in same})
    opts = DistillOptions(train=train, val_fraction=p["val_fraction"], init=p["init"]).validate()
    check_writable(out, force=p["force"])
    return out, opts


def _distill_models(teacher: str, teacher_weights, student: Path):
    """(teacher Model, student Model): a zoo-name teacher needs its trained weights."""
    from edgecnn.errors import BadArgumentError
    from edgecnn.transforms import load_model_file, load_source

    if not teacher.endswith(".safetensors") and teacher_weights is None:
        from edgecnn.zoo.registry import refuse_file

        refuse_file(teacher)  # a file that is no model (an ONNX graph) says so first
        raise BadArgumentError(
            f"a teacher needs trained weights: give the model file `edgecnn train` wrote, or {teacher} "
            "--teacher-weights FILE"
        )
    stu = load_model_file(student)
    if teacher.endswith(".safetensors"):  # its own classes: distill() says if they differ
        return load_source(teacher, teacher_weights), stu
    return load_source(teacher, teacher_weights, num_classes=stu.num_classes, in_chans=stu.in_chans), stu
