"""`edgecnn train` and `edgecnn distill`: progress bars around edgecnn.train."""

from __future__ import annotations

import json
from contextlib import contextmanager
from pathlib import Path
from typing import Annotated

import typer

from edgecnn.artifacts import check_writable
from edgecnn.cli import _options as o
from edgecnn.cli._common import console, handle_errors
from edgecnn.cli._progress import reporting
from edgecnn.train.options import USES

Data = Annotated[str, typer.Option(help="An image folder (class subfolders) or 'digits' (bundled MNIST).")]
Epochs = Annotated[int, typer.Option(help="Epochs.")]
BatchSize = Annotated[int, typer.Option(help="Batch size.")]
Lr = Annotated[float, typer.Option(help="Peak learning rate (one-cycle schedule).")]
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


@handle_errors
def train(
    model: Annotated[str, typer.Argument(help="Zoo model name.")],
    data: Data = "digits",
    epochs: Epochs = 3,
    batch_size: BatchSize = 64,
    lr: Lr = USES["train"]["lr"],
    optimizer: Optimizer = "sgd",
    val_fraction: ValFraction = 0.1,
    test_data: TestData = None,
    test_fraction: TestFraction = 0.2,
    patience: Patience = None,
    input_size: o.InputSize = None,
    weights: o.Weights = None,
    freeze_epochs: Annotated[
        int, typer.Option(help="With --weights: epochs that train the new head alone, backbone frozen.")
    ] = 0,
    backbone_lr_scale: Annotated[
        float, typer.Option(help="With --weights: the pretrained layers' learning rate as a share of --lr.")
    ] = 1.0,
    labels: Annotated[Path | None, typer.Option(help="Labels file for a flat image folder.")] = None,
    output: Annotated[
        Path | None, typer.Option("-o", "--output", help="Default export/<model>/<model>.trained.safetensors")
    ] = None,
    resume: Resume = False,
    seed: Seed = 0,
    device: Device = "auto",
    amp: Amp = False,
    workers: Workers = 0,
    force: o.Force = False,
    as_json: o.AsJson = False,
) -> None:
    """Train a zoo model on your images, or fine-tune pretrained --weights to your classes.

    Writes one model file (classes, input size, mean/std and the test split in its header) that every
    other command takes in place of the model name."""
    from edgecnn.data.splits import resolve
    from edgecnn.errors import BadArgumentError
    from edgecnn.train import TrainOptions
    from edgecnn.train.api import save_model, train_model

    out = output or Path("export") / model / f"{model}.trained.safetensors"
    if out.suffix != ".safetensors":
        raise BadArgumentError(f"trained weights are written as .safetensors, got {out.name}")
    check_writable(out, force=force)
    opts = TrainOptions(
        epochs=epochs,
        batch_size=batch_size,
        lr=lr,
        optimizer=optimizer,
        patience=patience,
        seed=seed,
        checkpoint=out.with_suffix(".ckpt"),
        resume=resume,
        freeze_epochs=freeze_epochs,
        backbone_lr_scale=backbone_lr_scale,
        device=device,
        amp=amp,
        workers=workers,
        # validate() needs to know a head will be trained; train_model names its layers
        head=("(the new head)",) if weights else (),
    ).validate()
    split = resolve(
        data,
        test_data=test_data,
        test_fraction=test_fraction,
        val_fraction=val_fraction,
        seed=seed,
        labels_file=str(labels) if labels else None,
    )
    with progress_bars(f"training {model}") as (on_step, on_epoch):
        loaded, result, test_top1 = train_model(
            model, split, opts, input_size=input_size, weights=weights, on_step=on_step, on_epoch=on_epoch
        )
    save_model(loaded, out, force=True)
    out.with_suffix(".ckpt").unlink(missing_ok=True)  # saved: an interrupted run's checkpoint is spent
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


@handle_errors
def distill(
    teacher: Annotated[
        str,
        typer.Argument(help="Teacher: the model file `train` wrote, or a zoo name with --teacher-weights."),
    ],
    student: Annotated[
        Path, typer.Argument(help="Student: a converted .safetensors from `edgecnn convert`.")
    ],
    teacher_weights: Annotated[
        str | None, typer.Option(help="The teacher's trained weights, for a zoo name teacher.")
    ] = None,
    data: Annotated[
        str | None,
        typer.Option(help="Images to distill on (default: the split the model files record, else digits)."),
    ] = None,
    epochs: Epochs = 2,
    batch_size: BatchSize = 64,
    lr: Lr = USES["distill"]["lr"],
    optimizer: Optimizer = "sgd",
    temperature: Annotated[float, typer.Option(help="KD temperature T.")] = 4.0,
    alpha: Annotated[float, typer.Option(help="Weight of the KD term (1 - alpha: cross-entropy).")] = 0.9,
    feature_steps: Annotated[
        int, typer.Option(help="Steps matching each swapped layer's output to the teacher's first.")
    ] = 100,
    init: Annotated[
        str, typer.Option(help="'weights' (the converter's SVD/Tucker init) or 'random'.")
    ] = "weights",
    val_fraction: ValFraction = 0.1,
    patience: Patience = None,
    output: Annotated[
        Path | None, typer.Option("-o", "--output", help="Default: <student>.distilled.safetensors")
    ] = None,
    resume: Resume = False,
    seed: Seed = 0,
    device: Device = "auto",
    amp: Amp = False,
    workers: Workers = 0,
    force: o.Force = False,
    as_json: o.AsJson = False,
) -> None:
    """Knowledge distillation from the original model into its converted student.

    Runs on several processes / machines unchanged: torchrun --nproc-per-node 2 -m edgecnn distill ...
    """
    from edgecnn.errors import BadArgumentError
    from edgecnn.train import DistillOptions, TrainOptions, is_main_process
    from edgecnn.train import distill as run_distill
    from edgecnn.transforms import load_converted, load_source

    out = output or student.with_name(student.name.removesuffix(".safetensors") + ".distilled.safetensors")
    opts = DistillOptions(
        train=TrainOptions(
            epochs=epochs,
            batch_size=batch_size,
            lr=lr,
            optimizer=optimizer,
            temperature=temperature,
            alpha=alpha,
            feature_steps=feature_steps,
            patience=patience,
            seed=seed,
            checkpoint=out.with_suffix(".ckpt"),
            resume=resume,
            device=device,
            amp=amp,
            workers=workers,
        ),
        val_fraction=val_fraction,
        init=init,
    ).validate()
    check_writable(out, force=force)
    if not teacher.endswith(".safetensors") and teacher_weights is None:
        raise BadArgumentError(
            f"a teacher needs trained weights: give the model file `edgecnn train` wrote, or {teacher} "
            "--teacher-weights FILE"
        )
    stu = load_converted(student)
    if teacher.endswith(".safetensors"):  # its own classes: distill() says if they differ
        teach = load_source(teacher, teacher_weights)
    else:
        teach = load_source(teacher, teacher_weights, num_classes=stu.num_classes, in_chans=stu.in_chans)
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
