"""`edgecnn pipeline`: the whole job on one model, ending in one table and a plot."""

from __future__ import annotations

from pathlib import Path
from typing import Annotated

import typer

from edgecnn.cli import _options as o
from edgecnn.cli._common import console, handle_errors, table_width
from edgecnn.cli._progress import reporting

Model = Annotated[
    str,
    typer.Argument(
        metavar="MODEL", help="Zoo model name (a reference is trained), or a model file `train` wrote."
    ),
]
Data = Annotated[
    str | None,
    typer.Option(help="An image folder or 'digits' (default: a model file's own split, else digits)."),
]
Epochs = Annotated[int, typer.Option(help="Epochs for the reference model (cached).")]
DistillEpochs = Annotated[int, typer.Option(help="Distillation epochs per student.")]
BatchSize = Annotated[int, typer.Option(help="Batch size of training and distillation.")]
Device = Annotated[str, typer.Option(help="Where to train: auto (CUDA when there is a GPU), cpu, cuda.")]
Separable = Annotated[bool, typer.Option("--separable/--no-separable", help="Separable student.")]
Bottleneck = Annotated[bool, typer.Option("--bottleneck", help="Also a bottleneck student.")]
Rank = Annotated[int, typer.Option(help="Separable multiplier T.")]
RankRatio = Annotated[float, typer.Option(help="Bottleneck ranks as a fraction of C and N.")]
Runtime = Annotated[
    str, typer.Option("--runtime", "-r", help="Comma-separated runtimes to export to and benchmark.")
]
Int8 = Annotated[bool, typer.Option("--int8/--no-int8", help="Also INT8 artifacts.")]
Speedup = Annotated[
    float | None,
    typer.Option(help="Students from `compress`: this much faster on each runtime that can plan."),
]
Duration = Annotated[
    float, typer.Option("--duration", "--seconds", help="Minimum timed seconds per benchmark row.")
]
Memory = Annotated[bool, typer.Option("--memory/--no-memory", help="Peak memory per row.")]
Output = Annotated[Path | None, typer.Option("-o", "--output", help="Default export/<model>/pipeline/")]


@handle_errors
def pipeline(
    model: Model = "resnet18",
    data: Data = None,
    input_size: o.InputSize = None,
    epochs: Epochs = 3,
    distill_epochs: DistillEpochs = 2,
    batch_size: BatchSize = 64,
    device: Device = "auto",
    separable: Separable = True,
    bottleneck: Bottleneck = False,
    rank: Rank = 2,
    rank_ratio: RankRatio = 0.5,
    runtime: Runtime = "torch,onnxruntime,openvino",
    int8: Int8 = True,
    speedup: Speedup = None,
    duration: Duration = 2.0,
    memory: Memory = True,
    output: Output = None,
    force: o.Force = False,
    trust_code: o.TrustCode = False,
) -> None:
    """Train or load the reference -> fold BN -> swap -> distill -> export -> benchmark -> table + plot."""
    from edgecnn.pipeline import PipelineOptions, run_pipeline

    same = ("data", "input_size", "epochs", "distill_epochs", "batch_size", "separable", "bottleneck", "rank")
    same += ("rank_ratio", "int8", "speedup", "memory", "force")
    params = locals()
    opts = PipelineOptions(
        train_device=device,
        runtimes=tuple(r.strip() for r in runtime.split(",") if r.strip()),
        seconds=duration,
        out_dir=output,
        **{k: params[k] for k in same},
    )
    with reporting(model) as rep:
        result = run_pipeline(
            model,
            opts,
            on_message=rep.milestone,
            on_step=rep.on_step,
            on_epoch=rep.on_epoch,
            on_progress=rep.on_progress,
        )
    _print(result)


def _print(result) -> None:
    """The table, one line per student (speed-up on its runtime, MACs, top-1 against the original's),
    the test images and the files written."""
    from edgecnn.report.tables import rich_table

    width = table_width()
    console.print(rich_table(result.run, width=width), width=width)
    original = result.variants["original"].table_top1
    for name, v in result.variants.items():
        if name == "original":
            continue
        faster = ""
        if v.runtime:
            faster = (
                f"{v.bench_speedup:.2f}x faster than the original on {v.runtime} in this table "
                f"({v.float_math or 'fp32'} rows)"
                if v.bench_speedup
                else f"no {v.float_math or 'fp32'} rows on {v.runtime} to compare"
            ) + f" (asked {v.requested_speedup}x{_compress_figures(v)}), "
        top1 = v.table_top1
        accuracy = (
            f"top-1 {top1:.2f}% vs the original's {original:.2f}% (fp32 rows of the table)"
            if top1 is not None and original is not None
            else "no top-1 in the table"
        )
        console.print(f"{name}: {faster}{v.mac_reduction:.2f}x fewer MACs, {accuracy}", highlight=False)
    console.print(f"top-1 on {result.reference['test_set']}", highlight=False)
    console.print(f"wrote {result.results_json}, {result.table_md} and {result.plot}", highlight=False)


def _compress_figures(v) -> str:
    """compress's own figures: over its baseline, and with both in the other float math where it differs."""
    if v.measured_speedup is None:
        return ""
    other = f", {v.other_speedup:.2f}x with both in {v.other_math}" if v.other_speedup else ""
    return f"; compress measured {v.measured_speedup:.2f}x over {v.baseline}{other}"
