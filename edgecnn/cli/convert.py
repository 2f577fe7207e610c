"""`edgecnn convert`: fold BN, prune channels and swap convolutions, save a reloadable converted model."""

from __future__ import annotations

import contextlib
import json
from pathlib import Path
from typing import Annotated

import typer
from rich.table import Table

from edgecnn.cli import _options as o
from edgecnn.cli._common import console, default_output, handle_errors, parse_kv


@handle_errors
def convert(
    model: o.Source,
    weights: o.Weights = None,
    fold_bn: Annotated[
        bool, typer.Option("--fold-bn/--no-fold-bn", help="Fold BatchNorm into convs.")
    ] = True,
    separable: o.Separable = False,
    bottleneck: o.Bottleneck = False,
    lowrank: o.Lowrank = False,
    prune: o.Prune = None,
    rank: o.Rank = None,
    rank_ratio: o.RankRatio = None,
    energy: o.Energy = None,
    include: o.Include = None,
    exclude: o.Exclude = None,
    min_mac_saving: o.MinMacSaving = 0.0,
    max_error: o.MaxError = None,
    input_size: o.InputSize = None,
    num_classes: o.NumClasses = None,
    in_chans: o.InChans = None,
    model_arg: o.ModelArg = None,
    output: Annotated[
        Path | None,
        typer.Option(
            "-o",
            "--output",
            help="Default: export/<model>/<model>.converted.safetensors (beside a model file).",
        ),
    ] = None,
    force: o.Force = False,
    trust_code: o.TrustCode = False,
    as_json: o.AsJson = False,
) -> None:
    """Fold BN, prune channel groups, swap KxK convs (separable / bottleneck) and 1x1 / Linear (lowrank)."""
    from edgecnn.artifacts import check_writable
    from edgecnn.transforms import convert as run_convert
    from edgecnn.transforms import load_source, save_converted

    sep, bot, low = o.swap_options_of(locals())
    if prune is not None:
        from edgecnn.transforms.prune import check_ratio

        check_ratio(prune)

    out = output or default_output(model, "converted")
    check_writable(out, force=force)
    loaded = load_source(model, weights, num_classes, in_chans, parse_kv(model_arg))
    with console.status(f"converting {model}...") if not as_json else contextlib.nullcontext():
        swaps = dict(separable=sep, bottleneck=bot, lowrank=low)
        result = run_convert(loaded, fold_bn=fold_bn, prune=prune, input_size=input_size, **swaps)
        save_converted(result, out, force=force)
    if as_json:
        typer.echo(json.dumps(result.to_dict(), indent=2))
        return
    _print(result)


MAX_PRUNE_ROWS = 12  # groups listed; --json has them all


def _print_prune(report) -> None:
    console.print(
        f"prune: {len(report.groups)} channel groups pruned ({len(report.recipe['layers'])} layers cut), "
        f"{len(report.skipped)} left whole",
        highlight=False,
    )
    table = Table()
    for col in ("group (root conv)", "channels", "kept"):
        table.add_column(col, justify="left" if col.startswith("group") else "right")
    for root, (channels, kept) in list(report.groups.items())[:MAX_PRUNE_ROWS]:
        table.add_row(root, str(channels), str(kept))
    console.print(table)
    if len(report.groups) > MAX_PRUNE_ROWS:
        more = len(report.groups) - MAX_PRUNE_ROWS
        console.print(f"... and {more} more groups (--json lists them all)", highlight=False)
    _skipped(report.skipped)


def _print(result) -> None:
    for report in result.reports:
        if report.transform == "fold_bn":
            console.print(
                f"fold_bn: folded {len(report.recipe['pairs'])} BatchNorm layers, "
                f"{len(report.skipped)} left in place",
                highlight=False,
            )
            _skipped(report.skipped)
            continue
        if report.transform == "prune":
            _print_prune(report)
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
        _skipped(report.skipped)
    r = result
    console.print(
        f"params {r.params_before:,} -> {r.params_after:,} ({r.params_before / r.params_after:.2f}x fewer) | "
        f"MACs {r.macs_before:,} -> {r.macs_after:,} ({r.macs_before / r.macs_after:.2f}x fewer) at "
        f"{r.input_size[0]}x{r.input_size[1]} | output relative error {r.output_error:.2e}\nsaved {r.path}",
        highlight=False,
    )
    fewer = r.macs_before / r.macs_after
    if fewer < LITTLE_SAVING and r.output_error > LARGE_ERROR:
        console.print(
            f"[yellow]warning:[/] {fewer:.2f}x fewer MACs for an output error of {r.output_error:.0%}: "
            "little gain for a large change; lower --energy or --rank-ratio for more, or let `edgecnn "
            "compress` choose per layer from measured latency",
            highlight=False,
        )


# convert warns when a setting buys less than this MAC reduction for more than this output error.
LITTLE_SAVING, LARGE_ERROR = 1.2, 0.1


def _skipped(skipped: list[tuple[str, str]], whole: int = 8) -> None:
    """Each skipped layer with its reason, or when there are many, a count per reason with examples."""
    if len(skipped) <= whole:
        for name, why in skipped:
            console.print(f"  [dim]skipped {name}: {why}[/]", highlight=False)
        return
    by_reason: dict[str, list[str]] = {}
    for name, why in skipped:
        by_reason.setdefault(why, []).append(name)
    for why, names in sorted(by_reason.items(), key=lambda kv: -len(kv[1])):
        more = f", ... ({len(names)} layers)" if len(names) > 3 else ""
        console.print(f"  [dim]skipped {', '.join(names[:3])}{more}: {why}[/]", highlight=False)
