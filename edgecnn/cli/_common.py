"""What every command shares: consoles, logging setup, and turning EdgeCNNError into one line."""

from __future__ import annotations

import errno
import functools
import logging
import os
import sys

import typer
from rich.console import Console

# Piped output (files, CI logs) gets a wide console so tables are not squeezed to 80 columns, unless
# COLUMNS says how wide (rich reads it); and its lines are never hard-wrapped, so a path or a
# suggested command stays whole (soft wrap: the reader's terminal or editor wraps them).
_piped = not sys.stdout.isatty()
console = (
    Console(soft_wrap=_piped)
    if not _piped or os.environ.get("COLUMNS")
    else Console(width=160, soft_wrap=True)
)
err_console = Console(stderr=True, soft_wrap=not sys.stderr.isatty())


def table_width() -> int:
    """Columns a table may take: COLUMNS when set (read per command, not once per process), else the
    console's."""
    columns = os.environ.get("COLUMNS", "")
    return int(columns) if columns.isdigit() and int(columns) > 0 else console.width


def setup_logging(verbose: int) -> None:
    from rich.logging import RichHandler

    level = logging.DEBUG if verbose > 1 else logging.INFO if verbose == 1 else logging.WARNING
    handler = RichHandler(console=err_console, show_time=False, show_path=False, markup=False)
    logging.basicConfig(level=logging.WARNING, format="%(message)s", handlers=[handler], force=True)
    logging.getLogger("edgecnn").setLevel(level)


# What the machine's disk can refuse mid-run (writes are atomic: a failure leaves no partial file).
FILE_SYSTEM_ERRORS = {
    errno.ENOSPC, errno.EDQUOT, errno.EROFS, errno.EACCES, errno.EPERM, errno.ENOTDIR, errno.EISDIR,
}  # fmt: skip


def fail(message: str, code: int = 2) -> typer.Exit:
    from rich.markup import escape

    err_console.print(f"[bold red]error:[/] {escape(message)}", highlight=False, soft_wrap=True)
    return typer.Exit(code)


def handle_errors(fn):
    """Run a command; known failures become one line on stderr and a non-zero exit, not a traceback."""

    @functools.wraps(fn)
    def wrapper(*args, **kwargs):
        from edgecnn.errors import EdgeCNNError, is_out_of_memory

        try:
            return fn(*args, **kwargs)
        except EdgeCNNError as e:
            raise fail(str(e), e.exit_code) from None
        except MemoryError:
            raise fail("out of memory; try a smaller --batch or --input-size", 1) from None
        except OSError as e:
            if e.errno == errno.ENOMEM:
                raise fail("out of memory; try a smaller --batch or --input-size", 1) from None
            if e.errno not in FILE_SYSTEM_ERRORS:
                raise
            where = f" ({e.filename})" if e.filename else ""
            raise fail(f"{e.strerror or e}{where}; nothing was left half-written", 1) from None
        except KeyboardInterrupt:
            raise fail("interrupted", 130) from None
        except Exception as e:
            if is_out_of_memory(e):  # an allocator's own words, whichever library: the promised line
                raise fail("out of memory; try a smaller --batch or --input-size", 1) from None
            raise

    return wrapper


def parse_kv(pairs: list[str] | None) -> dict:
    """KEY=VALUE options (model builder arguments) with ints, floats and booleans converted."""
    from edgecnn.errors import BadArgumentError

    out: dict = {}
    for pair in pairs or []:
        key, sep, value = pair.partition("=")
        if not sep or not key:
            raise BadArgumentError(f"expected KEY=VALUE, got {pair!r}")
        low = value.lower()
        if low in ("true", "false"):
            out[key] = low == "true"
            continue
        for cast in (int, float):
            try:
                out[key] = cast(value)
                break
            except ValueError:
                pass
        else:
            out[key] = value
    return out


def parse_floats(text: str | None, flag: str) -> tuple[float, ...] | None:
    """A comma-separated list of numbers (`--mean 0.485,0.456,0.406`), or None when not given."""
    from edgecnn.errors import BadArgumentError

    if text is None:
        return None
    try:
        return tuple(float(v) for v in text.split(","))
    except ValueError:
        raise BadArgumentError(
            f"--{flag} takes comma-separated numbers (e.g. 0.5 or 0.485,0.456,0.406), got {text!r}"
        ) from None


def default_output(source: str, kind: str):
    """Where a command writes what it makes from `source` when no -o is given: beside a model file
    (export/resnet18/resnet18.trained.converted.safetensors), else export/<model>/<model>.<kind>."""
    from pathlib import Path

    if source.endswith(".safetensors"):
        path = Path(source)
        return path.with_name(f"{path.name.removesuffix('.safetensors')}.{kind}.safetensors")
    from edgecnn.zoo.external import short_name

    name = short_name(source)
    return Path("export") / name / f"{name}.{kind}.safetensors"


def print_table(title: str, columns, rows, *, priority, left=(), more: str = "see --json") -> None:
    """A table that keeps the `priority` columns at this terminal's width, naming any it leaves out
    (and where to see them) on a line of its own."""
    from edgecnn.report.narrow import left_out, narrow_table

    table, hidden = narrow_table(title, columns, rows, priority=priority, width=table_width(), left=left)
    console.print(table)
    if hidden:
        console.print(left_out(hidden, more), highlight=False, soft_wrap=True)
