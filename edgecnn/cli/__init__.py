"""The `edgecnn` command: a thin layer over the Python API. Imports no torch until a command runs."""

from __future__ import annotations

from typing import Annotated

import typer

from edgecnn import __version__
from edgecnn.cli import bench as bench_cmds
from edgecnn.cli import compress as compress_cmds
from edgecnn.cli import convert as convert_cmds
from edgecnn.cli import export as export_cmds
from edgecnn.cli import pipeline as pipeline_cmds
from edgecnn.cli import train as train_cmds
from edgecnn.cli import zoo as zoo_cmds
from edgecnn.cli._common import setup_logging

app = typer.Typer(
    name="edgecnn",
    help="Compress, export and benchmark CNN image classifiers for edge devices.",
    no_args_is_help=True,
    add_completion=False,
    pretty_exceptions_show_locals=False,
    rich_markup_mode=None,  # plain help: wraps to the terminal, nothing boxed or cut at 80 columns
)


def _version(value: bool) -> None:
    if value:
        typer.echo(f"edgecnn {__version__}")
        raise typer.Exit()


@app.callback()
def _root(
    verbose: Annotated[
        int, typer.Option("--verbose", "-v", count=True, help="More log output (-vv: debug).")
    ] = 0,
    version: Annotated[
        bool, typer.Option("--version", callback=_version, is_eager=True, help="Show the version and exit.")
    ] = False,
) -> None:
    setup_logging(verbose)
    from edgecnn.zoo.external import reset_trust

    reset_trust()  # --trust-code holds for one command (and one CLI call in a test's process)


# (name, command, its line in `edgecnn --help`: short enough that 80 columns never cut it)
COMMANDS = (
    ("zoo", zoo_cmds.zoo, "List the models by name: input size, params, MACs."),
    ("inspect", zoo_cmds.inspect, "Per-layer shapes, params and MACs of a model or ONNX."),
    ("convert", convert_cmds.convert, "Fold BN, prune channels, swap convs for cheaper ones."),
    ("export", export_cmds.export, "ONNX / OpenVINO IR / TensorRT, each checked."),
    ("compress", compress_cmds.compress, "Reach a speed-up measured on your runtime."),
    ("bench", bench_cmds.bench, "Latency, memory and top-1 across runtimes."),
    ("compare", bench_cmds.compare, "Join bench results into one table."),
    ("plot", bench_cmds.plot, "Plot latency vs top-1 from bench results."),
    ("train", train_cmds.train, "Train or fine-tune a model on your images."),
    ("distill", train_cmds.distill, "Distil a converted student from its original."),
    ("pipeline", pipeline_cmds.pipeline, "Train, fold, swap, distil, export, bench."),
)
for _name, _command, _line in COMMANDS:
    app.command(_name, short_help=_line)(_command)


def main() -> None:
    app()
