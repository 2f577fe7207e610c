"""One benchmark run as a rich table or markdown; the same columns in both."""

from __future__ import annotations

from edgecnn.bench.schema import BenchRow, BenchRun

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


def cells(row: BenchRow) -> list[str]:
    lat, mem, acc = row.latency or {}, row.memory or {}, row.accuracy or {}
    peak = mem.get("peak_over_baseline_bytes")

    def ms(key):
        return _ms(lat[key]) if key in lat else "-"

    return [
        row.model,
        row.variant,
        row.runtime,
        str(row.batch),
        _macs(row.macs),
        "-" if row.params is None else f"{row.params / 1e6:.2f} M",
        _mb(row.file_size_bytes),
        ms("median_ms"),
        ms("p90_ms"),
        ms("p99_ms"),
        f"{lat['throughput']:.1f}" if lat else "-",
        "-" if peak is None else f"{peak / 2**20:.0f} MiB",
        f"{acc['top1']:.2f}" if acc else "-",
        f"{acc['top5']:.2f}" if acc else "-",
    ]


def rich_table(run: BenchRun):
    from rich.table import Table

    table = Table(title=f"{run.label} — {run.machine.get('cpu')}")
    for col in COLUMNS:
        table.add_column(col, justify="left" if col in ("model", "variant", "runtime") else "right")
    for row in run.rows:
        if row.error:
            from rich.markup import escape

            hint = f" ({row.hint})" if row.hint else ""
            table.add_row(
                row.model, row.variant, row.runtime, str(row.batch), f"[red]{escape(row.error + hint)}[/]"
            )
        else:
            table.add_row(*cells(row))
    return table


def markdown(run: BenchRun) -> str:
    lines = [
        f"Machine: {run.machine.get('cpu')}, {run.machine.get('logical_cores')} cores, "
        f"ISA {' '.join(run.machine.get('isa', []))}; threads {run.settings.get('threads') or 'default'}",
        "",
        "| " + " | ".join(COLUMNS) + " |",
        "|" + "---|" * len(COLUMNS),
    ]
    for row in run.rows:
        if row.error:
            err = row.error + (f" ({row.hint})" if row.hint else "")
            lines.append(f"| {row.model} | {row.variant} | {row.runtime} | {row.batch} | error: {err} |")
        else:
            lines.append("| " + " | ".join(cells(row)) + " |")
    return "\n".join(lines) + "\n"
