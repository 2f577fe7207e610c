"""`edgecnn bench`, `compare`, `plot`: measure, join across machines/settings, draw."""

from __future__ import annotations

from pathlib import Path
from typing import Annotated

import typer

from edgecnn.cli import _options as o
from edgecnn.cli._common import console, err_console, fail, handle_errors, parse_floats, table_width
from edgecnn.cli._progress import reporting


def _csv(value: str, cast=str) -> tuple:
    from edgecnn.errors import BadArgumentError

    try:
        return tuple(cast(v.strip()) for v in value.split(",") if v.strip())
    except ValueError:
        raise BadArgumentError(f"expected a comma-separated list, got {value!r}") from None


Items = Annotated[
    list[str],
    typer.Argument(metavar="ITEM", help="Zoo names, timm:NAME, file.py:function, model files or artifacts."),
]
Runtime = Annotated[
    str, typer.Option("--runtime", "-r", help="Comma-separated: torch, onnxruntime, openvino, tensorrt.")
]
Precision = Annotated[
    str,
    typer.Option(
        help="Comma-separated: fp32, fp16, bf16, tf32, int8. Eager torch: fp32 and bf16 on the CPU, "
        "also fp16 and tf32 on CUDA; artifacts: fp32, fp16, int8."
    ),
]
Device = Annotated[str, typer.Option(help="cpu or cuda.")]
Batch = Annotated[str, typer.Option(help="Batch sizes, e.g. 1,8,32.")]
Threads = Annotated[int | None, typer.Option(help="Inference threads (default: the runtime's).")]
Data = Annotated[str | None, typer.Option(help="Top-1/top-5 on an image folder or 'digits' (test split).")]
Accuracy = Annotated[
    bool,
    typer.Option(
        "--accuracy/--no-accuracy", help="Without --data: top-1 of a model file on its own test split."
    ),
]
DataLimit = Annotated[int | None, typer.Option(help="Evaluate at most this many images.")]
Calib = Annotated[str | None, typer.Option(help="Calibration images for int8 artifacts.")]
CalibSize = Annotated[int, typer.Option(help="Calibration images to use (as in export).")]
Int8Activations = Annotated[
    str, typer.Option(help="int8 activations: auto (each runtime's fast one), s8 or u8.")
]
Warmup = Annotated[float, typer.Option(help="Warm-up seconds.")]
Iterations = Annotated[int, typer.Option(help="Minimum timed iterations.")]
Duration = Annotated[float, typer.Option(help="Minimum timed seconds.")]
Memory = Annotated[bool, typer.Option("--memory/--no-memory", help="Peak memory in a subprocess.")]
Hint = Annotated[str, typer.Option(help="OpenVINO performance hint: latency or throughput.")]
Compile = Annotated[bool, typer.Option("--compile", help="torch.compile the PyTorch model.")]
CudaGraph = Annotated[
    bool, typer.Option("--cuda-graph", help="With --device cuda: PyTorch replays a captured CUDA graph.")
]
ExportDir = Annotated[Path | None, typer.Option(help="Where artifacts are made/reused.")]
Verify = Annotated[
    bool, typer.Option("--verify/--no-verify", help="Verify artifacts made on the fly against PyTorch.")
]
Output = Annotated[Path | None, typer.Option("-o", "--output", help="Write results JSON (+ .csv).")]
Markdown = Annotated[bool, typer.Option("--markdown", help="Print a markdown table.")]


