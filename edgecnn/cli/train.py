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
    lr: Lr = 0.05,
    optimizer: Optimizer = "sgd",
    val_fraction: ValFraction = 0.1,
    patience: Patience = None,
    input_size: o.InputSize = None,
    weights: o.Weights = None,
    labels: Annotated[Path | None, typer.Option(help="Labels file for a flat image folder.")] = None,
    output: Annotated[
        Path | None, typer.Option("-o", "--output", help="Default export/<model>/<model>.trained.safetensors")
    ] = None,
    resume: Resume = False,
    seed: Seed = 0,
    force: o.Force = False,
    as_json: o.AsJson = False,
) -> None:
    """Train (or fine-tune) a zoo model; the weights load with `--weights` everywhere else."""
    from edgecnn.errors import BadArgumentError
    from edgecnn.train import TrainOptions
    from edgecnn.train.api import save_weights, train_model

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
    )
    with progress_bars(f"training {model}") as (on_step, on_epoch):
        loaded, result, test_top1 = train_model(
            model,
            data,
            opts,
            input_size=input_size,
            weights=weights,
            val_fraction=val_fraction,
            labels_file=labels,
            on_step=on_step,
            on_epoch=on_epoch,
        )
    meta = {"model": model, "data": data, "num_classes": loaded.num_classes, "test_top1": test_top1}
    save_weights(loaded.model, out, force=True, meta=meta)
    out.with_suffix(".ckpt").unlink(missing_ok=True)  # saved: an interrupted run's checkpoint is spent
    if as_json:
        typer.echo(json.dumps({**result.to_dict(), **meta, "weights": str(out)}, indent=2))
        return
    console.print(
        f"{model}: test top-1 {test_top1:.2f}% (best val {result.best_val_top1:.2f}% at epoch "
        f"{result.best_epoch}{', early stop' if result.stopped_early else ''}); saved {out}\n"
        f"use it with: --weights {out} --num-classes {loaded.num_classes}",
        highlight=False,
    )


@handle_errors
def distill(
    teacher: Annotated[str, typer.Argument(help="Teacher: zoo model name (weights from --teacher-weights).")],
    student: Annotated[
        Path, typer.Argument(help="Student: a converted .safetensors from `edgecnn convert`.")
    ],
    teacher_weights: Annotated[str, typer.Option(help="The teacher's trained weights.")] = ...,
    data: Data = "digits",
    epochs: Epochs = 2,
    batch_size: BatchSize = 64,
    lr: Lr = 0.02,
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
    force: o.Force = False,
    as_json: o.AsJson = False,
) -> None:
    """Knowledge distillation from the original model into its converted student.

    Runs on several processes / machines unchanged: torchrun --nproc-per-node 2 -m edgecnn distill ...
    """
    from edgecnn.train import DistillOptions, TrainOptions, is_main_process
    from edgecnn.train import distill as run_distill
    from edgecnn.transforms import load_converted
    from edgecnn.zoo import load_model

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
        ),
        val_fraction=val_fraction,
        init=init,
    ).validate()
    check_writable(out, force=force)
    stu = load_converted(student)
    teach = load_model(teacher, weights=teacher_weights, num_classes=stu.num_classes, in_chans=stu.in_chans)
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
        f"{result.test_set} (student before distillation: {result.training.initial_val_top1:.2f}% val); "
        f"saved {out}",
        highlight=False,
    )
