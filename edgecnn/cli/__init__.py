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


app.command("zoo")(zoo_cmds.zoo)
app.command("inspect")(zoo_cmds.inspect)
app.command("convert")(convert_cmds.convert)
app.command("export")(export_cmds.export)
app.command("compress")(compress_cmds.compress)
app.command("bench")(bench_cmds.bench)
app.command("compare")(bench_cmds.compare)
app.command("plot")(bench_cmds.plot)
app.command("train")(train_cmds.train)
app.command("distill")(train_cmds.distill)
app.command("pipeline")(pipeline_cmds.pipeline)


def main() -> None:
    app()
