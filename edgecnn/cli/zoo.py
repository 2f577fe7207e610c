"""`edgecnn zoo` and `edgecnn inspect`."""

from __future__ import annotations

import json
from dataclasses import asdict
from typing import Annotated

import typer

from edgecnn.cli import _options as o
from edgecnn.cli._common import console, handle_errors, parse_kv, print_table


def _fmt_int(n: int) -> str:
    return f"{n:,}"


@handle_errors
def zoo(
    pattern: Annotated[
        str, typer.Argument(metavar="PATTERN", help="fnmatch pattern on names, e.g. 'res*'")
    ] = "*",
    as_json: Annotated[bool, typer.Option("--json", help="Machine-readable output.")] = False,
    timm: Annotated[
        bool, typer.Option("--timm", help="List timm's architectures matching PATTERN (timm:NAME) instead.")
    ] = False,
) -> None:
    """List the registered models with their family, task, input size, params and MACs."""
    from edgecnn.zoo import list_specs

    if timm:
        _zoo_timm(pattern, as_json)
        return
    specs = list_specs(pattern)
    if not specs:
        from edgecnn.errors import BadArgumentError

        raise BadArgumentError(f"no zoo model matches '{pattern}'; `edgecnn zoo` lists them all")
    if as_json:
        typer.echo(json.dumps([asdict(s) for s in specs], indent=2))
        return
    columns = ("name", "input", "params (M)", "GMACs", "top-1 ref", "task", "family", "weights")
    rows = [
        (
            s.name,
            f"{s.in_chans}x{s.input_size[0]}x{s.input_size[1]}",
            f"{s.params_m:.2f}",
            f"{s.macs_g:.3g}",  # lenet5: 0.000416, not 0.000
            "" if s.acc1 is None else f"{s.acc1:.1f}",
            s.task,
            s.family,
            "imagenet" if s.torchvision_weights else "file only",
        )
        for s in specs
    ]
    title = f"edgecnn zoo ({len(specs)} models; MACs = multiply-adds, FLOPs = 2 x MACs)"
    left = ("name", "input", "task", "family", "weights")
    print_table(title, columns, rows, priority=columns, left=left)


def _zoo_timm(pattern: str, as_json: bool) -> None:
    """timm's names matching `pattern`, one per line (they are many: `grep`, `head` and `wc` apply)."""
    from edgecnn.errors import BadArgumentError
    from edgecnn.zoo.external import list_timm

    names = list_timm(pattern)
    if not names:
        raise BadArgumentError(f"no timm model matches '{pattern}'; try a pattern such as 'resnet*'")
    typer.echo(json.dumps(names) if as_json else "\n".join(names))


@handle_errors
def inspect(
    model: o.Source,
    input_size: o.InputSize = None,
    weights: Annotated[str | None, typer.Option(help="'imagenet' or a .pth/.safetensors file.")] = None,
    num_classes: Annotated[
        int | None, typer.Option(help="Classifier outputs (default: the model's).")
    ] = None,
    in_chans: Annotated[int | None, typer.Option(help="Input channels (default: the model's).")] = None,
    model_arg: Annotated[
        list[str] | None,
        typer.Option("--model-arg", "-a", metavar="KEY=VALUE", help="Builder argument, e.g. padding=same."),
    ] = None,
    as_json: Annotated[bool, typer.Option("--json", help="Machine-readable output.")] = False,
    trust_code: o.TrustCode = False,
) -> None:
    """Per-layer table: output shape, weights, bias, MACs and activations, with totals."""
    from edgecnn.analysis import inspect_model
    from edgecnn.transforms.model_file import reads_model_file

    source = model
    if reads_model_file(model, weights):  # a model file: its own classes and size
        from edgecnn.transforms import load_source

        source, weights = load_source(model, weights), None
    stats = inspect_model(
        source,
        input_size=input_size,
        weights=weights,
        num_classes=num_classes,
        in_chans=in_chans,
        **parse_kv(model_arg),
    )
    if as_json:
        typer.echo(json.dumps(stats.to_dict(), indent=2))
        return
    _layer_table(model, stats)
    console.print(
        f"params {stats.params:,} ({stats.params / 1e6:.2f} M) | "
        f"MACs {stats.macs:,} ({stats.macs / 1e9:.3f} G; "
        f"FLOPs = 2 x MACs) | activations {stats.activations:,} values = "
        f"{stats.activation_bytes_fp32 / 2**20:.1f} MiB at fp32 (input + outputs of layers that create new "
        "values; bracketed rows run in place or fold away)",
        highlight=False,
    )


def _layer_table(model: str, stats) -> None:
    """The per-layer table, its least needed columns left out (and named) at a narrow terminal."""
    from edgecnn.analysis import format_shape

    columns = ("layer", "type", "output", "weights", "bias", "MACs", "activations")
    rows = [
        (
            layer.name,
            layer.type,
            format_shape(layer.output_shape),
            _fmt_int(layer.weight_params) if layer.weight_params else "",
            _fmt_int(layer.bias_params) if layer.bias_params else "",
            _fmt_int(layer.macs) if layer.macs else "",
            _fmt_int(layer.activations) if layer.counted else f"({layer.activations:,})",
        )
        for layer in stats.layers
    ]
    priority = ("layer", "MACs", "output", "weights", "type", "activations", "bias")
    title = f"{model} at input {format_shape(stats.input_shape)} (HxWxC)"
    left = ("layer", "type", "output")
    print_table(title, columns, rows, priority=priority, left=left)
