"""`edgecnn export`: a zoo model or converted file -> verified ONNX / OpenVINO IR / TensorRT artifacts."""

from __future__ import annotations

import contextlib
import json
import signal
from pathlib import Path
from typing import Annotated

import typer

from edgecnn.cli import _options as o
from edgecnn.cli._common import console, handle_errors, parse_floats, parse_kv, print_table
from edgecnn.cli._progress import reporting


def _size(n: int | None) -> str:
    if n is None:
        return "-"
    for unit in ("B", "KB", "MB", "GB"):
        if n < 1000 or unit == "GB":
            return f"{n:.0f} {unit}" if unit == "B" else f"{n:.1f} {unit}"
        n /= 1000
    return str(n)


@contextlib.contextmanager
def _terminate_as_interrupt():
    """SIGTERM (a killed job, a CI timeout) unwinds like Ctrl-C, so work folders are cleaned up."""

    def handler(signum, frame):
        raise KeyboardInterrupt

    previous = signal.signal(signal.SIGTERM, handler)
    try:
        yield
    finally:
        signal.signal(signal.SIGTERM, previous)


Model = Annotated[str, typer.Argument(help=o.MODEL_HELP, metavar="MODEL")]
Target = Annotated[str, typer.Option("--target", "-t", help="Comma-separated: onnx, openvino, tensorrt.")]
Precision = Annotated[str, typer.Option(help="fp32, fp16 or int8 (Q/DQ; needs --calib).")]
Calib = Annotated[
    str | None,
    typer.Option(
        help="Calibration images for int8: a folder of images, or 'digits' (bundled MNIST); default: "
        "the training images a model file records."
    ),
]
CalibSize = Annotated[int, typer.Option(help="Calibration images to use.")]
CalibMethod = Annotated[str, typer.Option(help="minmax, entropy or percentile.")]
Int8Activations = Annotated[
    str,
    typer.Option(help="auto (each target's fast one: u8 for onnx, s8 for openvino and tensorrt), s8 or u8."),
]
Data = Annotated[
    str | None,
    typer.Option(help="Real images for the parity check (default: held out from --calib)."),
]
Batch = Annotated[int, typer.Option(help="Static batch size (optimum batch with --dynamic-batch).")]
DynamicBatch = Annotated[bool, typer.Option("--dynamic-batch", help="Symbolic batch axis.")]
MaxBatch = Annotated[int, typer.Option(help="TensorRT profile maximum for --dynamic-batch.")]
Opset = Annotated[int, typer.Option(help="ONNX opset.")]
Exporter = Annotated[str, typer.Option(help="torchscript (works for the whole zoo) or dynamo.")]
Simplify = Annotated[bool, typer.Option("--simplify/--no-simplify", help="Run onnxslim.")]
Verify = Annotated[bool, typer.Option("--verify/--no-verify", help="Check each artifact against PyTorch.")]
Workspace = Annotated[float, typer.Option(help="TensorRT builder workspace in GiB.")]
Output = Annotated[
    Path | None,
    typer.Option("-o", "--output", help="Folder (default: beside a model file, else export/<model>/)."),
]
FoldBn = Annotated[
    bool,
    typer.Option(
        "--fold-bn/--no-fold-bn",
        help="Fold BatchNorm into convs in PyTorch first (ONNX Runtime and OpenVINO fold it themselves).",
    ),
]


@handle_errors
def export(
    model: Model,
    target: Target = "onnx",
    precision: Precision = "fp32",
    calib: Calib = None,
    calib_size: CalibSize = 100,
    calib_method: CalibMethod = "minmax",
    int8_activations: Int8Activations = "auto",
    data: Data = None,
    batch: Batch = 1,
    dynamic_batch: DynamicBatch = False,
    max_batch: MaxBatch = 32,
    input_size: o.InputSize = None,
    opset: Opset = 17,
    exporter: Exporter = "torchscript",
    simplify: Simplify = True,
    verify: Verify = True,
    workspace: Workspace = 2.0,
    output: Output = None,
    weights: o.Weights = None,
    fold_bn: FoldBn = False,
    separable: o.Separable = False,
    bottleneck: o.Bottleneck = False,
    lowrank: o.Lowrank = False,
    rank: o.Rank = None,
    rank_ratio: o.RankRatio = None,
    energy: o.Energy = None,
    include: o.Include = None,
    exclude: o.Exclude = None,
    min_mac_saving: o.MinMacSaving = 0.0,
    max_error: o.MaxError = None,
    num_classes: o.NumClasses = None,
    in_chans: o.InChans = None,
    model_arg: o.ModelArg = None,
    mean: o.Mean = None,
    std: o.Std = None,
    force: o.Force = False,
    trust_code: o.TrustCode = False,
    as_json: o.AsJson = False,
) -> None:
    """Export to ONNX / OpenVINO IR / TensorRT, verify each artifact against PyTorch (an ONNX file:
    against ONNX Runtime fp32 of it; --mean/--std to read images), write manifests. Exits 1 when any
    target fails to export or to verify."""
    from edgecnn.export import export as run_export

    options, convert = _export_options(locals())
    with _terminate_as_interrupt(), reporting(f"exporting {model}") as rep:
        kw = dict(weights=weights, convert=convert, num_classes=num_classes, in_chans=in_chans)
        result = run_export(
            model,
            options,
            **kw,
            model_kwargs=parse_kv(model_arg),
            on_step=lambda m: rep.step(f"{model}: {m}"),
        )
    typer.echo(json.dumps(result.to_dict(), indent=2)) if as_json else _print(result)
    if not result.ok:
        raise typer.Exit(1)


