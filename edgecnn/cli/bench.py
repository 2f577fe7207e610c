"""`edgecnn bench`, `compare`, `plot`: measure, join across machines/settings, draw."""

from __future__ import annotations

from pathlib import Path
from typing import Annotated

import typer

from edgecnn.cli import _options as o
from edgecnn.cli._common import console, err_console, fail, handle_errors, table_width
from edgecnn.cli._progress import reporting


def _csv(value: str, cast=str) -> tuple:
    from edgecnn.errors import BadArgumentError

    try:
        return tuple(cast(v.strip()) for v in value.split(",") if v.strip())
    except ValueError:
        raise BadArgumentError(f"expected a comma-separated list, got {value!r}") from None


@handle_errors
def bench(
    items: Annotated[list[str], typer.Argument(help="Zoo model names, converted .safetensors or artifacts.")],
    runtime: Annotated[
        str, typer.Option("--runtime", "-r", help="Comma-separated: torch, onnxruntime, openvino, tensorrt.")
    ] = "torch,onnxruntime,openvino",
    precision: Annotated[
        str,
        typer.Option(
            help="Comma-separated: fp32, fp16, bf16, tf32, int8. Eager torch: fp32 and bf16 on the CPU, "
            "also fp16 and tf32 on CUDA; artifacts: fp32, fp16, int8."
        ),
    ] = "fp32",
    device: Annotated[str, typer.Option(help="cpu or cuda.")] = "cpu",
    batch: Annotated[str, typer.Option(help="Batch sizes, e.g. 1,8,32.")] = "1",
    threads: Annotated[int | None, typer.Option(help="Inference threads (default: the runtime's).")] = None,
    data: Annotated[
        str | None, typer.Option(help="Top-1/top-5 on an image folder or 'digits' (test split).")
    ] = None,
    accuracy: Annotated[
        bool,
        typer.Option(
            "--accuracy/--no-accuracy", help="Without --data: top-1 of a model file on its own test split."
        ),
    ] = True,
    data_limit: Annotated[int | None, typer.Option(help="Evaluate at most this many images.")] = None,
    calib: Annotated[str | None, typer.Option(help="Calibration images for int8 artifacts.")] = None,
    calib_size: Annotated[int, typer.Option(help="Calibration images to use (as in export).")] = 100,
    int8_activations: Annotated[
        str, typer.Option(help="int8 activations: auto (each runtime's fast one), s8 or u8.")
    ] = "auto",
    weights: o.Weights = None,
    num_classes: o.NumClasses = None,
    in_chans: o.InChans = None,
    input_size: o.InputSize = None,
    warmup: Annotated[float, typer.Option(help="Warm-up seconds.")] = 1.0,
    iterations: Annotated[int, typer.Option(help="Minimum timed iterations.")] = 30,
    duration: Annotated[float, typer.Option(help="Minimum timed seconds.")] = 3.0,
    memory: Annotated[bool, typer.Option("--memory/--no-memory", help="Peak memory in a subprocess.")] = True,
    hint: Annotated[str, typer.Option(help="OpenVINO performance hint: latency or throughput.")] = "latency",
    compile: Annotated[bool, typer.Option("--compile", help="torch.compile the PyTorch model.")] = False,
    cuda_graph: Annotated[
        bool, typer.Option("--cuda-graph", help="With --device cuda: PyTorch replays a captured CUDA graph.")
    ] = False,
    export_dir: Annotated[Path | None, typer.Option(help="Where artifacts are made/reused.")] = None,
    verify: Annotated[
        bool, typer.Option("--verify/--no-verify", help="Verify artifacts made on the fly against PyTorch.")
    ] = True,
    output: Annotated[
        Path | None, typer.Option("-o", "--output", help="Write results JSON (+ .csv).")
    ] = None,
    markdown: Annotated[bool, typer.Option("--markdown", help="Print a markdown table.")] = False,
    as_json: o.AsJson = False,
    force: o.Force = False,
) -> None:
    """Latency (p50/p90/p99, throughput), peak memory and top-1/top-5 across runtimes.

    Exits 1 when every row failed; when some did, the last line says how many."""
    from edgecnn.bench import BenchOptions, save
    from edgecnn.bench import bench as run_bench
    from edgecnn.bench.schema import check_outputs
    from edgecnn.report.tables import markdown as to_markdown
    from edgecnn.report.tables import rich_table

    opts = BenchOptions(
        runtimes=_csv(runtime),
        precisions=_csv(precision),
        device=device,
        batches=_csv(batch, int),
        threads=threads,
        data=data,
        accuracy=accuracy,
        data_limit=data_limit,
        calib=calib,
        calib_size=calib_size,
        int8_activations=int8_activations,
        weights=weights,
        num_classes=num_classes,
        in_chans=in_chans,
        input_size=input_size,
        warmup_s=warmup,
        min_iters=iterations,
        min_seconds=duration,
        memory=memory,
        hint=hint,
        compile=compile,
        cuda_graph=cuda_graph,
        export_dir=str(export_dir) if export_dir else None,
        verify=verify,
    )
    if output:  # before any measurement: nothing is replaced without --force
        check_outputs(output, force=force)
    with reporting("benchmarking") as rep:
        result = run_bench(
            list(items), opts, on_step=rep.step, on_row=lambda row, done, total: rep.count(done, total)
        )
    say = err_console.print if as_json else console.print  # --json: stdout is the JSON alone
    if as_json:
        import json

        typer.echo(json.dumps(result.to_dict(), indent=2, default=str))
    elif markdown:
        typer.echo(to_markdown(result))
    else:
        width = table_width()
        console.print(rich_table(result, width=width), width=width)
        for images, dataset in sorted(
            {(r.accuracy["images"], r.accuracy["dataset"]) for r in result.rows if r.accuracy}
        ):
            say(f"top-1 on {images} test images from {dataset}", highlight=False)
        if result.settings.get("not_measured"):
            left = ", ".join(result.settings["not_measured"])
            say(f"not measured: {left} (the runtime cannot run that precision; another one here does)")
    if output:
        json_path, csv_path = save(result, output, force=force)
        say(f"wrote {json_path} and {csv_path}", highlight=False)
    failed = sum(bool(row.error) for row in result.rows)
    if failed and failed == len(result.rows):
        raise fail(f"every row failed ({failed}); the reasons are under the table", 1)
    if failed:
        say(f"{failed} of {len(result.rows)} rows failed (see the status column)", highlight=False)