@handle_errors
def bench(
    items: Items,
    runtime: Runtime = "torch,onnxruntime,openvino",
    precision: Precision = "fp32",
    device: Device = "cpu",
    batch: Batch = "1",
    threads: Threads = None,
    data: Data = None,
    accuracy: Accuracy = True,
    data_limit: DataLimit = None,
    calib: Calib = None,
    calib_size: CalibSize = 100,
    int8_activations: Int8Activations = "auto",
    weights: o.Weights = None,
    num_classes: o.NumClasses = None,
    in_chans: o.InChans = None,
    input_size: o.InputSize = None,
    mean: o.Mean = None,
    std: o.Std = None,
    warmup: Warmup = 1.0,
    iterations: Iterations = 30,
    duration: Duration = 3.0,
    memory: Memory = True,
    hint: Hint = "latency",
    compile: Compile = False,
    cuda_graph: CudaGraph = False,
    export_dir: ExportDir = None,
    verify: Verify = True,
    output: Output = None,
    markdown: Markdown = False,
    as_json: o.AsJson = False,
    force: o.Force = False,
    trust_code: o.TrustCode = False,
) -> None:
    """Latency (p50/p90/p99, throughput), peak memory and top-1/top-5 across runtimes.

    An ONNX file edgecnn did not write is timed in every --runtime that reads it (ONNX Runtime,
    OpenVINO); --mean/--std give its preprocessing for top-1 on --data.
    Exits 1 when every row failed; when some did, the last line says how many."""
    from edgecnn.bench import bench as run_bench
    from edgecnn.bench import save
    from edgecnn.bench.schema import check_outputs

    opts = _bench_options(locals())
    if output:  # before any measurement: nothing is replaced without --force
        check_outputs(output, force=force)
    with reporting("benchmarking") as rep:
        result = run_bench(
            list(items), opts, on_step=rep.step, on_row=lambda row, done, total: rep.tick(done, total)
        )
    say = err_console.print if as_json else console.print  # --json: stdout is the JSON alone
    _show(result, as_json, markdown, say)
    if output:
        json_path, csv_path = save(result, output, force=force)
        say(f"wrote {json_path} and {csv_path}", highlight=False)
    failed = sum(bool(row.error) for row in result.rows)
    if failed and failed == len(result.rows):
        raise fail(f"every row failed ({failed}); the reasons are under the table", 1)
    if failed:
        say(f"{failed} of {len(result.rows)} rows failed (see the status column)", highlight=False)


def _bench_options(p: dict):
    """BenchOptions from the command's parameters, by name."""
    from edgecnn.bench import BenchOptions

    same = ("device", "threads", "data", "accuracy", "data_limit", "calib", "calib_size", "int8_activations")
    same += ("weights", "num_classes", "in_chans", "input_size", "memory", "hint", "compile", "cuda_graph")
    return BenchOptions(
        runtimes=_csv(p["runtime"]),
        precisions=_csv(p["precision"]),
        batches=_csv(p["batch"], int),
        warmup_s=p["warmup"],
        min_iters=p["iterations"],
        min_seconds=p["duration"],
        export_dir=str(p["export_dir"]) if p["export_dir"] else None,
        verify=p["verify"],
        mean=parse_floats(p["mean"], "mean"),
        std=parse_floats(p["std"], "std"),
        **{k: p[k] for k in same},
    )


def _show(result, as_json: bool, markdown: bool, say) -> None:
    """The run as JSON, a markdown table, or the terminal table with which test images and what was
    not measured."""
    from edgecnn.report.tables import markdown as to_markdown
    from edgecnn.report.tables import rich_table

    if as_json:
        import json

        typer.echo(json.dumps(result.to_dict(), indent=2, default=str))
        return
    if markdown:
        typer.echo(to_markdown(result))
        return
    width = table_width()
    console.print(rich_table(result, width=width), width=width)
    for images, dataset in sorted(
        {(r.accuracy.images, r.accuracy.dataset) for r in result.rows if r.accuracy}
    ):
        say(f"top-1 on {images} test images from {dataset}", highlight=False)
    if result.settings.get("not_measured"):
        left = ", ".join(result.settings["not_measured"])
        say(f"not measured: {left} (the runtime cannot run that precision; another one here does)")


@handle_errors
def compare(
    files: Annotated[
        list[Path], typer.Argument(metavar="FILE", help="Two or more result JSON files from `edgecnn bench`.")
    ],
    metric: Annotated[
        str, typer.Option(help="p50_ms (median_ms), p90_ms, p99_ms, throughput, peak_mem or top1.")
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
        console.print(rich_table(comparison, width=table_width()))


@handle_errors
def plot(
    files: Annotated[
        list[Path], typer.Argument(metavar="FILE", help="Result JSON files from `edgecnn bench`.")
    ],
    output: Annotated[Path, typer.Option("-o", "--output", help="Image file (.png, .svg, .pdf).")] = Path(
        "bench.png"
    ),
    force: o.Force = False,
    trust_code: o.TrustCode = False,
) -> None:
    """Latency vs top-1 (Pareto front marked) and MACs vs measured latency."""
    from edgecnn.bench.schema import load
    from edgecnn.report.plot import plot as run_plot

    path = run_plot([load(f) for f in files], output, force=force)
    console.print(f"wrote {path}", highlight=False)
