"""One benchmark run as a rich table or markdown; the same columns in both."""

from __future__ import annotations

import re

from edgecnn.bench.schema import BenchRow, BenchRun

SLOWER = "!"  # marks a reduced-precision row slower than its fp32 row
NOISY = "~"  # marks a row whose calls spread widely: the machine moved while it was timed
NOISY_P90 = 1.5  # p90 / p50 above which a row is marked

COLUMNS = (
    "model", "variant", "runtime", "batch", "MACs", "params", "file", "p50 ms", "p90 ms", "p99 ms",
    "img/s", "peak mem", "top-1", "top-5",
)  # fmt: skip


def _mb(n) -> str:
    return "-" if n is None else f"{n / 1e6:.1f} MB"


def _ms(v: float) -> str:
    return f"{v:.2f}" if v >= 1 else f"{v:.3f}"


def _macs(n) -> str:
    if n is None:
        return "-"
    return f"{n / 1e9:.2f} G" if n >= 1e8 else f"{n / 1e6:.2f} M"


def variant_base(row: BenchRow) -> str:
    """The variant without its precision and file suffix: rows of one model in different precisions
    share it ("int8u8" / "fp32" -> "", "a.int8.onnx" / "a.onnx" -> "a")."""
    from edgecnn.runtime import INT8_ACTIVATIONS, PRECISIONS, artifact_suffixes, precision_tag

    tags = {precision_tag(p, s) for p in PRECISIONS for s in INT8_ACTIVATIONS}
    drop = tags | {s.lstrip(".") for s in artifact_suffixes()}
    return ".".join(t for t in re.split(r"[ .]", row.variant) if t and t not in drop)


def slower_than_fp32(run: BenchRun) -> list[tuple[BenchRow, BenchRow]]:
    """(row, its fp32 row) for every reduced-precision row measured slower than the same model in fp32
    on the same runtime, device and batch: an INT8 model that is slower is worth knowing about."""
    from edgecnn.runtime import is_baseline

    fp32 = {
        (r.model, variant_base(r), r.runtime, r.device, r.batch, r.threads): r
        for r in run.rows
        if is_baseline(r.precision) and r.latency
    }
    out = []
    for r in run.rows:
        ref = fp32.get((r.model, variant_base(r), r.runtime, r.device, r.batch, r.threads))
        if not is_baseline(r.precision) and r.latency and ref and r.latency.median_ms > ref.latency.median_ms:
            out.append((r, ref))
    return out


def noisy(run: BenchRun) -> list[BenchRow]:
    """Rows whose p90 is over NOISY_P90 times their p50: their median is not one to compare by."""
    return [r for r in run.rows if r.latency and r.latency.p90_ms > NOISY_P90 * r.latency.median_ms]


def notes(run: BenchRun) -> list[str]:
    """Lines printed under the table."""
    slower = [
        f"{SLOWER} {r.model} {r.variant} on {r.runtime} batch {r.batch} is slower than fp32: "
        f"{_ms(r.latency.median_ms)} vs {_ms(ref.latency.median_ms)} ms"
        for r, ref in slower_than_fp32(run)
    ]
    spread = [
        f"{NOISY} {r.model} {r.variant} on {r.runtime} batch {r.batch}: p90 "
        f"{r.latency.p90_ms / r.latency.median_ms:.1f}x its p50, the machine was busy; time it "
        "again (a longer --duration) before comparing"
        for r in noisy(run)
    ]
    return slower + spread + float_math_notes(run)


def float_math_notes(run: BenchRun) -> list[str]:
    """Per runtime that says it, what its rows ran their float layers in (int8 rows keep some): the
    precision of a row's label is not always all of its math."""
    seen: dict[str, dict[str, list[str]]] = {}
    for r in run.rows:
        if r.float_math:
            tags = seen.setdefault(r.runtime, {}).setdefault(r.float_math, [])
            tags += [r.precision] if r.precision not in tags else []
    return [
        f"{runtime} ran float layers in "
        + " and ".join(f"{math} ({', '.join(precisions)} rows)" for math, precisions in by_math.items())
        for runtime, by_math in seen.items()
    ]


