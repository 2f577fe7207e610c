"""`edgecnn convert`: fold BN and swap convolutions, save a reloadable converted model."""

from __future__ import annotations

import json
from pathlib import Path
from typing import Annotated

import typer
from rich.table import Table

from edgecnn.cli._common import console, handle_errors, parse_kv


@handle_errors
def convert(
    model: Annotated[str, typer.Argument(help="Model name (see `edgecnn zoo`).")],
    weights: Annotated[str | None, typer.Option(help="'imagenet' or a .pth/.safetensors file.")] = None,
    fold_bn: Annotated[
        bool, typer.Option("--fold-bn/--no-fold-bn", help="Fold BatchNorm into convs.")
    ] = True,
    separable: Annotated[bool, typer.Option("--separable", help="Depthwise + pointwise swap (SVD).")] = False,
    bottleneck: Annotated[bool, typer.Option("--bottleneck", help="1x1-KxK-1x1 swap (Tucker-2).")] = False,
    rank: Annotated[int | None, typer.Option(help="Separable channel multiplier T for every layer.")] = None,
    rank_ratio: Annotated[
        float | None, typer.Option(help="Bottleneck ranks as a fraction of C and N.")
    ] = None,
    energy: Annotated[
        float | None,
        typer.Option(help="Per-layer rank keeping this fraction of spectral energy (default 0.9)."),
    ] = None,
    include: Annotated[
        list[str] | None, typer.Option(help="Only layers matching this glob (repeatable).")
    ] = None,
    exclude: Annotated[
        list[str] | None, typer.Option(help="Skip layers matching this glob (repeatable).")
    ] = None,
    min_mac_saving: Annotated[
        float, typer.Option(help="Skip a layer saving no more than this MAC fraction.")
    ] = 0.0,
    max_error: Annotated[
        float | None, typer.Option(help="Skip a layer whose relative weight error exceeds this.")
    ] = None,
    input_size: Annotated[
        tuple[int, int] | None, typer.Option(help="H W used to measure MACs and error.")
    ] = None,
    num_classes: Annotated[
        int | None, typer.Option(help="Classifier outputs (default: the model's).")
    ] = None,
    in_chans: Annotated[int | None, typer.Option(help="Input channels (default: the model's).")] = None,
    model_arg: Annotated[
        list[str] | None, typer.Option("--model-arg", "-a", help="Builder KEY=VALUE.")
    ] = None,
    output: Annotated[
        Path | None,
        typer.Option("-o", "--output", help="Default: export/<model>/<model>.converted.safetensors"),
    ] = None,
    force: Annotated[bool, typer.Option(help="Overwrite an existing output file.")] = False,
    as_json: Annotated[bool, typer.Option("--json", help="Machine-readable output.")] = False,
) -> None:
    """Fold BN, swap KxK convs for separable / bottleneck variants from the weights, and save."""
    from edgecnn.errors import BadArgumentError
    from edgecnn.transforms import SwapOptions, save_converted
    from edgecnn.transforms import convert as run_convert
    from edgecnn.zoo import load_model

    if (rank is not None and not separable) or (rank_ratio is not None and not bottleneck):
        raise BadArgumentError("--rank goes with --separable and --rank-ratio with --bottleneck")
    common = dict(
        energy=energy,
        include=tuple(include or ()),
        exclude=tuple(exclude or ()),
        min_mac_saving=min_mac_saving,
        max_error=max_error,
    )
    sep = SwapOptions(rank=rank, **common).validate("separable") if separable else None
    bot = SwapOptions(rank_ratio=rank_ratio, **common).validate("bottleneck") if bottleneck else None
    out = output or Path("export") / model / f"{model}.converted.safetensors"
    if out.exists() and not force:  # fail before the (possibly long) conversion, not after
        raise BadArgumentError(f"{out} already exists; pass --force to overwrite it")
    loaded = load_model(
        model, weights=weights, num_classes=num_classes, in_chans=in_chans, **parse_kv(model_arg)
    )
    with console.status(f"converting {model}...") if not as_json else _null():
        result = run_convert(loaded, fold_bn=fold_bn, separable=sep, bottleneck=bot, input_size=input_size)
        save_converted(result, out, force=force)
    if as_json:
        typer.echo(json.dumps(result.to_dict(), indent=2))
        return
    _print(result)


class _null:
    def __enter__(self):
        return self

    def __exit__(self, *exc):
        return False


def _print(result) -> None:
    for report in result.reports:
        if report.transform == "fold_bn":
            console.print(
                f"fold_bn: folded {len(report.recipe['pairs'])} BatchNorm layers, "
                f"{len(report.skipped)} left in place",
                highlight=False,
            )
            for name, why in report.skipped[:5]:
                console.print(f"  [dim]{name}: {why}[/]", highlight=False)
            if len(report.skipped) > 5:
                console.print(f"  [dim]... and {len(report.skipped) - 5} more[/]")
            continue
        table = Table(
            title=f"{report.transform}: {len(report.changed)} layers swapped, {len(report.skipped)} skipped"
        )
        for col in ("layer", "K", "C->N", "rank", "weight err", "MACs before", "MACs after"):
            table.add_column(col, justify="left" if col == "layer" else "right")
        for c in report.changed:
            table.add_row(
                c.name,
                "x".join(map(str, c.kernel)),
                f"{c.in_channels}->{c.out_channels}",
                ",".join(map(str, c.rank)),
                f"{c.weight_error:.3f}",
                f"{c.macs_before:,}",
                f"{c.macs_after:,}",
            )
        console.print(table)
    r = result
    console.print(
        f"params {r.params_before:,} -> {r.params_after:,} ({r.params_before / r.params_after:.2f}x fewer) | "
        f"MACs {r.macs_before:,} -> {r.macs_after:,} ({r.macs_before / r.macs_after:.2f}x fewer) at "
        f"{r.input_size[0]}x{r.input_size[1]} | output relative error {r.output_error:.2e}\nsaved {r.path}",
        highlight=False,
    )