@handle_errors
def compare(
    files: Annotated[list[Path], typer.Argument(help="Two or more result JSON files from `edgecnn bench`.")],
    metric: Annotated[
        str, typer.Option(help="median_ms, p90_ms, p99_ms, throughput, peak_mem or top1.")
    ] = "median_ms",
    baseline: Annotated[int, typer.Option(help="Index of the file the ratios divide by.")] = 0,
    markdown: Annotated[bool, typer.Option("--markdown", help="Print a markdown table.")] = False,
) -> None:
    """Join results from different machines or settings into one table with ratios."""
    from edgecnn.bench.schema import load
    from edgecnn.report.compare import compare as run_compare
    from edgecnn.report.compare import markdown as to_markdown
    from edgecnn.report.compare import rich_table

    comparison = run_compare([load(f) for f in files], metric=metric, baseline=baseline)
    if markdown:
        typer.echo(to_markdown(comparison))
    else:
        console.print(rich_table(comparison))


@handle_errors
def plot(
    files: Annotated[list[Path], typer.Argument(help="Result JSON files from `edgecnn bench`.")],
    output: Annotated[Path, typer.Option("-o", "--output", help="Image file (.png, .svg, .pdf).")] = Path(
        "bench.png"
    ),
    force: o.Force = False,
) -> None:
    """Latency vs top-1 (Pareto front marked) and MACs vs measured latency."""
    from edgecnn.bench.schema import load
    from edgecnn.report.plot import plot as run_plot

    path = run_plot([load(f) for f in files], output, force=force)
    console.print(f"wrote {path}", highlight=False)