def cells(row: BenchRow, marks: str = "") -> list[str]:
    lat, acc, peak = row.latency, row.accuracy, row.peak_bytes

    def ms(key):
        return _ms(getattr(lat, key)) if lat else "-"

    return [
        row.model,
        row.variant,
        row.runtime,
        str(row.batch),
        _macs(row.macs),
        "-" if row.params is None else f"{row.params / 1e6:.2f} M",
        _mb(row.file_size_bytes),
        ms("median_ms") + (f" {marks}" if marks else ""),
        ms("p90_ms"),
        ms("p99_ms"),
        f"{lat.throughput:.1f}" if lat else "-",
        "-" if peak is None else f"{peak / 2**20:.0f} MiB",
        f"{acc.top1:.2f}" if acc else "-",
        f"{acc.top5:.2f}" if acc and acc.top5 is not None else "-",
    ]


# What stays when the table must be narrower than all of it (names first: a row without its model,
# variant and runtime says nothing); the rest are listed under the table.
PRIORITY = (
    "model", "variant", "runtime", "batch", "status", "p50 ms", "top-1", "img/s", "p99 ms", "peak mem",
    "MACs", "file", "p90 ms", "top-5", "params",
)  # fmt: skip
NAMES = ("model", "variant", "runtime")


def _errors(run: BenchRun) -> dict[int, str]:
    """{id(row): its error with the hint}, numbered in the status column and listed below the table."""
    return {id(r): r.error + (f" ({r.hint})" if r.hint else "") for r in run.rows if r.error}


def _grid(run: BenchRun) -> tuple[list[str], list[list[str]], list[str]]:
    """(columns, cells per row, error lines): a status column only when a row failed, whose data
    cells then stay '-' (an error never sits in a data column)."""
    slow = {id(r) for r, _ in slower_than_fp32(run)}
    spread = {id(r) for r in noisy(run)}
    errors = _errors(run)
    columns = list(COLUMNS)
    if errors:
        columns.insert(columns.index("batch") + 1, "status")
    grid, lines = [], []
    for row in run.rows:
        if id(row) in errors:
            lines.append(
                f"error {len(lines) + 1}: {row.model} {row.variant} {row.runtime}: {errors[id(row)]}"
            )
            cells_ = [row.model, row.variant, row.runtime, str(row.batch)] + ["-"] * (len(COLUMNS) - 4)
        else:
            cells_ = cells(row, SLOWER * (id(row) in slow) + NOISY * (id(row) in spread))
        if errors:
            cells_.insert(4, f"error {len(lines)}" if id(row) in errors else "ok")
        grid.append(cells_)
    return columns, grid, lines


def rich_table(run: BenchRun, width: int | None = None):
    """The run's table, narrowed to `width` columns of text by dropping the least needed columns
    (named below it); errors are numbered in a status column and given whole below, as lines that
    wrap at the console's width, not the table's."""
    from rich.console import Group
    from rich.text import Text

    from edgecnn.report.narrow import constants, heading, left_out, narrow_table, without

    columns, grid, errors = _grid(run)
    const = constants(columns, grid, ("model", "batch"))  # one model, one batch: said in the title
    columns, grid = without(columns, grid, const)
    title = f"{run.label} — {run.machine.get('cpu')}" + (f"\n{heading(const)}" if const else "")
    priority = [c for c in PRIORITY if c in columns]
    names = [c for c in NAMES if c in columns]
    left = (*NAMES, "status")
    table, hidden = narrow_table(title, columns, grid, priority=priority, width=width, left=left, keep=names)
    # empty columns (nothing measured) are left out unnamed
    caption = [*notes(run), *errors, *filter(None, [left_out(hidden, "see --markdown or -o FILE.json")])]
    return Group(table, *(Text(line) for line in caption))


def markdown(run: BenchRun) -> str:
    """Every column; a failed row's error whole in its status column."""
    columns, grid, _ = _grid(run)
    errors = _errors(run)
    lines = [
        f"Machine: {run.machine.get('cpu')}, {run.machine.get('logical_cores')} cores, "
        f"ISA {' '.join(run.machine.get('isa', []))}; threads {run.settings.get('threads') or 'default'}",
        "",
        "| " + " | ".join(columns) + " |",
        "|" + "---|" * len(columns),
    ]
    for row, cells_ in zip(run.rows, grid, strict=True):
        if id(row) in errors:
            cells_ = [*cells_[:4], f"error: {errors[id(row)]}", *cells_[5:]]
        lines.append("| " + " | ".join(c.replace("|", "\\|") for c in cells_) + " |")
    extra = notes(run)
    return "\n".join(lines + (["", *extra] if extra else [])) + "\n"