def _export_options(p: dict):
    """(ExportOptions, the conversion to make first or None) from the command's parameters, by name."""
    from edgecnn.export import ExportOptions

    sep, bot, low = o.swap_options_of(p)
    swaps = dict(separable=sep, bottleneck=bot, lowrank=low)
    convert = dict(fold_bn=p["fold_bn"], **swaps) if (p["fold_bn"] or any(swaps.values())) else None

    same = ("precision", "batch", "dynamic_batch", "max_batch", "input_size", "opset", "exporter", "simplify")
    same += ("calib", "calib_size", "calib_method", "int8_activations", "data", "verify", "force")
    options = ExportOptions(
        targets=tuple(t.strip() for t in p["target"].split(",") if t.strip()),
        out_dir=p["output"],
        workspace_gib=p["workspace"],
        mean=parse_floats(p["mean"], "mean"),
        std=parse_floats(p["std"], "std"),
        **{k: p[k] for k in same},
    )
    return options, convert


def _parity_cells(t) -> list[str]:
    """Seeded-noise and real-image parity in their own columns (never one input set's error beside
    the other's agreement); `*` marks the figures that decide the status."""

    def mark(value: str, gated) -> str:
        return value + ("*" if gated is not None else "")

    noise = next((p for p in t.parity if p.inputs.startswith("seeded")), None)
    images = next((p for p in t.parity if not p.inputs.startswith("seeded")), None)
    return [
        mark(f"{noise.max_rel:.1e}", noise.max_rel_allowed) if noise else "-",
        mark(f"{images.max_rel:.1e}", images.max_rel_allowed) if images else "-",
        mark(f"{images.top1_agreement:.3f}", images.min_agreement_allowed) if images else "-",
    ]


def _rules(result) -> list[str]:
    """One line per precision: what its status was judged on (the limits the parity checks applied)."""
    rules: dict[str, list[str]] = {}
    for t in result.targets:
        for p in t.parity:
            where = "noise err" if p.inputs.startswith("seeded") else "image err"
            if p.max_rel_allowed is not None:
                rules.setdefault(t.precision, []).append(f"{where} <= {p.max_rel_allowed:g}")
            if p.min_agreement_allowed is not None:
                rules.setdefault(t.precision, []).append(f"agree >= {p.min_agreement_allowed:g}")
    return [f"{precision} ok when {', '.join(dict.fromkeys(r))}" for precision, r in rules.items()]


def _print(result) -> None:
    shape = "x".join(map(str, result.input_shape)) + (" (dynamic batch)" if result.dynamic_batch else "")
    columns = ("target", "precision", "status", "file", "size", "noise err", "image err", "agree", "time")
    rows = [
        (
            t.target,
            t.precision,
            t.status,
            Path(t.path).name if t.path else "-",
            _size(t.size_bytes),
            *_parity_cells(t),
            f"{t.seconds:.1f}s",
        )
        for t in result.targets
    ]
    priority = ("target", "precision", "status", "noise err", "image err", "agree", "size", "file")
    where = result.out_dir if str(result.out_dir) not in ("", ".") else "./"  # beside a model file
    title = f"{result.model} -> {where}  input {shape}"
    left = ("target", "status", "file")
    print_table(title, columns, rows, priority=priority, left=left)
    inputs = dict.fromkeys(p.inputs for t in result.targets for p in t.parity)
    if inputs:
        console.print(
            f"parity against {result.reference} on {' and '.join(inputs)}; * decides the status: "
            + "; ".join(_rules(result)),
            highlight=False,
        )
    for t in result.targets:
        if t.error:
            console.print(f"[red]{t.target}: {t.error}[/]", highlight=False)
            if t.status == "verify failed":
                console.print(
                    "  nothing was written; --no-verify keeps the unverified artifact", highlight=False
                )
    for t in result.targets:
        q = t.quantization
        if q.get("calibration_images"):
            console.print(
                f"{t.target} int8: {q['weights']} weights, {q['activations']} activations, "
                f"{q['calibration_method']} calibration on {q['calibration_images']} images",
                highlight=False,
            )
