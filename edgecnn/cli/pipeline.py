"""`edgecnn pipeline`: the whole job on one model, ending in one table and a plot."""

from __future__ import annotations

from pathlib import Path
from typing import Annotated

import typer

from edgecnn.cli import _options as o
from edgecnn.cli._common import console, handle_errors, table_width
from edgecnn.cli._progress import reporting
from edgecnn.cli.train import Data


@handle_errors
def pipeline(
    model: Annotated[str, typer.Argument(help="Zoo model name.")] = "resnet18",
    data: Data = "digits",
    input_size: o.InputSize = None,
    epochs: Annotated[int, typer.Option(help="Epochs for the reference model (cached).")] = 3,
    distill_epochs: Annotated[int, typer.Option(help="Distillation epochs per student.")] = 2,
    separable: Annotated[bool, typer.Option("--separable/--no-separable", help="Separable student.")] = True,
    bottleneck: Annotated[bool, typer.Option("--bottleneck", help="Also a bottleneck student.")] = False,
    rank: Annotated[int, typer.Option(help="Separable multiplier T.")] = 2,
    rank_ratio: Annotated[float, typer.Option(help="Bottleneck ranks as a fraction of C and N.")] = 0.5,
    int8: Annotated[bool, typer.Option("--int8/--no-int8", help="Also INT8 artifacts.")] = True,
    speedup: Annotated[
        float | None,
        typer.Option(help="Students from `compress`: this much faster on each runtime that can plan."),
    ] = None,
    duration: Annotated[
        float, typer.Option("--duration", "--seconds", help="Minimum timed seconds per benchmark row.")
    ] = 2.0,
    memory: Annotated[bool, typer.Option("--memory/--no-memory", help="Peak memory per row.")] = True,
    output: Annotated[
        Path | None, typer.Option("-o", "--output", help="Default export/<model>/pipeline/")
    ] = None,
) -> None:
    """Train or load the reference -> fold BN -> swap -> distill -> export -> benchmark -> table + plot."""
    from edgecnn.pipeline import PipelineOptions, run_pipeline
    from edgecnn.report.tables import rich_table

    opts = PipelineOptions(
        data=data,
        input_size=input_size,
        epochs=epochs,
        distill_epochs=distill_epochs,
        separable=separable,
        bottleneck=bottleneck,
        rank=rank,
        rank_ratio=rank_ratio,
        int8=int8,
        speedup=speedup,
        seconds=duration,
        memory=memory,
        out_dir=output,
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
    width = table_width()
    console.print(rich_table(result.run, width=width), width=width)
    for name, v in result.variants.items():
        if name == "original":
            continue
        faster = ""
        if v.get("runtime"):
            bench = v.get("bench_speedup")
            faster = (
                f"{bench:.2f}x faster than the original on {v['runtime']} in this table"
                if bench
                else f"no fp32 rows on {v['runtime']} to compare"
            ) + f" (asked {v['requested_speedup']}x), "
        console.print(
            f"{name}: {faster}{v['mac_reduction']:.2f}x fewer MACs, test top-1 {v['test_top1']:.2f}% "
            f"vs reference {result.reference['test_top1']:.2f}%",
            highlight=False,
        )
    console.print(f"wrote {result.results_json}, {result.table_md} and {result.plot}", highlight=False)
