"""`edgecnn export`: a zoo model or converted file -> verified ONNX / OpenVINO IR / TensorRT artifacts."""

from __future__ import annotations

import contextlib
import json
import signal
from pathlib import Path
from typing import Annotated

import typer
from rich.table import Table

from edgecnn.cli import _options as o
from edgecnn.cli._common import console, handle_errors, parse_kv
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


@handle_errors
def export(
    model: Annotated[str, typer.Argument(help="Zoo model name, or a .safetensors from `edgecnn convert`.")],
    target: Annotated[
        str, typer.Option("--target", "-t", help="Comma-separated: onnx, openvino, tensorrt.")
    ] = "onnx",
    precision: Annotated[str, typer.Option(help="fp32, fp16 or int8 (Q/DQ; needs --calib).")] = "fp32",
    calib: Annotated[
        str | None,
        typer.Option(help="Calibration images for int8: a folder of images, or 'digits' (bundled MNIST)."),
    ] = None,
    calib_size: Annotated[int, typer.Option(help="Calibration images to use.")] = 100,
    calib_method: Annotated[str, typer.Option(help="minmax, entropy or percentile.")] = "minmax",
    int8_activations: Annotated[
        str,
        typer.Option(
            help="auto (each target's fast one: u8 for onnx, s8 for openvino and tensorrt), s8 or u8."
        ),
    ] = "auto",
    data: Annotated[
        str | None,
        typer.Option(help="Real images for the parity check (default: held out from --calib)."),
    ] = None,
    batch: Annotated[int, typer.Option(help="Static batch size (optimum batch with --dynamic-batch).")] = 1,
    dynamic_batch: Annotated[bool, typer.Option("--dynamic-batch", help="Symbolic batch axis.")] = False,
    max_batch: Annotated[int, typer.Option(help="TensorRT profile maximum for --dynamic-batch.")] = 32,
    input_size: o.InputSize = None,
    opset: Annotated[int, typer.Option(help="ONNX opset.")] = 17,
    exporter: Annotated[
        str, typer.Option(help="torchscript (works for the whole zoo) or dynamo.")
    ] = "torchscript",
    simplify: Annotated[bool, typer.Option("--simplify/--no-simplify", help="Run onnxslim.")] = True,
    verify: Annotated[
        bool, typer.Option("--verify/--no-verify", help="Check each artifact against PyTorch.")
    ] = True,
    workspace: Annotated[float, typer.Option(help="TensorRT builder workspace in GiB.")] = 2.0,
    output: Annotated[
        Path | None, typer.Option("-o", "--output", help="Folder (default export/<model>/).")
    ] = None,
    weights: o.Weights = None,
    fold_bn: Annotated[
        bool,
        typer.Option(
            "--fold-bn/--no-fold-bn",
            help="Fold BatchNorm into convs in PyTorch first (ONNX Runtime and OpenVINO fold it themselves).",
        ),
    ] = False,
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
    force: o.Force = False,
    as_json: o.AsJson = False,
) -> None:
    """Export to ONNX / OpenVINO IR / TensorRT, verify each artifact against PyTorch, write manifests.

    Exits 1 when any target fails to export or to verify.
    """
    from edgecnn.export import ExportOptions
    from edgecnn.export import export as run_export

    sep, bot, low = o.swap_options(
        separable=separable,
        bottleneck=bottleneck,
        lowrank=lowrank,
        rank=rank,
        rank_ratio=rank_ratio,
        energy=energy,
        include=include,
        exclude=exclude,
        min_mac_saving=min_mac_saving,
        max_error=max_error,
    )
    swaps = dict(separable=sep, bottleneck=bot, lowrank=low)
    convert = dict(fold_bn=fold_bn, **swaps) if (fold_bn or any(swaps.values())) else None
    options = ExportOptions(
        targets=tuple(t.strip() for t in target.split(",") if t.strip()),
        precision=precision,
        out_dir=output,
        batch=batch,
        dynamic_batch=dynamic_batch,
        max_batch=max_batch,
        input_size=input_size,
        opset=opset,
        exporter=exporter,
        simplify=simplify,
        calib=calib,
        calib_size=calib_size,
        calib_method=calib_method,
        int8_activations=int8_activations,
        data=data,
        verify=verify,
        force=force,
        workspace_gib=workspace,
    )
    with _terminate_as_interrupt(), reporting(f"exporting {model}") as rep:
        result = run_export(
            model,
            options,
            weights=weights,
            convert=convert,
            num_classes=num_classes,
            in_chans=in_chans,
            model_kwargs=parse_kv(model_arg),
            on_step=lambda msg: rep.step(f"{model}: {msg}"),
        )
    if as_json:
        typer.echo(json.dumps(result.to_dict(), indent=2))
    else:
        _print(result)
    if not result.ok:
        raise typer.Exit(1)


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
            where = "noise" if p.inputs.startswith("seeded") else "images"
            if p.max_rel_allowed is not None:
                rules.setdefault(t.precision, []).append(f"{where} rel err <= {p.max_rel_allowed:g}")
            if p.min_agreement_allowed is not None:
                rules.setdefault(t.precision, []).append(f"{where} agree >= {p.min_agreement_allowed:g}")
    return [f"{precision} ok when {', '.join(dict.fromkeys(r))}" for precision, r in rules.items()]


def _print(result) -> None:
    shape = "x".join(map(str, result.input_shape)) + (" (dynamic batch)" if result.dynamic_batch else "")
    table = Table(title=f"{result.model} -> {result.out_dir}  input {shape}")
    for col in ("target", "precision", "status", "file", "size", "noise rel err", "images rel err"):
        table.add_column(col, justify="left" if col in ("target", "status", "file") else "right")
    table.add_column("images agree", justify="right")
    table.add_column("time", justify="right")
    for t in result.targets:
        colour = {"ok": "green", "not verified": "yellow"}.get(t.status, "red")
        table.add_row(
            t.target,
            t.precision,
            f"[{colour}]{t.status}[/]",
            Path(t.path).name if t.path else "-",
            _size(t.size_bytes),
            *_parity_cells(t),
            f"{t.seconds:.1f}s",
        )
    console.print(table)
    inputs = dict.fromkeys(p.inputs for t in result.targets for p in t.parity)
    if inputs:
        console.print(
            f"parity against PyTorch on {' and '.join(inputs)}; * decides the status: "
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
